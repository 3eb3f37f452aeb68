//! How /tmp/fixup reaches the manager (PROTOCOL.md, "Transports"):
//! a virtio-9p share mounted at /tmp (QEMU, the manager emulator), a tmpfs
//! /tmp that VMware Tools guest operations read (vSphere), or the fixup
//! disk's FAT partition (field engineers).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::MsFlags;

use crate::cmdline::{Options, Transport};
use crate::error::{FixupError, codes};
use crate::kmod::Loader;
use crate::logging;
use crate::pid1::disk_transport::{self, EspMount, VFAT_MODULES};
use crate::pid1::mounts::mount_one;
use crate::runstate::ESP_MOUNT;

/// The 9p share tag that `auto` looks for.
pub const DEFAULT_9P_TAG: &str = "fixup";

/// The mount tags of the virtio-9p devices in a sysfs tree.
pub fn nine_p_tags(sysfs: &Path) -> Vec<String> {
    let mut tags = Vec::new();
    let Ok(entries) = std::fs::read_dir(sysfs.join("bus/virtio/devices")) else {
        return tags;
    };
    for e in entries.flatten() {
        if let Ok(t) = std::fs::read(e.path().join("mount_tag")) {
            let t = String::from_utf8_lossy(&t)
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string();
            if !t.is_empty() {
                tags.push(t);
            }
        }
    }
    tags.sort();
    tags
}

/// Is this a VMware virtual machine (DMI vendor)?
pub fn is_vmware(sysfs: &Path) -> bool {
    ["class/dmi/id/sys_vendor", "class/dmi/id/product_name"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(sysfs.join(f)).ok())
        .any(|v| v.contains("VMware"))
}

/// Picks the transport for `auto` (pure).
pub fn resolve_auto(tags: &[String], vmware: bool) -> Transport {
    if tags.iter().any(|t| t == DEFAULT_9P_TAG) {
        Transport::NineP(DEFAULT_9P_TAG.to_string())
    } else if vmware {
        Transport::Vmtools
    } else {
        Transport::Disk
    }
}

/// The transport as set up.
#[derive(Debug)]
pub struct Channel {
    pub transport: Transport,
    /// The directory the protocol runs in: /tmp/fixup.
    pub fixup_dir: PathBuf,
    /// The disk transport's FAT partition, mounted.
    pub esp: Option<EspMount>,
}

/// Sets the transport up. `auto` waits briefly for a 9p share to show.
/// The disk transport fails when `osam.transport=disk` was asked for and
/// the fixup disk's FAT partition cannot be found or mounted; when `auto`
/// chose it, the stack carries on with /tmp/fixup on tmpfs instead.
pub fn setup(opts: &Options, loader: &mut Loader) -> Result<Channel, FixupError> {
    let requested = &opts.transport;
    let sysfs = Path::new("/sys");
    let transport = match requested {
        Transport::Auto => {
            let _ = loader.load("9pnet_virtio");
            let tags = wait_for_tags(sysfs, None, Duration::from_secs(2));
            let t = resolve_auto(&tags, is_vmware(sysfs));
            logging::info(format!(
                "transport auto: {} (9p tags: {})",
                t.as_string(),
                if tags.is_empty() {
                    "none".to_string()
                } else {
                    tags.join(", ")
                }
            ));
            t
        }
        t => t.clone(),
    };
    let mut esp = None;
    match &transport {
        Transport::NineP(tag) => mount_9p(tag, loader)?,
        Transport::Vmtools => {}
        Transport::Disk => match mount_esp(opts, loader) {
            Ok(m) => esp = Some(m),
            Err(e) if *requested == Transport::Auto => logging::warn(format!(
                "{}: {}; waiting in /tmp/fixup (tmpfs) instead",
                e.code, e.message
            )),
            Err(e) => return Err(e),
        },
        Transport::Auto => {}
    }
    Ok(Channel {
        transport,
        fixup_dir: PathBuf::from("/tmp/fixup"),
        esp,
    })
}

