//! The VMDK, qcow2 and OVA writers checked with qemu-img: the images must
//! pass `qemu-img check`, compare equal to the raw input, report the right
//! virtual size and create type, and be byte-reproducible.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use osam_image::ova::{self, OvaOptions};
use osam_image::qcow2;
use osam_image::vmdk::{self, VmdkOptions};
use sha2::{Digest, Sha256};

const QEMU_IMG: &str = "/usr/bin/qemu-img";

fn qemu_img(args: &[&str]) -> std::process::Output {
    if !Path::new(QEMU_IMG).exists() {
        panic!("{QEMU_IMG} is missing: run scripts/install-deps.sh (it installs qemu-utils)");
    }
    Command::new(QEMU_IMG)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {QEMU_IMG}: {e}; run scripts/install-deps.sh"))
}

fn qemu_ok(args: &[&str]) -> String {
    let out = qemu_img(args);
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw disk of `size` bytes: zeros with patterns at scattered offsets,
/// including the first and the last sector and a grain-crossing run.
fn raw_image(dir: &Path, size: u64) -> PathBuf {
    let mut data = vec![0u8; size as usize];
    let mut put = |offset: u64, len: usize, seed: u8| {
        for (i, b) in data[offset as usize..offset as usize + len]
            .iter_mut()
            .enumerate()
        {
            *b = seed.wrapping_add((i % 251) as u8) | 1;
        }
    };
    put(0, 512, 0x10); // "MBR"
    put(512, 512, 0x20); // "GPT header"
    put(1 << 20, 3 << 16, 0x30); // a run over several grains
    put((3 << 20) + 65536 - 100, 200, 0x40); // across a grain boundary
    put(5 << 20, 1, 0x50); // one byte
    put(size - 512, 512, 0x60); // the last sector
    let path = dir.join(format!("disk-{size}.raw"));
    fs::write(&path, &data).unwrap();
    path
}

fn info(file: &Path, format: &str) -> serde_json::Value {
    let text = qemu_ok(&[
        "info",
        "--output=json",
        "-f",
        format,
        file.to_str().unwrap(),
    ]);
    serde_json::from_str(&text).unwrap()
}

fn check_against_raw(raw: &Path, image: &Path, format: &str, size: u64) {
    let (raw_s, image_s) = (raw.to_str().unwrap(), image.to_str().unwrap());
    qemu_ok(&["check", "-f", format, image_s]);
    let cmp = qemu_ok(&["compare", "-f", "raw", "-F", format, raw_s, image_s]);
    assert!(cmp.contains("Images are identical"), "{cmp}");
    let info = info(image, format);
    assert_eq!(info["virtual-size"], size, "{info}");
}

/// Sizes: a whole number of grains, and one that ends in a partial grain.
const SIZES: [u64; 2] = [8 << 20, (8 << 20) + 3 * 512];

fn options() -> VmdkOptions {
    VmdkOptions {
        seed: b"test-seed".to_vec(),
        ..VmdkOptions::default()
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn monolithic_sparse_matches_raw() {
    let dir = tempfile::tempdir().unwrap();
    for size in SIZES {
        let raw = raw_image(dir.path(), size);
        let out = dir.path().join(format!("sparse-{size}.vmdk"));
        vmdk::write_monolithic_sparse(&mut File::open(&raw).unwrap(), &out, &options()).unwrap();
        check_against_raw(&raw, &out, "vmdk", size);
        let info = info(&out, "vmdk");
        assert_eq!(
            info["format-specific"]["data"]["create-type"],
            "monolithicSparse"
        );
        // Zero grains stay unallocated: the file is far smaller than the disk.
        assert!(fs::metadata(&out).unwrap().len() < size / 4);
    }
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn stream_optimized_matches_raw() {
    let dir = tempfile::tempdir().unwrap();
    for size in SIZES {
        let raw = raw_image(dir.path(), size);
        let out = dir.path().join(format!("stream-{size}.vmdk"));
        vmdk::write_stream_optimized(&mut File::open(&raw).unwrap(), &out, &options()).unwrap();
        check_against_raw(&raw, &out, "vmdk", size);
        let info = info(&out, "vmdk");
        assert_eq!(
            info["format-specific"]["data"]["create-type"],
            "streamOptimized"
        );
        let bytes = fs::read(&out).unwrap();
        assert_eq!(&bytes[..4], b"KDMV");
        assert_eq!(
            &bytes[56..64],
            &u64::MAX.to_le_bytes(),
            "gdOffset = GD_AT_END"
        );
        // The footer (second-to-last sector) is the header with gdOffset set.
        let footer = &bytes[bytes.len() - 1024..bytes.len() - 512];
        assert_eq!(&footer[..56], &bytes[..56]);
        assert_ne!(&footer[56..64], &u64::MAX.to_le_bytes());
        assert_eq!(&footer[64..512], &bytes[64..512]);
        assert!(
            bytes[bytes.len() - 512..].iter().all(|&b| b == 0),
            "EOS marker"
        );
    }
}

#[test]
fn qcow2_matches_raw() {
    let dir = tempfile::tempdir().unwrap();
    for size in SIZES {
        let raw = raw_image(dir.path(), size);
        let out = dir.path().join(format!("disk-{size}.qcow2"));
        qcow2::write(&mut File::open(&raw).unwrap(), &out).unwrap();
        check_against_raw(&raw, &out, "qcow2", size);
        let info = info(&out, "qcow2");
        assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
        assert_eq!(info["cluster-size"], 65536);
        assert_eq!(info["format-specific"]["data"]["refcount-bits"], 16);
    }
}

#[test]
fn writes_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let size = SIZES[1];
    let raw = raw_image(dir.path(), size);
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    type Writer = fn(&Path, &Path);
    let writers: [(&str, Writer); 3] = [
        ("sparse.vmdk", |raw, out| {
            vmdk::write_monolithic_sparse(&mut File::open(raw).unwrap(), out, &options()).unwrap()
        }),
        ("stream.vmdk", |raw, out| {
            vmdk::write_stream_optimized(&mut File::open(raw).unwrap(), out, &options()).unwrap()
        }),
        ("disk.qcow2", |raw, out| {
            qcow2::write(&mut File::open(raw).unwrap(), out).unwrap()
        }),
    ];
    for (name, write) in writers {
        write(&raw, &a.join(name));
        write(&raw, &b.join(name));
        assert_eq!(
            fs::read(a.join(name)).unwrap(),
            fs::read(b.join(name)).unwrap(),
            "{name} differs between two writes"
        );
    }
    // Another seed gives other identifiers.
    let other = VmdkOptions {
        seed: b"another".to_vec(),
        ..VmdkOptions::default()
    };
    let c = dir.path().join("c.vmdk");
    vmdk::write_stream_optimized(&mut File::open(&raw).unwrap(), &c, &other).unwrap();
    assert_ne!(
        fs::read(&c).unwrap(),
        fs::read(a.join("stream.vmdk")).unwrap()
    );
}

#[test]
fn bad_input_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("odd.raw");
    fs::write(&raw, vec![0u8; 1000]).unwrap();
    let out = dir.path().join("odd.vmdk");
    let err =
        vmdk::write_stream_optimized(&mut File::open(&raw).unwrap(), &out, &options()).unwrap_err();
    assert!(err.to_string().contains("1000 bytes"), "{err}");
    let err = qcow2::write(
        &mut File::open(&raw).unwrap(),
        &dir.path().join("odd.qcow2"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("1000 bytes"), "{err}");
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the raw file is left"
    );
}

/// A tiny well-formedness check: balanced tags, one root element.
fn assert_balanced_xml(xml: &str) {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .expect("XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = body;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        assert!(!text.contains('>'), "stray '>' in {text:?}");
        if stack.is_empty() {
            assert!(text.trim().is_empty(), "text outside the root: {text:?}");
        }
        let end = rest[start..].find('>').expect("unterminated tag") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "'<' inside tag {tag:?}");
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in {tag:?}"
        );
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(open, name.trim(), "mismatched tags");
        } else if !tag.ends_with('/') {
            if stack.is_empty() {
                roots += 1;
            }
            let name = tag.split_whitespace().next().expect("tag name").to_string();
            stack.push(name);
        } else if stack.is_empty() {
            roots += 1;
        }
        rest = &rest[end + 1..];
    }
    assert!(rest.trim().is_empty(), "text after the root");
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(roots, 1, "exactly one root element");
}

