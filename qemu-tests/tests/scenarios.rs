//! The end-to-end scenarios of issue 7: for each test guest, a whole
//! migration played by the manager emulator against the real stack image
//! under QEMU (TCG), then the guest booting on its own on VMware's
//! virtual hardware.
//!
//! Each scenario:
//!
//! 1. with `OSAM_QEMU_FULL=1` only, proves the problem: the unfixed guest
//!    on VMware hardware (pvscsi or, under UEFI, AHCI; VMXNET3) does not
//!    get to its check block — its initramfs stops at "ALERT! /dev/sdXN
//!    does not exist" (dracut: "Warning: /dev/sdXN does not exist") — or
//!    boots with NIC names its configuration does not
//!    know and no addresses;
//! 2. runs the whole flow (`emulator::run`): stage 1 from the fixup disk,
//!    stage 2 with the Tools ISO, a last boot that prints the guest's check
//!    block;
//! 3. asserts, in one function for every scenario (`assert_fixed`):
//!    result.json `success` with the expected steps and statuses, no error;
//!    the stage-2 agent's outcome `success` with VMware Tools installed;
//!    in the check boot the guest's original default target reached
//!    (multi-user active, not rescue or emergency), NICs `eth0`, `eth1`, …
//!    in the target VM's order with the *target* MACs and the addresses
//!    their source NIC was configured with (DHCP from QEMU's user
//!    networking: 10.0.2.x; a static address as configured), every fstab
//!    mount of the recipe mounted from the right device with the right
//!    type, SELinux as the recipe set it (`none` without), and the stage-2
//!    code gone.
//!
//! | scenario | guest | tier |
//! |---|---|---|
//! | (a) | Debian 12 amd64, BIOS, ext4 `/` as `/dev/sda1`, `ens192`/`ens224`, no `vmw_pvscsi` in the initramfs | default |
//! | (b) | Debian 12 amd64, UEFI, `/boot/efi` on the ESP, disks on AHCI | default |
//! | (c) | Debian 12 i386 on the i686 stack | default |
//! | (e) | (a) with a second disk, `/data` as `/dev/sdb1` | `OSAM_QEMU_FULL=1` |
//! | (f) | (a) on btrfs, subvolumes `@` (`/`) and `@home` | `OSAM_QEMU_FULL=1` |
//! | (g) | RHEL-like from Debian's packages: (a) with dracut (no `vmw_pvscsi`), NetworkManager keyfiles, SELinux enforcing | `OSAM_QEMU_FULL=1` |
//! | (h) | (a), the target's NICs in PCI order taking the source NICs in reverse MAC order | `OSAM_QEMU_FULL=1` |
//!
//! (d), root on LVM, is in `scenario_lvm.rs` (its guest is built in a VM).
//! What the scenarios share (the prove-the-problem boot, the flow, the
//! assertions) is in `osam_qemu::scenario`; the expectations come from
//! each guest's recipe (`Expected::from_recipe`).
//!
//! Guests, Tools ISOs and stack images come from their caches (built on
//! first use: root and the Debian archive are needed). Scenario VMs run
//! one at a time; `OSAM_QEMU_VMS=2` lets two scenarios run side by side
//! (each VM has one vCPU). The logs of each scenario stay in
//! `target/osam-scenarios/<migration id>/`; a failure names the step and
//! shows the logs' last lines.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use osam_qemu::emulator::{Blueprint, blueprint_for_guest};
use osam_qemu::guests::mirror::host_mirror;
use osam_qemu::guests::recipe::{DEBIAN_SUITE, SelinuxMode};
use osam_qemu::guests::tools_iso::tools_iso;
use osam_qemu::guests::{GuestArch, GuestImage, Recipe, guest_image};
use osam_qemu::image::stack_image;
use osam_qemu::scenario::{
    Expected, POWER_OFF_GRACE_SECONDS, Problem, assert_fixed, full, logs_dir, passed_line,
    prove_the_problem, run_flow,
};
use osam_qemu::vmslot::VmSlot;

/// One scenario of issue 7.
struct Scenario {
    /// Its letter in the issue (`a` … `h`).
    letter: char,
    /// The guest.
    recipe: Recipe,
    /// Whether the target VM's NICs (in PCI order) take the source NICs
    /// in reverse order (h): the name and configuration must follow the
    /// source MAC, not the slot.
    reversed_nics: bool,
    /// Whether to boot the unfixed guest on VMware hardware first (with
    /// `OSAM_QEMU_FULL=1`); (h) shares (a)'s unfixed guest.
    prove: bool,
    /// Only with `OSAM_QEMU_FULL=1`.
    full_only: bool,
}

impl Scenario {
    fn new(letter: char, recipe: Recipe) -> Self {
        Self {
            letter,
            recipe,
            reversed_nics: false,
            prove: true,
            full_only: false,
        }
    }

    fn full_only(mut self) -> Self {
        self.full_only = true;
        self
    }

