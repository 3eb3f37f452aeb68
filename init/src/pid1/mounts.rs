//! The stack's own mount table and the one mount wrapper whose errors name
//! source and target.

use std::path::Path;

use nix::mount::{MsFlags, mount};

use crate::fsutil::unescape_octal;

/// One mount of the table.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    pub fstype: &'static str,
    pub source: &'static str,
    pub target: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
    pub mode: u32,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// What PID 1 mounts first, in order.
pub const TABLE: &[MountSpec] = &[
    MountSpec {
        fstype: "proc",
        source: "proc",
        target: "/proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        mode: 0o555,
    },
    MountSpec {
        fstype: "sysfs",
        source: "sysfs",
        target: "/sys",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        mode: 0o555,
    },
    MountSpec {
        fstype: "devtmpfs",
        source: "devtmpfs",
        target: "/dev",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
        mode: 0o755,
    },
    MountSpec {
        fstype: "devpts",
        source: "devpts",
        target: "/dev/pts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("gid=5,mode=0620,ptmxmode=0666"),
        mode: 0o755,
    },
    MountSpec {
        fstype: "tmpfs",
        source: "tmpfs",
        target: "/run",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
        mode: 0o755,
    },
    MountSpec {
        fstype: "tmpfs",
        source: "tmpfs",
        target: "/tmp",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
        mode: 0o1777,
    },
];

#[derive(Debug, thiserror::Error)]
#[error("mounting {source_name} ({fstype}) on {target}: {errno}")]
pub struct MountError {
    pub source_name: String,
    pub fstype: String,
    pub target: String,
    pub errno: nix::errno::Errno,
}

/// Mounts, creating the target directory first; the error names source,
/// type and target.
pub fn mount_one(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), MountError> {
    let _ = std::fs::create_dir_all(target);
    mount(Some(source), target, fstype, flags, data).map_err(|errno| MountError {
        source_name: source.to_string(),
        fstype: fstype.unwrap_or("-").to_string(),
        target: target.display().to_string(),
        errno,
    })
}

/// Is something mounted at `target` (per /proc/self/mountinfo text)?
pub fn is_mounted(mountinfo: &str, target: &str) -> bool {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_octal(mp) == target)
}

/// Mounts the table; what is already mounted (a second start, a kernel
/// that mounted devtmpfs itself) is left alone. Returns the failures: PID 1
/// logs them and goes on with what it has.
pub fn mount_table() -> Vec<MountError> {
    let mut errors = Vec::new();
    for m in TABLE {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if is_mounted(&info, m.target) {
            continue;
        }
        let _ = std::fs::create_dir_all(m.target);
        if let Err(e) = mount_one(
            m.source,
            Path::new(m.target),
            Some(m.fstype),
            m.flags,
            m.data,
        ) {
            if e.errno != nix::errno::Errno::EBUSY {
                errors.push(e);
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mount_points_from_mountinfo() {
        let info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    23 1 0:22 / /mnt/with\\040space rw - tmpfs tmpfs rw\n";
        assert!(is_mounted(info, "/proc"));
        assert!(is_mounted(info, "/mnt/with space"));
        assert!(!is_mounted(info, "/sys"));
        assert!(!is_mounted("", "/proc"));
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape_octal("a\\040b\\134c\\011"), "a b\\c\t");
        assert_eq!(unescape_octal("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn the_table_mounts_the_basics_in_order() {
        let targets: Vec<&str> = TABLE.iter().map(|m| m.target).collect();
        assert_eq!(
            targets,
            ["/proc", "/sys", "/dev", "/dev/pts", "/run", "/tmp"]
        );
    }
}
