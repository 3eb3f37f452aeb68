//! `osam-stage2`: the in-guest stage-2 agent. Stage 1 installs it with a
//! hook that runs it in single-user mode; see `osam_init::stage2`.

use std::path::PathBuf;
use std::time::Duration;

use osam_init::runner::RealRunner;
use osam_init::stage2::{self, Config};

const USAGE: &str = "usage: osam-stage2 [--root DIR] [--dry-run] [--timeout-iso SECONDS]
                   [--device PATH]...

Installs VMware Tools from the Tools ISO, restores the boot target and
SELinux mode saved by stage 1, removes its hook and itself, reports to
/var/log/osam-stage2.log and guestinfo.osam.stage2, and powers off.

  --root DIR             work on the guest tree at DIR (default /; no power-off
                         unless it is /)
  --dry-run              do everything but the power-off
  --timeout-iso SECONDS  how long to wait for the Tools ISO (default 600)
  --device PATH          look for the Tools ISO here (repeatable; default
                         /dev/sr0-3, /dev/cdrom, /dev/disk/by-label/VMware\\x20Tools)
";

fn parse(args: &[String]) -> Result<Config, String> {
    let mut cfg = Config::default();
    let mut devices = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--root" => cfg.root = PathBuf::from(value()?),
            "--dry-run" => cfg.dry_run = true,
            "--device" => devices.push(PathBuf::from(value()?)),
            "--timeout-iso" => {
                let v = value()?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--timeout-iso: expected seconds, found {v:?}"))?;
                cfg.iso_timeout = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !devices.is_empty() {
        cfg.devices = devices;
    }
    Ok(cfg)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match parse(&args) {
        Ok(c) => c,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("osam-stage2: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    stage2::log::install_panic_hook(&cfg.root);
    let mut runner = RealRunner::default();
    let outcome = stage2::run(&cfg, &mut runner);
    std::process::exit(outcome.exit_code());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_the_options() {
        let c = parse(&args(&["--root", "/mnt/g", "--dry-run", "--timeout-iso=5"])).unwrap();
        assert_eq!(c.root, PathBuf::from("/mnt/g"));
        assert!(c.dry_run);
        assert_eq!(c.iso_timeout, Duration::from_secs(5));
        let c = parse(&args(&["--device", "/dev/sr5", "--device=/tmp/x.iso"])).unwrap();
        assert_eq!(
            c.devices,
            vec![PathBuf::from("/dev/sr5"), PathBuf::from("/tmp/x.iso")]
        );
        let d = parse(&[]).unwrap();
        assert_eq!(d.root, PathBuf::from("/"));
        assert_eq!(d.iso_timeout, Duration::from_secs(600));
        assert_eq!(d.devices.len(), 6);
        assert!(parse(&args(&["--timeout-iso", "x"])).is_err());
        assert!(parse(&args(&["--root"])).is_err());
        assert!(parse(&args(&["--bogus"])).is_err());
    }
}
