//! GRUB legacy (0.97: RHEL 5/6, SLES 11, old Debian): `grub.conf` /
//! `menu.lst`, whose `kernel` lines carry the command line, and
//! `device.map`. Debian's `update-grub` writes later kernels' lines from
//! the `# kopt=` and `# defoptions=` comments: those are rewritten too.
//!
//! `root (hd0,0)` lines are kept: GRUB's BIOS disk numbers do not change
//! with the migration (the boot disk is BIOS disk 0 on VMware too).
//! `device.map` is what `grub` reads to find the disk behind `(hd0)`: it
//! becomes one line for the target boot disk, as the stack names it (the
//! install runs from the stack), since the source's names (`/dev/xvda`,
//! `/dev/vda`) do not exist here.
//!
//! The install is `grub --batch` fed `device`, `root` and `setup` (through
//! `sh -c`, the planned commands having no stdin), not `grub-install`:
//! GRUB legacy's `grub-install` finds `/boot` through the guest's
//! `/etc/mtab`, a regular file on RHEL 5/6 that still lists the source's
//! devices, and fails in the chroot.

use super::cmdline::{self, CmdlineOpts};

/// Where the configuration may be, in order of preference (`menu.lst` is
/// a symlink to `grub.conf` on RHEL).
pub const CONFIGS: &[&str] = &[
    "/boot/grub/grub.conf",
    "/boot/grub/menu.lst",
    "/boot/efi/EFI/redhat/grub.conf",
];
pub const DEVICE_MAP: &str = "/boot/grub/device.map";

/// Debian's `update-grub` (grub-legacy) writes the `kernel` lines of the
/// kernels it adds later from magic comments: `# kopt=` (every kernel, or
/// one version with `# kopt_2_6_32=`) and `# defoptions=` (the default
/// entries only). Where a line is one: the value's start, and whether it
/// is a `kopt` (which gets the NIC options).
fn update_grub_option(body: &str) -> Option<(usize, bool)> {
    let rest = body.trim_start().strip_prefix('#')?;
    let r = rest.trim_start_matches([' ', '\t']);
    let (name, _) = r.split_once('=')?;
    let kopt = name == "kopt"
        || name.strip_prefix("kopt_").is_some_and(|v| {
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if !kopt && name != "defoptions" {
        return None;
    }
    Some((body.len() - r.len() + name.len() + 1, kopt))
}

/// The `kernel` lines' arguments rewritten (the kernel path and GRUB's own
/// `--` options before it kept), and Debian's `# kopt=` / `# defoptions=`
/// (see [`update_grub_option`]).
pub fn rewrite_config(text: &str, opts: &CmdlineOpts) -> (String, Vec<String>) {
    let mut changes = Vec::new();
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if let Some((start, kopt)) = update_grub_option(body) {
            let o = CmdlineOpts {
                add_nic_options: kopt && opts.add_nic_options,
                ..*opts
            };
            let r = cmdline::rewrite_with_changes(&body[start..], &o);
            if r.changes.is_empty() {
                out.push_str(line);
            } else {
                out.push_str(&body[..start]);
                out.push_str(&r.text);
                out.push_str(&line[body.len()..]);
                changes.extend(r.changes);
            }
            continue;
        }
        let t = body.trim_start();
        let is_kernel = t
            .strip_prefix("kernel")
            .is_some_and(|r| r.starts_with([' ', '\t', '=']));
        if !is_kernel {
            out.push_str(line);
            continue;
        }
        // Skip `kernel`, GRUB's options and the image path.
        let mut pos = body.len() - t.len() + "kernel".len();
        let mut found_path = false;
        while let Some((start, end)) = next_word(body, pos) {
            pos = end;
            let w = &body[start..end];
            if w == "=" || w.starts_with("--") {
                continue;
            }
            found_path = true;
            break;
        }
        if !found_path {
            out.push_str(line);
            continue;
        }
        let r = cmdline::rewrite_with_changes(&body[pos..], opts);
        if r.changes.is_empty() {
            out.push_str(line);
            continue;
        }
        out.push_str(&body[..pos]);
        if !r.text.starts_with([' ', '\t']) && !r.text.is_empty() {
            out.push(' ');
        }
        out.push_str(&r.text);
        out.push_str(&line[body.len()..]);
        changes.extend(r.changes);
    }
    (out, changes)
}

/// The byte range of the next whitespace-separated word from `pos`.
fn next_word(s: &str, pos: usize) -> Option<(usize, usize)> {
    let rest = &s[pos..];
    let start = pos + rest.find(|c: char| !c.is_whitespace())?;
    let end = s[start..]
        .find(char::is_whitespace)
        .map_or(s.len(), |i| start + i);
    Some((start, end))
}

/// The `root (hdN,M)` of the default entry (`default=N`, else the first
/// entry), or the first `root` line anywhere.
pub fn default_root(text: &str) -> Option<String> {
    let mut default = 0usize;
    let mut entry: Option<usize> = None;
    let mut first = None;
    let mut found = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("default") {
            let v = v.trim_start_matches([' ', '\t', '=']).trim();
            if entry.is_none() {
                default = v.parse().unwrap_or(0);
            }
        } else if t.starts_with("title") {
            entry = Some(entry.map_or(0, |e| e + 1));
        } else if let Some(v) = t.strip_prefix("root") {
            let v = v.trim_start_matches([' ', '\t', '=']).trim();
            if !(v.starts_with("(hd") && v.ends_with(')')) {
                continue;
            }
            if first.is_none() {
                first = Some(v.to_string());
            }
            if entry == Some(default) && found.is_none() {
                found = Some(v.to_string());
            }
        }
    }
    found.or(first)
}

