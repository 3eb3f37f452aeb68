//! Power cuts in stage 1 (issue 8, item 2): QEMU is SIGKILLed while the
//! stack fixes guest (a) (Debian 12 amd64, BIOS); afterwards every guest
//! file the fixup changes must be either its old or its new version, a
//! new stage 1 on the same disks must succeed, and the guest must boot.
//!
//! - default tier (`make test`): two cuts at known places, through the
//!   stack's test hook (`osam-test-hold`, docs/protocol.md) or a delay
//!   after a progress line: before `initramfs` (then the fixed guest boots
//!   until its stage-2 agent starts: kernel, initramfs and root work; the
//!   whole flow of this guest is scenario (a)'s) and 15 s into the
//!   initramfs rebuild (stops after the rerun's success);
//! - `OSAM_QEMU_FULL=1` (`make qemu-test`): a cut before `bootloader`
//!   (the rerun goes on through stage 2 and the check boot), then
//!   [`RANDOM_TRIALS`] cuts at times drawn from a seeded PRNG across
//!   the reference's stage-1 window (the seed is printed;
//!   `OSAM_FAULT_SEED=<n>` replays it), each with a rerun and a boot of
//!   the guest up to the start of its stage-2 agent (docs/testing.md says
//!   why not the whole flow).
//!
//! The reference (the guest after one complete stage 1) is made once per
//! stack image and guest image and kept in `target/osam-faults/ref-*`; each
//! trial's logs and disks stay in `target/osam-faults/<trial>/`. One VM at
//! a time ([`VmSlot`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use osam_qemu::emulator::{
    self, Blueprint, Boot, Fault, Killed, MachineFiles, RunOptions, RunReport, StopAfter,
    blueprint_for_guest, vm_config,
};
use osam_qemu::faults::{MountedImage, Tree, Verdict, check_killed};
use osam_qemu::guests::mirror::host_mirror;
use osam_qemu::guests::recipe::DEBIAN_SUITE;
use osam_qemu::guests::tools_iso::tools_iso;
use osam_qemu::guests::{GuestArch, GuestImage, Recipe, guest_image};
use osam_qemu::image::stack_image;
use osam_qemu::paths::{tail_lines, workspace_root};
use osam_qemu::vm::Vm;
use osam_qemu::vmslot::VmSlot;
use serde_json::{Value, json};

/// The guest's root file system: partition 1 of its only disk.
const ROOT_PARTITION: u32 = 1;
/// Cuts of the `OSAM_QEMU_FULL=1` tier.
const RANDOM_TRIALS: usize = 20;
/// How long the stage-2 boot gets to start the agent.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(600);
/// The line the stage-2 agent starts its console output with.
const AGENT_MARK: &str = "osam-stage2: ";

fn full() -> bool {
    std::env::var_os("OSAM_QEMU_FULL").is_some_and(|v| v == "1")
}

fn say(what: &str, line: &str) {
    eprintln!("[fault {what}] {line}");
}

