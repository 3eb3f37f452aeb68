//! `osam-manager`: the manager emulator on the command line.
//!
//! ```text
//! osam-manager run --blueprint b.json --stack out/osam-fixup-x86_64.vmdk --logs DIR \
//!     [--tools-iso ISO] [--keep] [--work-dir DIR] [--stage1-only]
//! osam-manager inputs --blueprint b.json --out DIR
//! ```
//!
//! `run` plays the manager against QEMU (TCG): stage 1 over the 9p
//! transport, stage 2 with the Tools ISO, a last boot whose check block it
//! prints; progress on standard output, a report in
//! `DIR/<migrationId>_emulator-report.json`. `inputs` only writes the
//! three protocol files (system-configuration.json, replica-disk-map.json,
//! network-interface-map.json), e.g. for the `disk` transport's `/fixup/`.
//!
//! Exit status: 0 success, 1 failure (the failed step is printed), 2 a
//! wrong command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use osam_qemu::emulator::{self, Blueprint, RunOptions, StopAfter};

/// Play the migration manager against QEMU: boot the fixup stack on a
/// migrated VM, run the protocol, stage 2 and a check boot.
#[derive(Debug, Parser)]
#[command(name = "osam-manager", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run every manager step for a blueprint.
    Run {
        /// The blueprint (JSON).
        #[arg(long, value_name = "FILE")]
        blueprint: PathBuf,
        /// The fixup disk: the stack's VMDK, raw or qcow2 image.
        #[arg(long, value_name = "IMAGE")]
        stack: PathBuf,
        /// Where fixup.log, result.json, the serial logs and the report go.
        #[arg(long, value_name = "DIR")]
        logs: PathBuf,
        /// The Tools ISO for stage 2 (default: an empty one labelled
        /// "VMware Tools").
        #[arg(long, value_name = "ISO")]
        tools_iso: Option<PathBuf>,
        /// Keep the work folder (the overlays hold the fixed guest).
        #[arg(long)]
        keep: bool,
        /// The work folder (default: a temporary one).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Stop after stage 1 (READY, inputs, BEGIN, END, results,
        /// power-off).
        #[arg(long)]
        stage1_only: bool,
    },
    /// Write the three input files of a blueprint, nothing else.
    Inputs {
        /// The blueprint (JSON).
        #[arg(long, value_name = "FILE")]
        blueprint: PathBuf,
        /// The folder to write them into (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    match cli.cmd {
        Cmd::Inputs { blueprint, out } => {
            let blueprint = match Blueprint::load(&blueprint) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("osam-manager: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match emulator::write_inputs(&blueprint, &out) {
                Ok(files) => {
                    for file in files {
                        println!("{}", file.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("osam-manager: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run {
            blueprint,
            stack,
            logs,
            tools_iso,
            keep,
            work_dir,
            stage1_only,
        } => {
            let blueprint = match Blueprint::load(&blueprint) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("osam-manager: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let options = RunOptions {
                stack,
                logs,
                tools_iso,
                work_dir,
                keep,
                stop_after: if stage1_only {
                    StopAfter::Stage1
                } else {
                    StopAfter::Full
                },
                fault: None,
                disks_as_is: false,
            };
            let report = emulator::run(&blueprint, &options, &mut |line| {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            });
            println!("\nphases:\n{}", report.summary());
            for (label, path) in [
                ("fixup.log", &report.logs.fixup_log),
                ("result.json", &report.logs.result_json),
            ] {
                if let Some(path) = path {
                    println!("{label}: {}", path.display());
                }
            }
            for (boot, path) in &report.logs.serial {
                println!("serial log ({boot}): {}", path.display());
            }
            println!("report: {}", report.logs.report.display());
            if let Some(dir) = &report.work_dir {
                println!("work folder kept: {}", dir.display());
            }
            match &report.failure {
                None => {
                    println!("osam-manager: {}: success", report.migration_id);
                    ExitCode::SUCCESS
                }
                Some(failure) => {
                    eprintln!(
                        "osam-manager: {}: failed at {}: {}",
                        report.migration_id, failure.step, failure.message
                    );
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "osam-manager",
            "run",
            "--blueprint",
            "b.json",
            "--stack",
            "s.vmdk",
            "--logs",
            "l",
            "--keep",
        ])
        .unwrap();
        assert!(matches!(cli.cmd, Cmd::Run { keep: true, .. }));
        assert!(Cli::try_parse_from(["osam-manager", "inputs", "--blueprint", "b"]).is_err());
    }
}
