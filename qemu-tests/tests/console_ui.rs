//! The VGA console during an automatic run, as a field engineer watching
//! the vSphere console sees it: the real stack image booted under QEMU
//! (x86_64, SeaBIOS, pvscsi at scsi-id 15, QEMU's standard VGA, no
//! display window) plays the protocol over 9p with no replica disk, so
//! that the run fails in the storage step with `disk.not_found`.
//!
//! QMP `screendump`s of the VGA console are taken while waiting for BEGIN,
//! while the storage step waits for the replica disks, and on the failure
//! screen; the PNGs are kept in `target/screendumps/`. A screendump of a
//! VGA text console is a picture, not text: the test checks that each PNG
//! is a whole 80x25 text screen (720x400), not blank, and that the title
//! and footer bars have the colour of the phase (reverse video while
//! waiting and running, red on failure). The words are checked where they
//! are text: on the serial console, which keeps the plain log lines.
//!
//! Under UEFI (x64 OVMF, the disk on AHCI) the kernel draws the console on
//! the firmware's frame buffer (efifb + fbcon) instead: the second test
//! checks that the screen fills it while waiting for the manager.
//!
//! Missing tools fail the test: run scripts/install-deps.sh.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use osam_qemu::Arch;
use osam_qemu::image::stack_image;
use osam_qemu::manager::{self, FixupDir};
use osam_qemu::paths::workspace_root;
use osam_qemu::vm::{Disk, DiskBus, Firmware, Vm, VmConfig};
use serde_json::json;

/// From QEMU's start to a complete READY.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// From BEGIN to END (the stack waits 30 s for the replica disks first).
const END_TIMEOUT: Duration = Duration::from_secs(120);
/// A VGA text console: 80x25 cells of 9x16 pixels.
const TEXT_SCREEN: (u32, u32) = (720, 400);
/// One text row in pixels.
const CELL_HEIGHT: u32 = 16;

/// `target/screendumps/`.
fn screendump_dir() -> Result<PathBuf> {
    let dir = workspace_root().join("target/screendumps");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A decoded screendump: 8-bit RGB.
struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Picture {
    fn read(path: &Path) -> Result<Picture> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            path.display()
        );
        let mut decoder = png::Decoder::new(Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder
            .read_info()
            .with_context(|| format!("decoding {}", path.display()))?;
        let size = reader
            .output_buffer_size()
            .context("the PNG is too large to decode")?;
        let mut buf = vec![0; size];
        let info = reader
            .next_frame(&mut buf)
            .with_context(|| format!("decoding {}", path.display()))?;
        let samples = info.color_type.samples();
        ensure!(
            samples >= 3,
            "{}: a {:?} PNG, not RGB",
            path.display(),
            info.color_type
        );
        let mut rgb = Vec::with_capacity((info.width * info.height * 3) as usize);
        for row in buf.chunks(info.line_size).take(info.height as usize) {
            for px in row.chunks(samples).take(info.width as usize) {
                rgb.extend_from_slice(&px[..3]);
            }
        }
        Ok(Picture {
            width: info.width,
            height: info.height,
            rgb,
        })
    }

    fn pixels(&self, rows: std::ops::Range<u32>) -> impl Iterator<Item = [u8; 3]> + '_ {
        let start = (rows.start.min(self.height) * self.width * 3) as usize;
        let end = (rows.end.min(self.height) * self.width * 3) as usize;
        self.rgb[start..end]
            .chunks_exact(3)
            .map(|p| [p[0], p[1], p[2]])
    }

    /// The share of the pixels of pixel rows `rows` that `pred` accepts.
    fn share(&self, rows: std::ops::Range<u32>, pred: impl Fn([u8; 3]) -> bool) -> f64 {
        let (mut hit, mut all) = (0usize, 0usize);
        for p in self.pixels(rows) {
            all += 1;
            hit += usize::from(pred(p));
        }
        if all == 0 {
            0.0
        } else {
            hit as f64 / all as f64
        }
    }

    /// How many distinct colours, and the share of the most common one.
    fn colours(&self) -> (usize, f64) {
        let mut counts = std::collections::HashMap::new();
        for p in self.pixels(0..self.height) {
            *counts.entry(p).or_insert(0usize) += 1;
        }
        let top = counts.values().copied().max().unwrap_or(0);
        let all = (self.width * self.height) as usize;
        (counts.len(), top as f64 / all.max(1) as f64)
    }
}

/// VGA's red (palette 4: `aa 00 00`).
fn red(p: [u8; 3]) -> bool {
    p[0] >= 0x80 && p[1] < 0x40 && p[2] < 0x40
}

