//! The Tools ISO of stage 2 (docs/protocol.md, "Stage 2's Tools ISO"):
//! an ISO 9660 image labelled `VMware Tools` holding Debian's
//! `open-vm-tools` for a guest's architecture and every package it needs
//! that the guest lacks, so that the stage-2 agent's single
//! `dpkg -i <every .deb>` installs it with no network.
//!
//! The packages are what apt would download to install `open-vm-tools`
//! (without recommends) on the guest: apt runs on the host against a
//! private configuration whose dpkg status is the guest's own (saved at
//! build time), for the guest's architecture, release and mirror. The ISO
//! is cached as `<cache>/guests/tools-<arch>-<hash>.iso` (the hash covers
//! the guest's dpkg status, the mirror, the release, the architecture, the
//! package list and [`ISO_BUILDER_VERSION`]) with a `.json` list of its
//! packages beside it; it is built in a temporary folder and renamed.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cmd::{BuildLog, FileLock, have_program};
use super::recipe::{GuestArch, hex};
use super::{GuestImage, guests_dir};

/// The volume label the stage-2 agent looks for.
pub const TOOLS_LABEL: &str = "VMware Tools";
/// What the ISO installs.
pub const TOOLS_PACKAGES: [&str; 1] = ["open-vm-tools"];
/// Bump when the ISO builder changes what it makes.
pub const ISO_BUILDER_VERSION: u32 = 1;
/// Debian's archive key (package debian-archive-keyring).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

const APT_TIMEOUT: Duration = Duration::from_secs(900);
const ISO_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to wait for another process making a Tools ISO.
const LOCK_TIMEOUT: Duration = Duration::from_secs(3600);

/// A Tools ISO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolsIso {
    /// The image.
    pub path: PathBuf,
    /// The guest architecture it is for.
    pub arch: GuestArch,
    /// The .deb file names on it (at its root), sorted.
    pub debs: Vec<String>,
    /// How long apt and xorriso took (seconds; 0 when cached).
    pub build_s: f64,
}

/// The cache key of the ISO for a guest.
fn iso_hash(image: &GuestImage) -> Result<String> {
    let status = fs::read(&image.dpkg_status)
        .with_context(|| format!("reading {}", image.dpkg_status.display()))?;
    let r = image.recipe();
    let mut h = Sha256::new();
    h.update(b"osam-tools-iso\0");
    h.update(ISO_BUILDER_VERSION.to_le_bytes());
    for part in [
        r.mirror.as_str(),
        r.suite.as_str(),
        r.arch.debian_arch(),
        &TOOLS_PACKAGES.join(","),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update((status.len() as u64).to_le_bytes());
    h.update(&status);
    Ok(hex(&h.finalize()[..8]))
}

/// The volume label of an ISO image (its primary volume descriptor).
pub fn volume_label(iso: &Path) -> Result<String> {
    let mut f = fs::File::open(iso).with_context(|| format!("opening {}", iso.display()))?;
    let mut pvd = [0u8; 2048];
    f.seek(SeekFrom::Start(16 * 2048))
        .and_then(|_| f.read_exact(&mut pvd))
        .with_context(|| format!("reading the volume descriptor of {}", iso.display()))?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        bail!(
            "{} has no ISO 9660 primary volume descriptor",
            iso.display()
        );
    }
    Ok(String::from_utf8_lossy(&pvd[40..72]).trim_end().to_owned())
}

/// apt's configuration for a private root at `dir`, on the guest's dpkg
/// status, architecture and sources.
fn apt_config(dir: &Path, arch: &str) -> String {
    let d = dir.display();
    format!(
        "Dir::Etc \"{d}/etc/\";\n\
         Dir::Etc::main \"apt.conf\";\n\
         Dir::Etc::parts \"apt.conf.d/\";\n\
         Dir::Etc::sourcelist \"sources.list\";\n\
         Dir::Etc::sourceparts \"sources.list.d/\";\n\
         Dir::Etc::preferences \"preferences\";\n\
         Dir::Etc::preferencesparts \"preferences.d/\";\n\
         Dir::State \"{d}/state/\";\n\
         Dir::State::status \"{d}/status\";\n\
         Dir::Cache \"{d}/cache/\";\n\
         Dir::Log \"{d}/log/\";\n\
         APT::Architecture \"{arch}\";\n\
         APT::Architectures {{ \"{arch}\"; }};\n\
         APT::Install-Recommends \"false\";\n\
         APT::Install-Suggests \"false\";\n\
         APT::Sandbox::User \"root\";\n\
         Acquire::Retries \"3\";\n\
         Acquire::Languages \"none\";\n\
         Debug::NoLocking \"true\";\n"
    )
}

