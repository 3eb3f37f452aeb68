//! `osam-image`: builds the fixup stack into bootable disks. `main` parses
//! the command line and dispatches into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use osam_image::build::{BuildOptions, Format, build};
use osam_image::stack::StackArch;

/// Build, inspect and check OSAM fixup stack images.
#[derive(Debug, Parser)]
#[command(name = "osam-image", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Arch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "i686")]
    I686,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build one stack into bootable disk images.
    ///
    /// Inputs are the pinned Debian packages fetched by
    /// scripts/fetch-inputs.sh; the stack's own binaries are built for the
    /// musl target of the architecture. Writes `<out>/osam-fixup-<arch>.*`
    /// and `<out>/osam-fixup-<arch>.manifest.json`.
    Build {
        #[arg(long, value_enum)]
        arch: Arch,
        /// Output formats (repeatable; `vmdk` also writes an OVA).
        #[arg(long, value_enum, default_values_t = vec![Format::Vmdk])]
        format: Vec<Format>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The folder holding the pinned .deb files (default: the cache
        /// folder scripts/fetch-inputs.sh prints).
        #[arg(long, value_name = "DIR")]
        inputs: Option<PathBuf>,
        #[arg(long, value_name = "FILE", default_value = "image/pins.txt")]
        pins: PathBuf,
        #[arg(long, value_name = "DIR", default_value = "kernel-config")]
        kernel_config: PathBuf,
        /// osam-init (default: target/stack/<triple>/release/osam-init).
        #[arg(long, value_name = "FILE")]
        init: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        fixupctl: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        stage2: Option<PathBuf>,
        /// The disk's size in MiB.
        #[arg(long, default_value_t = 64)]
        size_mib: u64,
        /// Keep the work folder here (debugging).
        #[arg(long, value_name = "DIR")]
        work: Option<PathBuf>,
    },
    /// Show what is inside an image: partitions, ESP files, manifest.
    Inspect {
        image: PathBuf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check a kernel config against the options the stack needs.
    CheckKernel {
        config: PathBuf,
        #[arg(
            long,
            value_name = "FILE",
            default_value = "kernel-config/required.config"
        )]
        required: PathBuf,
    },
}

fn stack_arch(a: Arch) -> StackArch {
    match a {
        Arch::X86_64 => StackArch::X86_64,
        Arch::I686 => StackArch::I686,
    }
}

fn default_inputs() -> anyhow::Result<PathBuf> {
    let out = std::process::Command::new("scripts/fetch-inputs.sh")
        .args(["--arch", "all"])
        .output()
        .map_err(|e| anyhow::anyhow!("running scripts/fetch-inputs.sh: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "scripts/fetch-inputs.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default().trim().to_string();
    Ok(PathBuf::from(last))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Build {
            arch,
            format,
            out,
            inputs,
            pins,
            kernel_config,
            init,
            fixupctl,
            stage2,
            size_mib,
            work,
        } => {
            let arch = stack_arch(arch);
            let bin = |name: &str| {
                PathBuf::from(format!(
                    "target/stack/{}-unknown-linux-musl/release/{name}",
                    arch.name()
                ))
            };
            let epoch = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let opts = BuildOptions {
                arch,
                formats: format,
                out,
                inputs: match inputs {
                    Some(i) => i,
                    None => default_inputs()?,
                },
                pins_file: pins,
                kernel_config,
                init: init.unwrap_or_else(|| bin("osam-init")),
                fixupctl: fixupctl.unwrap_or_else(|| bin("fixupctl")),
                stage2: stage2.or_else(|| Some(bin("osam-stage2")).filter(|p| p.is_file())),
                epoch,
                size_mib,
                work,
            };
            let report = build(&opts)?;
            for o in &report.outputs {
                println!("{}", o.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Inspect { image, json } => {
            let i = osam_image::inspect::inspect(&image)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&i)?);
            } else {
                print!("{}", osam_image::inspect::render(&i));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::CheckKernel { config, required } => {
            let cfg = std::fs::read_to_string(&config)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", config.display()))?;
            let frag = std::fs::read_to_string(&required)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", required.display()))?;
            match osam_image::kernel_config::check(&cfg, &frag) {
                Ok(()) => {
                    println!("{}: every required option is set", config.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(missing) => {
                    for m in &missing {
                        eprintln!("missing: {m}");
                    }
                    eprintln!(
                        "{}: {} required option(s) missing",
                        config.display(),
                        missing.len()
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("osam-image: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