/// `target/osam-faults/<name>/`, emptied.
fn fresh_dir(name: &str) -> Result<PathBuf> {
    let dir = workspace_root().join("target/osam-faults").join(name);
    // What a killed earlier run left mounted there.
    for line in osam_qemu::faults::release_under(&dir) {
        say(name, &format!("cleaning up: {line}"));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Guest (a), the stack, and the reference run.
struct Setup {
    image: GuestImage,
    stack: PathBuf,
    /// The guest after one complete, successful stage 1 (a qcow2 overlay
    /// on the cached guest).
    reference: PathBuf,
    /// Seconds from BEGIN to END of the reference's stage 1.
    stage1_seconds: f64,
}

impl Setup {
    fn pristine(&self) -> &Path {
        self.image.boot_disk()
    }

    fn blueprint(&self, id: &str) -> Blueprint {
        let mut bp = blueprint_for_guest(&self.image, id);
        bp.timeouts.power_off_seconds = 5;
        bp
    }
}

static SETUP: Mutex<Option<std::sync::Arc<Setup>>> = Mutex::new(None);

/// The setup, made once per process; the reference is reused across
/// processes while the stack image and the guest image stay the same.
fn setup() -> Result<std::sync::Arc<Setup>> {
    let mut slot = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = &*slot {
        return Ok(s.clone());
    }
    let mirror = host_mirror(DEBIAN_SUITE).context("picking a Debian mirror")?;
    let image =
        guest_image(&Recipe::debian12_bios(GuestArch::Amd64, &mirror)).context("guest (a)")?;
    let stack = stack_image(osam_qemu::Arch::X86_64).context("the x86_64 stack image")?;
    let stack_key = stack
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let guest_key = image
        .boot_disk()
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Short: the QMP socket's path must fit a unix socket address.
    let tail8 = |s: &str| s[s.len().saturating_sub(8)..].to_owned();
    let dir = workspace_root().join("target/osam-faults").join(format!(
        "ref-{}-{}",
        tail8(&stack_key),
        tail8(&guest_key)
    ));
    let done = dir.join("reference.json");
    let reference = dir.join("work/disk0.qcow2");
    let stage1_seconds = match std::fs::read_to_string(&done)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["stage1Seconds"].as_f64())
    {
        Some(s) if reference.is_file() => {
            say("reference", &format!("reusing {}", reference.display()));
            s
        }
        _ => {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let partial = Setup {
                image: image.clone(),
                stack: stack.vmdk.clone(),
                reference: PathBuf::new(),
                stage1_seconds: 0.0,
            };
            let bp = partial.blueprint("fault-reference");
            let mut options = RunOptions::new(&stack.vmdk, dir.join("logs"));
            options.stop_after = StopAfter::Stage1;
            options.work_dir = Some(dir.join("work"));
            options.keep = true;
            let _vm = VmSlot::take();
            let t = Instant::now();
            let report = emulator::run(&bp, &options, &mut |l| say("reference", l));
            if let Some(f) = &report.failure {
                bail!("the reference run failed: {f}");
            }
            let s = report
                .phase("stage1.fixup")
                .map_or(t.elapsed().as_secs_f64(), |p| p.seconds);
            say(
                "reference",
                &format!(
                    "stage 1 took {s:.1} s (run {:.1} s)",
                    t.elapsed().as_secs_f64()
                ),
            );
            std::fs::write(&done, json!({ "stage1Seconds": s }).to_string())?;
            s
        }
    };
    let s = std::sync::Arc::new(Setup {
        image,
        stack: stack.vmdk,
        reference,
        stage1_seconds,
    });
    *slot = Some(s.clone());
    Ok(s)
}

/// The pristine and reference trees, mounted for as long as this lives.
struct Trees {
    pristine: Tree,
    reference: Tree,
    _mounts: [MountedImage; 2],
}

impl Trees {
    fn mount(setup: &Setup, scratch: &Path) -> Result<Trees> {
        let p = MountedImage::mount(setup.pristine(), ROOT_PARTITION, scratch)
            .map_err(anyhow::Error::msg)
            .context("mounting the pristine guest")?;
        let r = MountedImage::mount(&setup.reference, ROOT_PARTITION, scratch)
            .map_err(anyhow::Error::msg)
            .context("mounting the reference guest")?;
        Ok(Trees {
            pristine: Tree::scan(p.root()).map_err(anyhow::Error::msg)?,
            reference: Tree::scan(r.root()).map_err(anyhow::Error::msg)?,
            _mounts: [p, r],
        })
    }

    fn check(&self, killed: &Path, scratch: &Path) -> Result<Verdict> {
        let k = MountedImage::mount(killed, ROOT_PARTITION, scratch)
            .map_err(anyhow::Error::msg)
            .context("mounting the killed guest")?;
        let tree = Tree::scan(k.root()).map_err(anyhow::Error::msg)?;
        check_killed(&self.pristine, &self.reference, &tree).map_err(anyhow::Error::msg)
    }
}

/// Whether a trial's cut came before END.
enum Cut {
    Made,
    /// END came first; stage 1 took this long (BEGIN to END).
    Missed(f64),
}

/// What the trial does after the rerun's stage 1.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Nothing more.
    Stop,
    /// Boot the guest until its stage-2 agent starts.
    AgentStart,
    /// The rerun goes on through stage 2 and the check boot.
    FullFlow,
}

