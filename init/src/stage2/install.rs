//! Installing VMware Tools from the mounted Tools ISO, by what it holds
//! and what the guest can install: `*.deb` with dpkg, `*.rpm` with rpm, or
//! the `VMwareTools-*.tar.gz` installer run unattended. There is no network
//! in single-user mode: no dependency resolution is attempted; a failed
//! install is a warning (the guest is restored either way).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Guest, Outcome, log::Log};
use crate::runner::{Command, CommandRunner};

/// Where a guest with open-vm-tools has its daemon.
pub const VMTOOLSD: [&str; 2] = ["/usr/bin/vmtoolsd", "/usr/sbin/vmtoolsd"];
/// The installer archive is unpacked here (a guest path).
pub const TAR_WORK_DIR: &str = "/tmp/osam-stage2-tools";
/// Timeouts; with the ISO wait (600 s) and `restorecon` they stay inside
/// the hook unit's `TimeoutStartSec=3600`.
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(900);
const INSTALLER_TIMEOUT: Duration = Duration::from_secs(1200);
const TAR_TIMEOUT: Duration = Duration::from_secs(300);
/// How deep the ISO is searched for packages.
const MAX_DEPTH: usize = 3;

/// What the ISO holds that could be installed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IsoContents {
    pub debs: Vec<PathBuf>,
    pub rpms: Vec<PathBuf>,
    pub tarballs: Vec<PathBuf>,
}

/// Debian and RPM names of an architecture (the agent's own).
fn arch_names(arch: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match arch {
        "x86_64" => (&["amd64", "all"], &["x86_64", "noarch"]),
        "i686" => (
            &["i386", "all"],
            &["i386", "i486", "i586", "i686", "noarch"],
        ),
        "aarch64" => (&["arm64", "all"], &["aarch64", "noarch"]),
        _ => (&[], &[]),
    }
}

/// Does a package file name fit the architecture? `name_ver_ARCH.deb`,
/// `name-ver-rel.ARCH.rpm`; a name without a known arch field fits.
pub fn package_fits(file_name: &str, arch: &str) -> bool {
    let (deb, rpm) = arch_names(arch);
    if let Some(stem) = file_name.strip_suffix(".deb") {
        let a = stem.rsplit('_').next().unwrap_or("");
        let known = [
            "amd64", "i386", "arm64", "armhf", "armel", "ppc64el", "s390x", "all",
        ];
        return !known.contains(&a) || deb.contains(&a);
    }
    if let Some(stem) = file_name.strip_suffix(".rpm") {
        let a = stem.rsplit('.').next().unwrap_or("");
        if a == "src" {
            return false;
        }
        let known = [
            "x86_64", "i386", "i486", "i586", "i686", "aarch64", "ppc64le", "s390x", "noarch",
        ];
        return !known.contains(&a) || rpm.contains(&a);
    }
    false
}

/// Lists the ISO's installable files (sorted, for the guest's arch).
pub fn scan(dir: &Path, arch: &str) -> IsoContents {
    let mut c = IsoContents::default();
    scan_into(dir, arch, 0, &mut c);
    c.debs.sort();
    c.rpms.sort();
    c.tarballs.sort();
    c
}

fn scan_into(dir: &Path, arch: &str, depth: usize, c: &mut IsoContents) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if ft.is_dir() {
            if depth < MAX_DEPTH {
                scan_into(&path, arch, depth + 1, c);
            }
        } else if ft.is_file() {
            if name.starts_with("VMwareTools-") && name.ends_with(".tar.gz") {
                c.tarballs.push(path);
            } else if name.ends_with(".deb") && package_fits(&name, arch) {
                c.debs.push(path);
            } else if name.ends_with(".rpm") && package_fits(&name, arch) {
                c.rpms.push(path);
            }
        }
    }
}

/// Does the guest already have open-vm-tools (or Tools) installed?
pub fn has_vmtoolsd(g: &Guest) -> Option<&'static str> {
    VMTOOLSD.into_iter().find(|p| g.is_executable(p))
}

/// Installs from the ISO mounted at `iso` (a host path). Returns the way
/// it installed (`deb`, `rpm`, `tar`) or `None` with a warning in `out`.
pub fn install_from(
    g: &Guest,
    iso: &Path,
    runner: &mut dyn CommandRunner,
    log: &mut Log,
    out: &mut Outcome,
) -> Option<&'static str> {
    let contents = scan(iso, &g.arch);
    log.info(&format!(
        "the Tools ISO holds {} .deb, {} .rpm and {} VMwareTools tar.gz file(s) for {}",
        contents.debs.len(),
        contents.rpms.len(),
        contents.tarballs.len(),
        g.arch
    ));
    let dpkg = ["/usr/bin/dpkg", "/bin/dpkg"]
        .into_iter()
        .find(|p| g.is_executable(p));
    let rpm = ["/usr/bin/rpm", "/bin/rpm"]
        .into_iter()
        .find(|p| g.is_executable(p));
    let mut tried = false;

    if let (Some(dpkg), false) = (dpkg, contents.debs.is_empty()) {
        tried = true;
        let mut argv = vec![dpkg.to_string(), "-i".to_string()];
        argv.extend(contents.debs.iter().map(|p| g.guest_path(p)));
        let cmd = Command::new(&argv)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .timeout(PACKAGE_TIMEOUT);
        let rec = g.run(runner, cmd, log);
        if rec.succeeded() {
            return Some("deb");
        }
        warn(
            log,
            out,
            format!(
                "installing the open-vm-tools packages: {}",
                rec.describe_failure()
            ),
        );
    }
    if let (Some(rpm), false) = (rpm, contents.rpms.is_empty()) {
        tried = true;
        let mut argv = vec![rpm.to_string(), "-Uvh".to_string()];
        argv.extend(contents.rpms.iter().map(|p| g.guest_path(p)));
        let rec = g.run(runner, Command::new(&argv).timeout(PACKAGE_TIMEOUT), log);
        if rec.succeeded() {
            return Some("rpm");
        }
        warn(
            log,
            out,
            format!(
                "installing the open-vm-tools packages: {}",
                rec.describe_failure()
            ),
        );
    }
    if let Some(tarball) = contents.tarballs.last() {
        tried = true;
        if install_tarball(g, tarball, runner, log, out) {
            return Some("tar");
        }
    }
    if !tried {
        warn(
            log,
            out,
            format!(
                "nothing on the Tools ISO fits this guest (dpkg: {}, rpm: {}): VMware Tools \
                 not installed",
                dpkg.is_some(),
                rpm.is_some()
            ),
        );
    }
    None
}

