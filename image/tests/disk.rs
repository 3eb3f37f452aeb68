//! The fixup disk: GPT and ESP checked with the `gpt` crate, util-linux's
//! sfdisk, mtools and fatfs; determinism; and the real proof, booting the
//! raw disk under QEMU (TCG) with SeaBIOS, x64 OVMF and ia32 OVMF.
//!
//! Needs the pinned packages (`scripts/fetch-inputs.sh --arch all`, run
//! here) and `grub-mkimage`; a test whose tools or inputs are missing says
//! so and passes without checking.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use osam_image::cpio::Cpio;
use osam_image::deb::Deb;
use osam_image::disk::{
    self, DiskIds, DiskInfo, DiskSpec, GrubImages, INITRD_PATH, KERNEL_PATH, MIB,
};

const SEED: [u8; 32] = *b"osam-disk-test-seed-0123456789ab";
const EPOCH: u64 = 1_700_000_000;
/// What the test init writes to /dev/console.
const MARKER: &str = "OSAM-DISK-TEST-INIT-OK";
/// How long a boot may take before the test fails.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The folder of the pinned .deb files, or `None` (with a message).
fn debs() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new(workspace().join("scripts/fetch-inputs.sh"))
            .args(["--arch", "all"])
            .stderr(Stdio::inherit())
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("skipping: scripts/fetch-inputs.sh failed");
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Some(PathBuf::from(text.lines().last()?.trim()))
    })
    .as_deref()
}

fn find_deb(prefix: &str) -> Option<PathBuf> {
    let dir = debs()?;
    let mut hits: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".deb"))
        })
        .collect();
    hits.sort();
    hits.pop()
}

/// GRUB's images for [`SEED`], made once per test run.
fn grub_images() -> Option<&'static GrubImages> {
    static IMAGES: OnceLock<Option<GrubImages>> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            if !have("grub-mkimage") {
                eprintln!("skipping: grub-mkimage is not installed (grub-common)");
                return None;
            }
            let root = tempfile::tempdir().unwrap();
            for name in ["grub-pc-bin_", "grub-efi-amd64-bin_", "grub-efi-ia32-bin_"] {
                let Some(deb) = find_deb(name) else {
                    eprintln!("skipping: no {name}*.deb among the pinned inputs");
                    return None;
                };
                Deb::open(&deb)
                    .unwrap()
                    .extract_to(root.path(), |p| p.starts_with("usr/lib/grub"))
                    .unwrap();
            }
            let work = root.path().join("work");
            let uuid = DiskIds::from_seed(&SEED).esp_fs_uuid();
            Some(disk::make_grub_images(root.path(), &work, &uuid).unwrap())
        })
        .as_ref()
}

/// `boot/vmlinuz-*` of the pinned kernel package `name`.
fn kernel(name: &str) -> Option<Vec<u8>> {
    let deb = find_deb(name)?;
    let mut found = None;
    Deb::open(&deb)
        .unwrap()
        .for_each_data_entry(|path, _, reader| {
            if path
                .to_str()
                .is_some_and(|p| p.starts_with("boot/vmlinuz-"))
            {
                let mut data = Vec::new();
                reader.read_to_end(&mut data).unwrap();
                found = Some(data);
            }
            Ok::<(), osam_image::deb::DebError>(())
        })
        .unwrap();
    found
}