/// One cut: the killed run, the hash check, the rerun, maybe a boot.
/// [`Cut::Missed`] when END came before the cut (nothing to check).
fn trial(setup: &Setup, trees: &Trees, name: &str, fault: Fault, then: Then) -> Result<Cut> {
    let t0 = Instant::now();
    let dir = fresh_dir(name)?;
    let id = format!("fault-{name}");
    let bp = setup.blueprint(&id);
    let mut options = RunOptions::new(&setup.stack, dir.join("logs"));
    options.stop_after = StopAfter::Stage1;
    options.work_dir = Some(dir.join("killed"));
    options.fault = Some(fault.clone());
    let report = {
        let _vm = VmSlot::take();
        emulator::run(&bp, &options, &mut |l| say(name, l))
    };
    if let Some(f) = &report.failure {
        bail!("{name}: the run to be killed failed: {f}");
    }
    let Some(killed) = report.killed.clone() else {
        let seconds = report.phase("stage1.fixup").map_or(0.0, |p| p.seconds);
        say(
            name,
            &format!("END came before the cut (stage 1 took {seconds:.1} s): nothing to check"),
        );
        return Ok(Cut::Missed(seconds));
    };
    let disk = killed_disk(&killed)?;
    say(
        name,
        &format!(
            "killed {:.1} s after BEGIN, last progress: {}",
            killed.after_begin_seconds,
            killed.last_progress.as_deref().unwrap_or("none")
        ),
    );

    // Every file the fixup changes: old or new.
    let scratch = dir.join("scratch");
    let verdict = trees.check(&disk, &scratch)?;
    say(
        name,
        &format!("hash check: {}", verdict.summary().trim_end()),
    );
    if !verdict.bad.is_empty() {
        bail!(
            "{name} ({fault}): {} file(s) neither old nor new after the cut:\n{}",
            verdict.bad.len(),
            verdict.summary()
        );
    }

    // The rerun, on an overlay over the killed disk (kept as it is).
    let mut bp2 = setup.blueprint(&format!("{id}-rerun"));
    bp2.disks[0].path = Some(disk.clone());
    let mut options = RunOptions::new(&setup.stack, dir.join("rerun-logs"));
    options.work_dir = Some(dir.join("rerun"));
    options.keep = true;
    options.stop_after = if then == Then::FullFlow {
        options.tools_iso = Some(tools_iso(&setup.image).context("the Tools ISO")?.path);
        StopAfter::Full
    } else {
        StopAfter::Stage1
    };
    let rerun = {
        let _vm = VmSlot::take();
        emulator::run(&bp2, &options, &mut |l| say(name, l))
    };
    assert_rerun(name, &rerun)?;
    say(
        name,
        &format!("rerun succeeded:\n{}", rerun.summary().trim_end()),
    );
    if then == Then::AgentStart {
        let disk = rerun
            .work_dir
            .as_ref()
            .map(|w| w.join("disk0.qcow2"))
            .context("the rerun kept no work folder")?;
        boot_to_agent(&bp2, &disk, &dir)?;
        say(name, "the guest booted to its stage-2 agent");
    }
    let s = t0.elapsed().as_secs_f64();
    say(name, &format!("PASSED in {s:.1} s"));
    Ok(Cut::Made)
}

fn killed_disk(killed: &Killed) -> Result<PathBuf> {
    killed
        .disks
        .first()
        .cloned()
        .flatten()
        .context("the killed run names no disk")
}

/// The rerun: stage 1 `success` (and the rest of what was asked).
fn assert_rerun(name: &str, report: &RunReport) -> Result<()> {
    if let Some(f) = &report.failure {
        bail!("{name}: the rerun after the cut failed: {f}");
    }
    let result = report.result.clone().unwrap_or(Value::Null);
    if result["status"] != "success" {
        bail!("{name}: the rerun's result.json: {result}");
    }
    if report.phase("check.boot").is_some() && report.check.is_none() {
        bail!("{name}: no check block");
    }
    Ok(())
}

/// Boots the fixed guest (no fixup disk, no CD-ROM) until its stage-2
/// agent prints its first line: boot loader, kernel, initramfs and root
/// all work.
fn boot_to_agent(bp: &Blueprint, disk: &Path, dir: &Path) -> Result<()> {
    let files = MachineFiles {
        stack: PathBuf::new(),
        disks: vec![Some(disk.to_path_buf())],
        share: dir.join("boot-share"),
        qmp: dir.join("boot-qmp.sock"),
        tools_iso: None,
        ovmf_vars: None,
    };
    std::fs::create_dir_all(&files.share)?;
    let serial = dir.join("boot.serial.log");
    let config = vm_config(bp, &files, Boot::Stage2, &serial);
    let _vm = VmSlot::take();
    let mut vm = Vm::start(&config).context("starting QEMU for the boot")?;
    let log = serial.clone();
    let seen = vm.wait_for(
        || {
            let text = String::from_utf8_lossy(&std::fs::read(&log).ok()?).replace('\r', "");
            if text.contains(AGENT_MARK) {
                return Some(Ok(()));
            }
            osam_qemu::vm::dead_end(&text).map(Err)
        },
        AGENT_START_TIMEOUT,
        "the stage-2 agent's first line",
    );
    vm.kill();
    match seen {
        Ok(Ok(())) => Ok(()),
        Ok(Err(line)) => bail!(
            "the guest is stuck: {line}\n{}",
            tail_lines(&vm.serial_log(), 40)
        ),
        Err(e) => Err(e).context("booting the fixed guest"),
    }
}