fn warn(log: &mut Log, out: &mut Outcome, msg: String) {
    log.warn(&msg);
    out.warnings.push(msg);
}

/// `VMwareTools-*.tar.gz`: unpacked with the guest's tar, then
/// `vmware-install.pl --default` (and `--force-install` where the
/// installer knows it, else it refuses when the distribution offers
/// open-vm-tools).
fn install_tarball(
    g: &Guest,
    tarball: &Path,
    runner: &mut dyn CommandRunner,
    log: &mut Log,
    out: &mut Outcome,
) -> bool {
    if !g.is_executable("/usr/bin/perl") {
        warn(
            log,
            out,
            "the guest has no /usr/bin/perl for vmware-install.pl: VMware Tools not installed"
                .into(),
        );
        return false;
    }
    let work = g.host(TAR_WORK_DIR);
    let _ = std::fs::remove_dir_all(&work);
    if let Err(e) = create_private_dir(&work) {
        warn(log, out, format!("creating {TAR_WORK_DIR}: {e}"));
        return false;
    }
    let argv = [
        "tar".to_string(),
        "-xzf".to_string(),
        g.guest_path(tarball),
        "-C".to_string(),
        TAR_WORK_DIR.to_string(),
    ];
    let rec = g.run(runner, Command::new(&argv).timeout(TAR_TIMEOUT), log);
    let ok = if !rec.succeeded() {
        warn(
            log,
            out,
            format!("unpacking the Tools installer: {}", rec.describe_failure()),
        );
        false
    } else {
        let script = work.join("vmware-tools-distrib/vmware-install.pl");
        match std::fs::read(&script) {
            Err(e) => {
                warn(
                    log,
                    out,
                    format!("the Tools archive has no vmware-tools-distrib/vmware-install.pl: {e}"),
                );
                false
            }
            Ok(text) => {
                let force = String::from_utf8_lossy(&text).contains("force-install");
                let dir = format!("{TAR_WORK_DIR}/vmware-tools-distrib");
                // A fixed script; the directory and options are arguments.
                let mut argv = vec![
                    "/bin/sh".to_string(),
                    "-c".to_string(),
                    "cd \"$1\" && shift && exec /usr/bin/perl ./vmware-install.pl \"$@\""
                        .to_string(),
                    "osam-stage2".to_string(),
                    dir,
                    "--default".to_string(),
                ];
                if force {
                    argv.push("--force-install".to_string());
                }
                let rec = g.run(runner, Command::new(&argv).timeout(INSTALLER_TIMEOUT), log);
                if !rec.succeeded() {
                    warn(
                        log,
                        out,
                        format!("vmware-install.pl: {}", rec.describe_failure()),
                    );
                }
                rec.succeeded()
            }
        }
    };
    let _ = std::fs::remove_dir_all(&work);
    ok
}

/// A new directory only root can enter.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_chosen_by_architecture() {
        assert!(package_fits("open-vm-tools_12.3.0-1_amd64.deb", "x86_64"));
        assert!(!package_fits("open-vm-tools_12.3.0-1_i386.deb", "x86_64"));
        assert!(package_fits("open-vm-tools_12.3.0-1_i386.deb", "i686"));
        assert!(package_fits("libfoo_1_all.deb", "i686"));
        assert!(package_fits(
            "open-vm-tools-12.3.0-1.el8.x86_64.rpm",
            "x86_64"
        ));
        assert!(!package_fits(
            "open-vm-tools-12.3.0-1.el8.x86_64.rpm",
            "i686"
        ));
        assert!(package_fits("open-vm-tools-12.3.0-1.el6.i686.rpm", "i686"));
        assert!(!package_fits("open-vm-tools-12.3.0-1.src.rpm", "x86_64"));
        assert!(!package_fits("README", "x86_64"));
    }

    #[test]
    fn scan_finds_packages_in_subdirectories() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("debs/amd64")).unwrap();
        std::fs::write(d.path().join("debs/amd64/b_1_amd64.deb"), "").unwrap();
        std::fs::write(d.path().join("debs/amd64/a_1_amd64.deb"), "").unwrap();
        std::fs::write(d.path().join("debs/c_1_i386.deb"), "").unwrap();
        std::fs::write(d.path().join("VMwareTools-10.3.26-1.tar.gz"), "").unwrap();
        std::fs::write(d.path().join("manifest.txt"), "").unwrap();
        let c = scan(d.path(), "x86_64");
        assert_eq!(
            c.debs,
            vec![
                d.path().join("debs/amd64/a_1_amd64.deb"),
                d.path().join("debs/amd64/b_1_amd64.deb")
            ]
        );
        assert!(c.rpms.is_empty());
        assert_eq!(c.tarballs.len(), 1);
    }
}