/// `device.map` for the target: the comments kept, `(hd0)` the boot
/// device, no other disk.
pub fn device_map(existing: Option<&str>, boot_device: &str) -> String {
    let mut out: String = existing
        .unwrap_or("# this device map was generated by anaconda\n")
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("(hd0)     {boot_device}\n"));
    out
}

/// The `grub --batch` install, as `sh -c` argv.
pub fn install_argv(root: &str, boot_device: &str) -> Vec<String> {
    let script = format!(
        "printf 'device (hd0) {boot_device}\\nroot {root}\\nsetup (hd0)\\nquit\\n' | \
         grub --batch --no-floppy --device-map={DEVICE_MAP}"
    );
    vec!["sh".into(), "-c".into(), script]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::identity::IdentityMap;

    pub const RHEL6: &str = "\
# grub.conf generated by anaconda
#
# Note that you do not have to rerun grub after making changes to this file
#boot=/dev/xvda
default=1
timeout=5
splashimage=(hd0,0)/grub/splash.xpm.gz
hiddenmenu
title CentOS (2.6.32-754.35.1.el6.x86_64)
\troot (hd0,0)
\tkernel /vmlinuz-2.6.32-754.35.1.el6.x86_64 ro root=/dev/xvda2 rd_NO_LUKS LANG=en_US.UTF-8 console=hvc0 xencons=tty rd_NO_MD KEYTABLE=us rd_NO_DM
\tinitrd /initramfs-2.6.32-754.35.1.el6.x86_64.img
title CentOS (2.6.32-754.el6.x86_64)
\troot (hd0,1)
\tkernel /boot/vmlinuz-2.6.32-754.el6.x86_64 ro root=/dev/xvda2 console=hvc0
\tinitrd /boot/initramfs-2.6.32-754.el6.x86_64.img
";

    #[test]
    fn rhel6_grub_conf() {
        let map = IdentityMap::from_pairs(&[("/dev/xvda2", "UUID=6a6e")]);
        let o = CmdlineOpts {
            map: &map,
            rename_nics: true,
            add_nic_options: true,
            target_drivers: &[],
        };
        let (new, changes) = rewrite_config(RHEL6, &o);
        assert!(new.contains("\n\tkernel /vmlinuz-2.6.32-754.35.1.el6.x86_64 ro root=UUID=6a6e rd_NO_LUKS LANG=en_US.UTF-8 rd_NO_MD KEYTABLE=us rd_NO_DM net.ifnames=0 biosdevname=0\n"), "{new}");
        assert!(new.contains("\n\troot (hd0,0)\n"));
        assert!(new.contains("#boot=/dev/xvda\n"));
        assert!(!changes.is_empty());
        assert!(rewrite_config(&new, &o).1.is_empty());
        assert_eq!(default_root(RHEL6).as_deref(), Some("(hd0,1)"));
        assert_eq!(
            default_root("title a\n root (hd0,0)\n").as_deref(),
            Some("(hd0,0)")
        );
        assert_eq!(
            rewrite_config("kernel --no-mem-option /vmlinuz console=xvc0\n", &o).0,
            "kernel --no-mem-option /vmlinuz net.ifnames=0 biosdevname=0\n"
        );
    }

    #[test]
    fn debian_update_grub_magic_comments() {
        let map = IdentityMap::from_pairs(&[("/dev/cciss/c0d0p2", "UUID=9a8b")]);
        let o = CmdlineOpts {
            map: &map,
            rename_nics: true,
            add_nic_options: true,
            target_drivers: &[],
        };
        let menu = "\
## e.g. kopt=root=/dev/hda1 ro
# kopt=root=/dev/cciss/c0d0p2 ro
#kopt_3_2_0_4_amd64=root=/dev/cciss/c0d0p2 ro console=hvc0
# groot=(hd0,0)
# defoptions=quiet console=hvc0
# altoptions=(single-user mode) single
# kopt = not one
title\t\tDebian GNU/Linux, kernel 3.2.0-4-amd64
kernel\t\t/vmlinuz-3.2.0-4-amd64 root=/dev/cciss/c0d0p2 ro quiet
";
        let (new, changes) = rewrite_config(menu, &o);
        assert_eq!(
            new,
            "\
## e.g. kopt=root=/dev/hda1 ro
# kopt=root=UUID=9a8b ro net.ifnames=0 biosdevname=0
#kopt_3_2_0_4_amd64=root=UUID=9a8b ro net.ifnames=0 biosdevname=0
# groot=(hd0,0)
# defoptions=quiet
# altoptions=(single-user mode) single
# kopt = not one
title\t\tDebian GNU/Linux, kernel 3.2.0-4-amd64
kernel\t\t/vmlinuz-3.2.0-4-amd64 root=UUID=9a8b ro quiet net.ifnames=0 biosdevname=0
"
        );
        assert!(changes.iter().any(|c| c == "console=hvc0 removed"));
        assert!(rewrite_config(&new, &o).1.is_empty(), "idempotent");
    }

    #[test]
    fn device_map_names_the_target_disk() {
        assert_eq!(
            device_map(
                Some(
                    "# this device map was generated by anaconda\n(hd0)     /dev/xvda\n(hd1) /dev/xvdb\n"
                ),
                "/dev/sda"
            ),
            "# this device map was generated by anaconda\n(hd0)     /dev/sda\n"
        );
        let argv = install_argv("(hd0,0)", "/dev/sda");
        assert_eq!(argv[0], "sh");
        assert!(argv[2].contains("root (hd0,0)\\nsetup (hd0)"));
    }
}