/// The `.deb` files of a folder, sorted by name.
fn debs_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    Ok(debs)
}

/// Downloads what the guest lacks for [`TOOLS_PACKAGES`] into
/// `<work>/cache/archives`; returns the .deb paths.
fn download_closure(image: &GuestImage, work: &Path, log: &BuildLog) -> Result<Vec<PathBuf>> {
    let r = image.recipe();
    let apt = work.join("apt");
    for sub in [
        "etc/apt.conf.d",
        "etc/sources.list.d",
        "etc/preferences.d",
        "state/lists/partial",
        "cache/archives/partial",
        "log",
    ] {
        fs::create_dir_all(apt.join(sub)).with_context(|| format!("creating {sub}"))?;
    }
    fs::copy(&image.dpkg_status, apt.join("status")).context("copying the guest's dpkg status")?;
    fs::write(
        apt.join("etc/sources.list"),
        format!(
            "deb [signed-by={DEBIAN_KEYRING}] {} {} main\n",
            r.mirror, r.suite
        ),
    )
    .context("writing sources.list")?;
    let config = apt.join("apt.conf");
    fs::write(&config, apt_config(&apt, r.arch.debian_arch())).context("writing apt.conf")?;
    let apt_get = |step: &str, args: &[&str]| -> Result<String> {
        let mut cmd = Command::new("apt-get");
        cmd.env("APT_CONFIG", &config)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-q", "-y"])
            .args(args);
        log.run(step, &mut cmd, APT_TIMEOUT)
    };
    apt_get("apt-get update (private, guest's dpkg status)", &["update"])?;
    let mut args = vec!["install", "--download-only", "--no-install-recommends"];
    args.extend(TOOLS_PACKAGES);
    apt_get("apt-get install --download-only", &args)?;
    let debs = debs_in(&apt.join("cache/archives"))?;
    for p in TOOLS_PACKAGES {
        if !debs.iter().any(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{p}_")))
        }) {
            return Err(log.error(
                "apt-get install --download-only",
                format!("apt downloaded no {p} package"),
            ));
        }
    }
    Ok(debs)
}