    /// The migration id, which names the logs folder.
    fn id(&self) -> String {
        let suffix = if self.reversed_nics {
            "-nics-reversed"
        } else {
            ""
        };
        format!("scenario-{}-{}{suffix}", self.letter, self.recipe.name)
    }

    /// The blueprint the manager would make for the migrated guest.
    fn blueprint(&self, image: &GuestImage) -> Blueprint {
        let mut bp = blueprint_for_guest(image, &self.id());
        // After its check block the guest's fate does not matter (its
        // overlay is thrown away): `quit` soon after the power button.
        bp.timeouts.power_off_seconds = POWER_OFF_GRACE_SECONDS;
        if self.reversed_nics {
            // ethernet0 gets the last source NIC, ethernet1 the one before
            // …; the target MACs stay in PCI order.
            let sources: Vec<(String, String)> = bp
                .nics
                .iter()
                .rev()
                .map(|n| (n.source_name.clone(), n.source_mac.clone()))
                .collect();
            for (nic, (name, mac)) in bp.nics.iter_mut().zip(sources) {
                nic.source_name = name;
                nic.source_mac = mac;
            }
        }
        bp
    }
}

/// Runs scenario `s` (or says why it is skipped).
fn run_scenario(s: Scenario) -> Result<()> {
    let id = s.id();
    if s.full_only && !full() {
        eprintln!("{id}: skipped: set OSAM_QEMU_FULL=1 (make qemu-test)");
        return Ok(());
    }
    let waiting = Instant::now();
    let _slot = VmSlot::take();
    let t0 = Instant::now();
    let say = |line: &str| eprintln!("[{id} {:7.1}s] {line}", t0.elapsed().as_secs_f64());
    if waiting.elapsed() > Duration::from_secs(1) {
        say(&format!(
            "waited {:.0?} for another scenario's VMs",
            waiting.elapsed()
        ));
    }

    let image = guest_image(&s.recipe).with_context(|| format!("the guest {}", s.recipe.name))?;
    let iso = tools_iso(&image).context("the Tools ISO")?;
    let bp = s.blueprint(&image);
    let stack = stack_image(bp.arch.arch())
        .with_context(|| format!("the {} stack image", bp.arch.arch()))?;
    let inputs_s = t0.elapsed().as_secs_f64();
    say(&format!(
        "guest {}, Tools ISO {}, stack {} ({inputs_s:.1} s)",
        image.boot_disk().display(),
        iso.path.display(),
        stack.vmdk.display()
    ));
    let logs = logs_dir(&id)?;
    std::fs::write(
        logs.join("blueprint.json"),
        serde_json::to_string_pretty(&bp)? + "\n",
    )?;

    let mut problem_s = 0.0;
    if s.prove && full() {
        let t = Instant::now();
        let problem = Problem {
            network_problem_suffices: true,
            ..Problem::default()
        };
        let how = prove_the_problem(&image, &logs, &problem)
            .with_context(|| format!("{id}: proving the problem (logs in {})", logs.display()))?;
        problem_s = t.elapsed().as_secs_f64();
        say(&format!(
            "the unfixed guest on VMware hardware: {how} ({problem_s:.1} s)"
        ));
    }

    let (report, run_s) = run_flow(&id, &bp, &stack.vmdk, &iso.path, &logs)?;
    let check = assert_fixed(&report, &Expected::from_recipe(&image, &bp))
        .with_context(|| format!("{id}: the fixed guest (logs in {})", logs.display()))?;
    let line = passed_line(
        &id,
        t0.elapsed().as_secs_f64(),
        inputs_s,
        problem_s,
        run_s,
        &report,
        &check,
    );
    eprintln!("{line}");
    std::fs::write(logs.join("passed.txt"), line + "\n")?;
    Ok(())
}

fn mirror() -> Result<String> {
    host_mirror(DEBIAN_SUITE).context("picking a Debian mirror")
}

/// (a) Debian 12 amd64, BIOS, `/dev/sda1` in fstab and `root=`,
/// `ens192`/`ens224` in `/etc/network/interfaces`, no `vmw_pvscsi` in its
/// gzip initramfs.
#[test]
fn scenario_a_debian12_bios() -> Result<()> {
    run_scenario(Scenario::new(
        'a',
        Recipe::debian12_bios(GuestArch::Amd64, &mirror()?),
    ))
}

/// (b) Debian 12 amd64, UEFI: GPT, `/boot/efi` on the ESP (`/dev/sda1`),
/// `/` on `/dev/sda2`, the disks on AHCI (Debian's OVMF has no PVSCSI
/// driver).
#[test]
fn scenario_b_debian12_uefi() -> Result<()> {
    run_scenario(Scenario::new(
        'b',
        Recipe::debian12_uefi(GuestArch::Amd64, &mirror()?, true),
    ))
}

/// (c) guest (a) for i386 (`linux-image-686`), fixed by the i686 stack.
#[test]
fn scenario_c_debian12_i386() -> Result<()> {
    run_scenario(Scenario::new(
        'c',
        Recipe::debian12_bios(GuestArch::I386, &mirror()?),
    ))
}

