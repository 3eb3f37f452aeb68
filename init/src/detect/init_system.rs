//! The guest's init system.
//!
//! `/sbin/init` decides where it is a symlink (to systemd, upstart,
//! openrc-init, a sysvinit binary): its target's name says. Where it is a
//! real binary, the files around it do: upstart's job directory and
//! `initctl` (RHEL 6, Ubuntu ≤ 14.10), OpenRC, or sysvinit's inittab.

use super::InitSystem;
use crate::guestfs::GuestRoot;

/// The init system of the guest at `root`.
pub fn detect_init_system(root: &GuestRoot) -> InitSystem {
    for init in ["/sbin/init", "/usr/sbin/init"] {
        let Ok(target) = root.canonicalize(init) else {
            continue;
        };
        let is_file = root.metadata(init).is_ok_and(|m| m.is_file());
        if !is_file {
            continue;
        }
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        match name {
            "systemd" => return InitSystem::Systemd,
            "upstart" => return InitSystem::Upstart,
            "openrc-init" => return InitSystem::Openrc,
            _ if target.to_string_lossy().contains("sysvinit") => return InitSystem::Sysvinit,
            _ => return from_surroundings(root),
        }
    }
    // No /sbin/init at all (a damaged guest): the files still tell.
    if has_systemd(root) {
        return InitSystem::Systemd;
    }
    from_surroundings(root)
}

fn has_systemd(root: &GuestRoot) -> bool {
    ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
        .iter()
        .any(|p| root.metadata(p).is_ok_and(|m| m.is_file()))
}

/// Where `/sbin/init` is a real binary (or missing): which init system's
/// files surround it.
fn from_surroundings(root: &GuestRoot) -> InitSystem {
    let upstart = root.exists("/etc/init/rc-sysinit.conf")
        || (root.exists("/sbin/initctl")
            && (root.exists("/etc/init/rcS.conf") || root.exists("/etc/init/rc.conf")));
    if upstart {
        InitSystem::Upstart
    } else if root.exists("/sbin/openrc") || root.exists("/usr/sbin/openrc") {
        InitSystem::Openrc
    } else if root.metadata("/etc/inittab").is_ok_and(|m| m.is_file()) {
        InitSystem::Sysvinit
    } else if has_systemd(root) {
        InitSystem::Systemd
    } else {
        InitSystem::Unknown
    }
}