/// A static i386 ELF executable (hand-assembled; runs on the 686 kernel
/// and, through IA32 emulation, on the amd64 one) that writes [`MARKER`]
/// to fd 1 and powers the machine off.
fn tiny_init() -> Vec<u8> {
    const BASE: u32 = 0x0804_8000;
    const CODE_AT: u32 = 52 + 32;
    let msg = format!("\r\n{MARKER}\r\n");
    let mut code = Vec::new();
    let code_len = 46u32;
    let msg_addr = BASE + CODE_AT + code_len;
    code.extend([0xb8, 4, 0, 0, 0]); // mov eax, 4 (write)
    code.extend([0xbb, 1, 0, 0, 0]); // mov ebx, 1
    code.push(0xb9); // mov ecx, msg
    code.extend(msg_addr.to_le_bytes());
    code.push(0xba); // mov edx, len
    code.extend((msg.len() as u32).to_le_bytes());
    code.extend([0xcd, 0x80]); // int 0x80
    code.extend([0xb8, 88, 0, 0, 0]); // mov eax, 88 (reboot)
    code.push(0xbb);
    code.extend(0xfee1_deadu32.to_le_bytes()); // LINUX_REBOOT_MAGIC1
    code.push(0xb9);
    code.extend(0x2812_1969u32.to_le_bytes()); // LINUX_REBOOT_MAGIC2
    code.push(0xba);
    code.extend(0x4321_fedcu32.to_le_bytes()); // LINUX_REBOOT_CMD_POWER_OFF
    code.extend([0xcd, 0x80]); // int 0x80
    code.extend([0xeb, 0xfe]); // jmp $
    assert_eq!(code.len() as u32, code_len);
    let total = CODE_AT + code_len + msg.len() as u32;

    let mut elf = vec![0x7f, b'E', b'L', b'F', 1, 1, 1, 0];
    elf.extend([0u8; 8]);
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(3u16.to_le_bytes()); // EM_386
    elf.extend(1u32.to_le_bytes()); // EV_CURRENT
    elf.extend((BASE + CODE_AT).to_le_bytes()); // entry
    elf.extend(52u32.to_le_bytes()); // phoff
    elf.extend(0u32.to_le_bytes()); // shoff
    elf.extend(0u32.to_le_bytes()); // flags
    elf.extend(52u16.to_le_bytes()); // ehsize
    elf.extend(32u16.to_le_bytes()); // phentsize
    elf.extend(1u16.to_le_bytes()); // phnum
    elf.extend([0u8; 6]); // shentsize, shnum, shstrndx
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(0u32.to_le_bytes()); // offset
    elf.extend(BASE.to_le_bytes()); // vaddr
    elf.extend(BASE.to_le_bytes()); // paddr
    elf.extend(total.to_le_bytes()); // filesz
    elf.extend(total.to_le_bytes()); // memsz
    elf.extend(5u32.to_le_bytes()); // R+X
    elf.extend(0x1000u32.to_le_bytes()); // align
    assert_eq!(elf.len() as u32, CODE_AT);
    elf.extend(code);
    elf.extend(msg.as_bytes());
    elf
}

fn tiny_initramfs() -> Vec<u8> {
    let mut cpio = Cpio::with_epoch(EPOCH);
    cpio.add_dir("dev", 0o755).unwrap();
    cpio.add_char_dev("dev/console", 0o600, 5, 1).unwrap();
    cpio.add_file("init", 0o755, tiny_init()).unwrap();
    cpio.to_bytes().unwrap()
}

fn spec(files: Vec<(String, Vec<u8>)>) -> Option<DiskSpec> {
    let grub = grub_images()?.clone();
    let mut spec = DiskSpec::new(128 * MIB, SEED, grub);
    spec.files = files;
    spec.epoch = EPOCH;
    Some(spec)
}

fn fake_files() -> Vec<(String, Vec<u8>)> {
    vec![
        (KERNEL_PATH.into(), vec![0xaa; 300_000]),
        (INITRD_PATH.into(), vec![0x55; 123_457]),
        ("/osam/manifest.json".into(), b"{\"version\":1}\n".to_vec()),
    ]
}

fn esp_of(image: &[u8], info: &DiskInfo) -> fatfs::FileSystem<Cursor<Vec<u8>>> {
    let p = info.partitions.iter().find(|p| p.number == 2).unwrap();
    let start = (p.first_lba * 512) as usize;
    let end = ((p.last_lba + 1) * 512) as usize;
    fatfs::FileSystem::new(
        Cursor::new(image[start..end].to_vec()),
        fatfs::FsOptions::new(),
    )
    .unwrap()
}