#[test]
fn ova_packs_descriptor_manifest_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let size = SIZES[0];
    let raw = raw_image(dir.path(), size);
    let vmdk_path = dir.path().join("stack.vmdk");
    vmdk::write_stream_optimized(&mut File::open(&raw).unwrap(), &vmdk_path, &options()).unwrap();

    let mut options = OvaOptions::new("osam-fixup");
    options.mtime = 1_700_000_000;
    let out = dir.path().join("osam-fixup.ova");
    ova::write(&vmdk_path, &out, &options).unwrap();

    let mut archive = tar::Archive::new(File::open(&out).unwrap());
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header();
        assert!(h.as_ustar().is_some(), "ustar header");
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(h.mtime().unwrap(), 1_700_000_000);
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.push((name, data));
    }
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["osam-fixup.ovf", "osam-fixup.mf", "osam-fixup-disk1.vmdk"]
    );

    // The descriptor.
    let ovf = String::from_utf8(entries[0].1.clone()).unwrap();
    assert_balanced_xml(&ovf);
    assert!(ovf.contains(&format!(r#"ovf:capacity="{size}""#)), "{ovf}");
    let vmdk_len = entries[2].1.len();
    assert!(ovf.contains(&format!(r#"ovf:size="{vmdk_len}""#)), "{ovf}");
    assert!(ovf.contains(ova::STREAM_OPTIMIZED_FORMAT));

    // The manifest.
    let mf = String::from_utf8(entries[1].1.clone()).unwrap();
    let expected = format!(
        "SHA256(osam-fixup.ovf)= {}\nSHA256(osam-fixup-disk1.vmdk)= {}\n",
        hex(&Sha256::digest(&entries[0].1)),
        hex(&Sha256::digest(&entries[2].1)),
    );
    assert_eq!(mf, expected);

    // The disk inside is the disk given, and it still matches the raw image.
    assert_eq!(entries[2].1, fs::read(&vmdk_path).unwrap());
    let inner = dir.path().join("inner.vmdk");
    File::create(&inner)
        .unwrap()
        .write_all(&entries[2].1)
        .unwrap();
    check_against_raw(&raw, &inner, "vmdk", size);

    // Reproducible.
    let again = dir.path().join("again.ova");
    ova::write(&vmdk_path, &again, &options).unwrap();
    assert_eq!(fs::read(&out).unwrap(), fs::read(&again).unwrap());

    // Not a stream-optimized disk: refused, nothing written.
    let sparse = dir.path().join("sparse.vmdk");
    vmdk::write_monolithic_sparse(&mut File::open(&raw).unwrap(), &sparse, &options_vmdk())
        .unwrap();
    let bad = dir.path().join("bad.ova");
    assert!(ova::write(&sparse, &bad, &options).is_err());
    assert!(!bad.exists());
    assert!(leftovers(dir.path()).is_empty());
}

fn options_vmdk() -> VmdkOptions {
    options()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
