//! Errors that reach result.json: each has a stable, documented code and a
//! sentence a field engineer can act on.

use serde::{Deserialize, Serialize};

/// The stable error and warning codes of result.json (see docs/protocol.md).
pub mod codes {
    /// An input file is malformed, has a wrong type or value, or is missing.
    pub const CONFIG_INVALID: &str = "config.invalid";
    /// An input file is missing.
    pub const CONFIG_MISSING: &str = "config.missing";
    /// An input file is larger than the stack accepts (1 MiB).
    pub const CONFIG_TOO_LARGE: &str = "config.too_large";
    /// An input file names a `version` this stack does not know.
    pub const CONFIG_UNSUPPORTED_VERSION: &str = "config.unsupported_version";
    /// A field the stack does not know (a warning).
    pub const CONFIG_UNKNOWN_FIELD: &str = "config.unknown_field";
    /// A valid field that has no effect given the other inputs, e.g. a
    /// `targetName` while `renameInterfaces` is false (a warning).
    pub const CONFIG_IGNORED_FIELD: &str = "config.ignored_field";
    /// A hint in the input disagrees with what is on disk (a warning).
    pub const CONFIG_MISMATCH: &str = "config.mismatch";
    /// A replica disk named in replica-disk-map.json never appeared.
    pub const DISK_NOT_FOUND: &str = "disk.not_found";
    /// A replica disk's size differs from `capacityBytes`.
    pub const DISK_CAPACITY: &str = "disk.capacity_mismatch";
    /// No guest root file system was found.
    pub const GUEST_ROOT_NOT_FOUND: &str = "guest.root_not_found";
    /// More than one tree looks like a guest root.
    pub const GUEST_MULTIPLE_ROOTS: &str = "guest.multiple_roots";
    /// The guest tree has no recognisable operating system.
    pub const GUEST_UNKNOWN_OS: &str = "guest.unknown_os";
    /// The guest's operating system is recognised but not supported.
    pub const GUEST_UNSUPPORTED_OS: &str = "guest.unsupported_os";
    /// The guest's architecture cannot be fixed from this stack.
    pub const GUEST_ARCH_MISMATCH: &str = "guest.arch_mismatch";
    /// The guest has no kernel installed.
    pub const GUEST_NO_KERNEL: &str = "guest.no_kernel";
    /// A guest file could not be read or written.
    pub const GUEST_IO: &str = "guest.io";
    /// A guest path that must not be written through: a FIFO, a device
    /// node, a dangling symlink or a directory where a file should be.
    pub const GUEST_UNSAFE_PATH: &str = "guest.unsafe_path";
    /// The guest's architecture could not be read from its binaries (a
    /// warning).
    pub const GUEST_ARCH_UNKNOWN: &str = "guest.arch_unknown";
    /// No boot loader configuration was found in the guest (a warning at
    /// detection; the boot loader step decides).
    pub const GUEST_NO_BOOTLOADER: &str = "guest.no_bootloader";
    /// The guest's boot loader is not one the stack configures (systemd-boot,
    /// extlinux) or none was found: the boot loader is left as it is.
    pub const BOOTLOADER_UNSUPPORTED: &str = "bootloader.unsupported";
    /// The target firmware is EFI and the guest has no EFI system partition
    /// mounted at `/boot/efi` (or `/efi`): a BIOS-installed guest cannot be
    /// converted to UEFI boot offline.
    pub const BOOTLOADER_NO_ESP: &str = "bootloader.no_esp";
    /// The target firmware is EFI and the ESP holds no shim or GRUB image
    /// for the distribution where it cannot be installed from the guest
    /// (RHEL 8+: reinstall `shim-x64` and `grub2-efi-x64`).
    pub const BOOTLOADER_EFI_FILES_MISSING: &str = "bootloader.efi_files_missing";
    /// The target firmware is BIOS and the guest has no GRUB `i386-pc`
    /// modules to install (e.g. `grub2-pc-modules` / `grub-pc-bin` missing
    /// on a guest that booted with UEFI).
    pub const BOOTLOADER_BIOS_MODULES_MISSING: &str = "bootloader.bios_modules_missing";
    /// GRUB's environment block (`grubenv`) is not one, or the new
    /// `kernelopts` do not fit into it.
    pub const BOOTLOADER_GRUBENV: &str = "bootloader.grubenv";
    /// A boot loader detail was guessed (a warning): the boot disk's device
    /// name in the stack, the ESP partition number, a missing ESP stub
    /// `grub.cfg`, or a GRUB legacy `root` line.
    pub const BOOTLOADER_GUESSED: &str = "bootloader.guessed";
    /// Ubuntu's `GRUB_FORCE_PARTUUID` (in `/etc/default/grub` or a
    /// `/etc/default/grub.d` drop-in) names a partition whose PARTUUID on
    /// the target is not known (its partition table was re-created): the
    /// setting is commented out, so that `grub-mkconfig` names the root by
    /// UUID (a warning).
    pub const BOOTLOADER_FORCE_PARTUUID_DISABLED: &str = "bootloader.force_partuuid_disabled";
    /// `GRUB_DISABLE_LINUX_UUID=true` (in `/etc/default/grub` or a
    /// drop-in) would make `grub-mkconfig` name the root by the device
    /// name the stack sees: the setting is commented out, so that the root
    /// is named by UUID (a warning).
    pub const BOOTLOADER_LINUX_UUID_ENABLED: &str = "bootloader.linux_uuid_enabled";
    /// The original of a file a command regenerates (an initramfs image,
    /// `grub.cfg`) was not saved: the guest's file system had too little
    /// room to spare (a warning; undo cannot restore that file).
    pub const BACKUP_SKIPPED: &str = "backup.skipped";
    /// The stack has no stage-2 agent for this guest (a warning): the
    /// guest is not switched to single-user mode.
    pub const STAGE2_AGENT_MISSING: &str = "stage2.agent_missing";
    /// The guest's run level could not be found (a warning): it is not
    /// switched to single-user mode.
    pub const STAGE2_NO_RUNLEVEL: &str = "stage2.no_runlevel";
    /// Rebuilding an initramfs failed.
    pub const INITRAMFS_FAILED: &str = "initramfs.failed";
    /// Installing or configuring the boot loader failed.
    pub const BOOTLOADER_FAILED: &str = "bootloader.failed";
    /// A command in the guest failed.
    pub const COMMAND_FAILED: &str = "command.failed";
    /// A command or a wait ran out of time.
    pub const TIMEOUT: &str = "timeout";
    /// The transport for /tmp/fixup could not be set up.
    pub const TRANSPORT_FAILED: &str = "transport.failed";
    /// BEGIN did not come within `osam.begin_timeout`.
    pub const BEGIN_TIMEOUT: &str = "begin.timeout";
    /// Stage 1 is already running on this machine: another `fixupctl run`
    /// or `fixupctl undo` holds the stage-1 lock (the message names it).
    pub const STAGE1_LOCKED: &str = "stage1.locked";
    /// The test-only hold file (`osam-test-hold`) was still there after
    /// the longest hold; the run went on (a warning; tests only).
    pub const TEST_HOLD_TIMEOUT: &str = "test.hold_timeout";
    /// A network configuration file still names a source NIC name or
    /// source MAC after the network fixup planned its changes (a warning
    /// naming the file and line).
    pub const NETWORK_STALE_REFERENCE: &str = "network.stale_reference";
    /// A name pattern (glob) in the guest's network configuration matched
    /// a source NIC name but does not match its new name; it is left as it
    /// is (a warning).
    pub const NETWORK_GLOB_MATCH: &str = "network.glob_match";
    /// A network configuration file renamed after its NIC replaces a file
    /// that already had the new name (a warning; the original is saved).
    pub const NETWORK_FILE_REPLACED: &str = "network.file_replaced";
    /// A network configuration file could not be read and is left as it
    /// is (a warning).
    pub const NETWORK_UNREADABLE: &str = "network.unreadable";
    /// An internal error of the stack (a bug): the message says where.
    pub const INTERNAL: &str = "internal";
    /// The guest's files name devices in more than one kernel naming scheme
    /// (`/dev/sda1` and `/dev/vda1`), so they cannot be tied to replica disks
    /// by position; those names are left as they are (a warning).
    pub const STORAGE_AMBIGUOUS_NAMES: &str = "storage.ambiguous_device_names";
    /// A `/dev/disk/by-id` or `by-path` link in the guest's files could not
    /// be tied to a replica disk and is left as it is (a warning).
    pub const STORAGE_UNMAPPED_LINK: &str = "storage.unmapped_link";
    /// Neither the probe nor `targetUuid` gives a partition's target UUID;
    /// its `sourceUuid` is assumed (a block-level copy keeps it) (a
    /// warning).
    pub const STORAGE_TARGET_UUID_ASSUMED: &str = "storage.target_uuid_assumed";
    /// The probed UUID of a target file system differs from its
    /// `targetUuid`; the probe wins (a warning).
    pub const STORAGE_UUID_MISMATCH: &str = "storage.uuid_mismatch";
    /// A replica partition has neither a known UUID nor a known target
    /// device name; references to it are left as they are (a warning).
    pub const STORAGE_NO_TARGET_IDENTITY: &str = "storage.no_target_identity";
    /// The guest's root file system is on (or can only be inside) a LUKS
    /// encrypted volume: encrypted guests are not supported; the message
    /// names the device.
    pub const STORAGE_LUKS_UNSUPPORTED: &str = "storage.luks_unsupported";
    /// A LUKS encrypted volume on the replicas that the guest's root does
    /// not need was skipped: what it holds is neither mounted nor fixed (a
    /// warning naming the device).
    pub const STORAGE_LUKS_SKIPPED: &str = "storage.luks_skipped";
    /// Two LVM volume groups on the replicas have the same name: the stack
    /// cannot tell which one the guest uses (nor could the guest at boot);
    /// the message names both with their UUIDs and PVs.
    pub const STORAGE_VG_NAME_CLASH: &str = "storage.vg_name_clash";
    /// An md array could not be assembled or an LVM volume group could not
    /// be activated (a warning naming the array or VG; the command's output
    /// is in fixup.log).
    pub const STORAGE_ASSEMBLY_FAILED: &str = "storage.assembly_failed";
    /// An LVM volume group could not be deactivated or an md array stopped
    /// after the guest was unmounted (a warning; the guest's file systems
    /// are already unmounted).
    pub const STORAGE_TEARDOWN_FAILED: &str = "storage.teardown_failed";
    /// An fstab entry names a block device that is not among the replicas:
    /// `nofail` was added so that the boot does not stall on it (a warning).
    pub const FSTAB_DEVICE_NOT_REPLICATED: &str = "fstab.device_not_replicated";
    /// The root file system's fstab entry names a device that is not among
    /// the replicas; it is left as it is (a warning: check the disk map).
    pub const FSTAB_ROOT_NOT_REPLICATED: &str = "fstab.root_not_replicated";
    /// With `fstabIdentifiers: keep`, a device name had to change because
    /// the target names the device differently (a warning).
    pub const FSTAB_DEVICE_NAME_CHANGED: &str = "fstab.device_name_changed";
    /// An LVM `filter`/`global_filter` accepted source device names that do
    /// not exist on the target; it was relaxed to accept every device (a
    /// warning).
    pub const FSTAB_LVM_FILTER_RELAXED: &str = "fstab.lvm_filter_relaxed";
    /// The LVM devices file (`/etc/lvm/devices/system.devices`) named the
    /// source hardware; it was removed so that LVM scans every device (a
    /// warning: `vgimportdevices -a` re-creates it).
    pub const FSTAB_LVM_DEVICES_FILE_REMOVED: &str = "fstab.lvm_devices_file_removed";
    /// An mdadm.conf `devices=` restriction or `DEVICE` line named source
    /// devices and was relaxed (a warning).
    pub const FSTAB_MDADM_RELAXED: &str = "fstab.mdadm_relaxed";
    /// A storage configuration file other than /etc/fstab could not be read
    /// and was skipped (a warning).
    pub const FSTAB_UNREADABLE: &str = "fstab.unreadable";
    /// The target storage controller's driver is in none of the guest
    /// kernels that will boot (neither a module nor built in).
    pub const PRECONDITION_DRIVER_MISSING: &str = "precondition.driver_missing";
    /// A kernel lacks the target NIC's driver, or an older kernel lacks the
    /// storage controller's driver (a warning).
    pub const PRECONDITION_DRIVER_WARNING: &str = "precondition.driver_warning";
    /// A kernel's modules could not be checked: no modules.dep,
    /// modules.builtin or config file (a warning).
    pub const PRECONDITION_UNVERIFIED: &str = "precondition.unverified";
    /// A module the initramfs needs (root file system, dm, md, an extra
    /// driver) is not among the kernel's modules: an error for the default
    /// kernel, a warning for the others.
    pub const INITRAMFS_MODULE_MISSING: &str = "initramfs.module_missing";
    /// The guest has none of dracut, mkinitrd and update-initramfs.
    pub const INITRAMFS_NO_TOOL: &str = "initramfs.no_tool";
    /// An existing initramfs image could not be read or listed; it is
    /// rebuilt (a warning).
    pub const INITRAMFS_UNREADABLE: &str = "initramfs.unreadable";
}

/// One error of result.json's `errors` (and a step's `error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct FixupError {
    pub code: String,
    pub step: Option<String>,
    pub message: String,
    pub detail: Option<String>,
}

impl FixupError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        FixupError {
            code: code.to_string(),
            step: None,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn in_step(mut self, step: &str) -> Self {
        if self.step.is_none() {
            self.step = Some(step.to_string());
        }
        self
    }
}

/// One warning of result.json's `warnings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub step: Option<String>,
    pub message: String,
}

impl Warning {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Warning {
            code: code.to_string(),
            step: None,
            message: message.into(),
        }
    }
}