fn read_esp(fs: &fatfs::FileSystem<Cursor<Vec<u8>>>, path: &str) -> Vec<u8> {
    let mut data = Vec::new();
    fs.root_dir()
        .open_file(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .read_to_end(&mut data)
        .unwrap();
    data
}

#[test]
fn layout_gpt_mbr_and_esp() {
    let Some(spec) = spec(fake_files()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fixup.raw");
    let info = disk::build_raw(&spec, &img).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 128 * MIB);
    let ids = DiskIds::from_seed(&SEED);
    assert_eq!(info.disk_guid, ids.disk_guid_string());

    // The gpt crate reads it back.
    let gpt_disk = gpt::GptConfig::new().open(&img).unwrap();
    assert_eq!(gpt_disk.guid(), &ids.disk_guid);
    let parts = gpt_disk.partitions();
    assert_eq!(parts.len(), 2);
    let bios = &parts[&1];
    let esp = &parts[&2];
    assert_eq!(bios.part_type_guid, gpt::partition_types::BIOS);
    assert_eq!(esp.part_type_guid, gpt::partition_types::EFI);
    assert_eq!((bios.first_lba, bios.last_lba), (2048, 4095));
    assert_eq!(esp.first_lba, 4096);
    assert_eq!((esp.last_lba + 1) * 512 % MIB, 0);
    assert_eq!(esp.part_guid, ids.esp_part_guid);
    assert_eq!(gpt_disk.primary_header().unwrap().num_parts, 128);

    // util-linux agrees.
    if have("sfdisk") {
        let out = Command::new("sfdisk")
            .arg("--json")
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let table = &json["partitiontable"];
        assert_eq!(table["label"], "gpt");
        assert_eq!(
            table["id"].as_str().unwrap().to_ascii_lowercase(),
            info.disk_guid
        );
        let p = table["partitions"].as_array().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["start"], 2048);
        assert_eq!(p[0]["type"], "21686148-6449-6E6F-744E-656564454649");
        assert_eq!(p[1]["start"], 4096);
        assert_eq!(p[1]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        let out = Command::new("sfdisk")
            .arg("--verify")
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sfdisk --verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("sfdisk not installed: util-linux check skipped");
    }

    // The MBR: protective partition, GRUB's code, pointers patched.
    let image = std::fs::read(&img).unwrap();
    let grub = grub_images().unwrap();
    assert_eq!(&image[0x1fe..0x200], &[0x55, 0xaa]);
    assert_eq!(image[0x1be + 4], 0xee);
    assert_eq!(&image[..3], &grub.boot_img[..3]);
    assert_eq!(&image[0x68..0x1b8], &grub.boot_img[0x68..0x1b8]);
    assert_eq!(
        u64::from_le_bytes(image[0x5c..0x64].try_into().unwrap()),
        2048
    );
    assert_eq!(image[0x64], 0xff);
    assert_eq!(&image[0x66..0x68], &[0x90, 0x90]);
    // core.img in the BIOS boot partition, its blocklist naming the rest.
    let core = &image[MIB as usize..];
    let nsec = grub.core_img.len().div_ceil(512) as u16;
    assert_eq!(
        u64::from_le_bytes(core[0x1f4..0x1fc].try_into().unwrap()),
        2049
    );
    assert_eq!(u16::from_le_bytes([core[0x1fc], core[0x1fd]]), nsec - 1);
    assert_eq!(&core[0x200..grub.core_img.len()], &grub.core_img[0x200..]);

    // The ESP, read back with fatfs.
    let fs = esp_of(&image, &info);
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    assert_eq!(fs.volume_id(), ids.fat_volume_id);
    assert_eq!(fs.volume_label(), "OSAM-FIXUP");
    assert_eq!(read_esp(&fs, "osam/vmlinuz"), vec![0xaa; 300_000]);
    assert_eq!(read_esp(&fs, "osam/initrd.img"), vec![0x55; 123_457]);
    assert_eq!(read_esp(&fs, "EFI/BOOT/BOOTX64.EFI"), grub.efi_x64);
    assert_eq!(read_esp(&fs, "EFI/BOOT/BOOTIA32.EFI"), grub.efi_ia32);
    let cfg = String::from_utf8(read_esp(&fs, "boot/grub/grub.cfg")).unwrap();
    assert_eq!(cfg, info.grub_cfg);
    assert!(cfg.contains(&format!("osam.disk={}", info.disk_guid)));
    let fixup = fs.root_dir().open_dir("fixup").unwrap();
    assert_eq!(fixup.iter().count(), 2, "fixup/ holds only . and ..");
    let kernel = fs
        .root_dir()
        .open_dir("osam")
        .unwrap()
        .iter()
        .map(|e| e.unwrap())
        .find(|e| e.file_name() == "vmlinuz")
        .unwrap();
    let t = kernel.modified();
    assert_eq!((t.date.year, t.date.month, t.date.day), (2023, 11, 14));

    // mtools reads it without mounting.
    if have("mdir") {
        let at = format!("{}@@{}", img.display(), info.esp_offset());
        let out = Command::new("mdir")
            .args(["-i", &at, "-b", "-/", "::/"])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for want in [
            "::/EFI/BOOT/BOOTX64.EFI",
            "::/EFI/BOOT/BOOTIA32.EFI",
            "::/boot/grub/grub.cfg",
            "::/osam/vmlinuz",
            "::/osam/initrd.img",
            "::/osam/manifest.json",
            "::/fixup/",
        ] {
            assert!(listing.contains(want), "{want} missing from:\n{listing}");
        }
    } else {
        eprintln!("mdir not installed (mtools): mtools check skipped");
    }
}

#[test]
fn two_builds_are_byte_identical() {
    let Some(spec) = spec(fake_files()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.raw"), dir.path().join("b.raw"));
    let ia = disk::build_raw(&spec, &a).unwrap();
    let ib = disk::build_raw(&spec, &b).unwrap();
    assert_eq!(ia, ib);
    let bytes = std::fs::read(&a).unwrap();
    assert!(bytes == std::fs::read(&b).unwrap(), "two builds differ");
    let (mem, im) = disk::build_in_memory(&spec).unwrap();
    assert_eq!(im, ia);
    assert!(mem == bytes, "the in-memory build differs from the file");

    // Another seed gives other identifiers (and is refused with images made
    // for this seed's ESP).
    let mut other = spec.clone();
    other.seed = [9; 32];
    assert!(matches!(
        disk::build_in_memory(&other),
        Err(disk::DiskError::GrubImage { .. })
    ));
    other.grub.esp_fs_uuid = None;
    let (_, io) = disk::build_in_memory(&other).unwrap();
    assert_ne!(io.disk_guid, ia.disk_guid);
}

#[test]
fn bad_specs_are_refused() {
    let Some(mut spec) = spec(fake_files()) else {
        return;
    };
    spec.size_bytes = 128 * MIB + 512;
    assert!(matches!(
        disk::build_in_memory(&spec),
        Err(disk::DiskError::Size { .. })
    ));
    spec.size_bytes = 128 * MIB;
    spec.files
        .push(("boot/grub/grub.cfg".into(), b"x".to_vec()));
    assert!(matches!(
        disk::build_in_memory(&spec),
        Err(disk::DiskError::EspPath { .. })
    ));
    spec.files.pop();
    spec.files.push(("osam/../x".into(), b"x".to_vec()));
    let err = disk::build_in_memory(&spec).unwrap_err();
    assert!(err.to_string().contains("osam/../x"), "{err}");
}

// ---------------------------------------------------------------------
// Booting under QEMU.

/// Kills QEMU when dropped.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds a bootable disk with the pinned kernel `kernel_deb` and the tiny
/// init, boots it with `firmware_args`, and checks the serial log.
fn boot(name: &str, mem_mib: u32, kernel_deb: &str, firmware_args: &[String], disk_args: &[&str]) {
    if !have("qemu-system-x86_64") {
        eprintln!("skipping {name}: qemu-system-x86_64 is not installed");
        return;
    }
    let Some(kernel) = kernel(kernel_deb) else {
        eprintln!("skipping {name}: no {kernel_deb}*.deb among the pinned inputs");
        return;
    };
    let Some(mut spec) = spec(vec![
        (KERNEL_PATH.into(), kernel),
        (INITRD_PATH.into(), tiny_initramfs()),
    ]) else {
        return;
    };
    // The default entry is `quiet`: let the kernel's banner and command
    // line through to the serial console (and prove $osam_extra works).
    spec.extra_cmdline = "ignore_loglevel".into();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fixup.raw");
    let log = dir.path().join("serial.log");
    let info = disk::build_raw(&spec, &img).unwrap();

    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-display", "none"])
        .arg("-m")
        .arg(mem_mib.to_string())
        .args(["-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .args(firmware_args)
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=d,snapshot=on",
            img.display()
        ))
        .args(disk_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut vm = Vm(cmd.spawn().expect("starting qemu-system-x86_64"));
    let want_cmdline = format!("osam.disk={}", info.disk_guid);
    let ok = |text: &str| {
        text.contains("OSAM automatic fixup")
            && text.contains("Linux version")
            && text.lines().any(|l| {
                l.to_ascii_lowercase().contains("command line:") && l.contains(&want_cmdline)
            })
            && text.contains(MARKER)
    };
    let mut times = Vec::new();
    let mut text = String::new();
    let mut exited = None;
    while started.elapsed() < BOOT_TIMEOUT {
        std::thread::sleep(Duration::from_millis(500));
        text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        for (what, needle) in [
            ("GRUB menu", "OSAM automatic fixup"),
            ("kernel", "Linux version"),
            ("init", MARKER),
        ] {
            if text.contains(needle) && !times.iter().any(|(w, _)| *w == what) {
                times.push((what, started.elapsed()));
            }
        }
        if ok(&text) {
            break;
        }
        if let Some(status) = vm.0.try_wait().unwrap() {
            exited = Some(status);
            text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
            break;
        }
    }
    let stderr = if vm.0.try_wait().unwrap().is_some() || exited.is_some() {
        let mut s = String::new();
        if let Some(mut e) = vm.0.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    } else {
        String::new()
    };
    drop(vm);
    eprintln!("{name}: {times:?} (total {:?})", started.elapsed());
    assert!(
        ok(&text),
        "{name}: the boot did not reach the test init within {BOOT_TIMEOUT:?} \
         (QEMU exit: {exited:?}; stderr: {stderr})\n--- serial log ---\n{text}\n--- end ---"
    );
}

/// Guest memory under OVMF. With 256 MiB, GRUB 2.06's EFI `linux` command
/// fails with "error: out of memory" (seen with Debian's OVMF 2022.11 and
/// the 6.1 amd64 kernel); 512 MiB boots.
const OVMF_MEM_MIB: u32 = 512;

const AHCI: &[&str] = &[
    "-device",
    "ahci,id=sata0",
    "-device",
    "ide-hd,bus=sata0.0,drive=d",
];

#[test]
fn boots_under_seabios_from_pvscsi() {
    boot(
        "SeaBIOS",
        256,
        "linux-image-6.1.0-50-amd64_",
        &[],
        &[
            "-device",
            "pvscsi,id=pv",
            "-device",
            "scsi-hd,bus=pv.0,scsi-id=15,drive=d,bootindex=0",
        ],
    );
}

#[test]
fn boots_under_ovmf_x64_from_ahci() {
    let fw = "/usr/share/ovmf/OVMF.fd";
    if !Path::new(fw).exists() {
        eprintln!("skipping OVMF x64: {fw} missing (Debian package ovmf)");
        return;
    }
    boot(
        "OVMF x64",
        OVMF_MEM_MIB,
        "linux-image-6.1.0-50-amd64_",
        &["-bios".into(), fw.into()],
        AHCI,
    );
}

#[test]
fn boots_under_ovmf_ia32_from_ahci() {
    // Debian's ovmf-ia32 ships only the Secure Boot capable build; with
    // the empty variable store, Secure Boot is off and an unsigned GRUB
    // starts. That build needs SMM and a secure flash.
    let code = Path::new("/usr/share/OVMF/OVMF32_CODE_4M.secboot.fd");
    let vars = Path::new("/usr/share/OVMF/OVMF32_VARS_4M.fd");
    if !code.exists() || !vars.exists() {
        eprintln!(
            "skipping OVMF ia32: {} missing (install the Debian package ovmf-ia32)",
            code.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let my_vars = dir.path().join("vars.fd");
    std::fs::copy(vars, &my_vars).unwrap();
    boot(
        "OVMF ia32",
        OVMF_MEM_MIB,
        "linux-image-6.1.0-50-686_",
        &[
            "-machine".into(),
            "q35,smm=on".into(),
            "-global".into(),
            "driver=cfi.pflash01,property=secure,value=on".into(),
            "-drive".into(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                code.display()
            ),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", my_vars.display()),
        ],
        AHCI,
    );
}
