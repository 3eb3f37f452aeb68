//! The check service of the test guests and its report.
//!
//! Every reference guest runs `osam-check.service` at boot: once systemd
//! says the boot is over (`systemctl is-system-running` is `running` or
//! `degraded`, at most 600 s), it writes one block to the first serial
//! port (`/dev/ttyS0` itself, not `/dev/console`, so a fixup that drops
//! `console=ttyS0` does not hide it; a copy stays in
//! `/run/osam-check.txt`):
//!
//! ```text
//! OSAM-CHECK-BEGIN
//! version=1
//! system=running
//! target=multi-user.target multi-user=active graphical=inactive rescue=inactive emergency=inactive
//! nic ens4 52:54:00:4f:53:01 10.0.2.15/24
//! nic ens5 52:54:00:4f:53:02 -
//! mount /dev/sda1 / ext4
//! selinux=none
//! stage2=absent
//! hostname=osam-deb12
//! kernel=6.1.0-28-amd64
//! OSAM-CHECK-END
//! ```
//!
//! `nic` lines: name, MAC, IPv4 addresses joined by `,` (`-` for none);
//! `mount` lines: the mounts of /proc/mounts whose source is a path;
//! `stage2`: whether the stage-2 code is still installed — the agent
//! (`/opt/vmware/hcx/osam/bin/osam-stage2`) or its hook (the systemd unit
//! `osam-stage2.service`, the SysV rc script); stage 2 removes them and
//! keeps `/opt/vmware/hcx/osam/data` (backups and manifest, for undo), so
//! that folder does not count. [`GuestCheck::parse`] reads the block back.
//!
//! The unit is `Type=simple`, not `oneshot`: a oneshot unit wanted by
//! `multi-user.target` runs before the target is reached, so it could never
//! report the target active, and waiting for the end of the boot inside a
//! oneshot start job would wait for itself.

use std::collections::BTreeMap;
use std::time::Duration;

use super::recipe::FileSpec;
use crate::error::{Error, Result};
use crate::vm::Vm;

/// The first line of the block.
pub const CHECK_BEGIN: &str = "OSAM-CHECK-BEGIN";
/// The last line of the block.
pub const CHECK_END: &str = "OSAM-CHECK-END";
/// The script's path in the guest.
pub const CHECK_SCRIPT_PATH: &str = "/usr/local/sbin/osam-check";
/// The unit's path in the guest.
pub const CHECK_UNIT_PATH: &str = "/etc/systemd/system/osam-check.service";

/// The script (POSIX sh: minbase has dash, sed, coreutils; no awk).
pub const CHECK_SCRIPT: &str = r#"#!/bin/sh
# osam-check: once the boot is over, print this guest's state between
# OSAM-CHECK-BEGIN and OSAM-CHECK-END on the first serial port, for the
# OSAM QEMU tests. A copy stays in /run/osam-check.txt.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
state=unknown
i=0
while [ "$i" -lt 600 ]; do
    state=$(systemctl is-system-running 2>/dev/null)
    case "$state" in
        running|degraded|maintenance|stopping) break ;;
    esac
    sleep 1
    i=$((i + 1))