/// The two cuts at known places of the default tier.
#[test]
fn power_cuts_at_step_boundaries() -> Result<()> {
    let t0 = Instant::now();
    let setup = setup()?;
    let scratch = fresh_dir("trees")?;
    let trees = Trees::mount(&setup, &scratch)?;
    say(
        "boundaries",
        &format!(
            "setup {:.1} s (reference stage 1: {:.1} s)",
            t0.elapsed().as_secs_f64(),
            setup.stage1_seconds
        ),
    );
    let cases = [
        (
            "hold-initramfs",
            Fault::HoldBefore("initramfs".into()),
            Then::AgentStart,
        ),
        (
            "in-initramfs",
            Fault::KillAfterProgress("initramfs: started".into(), Duration::from_secs(15)),
            Then::Stop,
        ),
    ];
    for (name, fault, then) in cases {
        let t = Instant::now();
        if let Cut::Missed(_) = trial(&setup, &trees, name, fault, then)? {
            bail!("{name}: stage 1 ended before the cut");
        }
        say(
            "boundaries",
            &format!("{name}: {:.1} s", t.elapsed().as_secs_f64()),
        );
    }
    say(
        "boundaries",
        &format!("all PASSED in {:.1} s", t0.elapsed().as_secs_f64()),
    );
    Ok(())
}

/// A tiny PRNG (splitmix64): reproducible cut times from a seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// [`RANDOM_TRIALS`] cuts at random times of stage 1 (`OSAM_QEMU_FULL=1`;
/// `OSAM_FAULT_TRIALS=N` runs the first N of the seed's cuts).
#[test]
fn power_cuts_at_random_times() -> Result<()> {
    if !full() {
        eprintln!("power_cuts_at_random_times: skipped: set OSAM_QEMU_FULL=1 (make qemu-test)");
        return Ok(());
    }
    let seed = match std::env::var("OSAM_FAULT_SEED") {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .with_context(|| format!("OSAM_FAULT_SEED={s}: not a number"))?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    };
    say(
        "random",
        &format!("seed {seed} (replay with OSAM_FAULT_SEED={seed})"),
    );
    let t0 = Instant::now();
    let setup = setup()?;
    let scratch = fresh_dir("trees-random")?;
    let trees = Trees::mount(&setup, &scratch)?;
    let trials = std::env::var("OSAM_FAULT_TRIALS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(RANDOM_TRIALS);
    let mut rng = SplitMix(seed);
    // A cut at the last boundary first (the boot code, grub.cfg and the
    // command line are all still old, the initramfs new).
    let t = Instant::now();
    if let Cut::Missed(_) = trial(
        &setup,
        &trees,
        "hold-bootloader",
        Fault::HoldBefore("bootloader".into()),
        Then::FullFlow,
    )? {
        bail!("hold-bootloader: stage 1 ended before the cut");
    }
    say(
        "random",
        &format!("hold-bootloader: {:.1} s", t.elapsed().as_secs_f64()),
    );
    // The seed fixes where in the window each cut falls (up to 5 % past
    // END: the run may be slower than the reference); the window is the
    // reference's BEGIN to END, then that of the last run that ended
    // before its cut (the machine's load changes the pace). A cut that
    // comes after END is made once more at 95 % of where it fell.
    let mut window = setup.stage1_seconds;
    let mut missed = 0;
    for i in 0..trials {
        let fraction = rng.unit() * 1.05;
        let name = format!("random-{i:02}");
        let mut at = fraction * window;
        for attempt in 0..2 {
            say(
                "random",
                &format!(
                    "{name}: cut {at:.1} s after BEGIN ({:.0} % of {window:.1} s; seed {seed})",
                    at / window * 100.0
                ),
            );
            let fault = Fault::KillAfter(Duration::from_secs_f64(at));
            match trial(&setup, &trees, &name, fault, Then::AgentStart)
                .with_context(|| format!("{name} (replay with OSAM_FAULT_SEED={seed})"))?
            {
                Cut::Made => break,
                Cut::Missed(seconds) => {
                    window = seconds;
                    // Once more, inside the window as this run measured it.
                    at = fraction.min(1.0) * 0.95 * seconds;
                    if attempt == 1 {
                        missed += 1;
                    }
                }
            }
        }
    }
    say(
        "random",
        &format!(
            "{} cut(s) checked, {missed} after END; PASSED in {:.1} s (seed {seed})",
            trials - missed,
            t0.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}