/// Finds the fixup disk's FAT partition (`osam.disk=`), loads vfat and
/// mounts it at /run/osam/esp.
fn mount_esp(opts: &Options, loader: &mut Loader) -> Result<EspMount, FixupError> {
    let failed = |what: String| FixupError::new(codes::TRANSPORT_FAILED, what);
    let location = disk_transport::wait_for_esp(
        Path::new("/sys"),
        Path::new("/dev"),
        opts.disk.as_deref(),
        opts.disk_timeout,
    )
    .map_err(|e| failed(format!("disk transport: {e}")))?;
    logging::info(format!(
        "disk transport: the fixup disk is /dev/{}, its FAT partition {}",
        location.disk,
        location.device.display()
    ));
    for m in VFAT_MODULES {
        if let Err(e) = loader.load(m) {
            logging::debug(format!("module {m}: {e}"));
        }
    }
    let esp = EspMount::mount(location, Path::new(ESP_MOUNT))
        .map_err(|e| failed(format!("disk transport: {e}")))?;
    logging::info(format!(
        "disk transport: {} mounted on {}; inputs and results in {}",
        esp.location.device.display(),
        esp.mount_point.display(),
        esp.mount_point
            .join(disk_transport::ESP_FIXUP_DIR)
            .display()
    ));
    Ok(esp)
}

fn wait_for_tags(sysfs: &Path, want: Option<&str>, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let tags = nine_p_tags(sysfs);
        let done = match want {
            Some(w) => tags.iter().any(|t| t == w),
            None => !tags.is_empty(),
        };
        if done || start.elapsed() >= limit {
            return tags;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mounts the 9p share `tag` on /tmp.
fn mount_9p(tag: &str, loader: &mut Loader) -> Result<(), FixupError> {
    for m in ["9pnet_virtio", "9p"] {
        if let Err(e) = loader.load(m) {
            logging::warn(format!("loading {m}: {e}"));
        }
    }
    let tags = wait_for_tags(Path::new("/sys"), Some(tag), Duration::from_secs(10));
    if !tags.iter().any(|t| t == tag) {
        return Err(FixupError::new(
            codes::TRANSPORT_FAILED,
            format!(
                "no virtio-9p share tagged `{tag}` (found: {}); start QEMU with \
                 -virtfs local,path=DIR,mount_tag={tag},security_model=none",
                if tags.is_empty() {
                    "none".to_string()
                } else {
                    tags.join(", ")
                }
            ),
        ));
    }
    let opts = "trans=virtio,version=9p2000.L,msize=262144,cache=none";
    // /tmp is a tmpfs from the mount table: the share goes on top of it.
    mount_one(
        tag,
        Path::new("/tmp"),
        Some("9p"),
        MsFlags::empty(),
        Some(opts),
    )
    .map_err(|e| {
        FixupError::new(
            codes::TRANSPORT_FAILED,
            format!("cannot mount the 9p share: {e}"),
        )
    })?;
    logging::info(format!("9p share `{tag}` mounted on /tmp"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_9p_then_vmware_then_disk() {
        let tags = vec!["fixup".to_string()];
        assert_eq!(resolve_auto(&tags, true), Transport::NineP("fixup".into()));
        assert_eq!(resolve_auto(&["other".into()], true), Transport::Vmtools);
        assert_eq!(resolve_auto(&[], false), Transport::Disk);
    }

    #[test]
    fn reads_mount_tags_and_dmi() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path();
        for (dev, tag) in [("virtio1", "fixup\n"), ("virtio2", "other\0\n")] {
            let p = s.join("bus/virtio/devices").join(dev);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("mount_tag"), tag).unwrap();
        }
        std::fs::create_dir_all(s.join("bus/virtio/devices/virtio0")).unwrap();
        assert_eq!(
            nine_p_tags(s),
            vec!["fixup".to_string(), "other".to_string()]
        );
        assert!(!is_vmware(s));
        std::fs::create_dir_all(s.join("class/dmi/id")).unwrap();
        std::fs::write(s.join("class/dmi/id/sys_vendor"), "VMware, Inc.\n").unwrap();
        assert!(is_vmware(s));
    }
}