done
out=/run/osam-check.txt
{
    echo
    echo OSAM-CHECK-BEGIN
    echo "version=1"
    echo "system=${state:-unknown}"
    printf 'target=%s' "$(systemctl get-default 2>/dev/null || echo unknown)"
    for t in multi-user graphical rescue emergency; do
        printf ' %s=%s' "$t" "$(systemctl is-active "$t.target" 2>/dev/null)"
    done
    echo
    for d in /sys/class/net/*; do
        n=${d##*/}
        [ "$n" = lo ] && continue
        mac=$(cat "$d/address" 2>/dev/null)
        addrs=$(ip -4 -o addr show dev "$n" 2>/dev/null |
            sed -n 's|.* inet \([0-9./]*\) .*|\1|p' | tr '\n' ',')
        addrs=${addrs%,}
        echo "nic $n ${mac:--} ${addrs:--}"
    done
    while read -r dev mnt fstype rest; do
        case "$dev" in
            /*) echo "mount $dev $mnt $fstype" ;;
        esac
    done < /proc/mounts
    if [ -r /sys/fs/selinux/enforce ]; then
        if [ "$(cat /sys/fs/selinux/enforce)" = 1 ]; then
            echo selinux=enforcing
        else
            echo selinux=permissive
        fi
    else
        echo selinux=none
    fi
    # The stage-2 code (agent, systemd unit, rc script), not the data
    # folder: stage 2 keeps /opt/vmware/hcx/osam/data for undo.
    if [ -e /opt/vmware/hcx/osam/bin/osam-stage2 ] ||
        [ -e /etc/systemd/system/osam-stage2.service ] ||
        [ -e /etc/init.d/osam-stage2 ]; then
        echo stage2=present
    else
        echo stage2=absent
    fi
    echo "hostname=$(cat /proc/sys/kernel/hostname)"
    echo "kernel=$(uname -r)"
    echo OSAM-CHECK-END
} > "$out" 2>&1
cat "$out" > /dev/ttyS0
"#;

/// The unit.
pub const CHECK_UNIT: &str = "[Unit]
Description=OSAM test check: report this guest's state on ttyS0
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/osam-check

[Install]
WantedBy=multi-user.target
";

/// What the SELinux guests' check script adds before `stage2=`: the files
/// under `/boot`, `/etc` and `/opt` that have no SELinux label of their
/// own (`unlabeled_t`, or no label `stat` can read), as
/// `selinux-unlabeled=<count> <up to 8 paths>`. A fixup that leaves a file
/// it wrote unlabelled on an enforcing guest shows here.
pub const SELINUX_AUDIT: &str = r#"    if [ -r /sys/fs/selinux/enforce ]; then
        bad=$(find /boot /etc /opt -xdev -exec stat -c '%C %n' {} + 2>&1 |
            sed -n -e '/:unlabeled_t:/p' -e '/:object_r:/!p' | sed 's/.* //')
        n=$(printf '%s' "$bad" | grep -c .)
        echo "selinux-unlabeled=$n $(printf '%s\n' "$bad" | head -n 8 | tr '\n' ' ')"
    fi
"#;

/// The key of [`SELINUX_AUDIT`]'s line.
pub const SELINUX_UNLABELED_KEY: &str = "selinux-unlabeled";

/// The check script of the SELinux guests: [`CHECK_SCRIPT`] with
/// [`SELINUX_AUDIT`] (its other guests keep the plain script, and so
/// their hashes).
pub fn selinux_check_script() -> String {
    let anchor = "    # The stage-2 code (agent, systemd unit, rc script), not the data\n";
    CHECK_SCRIPT.replacen(anchor, &format!("{SELINUX_AUDIT}{anchor}"), 1)
}

/// The files that install and enable the check service with
/// [`selinux_check_script`].
pub fn selinux_files() -> Vec<FileSpec> {
    let mut files = files();
    files[0] = FileSpec::text(CHECK_SCRIPT_PATH, 0o755, &selinux_check_script());
    files
}

/// The files that install and enable the check service.
pub fn files() -> Vec<FileSpec> {
    vec![
        FileSpec::text(CHECK_SCRIPT_PATH, 0o755, CHECK_SCRIPT),
        FileSpec::text(CHECK_UNIT_PATH, 0o644, CHECK_UNIT),
        FileSpec::symlink(
            "/etc/systemd/system/multi-user.target.wants/osam-check.service",
            CHECK_UNIT_PATH,
        ),
    ]
}

/// A NIC in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckNic {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    pub mac: String,
    /// Its IPv4 addresses (`a.b.c.d/len`).
    pub ipv4: Vec<String>,
}

/// A mount in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMount {
    /// The source device.
    pub device: String,
    /// The mount point.
    pub mountpoint: String,
    /// The file system type.
    pub fstype: String,
}

/// A parsed check block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestCheck {
    /// The block's format version.
    pub version: u32,
    /// `systemctl is-system-running` when the block was written.
    pub system: String,
    /// `systemctl get-default`.
    pub default_target: String,
    /// `systemctl is-active` of `multi-user`, `graphical`, `rescue`,
    /// `emergency` (keys without `.target`).
    pub targets: BTreeMap<String, String>,
    /// The NICs but `lo`.
    pub nics: Vec<CheckNic>,
    /// The mounts of block devices.
    pub mounts: Vec<CheckMount>,
    /// `none`, `permissive` or `enforcing`.
    pub selinux: String,
    /// Whether the stage-2 agent or its hook is installed (the data
    /// folder `/opt/vmware/hcx/osam/data` does not count).
    pub stage2_present: bool,
    /// The host name.
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// Lines in the block that are not part of it (kernel messages that
    /// landed in between).
    pub other: Vec<String>,
}

/// Why a check block could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckParseError {
    /// No complete block.
    #[error("no complete {CHECK_BEGIN} … {CHECK_END} block")]
    NoBlock,
    /// A line the block must have is missing.
    #[error("the check block has no {0} line")]
    Missing(&'static str),
    /// A malformed line.
    #[error("malformed check line {0:?}")]
    BadLine(String),
}

impl GuestCheck {
    /// Parses the last complete block in `text` (a serial log; carriage
    /// returns and lines outside the block are ignored).
    pub fn parse(text: &str) -> Result<GuestCheck, CheckParseError> {
        let lines: Vec<&str> = text.lines().map(|l| l.trim_matches(['\r', ' '])).collect();
        // A getty's prompt may precede the markers on their line.
        let end = lines
            .iter()
            .rposition(|l| l.ends_with(CHECK_END))
            .ok_or(CheckParseError::NoBlock)?;
        let begin = lines[..end]
            .iter()
            .rposition(|l| l.ends_with(CHECK_BEGIN))
            .ok_or(CheckParseError::NoBlock)?;
        let mut check = GuestCheck::default();
        let (mut version, mut target, mut stage2, mut kernel) = (false, false, false, false);
        for line in &lines[begin + 1..end] {
            if line.is_empty() {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[0] {
                "nic" => {
                    let [_, name, mac, addrs] = words[..] else {
                        return Err(CheckParseError::BadLine(line.to_string()));
                    };
                    check.nics.push(CheckNic {
                        name: name.into(),
                        mac: mac.to_ascii_lowercase(),
                        ipv4: if addrs == "-" {
                            Vec::new()
                        } else {
                            addrs.split(',').map(str::to_owned).collect()
                        },
                    });
                    continue;
                }
                "mount" => {
                    let [_, device, mountpoint, fstype] = words[..] else {
                        return Err(CheckParseError::BadLine(line.to_string()));
                    };
                    check.mounts.push(CheckMount {
                        device: device.into(),
                        mountpoint: mountpoint.into(),
                        fstype: fstype.into(),
                    });
                    continue;
                }
                _ => {}
            }
            let Some((key, value)) = line.split_once('=') else {
                check.other.push(line.to_string());
                continue;
            };
            match key {
                "version" => {
                    check.version = value
                        .parse()
                        .map_err(|_| CheckParseError::BadLine(line.to_string()))?;
                    version = true;
                }
                "system" => check.system = value.into(),
                "target" => {
                    let mut words = value.split_whitespace();
                    check.default_target = words.next().unwrap_or("").into();
                    for w in words {
                        let Some((t, state)) = w.split_once('=') else {
                            return Err(CheckParseError::BadLine(line.to_string()));
                        };
                        check.targets.insert(t.into(), state.into());
                    }
                    target = true;
                }
                "selinux" => check.selinux = value.into(),
                "stage2" => {
                    check.stage2_present = match value {
                        "present" => true,
                        "absent" => false,
                        _ => return Err(CheckParseError::BadLine(line.to_string())),
                    };
                    stage2 = true;
                }
                "hostname" => check.hostname = value.into(),
                "kernel" => {
                    check.kernel = value.into();
                    kernel = true;
                }
                _ => check.other.push(line.to_string()),
            }
        }
        for (present, what) in [
            (version, "version="),
            (target, "target="),
            (stage2, "stage2="),
            (kernel, "kernel="),
        ] {
            if !present {
                return Err(CheckParseError::Missing(what));
            }
        }
        Ok(check)
    }

    /// Whether `target` (`multi-user`, `rescue`, …) was active.
    pub fn is_active(&self, target: &str) -> bool {
        self.targets.get(target).is_some_and(|s| s == "active")
    }

    /// The mount at `mountpoint`.
    pub fn mount_at(&self, mountpoint: &str) -> Option<&CheckMount> {
        self.mounts.iter().find(|m| m.mountpoint == mountpoint)
    }

    /// The value of a `key=value` line the parser does not know (in
    /// [`GuestCheck::other`]).
    pub fn other_value(&self, key: &str) -> Option<&str> {
        self.other.iter().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::trim)
        })
    }

    /// The NIC with MAC `mac` (any case).
    pub fn nic_by_mac(&self, mac: &str) -> Option<&CheckNic> {
        let mac = mac.to_ascii_lowercase();
        self.nics.iter().find(|n| n.mac == mac)
    }
}

/// Waits until the serial log, from byte `mark` on, holds a complete check
/// block; parses it.
pub fn wait_for_check(vm: &mut Vm, mark: usize, timeout: Duration) -> Result<GuestCheck> {
    let text = vm.wait_for_serial_after(mark, CHECK_END, timeout)?;
    GuestCheck::parse(&text).map_err(|e| {
        Error::Missing(format!(
            "{e} in the serial log {}:\n{}",
            vm.serial_log_path().display(),
            crate::paths::tail_lines(&text.replace('\r', ""), 30)
        ))
    })
}

/// The `root=` argument of the last kernel command line in a serial log
/// (the kernel prints "Kernel command line: …" as it starts).
pub fn kernel_root_arg(serial: &str) -> Option<String> {
    serial
        .lines()
        .filter_map(|l| l.split_once("Kernel command line:").map(|(_, c)| c))
        .next_back()?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("root="))
        .map(str::to_owned)
}

/// Whether a `root=` value names the root in a way a move to other
/// hardware keeps: by file-system UUID, label or PARTUUID, or by a
/// device-mapper, LVM or md name, not by a kernel disk name (`/dev/sda1`,
/// `/dev/vdb2`, `/dev/nvme0n1p1`, which follow the order the disks are
/// found in).
pub fn is_stable_root(value: &str) -> bool {
    let v = value.to_ascii_uppercase();
    if ["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL="]
        .iter()
        .any(|p| v.starts_with(p))
    {
        return true;
    }
    let Some(dev) = value.strip_prefix("/dev/") else {
        return false;
    };
    if dev.starts_with("disk/by-") {
        return !dev.starts_with("disk/by-path/");
    }
    !["sd", "vd", "hd", "xvd", "nvme", "mmcblk"]
        .iter()
        .any(|p| dev.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selinux_check_script_adds_the_audit_line() {
        let script = selinux_check_script();
        assert_ne!(script, CHECK_SCRIPT);
        let audit = script.find("selinux-unlabeled=").unwrap();
        assert!(audit < script.find("stage2=present").unwrap());
        assert!(script.contains("find /boot /etc /opt -xdev"));
        assert_eq!(selinux_files()[1..], files()[1..]);
        let c = GuestCheck::parse(
            "OSAM-CHECK-BEGIN\nversion=1\ntarget=graphical.target multi-user=active\n\
             selinux=enforcing\nselinux-unlabeled=2 /boot/a /etc/b \nstage2=absent\n\
             kernel=6.1\nOSAM-CHECK-END\n",
        )
        .unwrap();
        assert_eq!(
            c.other_value(SELINUX_UNLABELED_KEY),
            Some("2 /boot/a /etc/b")
        );
        assert_eq!(c.other_value("selinux"), None);
    }

    #[test]
    fn root_arguments() {
        let log = "[    0.0] Command line: BOOT_IMAGE=/x root=/dev/sda1 ro\r\n\
                   [    0.0] Kernel command line: BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro\n\
                   reboot\n\
                   [    0.0] Kernel command line: BOOT_IMAGE=/boot/vmlinuz root=UUID=3c8f ro\n";
        assert_eq!(kernel_root_arg(log).as_deref(), Some("UUID=3c8f"));
        assert_eq!(kernel_root_arg("no kernel here"), None);
        assert_eq!(kernel_root_arg("Kernel command line: ro quiet"), None);
        for stable in [
            "UUID=3c8f",
            "uuid=3c8f",
            "LABEL=root",
            "PARTUUID=0b6c-01",
            "/dev/mapper/vg0-root",
            "/dev/vg0/root",
            "/dev/md0",
            "/dev/disk/by-uuid/3c8f",
        ] {
            assert!(is_stable_root(stable), "{stable}");
        }
        for unstable in [
            "/dev/sda1",
            "/dev/sdb1",
            "/dev/vda2",
            "/dev/nvme0n1p1",
            "/dev/xvda1",
            "/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part1",
            "sda1",
        ] {
            assert!(!is_stable_root(unstable), "{unstable}");
        }
    }

    const BLOCK: &str = "[  OK  ] Reached target multi-user.target\r\n\
        osam-deb12 login: OSAM-CHECK-BEGIN\r\n\
        version=1\r\n\
        system=degraded\r\n\
        target=multi-user.target multi-user=active graphical=inactive rescue=inactive emergency=inactive\r\n\
        nic ens4 52:54:00:4F:53:01 10.0.2.15/24\r\n\
        nic ens5 52:54:00:4f:53:02 -\r\n\
        nic eth2 52:54:00:4f:53:03 192.168.50.10/24,10.1.1.1/8\r\n\
        mount /dev/sda1 / ext4\r\n\
        [   12.345678] random: crng init done\r\n\
        mount /dev/sdb1 /data ext4\r\n\
        selinux=none\r\n\
        stage2=absent\r\n\
        hostname=osam-deb12\r\n\
        kernel=6.1.0-28-amd64\r\n\
        OSAM-CHECK-END\r\n\
        login: ";

    #[test]
    fn parses_a_block() {
        let c = GuestCheck::parse(BLOCK).unwrap();
        assert_eq!(c.version, 1);
        assert_eq!(c.system, "degraded");
        assert_eq!(c.default_target, "multi-user.target");
        assert!(c.is_active("multi-user"));
        assert!(!c.is_active("rescue"));
        assert_eq!(c.targets.len(), 4);
        assert_eq!(c.nics.len(), 3);
        assert_eq!(c.nics[0].name, "ens4");
        assert_eq!(c.nics[0].mac, "52:54:00:4f:53:01");
        assert_eq!(c.nics[0].ipv4, ["10.0.2.15/24"]);
        assert!(c.nics[1].ipv4.is_empty());
        assert_eq!(c.nics[2].ipv4.len(), 2);
        assert_eq!(c.nic_by_mac("52:54:00:4F:53:02").unwrap().name, "ens5");
        assert_eq!(c.mount_at("/").unwrap().device, "/dev/sda1");
        assert_eq!(c.mount_at("/data").unwrap().fstype, "ext4");
        assert_eq!(c.selinux, "none");
        assert!(!c.stage2_present);
        assert_eq!(c.hostname, "osam-deb12");
        assert_eq!(c.kernel, "6.1.0-28-amd64");
        assert_eq!(c.other, ["[   12.345678] random: crng init done"]);
    }

    #[test]
    fn takes_the_last_complete_block() {
        let second = BLOCK
            .replace("stage2=absent", "stage2=present")
            .replace("kernel=6.1.0-28-amd64", "kernel=6.1.0-29-amd64");
        let text = format!("{BLOCK}\n{second}\nOSAM-CHECK-BEGIN\nversion=1\n");
        let c = GuestCheck::parse(&text).unwrap();
        assert!(c.stage2_present);
        assert_eq!(c.kernel, "6.1.0-29-amd64");
    }

    #[test]
    fn rejects_incomplete_or_malformed_blocks() {
        assert_eq!(GuestCheck::parse("login:"), Err(CheckParseError::NoBlock));
        assert_eq!(
            GuestCheck::parse("OSAM-CHECK-BEGIN\nversion=1\n"),
            Err(CheckParseError::NoBlock)
        );
        assert_eq!(
            GuestCheck::parse(&BLOCK.replace("kernel=6.1.0-28-amd64\r\n", "")),
            Err(CheckParseError::Missing("kernel="))
        );
        assert!(matches!(
            GuestCheck::parse(&BLOCK.replace("nic ens5 52:54:00:4f:53:02 -", "nic ens5")),
            Err(CheckParseError::BadLine(_))
        ));
        assert!(matches!(
            GuestCheck::parse(&BLOCK.replace("stage2=absent", "stage2=maybe")),
            Err(CheckParseError::BadLine(_))
        ));
    }

    #[test]
    fn script_and_unit_are_what_the_recipe_installs() {
        let files = files();
        assert_eq!(files.len(), 3);
        assert!(CHECK_SCRIPT.starts_with("#!/bin/sh\n"));
        assert!(CHECK_SCRIPT.contains("> /dev/ttyS0"));
        assert!(CHECK_UNIT.contains("WantedBy=multi-user.target"));
        assert!(CHECK_UNIT.contains("After=network-online.target"));
        // The stage-2 code, not the data folder that stage 2 keeps.
        assert!(CHECK_SCRIPT.contains("[ -e /opt/vmware/hcx/osam/bin/osam-stage2 ]"));
        assert!(!CHECK_SCRIPT.contains("[ -e /opt/vmware/hcx/osam ]"));
    }
}
