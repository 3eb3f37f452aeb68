//! `osam-image inspect`: what is inside a fixup disk — its partitions, the
//! files on its ESP and the manifest the build left there.

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A partition as the inspection shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartInfo {
    pub number: u32,
    pub name: String,
    pub type_guid: String,
    pub guid: String,
    pub first_lba: u64,
    pub last_lba: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    pub format: String,
    pub disk_guid: String,
    pub partitions: Vec<PartInfo>,
    /// ESP files: path and size.
    pub esp_files: Vec<(String, u64)>,
    pub manifest: Option<serde_json::Value>,
}

/// Reads a disk image as raw bytes: raw as it is; VMDK and qcow2 through
/// `qemu-img convert` (the builder writes them; reading them back is left
/// to the reference implementation).
pub fn raw_bytes(image: &Path) -> Result<(String, Vec<u8>)> {
    let mut head = [0u8; 4];
    let mut f =
        std::fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let n = f.read(&mut head)?;
    let format = match &head[..n] {
        b"KDMV" => "vmdk",
        [b'Q', b'F', b'I', 0xfb] => "qcow2",
        _ if image.extension().is_some_and(|e| e == "ova") => "ova",
        _ => "raw",
    };
    match format {
        "raw" => {
            let mut bytes = Vec::new();
            f.seek(SeekFrom::Start(0))?;
            f.read_to_end(&mut bytes)?;
            Ok((format.into(), bytes))
        }
        "ova" => bail!(
            "{} is an OVA: inspect the .vmdk inside it (tar -xf) or the .vmdk beside it",
            image.display()
        ),
        _ => {
            let tmp = tempfile::NamedTempFile::new()?;
            let out = Command::new("qemu-img")
                .args(["convert", "-O", "raw"])
                .arg(image)
                .arg(tmp.path())
                .output()
                .context("running qemu-img (install qemu-utils) to read the image")?;
            if !out.status.success() {
                bail!(
                    "qemu-img convert {}: {}",
                    image.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok((format.into(), std::fs::read(tmp.path())?))
        }
    }
}

/// Inspects an image.
pub fn inspect(image: &Path) -> Result<Inspection> {
    let (format, bytes) = raw_bytes(image)?;
    let gpt = gpt::GptConfig::new()
        .writable(false)
        .open_from_device(Cursor::new(bytes.clone()))
        .with_context(|| format!("{}: no valid GPT", image.display()))?;
    let partitions: Vec<PartInfo> = gpt
        .partitions()
        .iter()
        .map(|(n, p)| PartInfo {
            number: *n,
            name: p.name.clone(),
            type_guid: p.part_type_guid.guid.to_string(),
            guid: p.part_guid.to_string(),
            first_lba: p.first_lba,
            last_lba: p.last_lba,
        })
        .collect();
    let esp = gpt
        .partitions()
        .values()
        .find(|p| p.part_type_guid == gpt::partition_types::EFI)
        .context("the disk has no EFI system partition")?;
    let start = usize::try_from(esp.first_lba * 512)?;
    let end = usize::try_from((esp.last_lba + 1) * 512)?;
    let slice = bytes
        .get(start..end)
        .context("the ESP lies beyond the end of the image")?
        .to_vec();
    let fs = fatfs::FileSystem::new(Cursor::new(slice), fatfs::FsOptions::new())
        .context("the ESP is not a FAT file system")?;
    let mut esp_files = Vec::new();
    walk(&fs.root_dir(), "", &mut esp_files)?;
    let manifest = match fs.root_dir().open_file("osam/manifest.json") {
        Ok(mut f) => {
            let mut text = String::new();
            f.read_to_string(&mut text)?;
            Some(serde_json::from_str(&text).context("osam/manifest.json is not JSON")?)
        }
        Err(_) => None,
    };
    Ok(Inspection {
        format,
        disk_guid: gpt.guid().to_string(),
        partitions,
        esp_files,
        manifest,
    })
}

fn walk<T: fatfs::ReadWriteSeek>(
    dir: &fatfs::Dir<T>,
    prefix: &str,
    out: &mut Vec<(String, u64)>,
) -> Result<()> {
    for e in dir.iter() {
        let e = e?;
        let name = e.file_name();
        if name == "." || name == ".." {
            continue;
        }
        let path = format!("{prefix}{name}");
        if e.is_dir() {
            out.push((format!("{path}/"), 0));
            walk(&e.to_dir(), &format!("{path}/"), out)?;
        } else {
            out.push((path, e.len()));
        }
    }
    Ok(())
}

/// The inspection as text for a person.
pub fn render(i: &Inspection) -> String {
    let mut s = format!(
        "format: {}\ndisk GUID: {}\npartitions:\n",
        i.format, i.disk_guid
    );
    for p in &i.partitions {
        s.push_str(&format!(
            "  {} {:<12} {} LBA {}-{} ({} KiB)\n",
            p.number,
            p.name,
            p.type_guid,
            p.first_lba,
            p.last_lba,
            (p.last_lba + 1 - p.first_lba) / 2
        ));
    }
    s.push_str("ESP files:\n");
    for (f, size) in &i.esp_files {
        s.push_str(&format!("  {f:<32} {size}\n"));
    }
    match &i.manifest {
        Some(m) => {
            s.push_str(&format!(
                "manifest: arch {}, kernel {} {}, {} packages, {} files\n",
                m["arch"].as_str().unwrap_or("?"),
                m["kernel"]["package"].as_str().unwrap_or("?"),
                m["kernel"]["version"].as_str().unwrap_or("?"),
                m["packages"].as_array().map_or(0, Vec::len),
                m["files"].as_array().map_or(0, Vec::len),
            ));
            if let Some(pk) = m["packages"].as_array() {
                for p in pk {
                    s.push_str(&format!(
                        "  {} {} ({})\n",
                        p["name"].as_str().unwrap_or("?"),
                        p["version"].as_str().unwrap_or("?"),
                        p["arch"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
        None => s.push_str("manifest: none (osam/manifest.json missing)\n"),
    }
    s
}