/// (e) guest (a) with a second disk: `/data` as `/dev/sdb1`.
#[test]
fn scenario_e_data_disk() -> Result<()> {
    run_scenario(
        Scenario::new(
            'e',
            Recipe::debian12_bios(GuestArch::Amd64, &mirror()?).with_data_disk(),
        )
        .full_only(),
    )
}

/// (f) guest (a) on btrfs: subvolume `@` at `/`, `@home` at `/home`.
#[test]
fn scenario_f_btrfs_subvolumes() -> Result<()> {
    run_scenario(
        Scenario::new(
            'f',
            Recipe::debian12_bios_btrfs(GuestArch::Amd64, &mirror()?),
        )
        .full_only(),
    )
}

/// The SELinux mode of guest (g) (docs/testing.md says why).
const G_SELINUX: SelinuxMode = SelinuxMode::Enforcing;

/// (g) a RHEL-like guest from Debian's packages: guest (a) with dracut
/// instead of initramfs-tools (exactly the virtio-scsi drivers, so no
/// `vmw_pvscsi`: the unfixed guest's dracut gives up on `/dev/sda1`),
/// NetworkManager keyfiles (`ens192` by `interface-name=`, DHCP; `ens224`
/// by `interface-name=` and `mac-address=`, static) instead of ifupdown,
/// and SELinux (Debian's reference policy, labelled at build time) in
/// [`G_SELINUX`] mode, which must be the mode again after the flow, with
/// no file under `/boot`, `/etc`, `/opt` left without its label (its check
/// script's `selinux-unlabeled=` line).
#[test]
fn scenario_g_rhel_like() -> Result<()> {
    run_scenario(
        Scenario::new(
            'g',
            Recipe::debian12_rhel_like(GuestArch::Amd64, &mirror()?, G_SELINUX),
        )
        .full_only(),
    )
}

/// (h) guest (a) whose two source NICs come to the target VM in reverse:
/// ethernet0 (first in PCI order) replaces `ens224` (the higher source
/// MAC, static 192.168.50.10), ethernet1 replaces `ens192` (DHCP). eth0
/// must be the NIC that replaced `ens224`, with its static address, and
/// eth1 the DHCP one: names and configurations follow the source MAC, not
/// the source name's or MAC's order. Its unfixed guest is (a)'s, proven
/// there.
#[test]
fn scenario_h_nics_in_reverse_order() -> Result<()> {
    let mut s = Scenario::new('h', Recipe::debian12_bios(GuestArch::Amd64, &mirror()?)).full_only();
    s.reversed_nics = true;
    s.prove = false;
    run_scenario(s)
}

/// The blueprint of (h) really reverses the pairing (no VM).
#[test]
fn scenario_h_blueprint_pairs_the_nics_in_reverse() -> Result<()> {
    use osam_qemu::emulator::guest::target_mac;
    use osam_qemu::guests::manifest::GuestManifest;
    use osam_qemu::guests::recipe::BUILDER_VERSION;
    let recipe = Recipe::debian12_bios(GuestArch::Amd64, "http://mirror/debian");
    let image = GuestImage {
        manifest: GuestManifest {
            builder_version: BUILDER_VERSION,
            name: recipe.name.clone(),
            hash: recipe.hash(),
            recipe: recipe.clone(),
            kernels: vec![],
            packages: vec![],
            initramfs_modules: Default::default(),
            grub_cmdline: vec![],
            partitions: vec![],
            timings: Default::default(),
        },
        disks: vec!["/cache/x.qcow2".into()],
        dpkg_status: "/cache/s".into(),
        build_log: "/cache/l".into(),
    };
    let mut s = Scenario::new('h', recipe.clone());
    s.reversed_nics = true;
    let bp = s.blueprint(&image);
    bp.check()?;
    let map = bp.network_interface_map();
    let interfaces = map["interfaces"].as_array().context("interfaces")?;
    anyhow::ensure!(interfaces.len() == 2, "{map}");
    for (i, source) in [&recipe.nics[1], &recipe.nics[0]].into_iter().enumerate() {
        anyhow::ensure!(
            interfaces[i]["sourceName"] == source.name.as_str()
                && interfaces[i]["sourceMac"] == source.mac.as_str()
                && interfaces[i]["targetMac"] == target_mac(i).as_str(),
            "interface {i}: {}",
            interfaces[i]
        );
    }
    // The source MACs' order is the reverse of the target's PCI order.
    let source_macs: Vec<&str> = interfaces
        .iter()
        .map(|n| n["sourceMac"].as_str().unwrap_or(""))
        .collect();
    anyhow::ensure!(source_macs[0] > source_macs[1], "{source_macs:?}");
    anyhow::ensure!(s.id() == "scenario-h-deb12-bios-amd64-nics-reversed");
    Ok(())
}
