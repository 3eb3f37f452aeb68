//! `make bench-peer`: virt-v2v 2.2 and our flow (the manager emulator's
//! stage 1 + stage 2) on the same reference guest (a), each result booted
//! on VMware virtual hardware (pvscsi + vmxnet3); prints the table of
//! [`osam_qemu::peer`] and writes it as `target/bench/peer.json` (and
//! `peer.md`). Needs `make deps-peer` (virt-v2v, nbdkit, libnbd-bin and a
//! host kernel for libguestfs' appliance) and root (guest (a) is built
//! once from the Debian archive when it is not cached).
//!
//! Takes 10 to 25 minutes here: virt-v2v 3 to 10 (its update-initramfs
//! under TCG), our flow about 5, each check boot up to 5.
//!
//! `osam-bench-peer --print FILE` prints the table of a saved `peer.json`
//! again, without running anything.

use anyhow::{Context, Result};
use osam_qemu::Arch;
use osam_qemu::guests::mirror::host_mirror;
use osam_qemu::guests::recipe::DEBIAN_SUITE;
use osam_qemu::guests::tools_iso::tools_iso;
use osam_qemu::guests::{GuestArch, Recipe, guest_image};
use osam_qemu::image::stack_image;
use osam_qemu::{paths, peer};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, file] = &args[..]
        && flag == "--print"
    {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
        let report: peer::PeerReport =
            serde_json::from_str(&text).with_context(|| format!("parsing {file}"))?;
        println!("{}", report.text());
        return Ok(());
    }
    if !args.is_empty() {
        anyhow::bail!("usage: osam-bench-peer [--print peer.json]");
    }
    let bench_dir = paths::workspace_root().join("target/bench");
    let mirror = host_mirror(DEBIAN_SUITE)?;
    let image = guest_image(&Recipe::debian12_bios(GuestArch::Amd64, &mirror))
        .context("reference guest (a)")?;
    let iso = tools_iso(&image).context("the Tools ISO")?;
    let stack = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    let start = std::time::Instant::now();
    let report = peer::compare(&image, &stack.vmdk, &iso.path, &bench_dir, &mut |line| {
        eprintln!("[{:7.1}s] {line}", start.elapsed().as_secs_f64())
    })?;
    let json = peer::write_json(&report, &bench_dir)?;
    let text = report.text();
    std::fs::write(bench_dir.join("peer.md"), &text)?;
    println!("{text}");
    println!("JSON: {}", json.display());
    Ok(())
}