/// The Tools ISO for `image` (from the cache or made). Needs `apt-get`,
/// `xorriso` and Debian's archive keyring on the host; not root.
pub fn tools_iso(image: &GuestImage) -> Result<ToolsIso> {
    let arch = image.recipe().arch;
    let hash = iso_hash(image)?;
    let dir = guests_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stem = format!("tools-{}-{hash}", arch.debian_arch());
    let iso = dir.join(format!("{stem}.iso"));
    let list = dir.join(format!("{stem}.json"));
    let load = || -> Option<ToolsIso> {
        if !iso.is_file() {
            return None;
        }
        let mut t: ToolsIso = serde_json::from_str(&fs::read_to_string(&list).ok()?).ok()?;
        t.path = iso.clone();
        t.build_s = 0.0;
        Some(t)
    };
    if let Some(t) = load() {
        return Ok(t);
    }
    let _lock = FileLock::acquire(&dir.join("tools-iso.lock"), LOCK_TIMEOUT)?;
    if let Some(t) = load() {
        return Ok(t);
    }
    for (program, package) in [("apt-get", "apt"), ("xorriso", "xorriso")] {
        if !have_program(program) {
            bail!(
                "making the Tools ISO needs {program} (Debian package {package}): run scripts/install-deps.sh"
            );
        }
    }
    if !Path::new(DEBIAN_KEYRING).is_file() {
        bail!(
            "making the Tools ISO needs {DEBIAN_KEYRING} (Debian package debian-archive-keyring)"
        );
    }
    let t0 = Instant::now();
    let work = dir.join(format!(".tmp-{stem}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let log = BuildLog::new(work.join("build.log"))?;
    let result = (|| -> Result<ToolsIso> {
        let debs = download_closure(image, &work, &log)?;
        let content = work.join("content");
        fs::create_dir_all(&content).context("creating the ISO's content folder")?;
        let mut names = Vec::new();
        for deb in &debs {
            let name = deb
                .file_name()
                .context("a .deb without a file name")?
                .to_string_lossy()
                .into_owned();
            fs::copy(deb, content.join(&name)).with_context(|| format!("copying {name}"))?;
            names.push(name);
        }
        fs::write(
            content.join("README.txt"),
            format!(
                "OSAM test Tools ISO: Debian {} {} packages for {}\n\
                 (open-vm-tools and what the guest lacks for it).\n\
                 Install with: dpkg -i *.deb\n\n{}\n",
                image.recipe().suite,
                arch.debian_arch(),
                image.recipe().name,
                names.join("\n")
            ),
        )
        .context("writing README.txt")?;
        let tmp_iso = work.join("tools.iso");
        log.run(
            "xorriso",
            Command::new("xorriso")
                .args([
                    "-as",
                    "mkisofs",
                    "-quiet",
                    "-R",
                    "-J",
                    "-joliet-long",
                    "-V",
                    TOOLS_LABEL,
                    "-o",
                ])
                .arg(&tmp_iso)
                .arg(&content),
            ISO_TIMEOUT,
        )?;
        let label = volume_label(&tmp_iso)?;
        if label != TOOLS_LABEL {
            return Err(log.error("xorriso", format!("the ISO's label is {label:?}")));
        }
        Ok(ToolsIso {
            path: tmp_iso,
            arch,
            debs: names,
            build_s: (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        })
    })();
    let made = match result {
        Ok(m) => m,
        Err(e) => {
            let failed = dir.join(format!("{stem}.failed.log"));
            let _ = fs::copy(log.path(), &failed);
            let _ = fs::remove_dir_all(&work);
            return Err(e.context(format!(
                "making the Tools ISO {stem} (log kept in {})",
                failed.display()
            )));
        }
    };
    let out = ToolsIso {
        path: iso.clone(),
        ..made.clone()
    };
    fs::rename(&made.path, &iso)
        .with_context(|| format!("renaming {} to {}", made.path.display(), iso.display()))?;
    let _ = fs::rename(log.path(), dir.join(format!("{stem}.build.log")));
    fs::write(&list, serde_json::to_string_pretty(&out)?)
        .with_context(|| format!("writing {}", list.display()))?;
    let _ = fs::remove_file(dir.join(format!("{stem}.failed.log")));
    fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    Ok(out)
}

/// QEMU arguments for a CD-ROM holding `iso` on machine `pc`'s secondary
/// IDE channel (`ide.1`), where a VMware VM's CD-ROM usually sits.
pub fn cdrom_args(iso: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!(
            "if=none,id=toolscd,media=cdrom,readonly=on,format=raw,file={}",
            iso.to_string_lossy().replace(',', ",,")
        ),
        "-device".into(),
        "ide-cd,bus=ide.1,drive=toolscd".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_config_is_private() {
        let c = apt_config(Path::new("/w/apt"), "i386");
        assert!(c.contains("Dir::State::status \"/w/apt/status\";"));
        assert!(c.contains("Dir::Etc \"/w/apt/etc/\";"));
        assert!(c.contains("APT::Architectures { \"i386\"; };"));
        assert!(c.contains("APT::Install-Recommends \"false\";"));
    }

    #[test]
    fn reads_a_volume_label() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.iso");
        let mut img = vec![0u8; 17 * 2048];
        let pvd = &mut img[16 * 2048..];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[40..72].copy_from_slice(b"VMware Tools                    ");
        fs::write(&path, &img).unwrap();
        assert_eq!(volume_label(&path).unwrap(), TOOLS_LABEL);
        fs::write(&path, vec![0u8; 17 * 2048]).unwrap();
        assert!(volume_label(&path).is_err());
        let args = cdrom_args(Path::new("/a,b.iso")).join(" ");
        assert!(args.contains("file=/a,,b.iso"));
    }
}