/// VGA's light grey (palette 7: `aa aa aa`), the reverse-video bars.
fn grey(p: [u8; 3]) -> bool {
    p.iter().all(|c| (0x90..=0xc0).contains(c))
}

/// What the kernel shows the console on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Screen {
    /// VGA text mode (BIOS boot: GRUB leaves the card in text mode and the
    /// kernel takes it with vgacon): 80x25 cells of 9x16 pixels.
    VgaText,
    /// The firmware's frame buffer (UEFI: efifb and fbcon), 8x16 cells at
    /// whatever resolution the firmware chose.
    Framebuffer,
}

/// Takes a screendump into `target/screendumps/<name>.png` and checks it
/// is a whole, non-blank text screen whose top and bottom text rows are
/// mostly `bar` coloured.
fn screendump(vm: &Vm, name: &str, screen: Screen, bar: fn([u8; 3]) -> bool) -> Result<PathBuf> {
    let path = screendump_dir()?.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&path);
    vm.qmp(
        "screendump",
        json!({ "filename": path.to_string_lossy(), "format": "png" }),
    )
    .with_context(|| format!("screendump {name}"))?;
    let picture = Picture::read(&path)?;
    let (cell_width, rows) = match screen {
        Screen::VgaText => (TEXT_SCREEN.0 / 80, picture.height / CELL_HEIGHT),
        Screen::Framebuffer => (8, picture.height / CELL_HEIGHT),
    };
    eprintln!(
        "{name}: {} ({}x{} pixels, {}x{rows} cells) at {:.1?}",
        path.display(),
        picture.width,
        picture.height,
        picture.width / cell_width,
        vm.elapsed()
    );
    match screen {
        Screen::VgaText => ensure!(
            (picture.width, picture.height) == TEXT_SCREEN,
            "{name}: {}x{}, expected the 80x25 VGA text screen {}x{}",
            picture.width,
            picture.height,
            TEXT_SCREEN.0,
            TEXT_SCREEN.1
        ),
        Screen::Framebuffer => ensure!(
            picture.width >= 640 && picture.height >= 400,
            "{name}: {}x{}, smaller than 80x25 cells of 8x16",
            picture.width,
            picture.height
        ),
    }
    let (colours, top) = picture.colours();
    ensure!(
        colours >= 3 && top < 0.99,
        "{name}: a blank screen ({colours} colours, the commonest covers {:.0} %)",
        top * 100.0
    );
    let title = picture.share(0..CELL_HEIGHT, bar);
    let footer = picture.share((rows - 1) * CELL_HEIGHT..rows * CELL_HEIGHT, bar);
    ensure!(
        title > 0.5 && footer > 0.5,
        "{name}: the title and footer bars are not the phase's colour \
         ({:.0} % and {:.0} % of their pixels)",
        title * 100.0,
        footer * 100.0
    );
    Ok(path)
}

/// Waits for `needle` on the serial console after byte `mark`.
fn serial(vm: &mut Vm, mark: usize, needle: &str, timeout: Duration) -> Result<()> {
    vm.wait_for_serial_after(mark, needle, timeout)
        .map(|_| ())
        .with_context(|| format!("waiting for {needle:?} on ttyS0"))
}

#[test]
fn x86_64_console_shows_waiting_running_and_the_failure() -> Result<()> {
    let t0 = Instant::now();
    let image = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    eprintln!(
        "image {} ready in {:.1?}",
        image.dir.display(),
        t0.elapsed()
    );
    let work = tempfile::Builder::new()
        .prefix("osam-console-ui-")
        .tempdir()?;
    let share = work.path().join("share");
    std::fs::create_dir(&share)?;
    let config = VmConfig::disk(
        Arch::X86_64,
        Disk::new(&image.vmdk, DiskBus::Pvscsi { scsi_id: 15 }),
        Firmware::SeaBios,
        work.path().join("serial.log"),
    )
    .memory(512)
    .share_9p(&share, "fixup")
    .qmp(work.path().join("qmp.sock"))
    // `-nographic` already means no display window: the VGA card is there
    // for the guest and for screendump only.
    .args(["-vga", "std", "-display", "none"]);
    let fixup = FixupDir::in_share(&share);
    let mut vm = Vm::start(&config).context("starting QEMU")?;
    let outcome = run(&mut vm, &fixup);
    if outcome.is_err() {
        eprintln!(
            "===== last 80 lines of the serial log ({}) =====\n{}\n===== QEMU =====\n{}",
            vm.serial_log_path().display(),
            vm.serial_tail(80),
            vm.qemu_output().trim()
        );
    }
    vm.kill();
    eprintln!(
        "VM ran {:.1?}; test took {:.1?}",
        vm.elapsed(),
        t0.elapsed()
    );
    outcome
}

fn run(vm: &mut Vm, fixup: &FixupDir) -> Result<()> {
    let ready = vm.wait_for(|| fixup.ready(), READY_TIMEOUT, "a complete fixup/READY")?;
    eprintln!("READY at {:.1?}: {ready}", vm.elapsed());

    // Waiting: the files are there, BEGIN not yet (the screen looks once a
    // second and the ticker redraws within a quarter of one).
    fixup.write_inputs(
        &manager::system_configuration(Arch::X86_64, "console-ui-1"),
        &manager::replica_disk_map(),
        &manager::network_interface_map(),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    screendump(vm, "console-waiting", Screen::VgaText, grey)?;

    // Running: the storage step waits 30 s for the replica disk.
    let mark = vm.serial_log_len();
    fixup.begin()?;
    let begin = Instant::now();
    serial(vm, mark, "[2/9] storage: started", Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(3));
    screendump(vm, "console-running", Screen::VgaText, grey)?;

    // The end: the failure screen is drawn before END is written.
    let result = vm.wait_for(|| fixup.result(), END_TIMEOUT, "fixup/END")?;
    eprintln!("END {:.1?} after BEGIN", begin.elapsed());
    ensure!(
        result["status"] == "failed",
        "expected status failed (no replica disk): {result}"
    );
    let codes = manager::error_codes(&result);
    ensure!(
        codes.first().map(String::as_str) == Some("disk.not_found"),
        "expected disk.not_found first among {codes:?}: {result}"
    );
    // PID 1 then logs the error once more; the kernel prints that record
    // (an error, under `loglevel=4`) over the screen, which the screen
    // repaints within 2 s.
    serial(
        vm,
        0,
        "done: waiting for power-off",
        Duration::from_secs(30),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let failure = screendump(vm, "console-failure", Screen::VgaText, red)?;

    // The serial console keeps the plain lines, in their usual format.
    let log = vm.serial_log();
    for needle in [
        "osam: [2/9] storage: waiting up to",
        "osam: [2/9] storage: error: disk.not_found: replica disk",
        "osam: ERROR: disk.not_found: replica disk",
        "stage 1 FAILED: result.json and END written",
    ] {
        if !log.contains(needle) {
            bail!("{needle:?} is not on the serial console");
        }
    }
    eprintln!("failure screen: {}", failure.display());
    Ok(())
}

/// UEFI: OVMF hands the kernel its frame buffer (efifb); fbcon draws the
/// console with 8x16 cells at the firmware's resolution, and the screen
/// takes the size the tty reports. The disk is on AHCI (Debian's OVMF
/// cannot boot from PVSCSI).
#[test]
fn x86_64_ovmf_console_fills_the_frame_buffer() -> Result<()> {
    let t0 = Instant::now();
    let image = stack_image(Arch::X86_64).context("the x86_64 stack image")?;
    let work = tempfile::Builder::new()
        .prefix("osam-console-ui-efi-")
        .tempdir()?;
    let share = work.path().join("share");
    std::fs::create_dir(&share)?;
    let config = VmConfig::disk(
        Arch::X86_64,
        Disk::new(&image.raw, DiskBus::Ahci),
        Firmware::OvmfX64,
        work.path().join("serial.log"),
    )
    .memory(512)
    .share_9p(&share, "fixup")
    .qmp(work.path().join("qmp.sock"))
    .args(["-vga", "std", "-display", "none"]);
    let fixup = FixupDir::in_share(&share);
    let mut vm = Vm::start(&config).context("starting QEMU")?;
    let outcome = (|| -> Result<()> {
        vm.wait_for(|| fixup.ready(), READY_TIMEOUT, "a complete fixup/READY")?;
        eprintln!("READY at {:.1?}", vm.elapsed());
        std::thread::sleep(Duration::from_secs(3));
        screendump(&vm, "console-efi-waiting", Screen::Framebuffer, grey)?;
        Ok(())
    })();
    if outcome.is_err() {
        eprintln!(
            "===== last 80 lines of the serial log =====\n{}",
            vm.serial_tail(80)
        );
    }
    vm.kill();
    eprintln!(
        "VM ran {:.1?}; test took {:.1?}",
        vm.elapsed(),
        t0.elapsed()
    );
    outcome
}
