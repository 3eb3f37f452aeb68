//! Boot Loader Specification entries (`/boot/loader/entries/*.conf`, RHEL
//! 8+, Fedora) and where RHEL 8 keeps the command line they refer to:
//! `kernelopts` in GRUB's environment block (`/boot/grub2/grubenv`) and
//! `/etc/kernel/cmdline` (read by `kernel-install` for new kernels).
//!
//! An entry whose `options` line says `$kernelopts` takes the command line
//! from grubenv: there the NIC options are only corrected, never added (they
//! are added to `kernelopts`), so they do not appear twice.

use super::cmdline::{self, CmdlineOpts};

pub const ENTRIES_DIR: &str = "/boot/loader/entries";
pub const GRUBENV: &str = "/boot/grub2/grubenv";
pub const KERNEL_CMDLINE: &str = "/etc/kernel/cmdline";
/// The size of a GRUB environment block.
pub const ENVBLK_SIZE: usize = 1024;
const ENVBLK_HEADER: &str = "# GRUB Environment Block\n";

/// An entry's `options` lines rewritten: (new text, changes, whether it
/// refers to `$kernelopts`).
pub fn rewrite_entry(text: &str, opts: &CmdlineOpts) -> (String, Vec<String>, bool) {
    let mut changes = Vec::new();
    let mut uses_kernelopts = false;
    let mut out = String::with_capacity(text.len() + 32);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let t = body.trim_start();
        let indent = &body[..body.len() - t.len()];
        let Some(args) = t
            .strip_prefix("options")
            .filter(|a| a.is_empty() || a.starts_with([' ', '\t']))
        else {
            out.push_str(line);
            continue;
        };
        let refers = args.split_whitespace().any(|w| w == "$kernelopts");
        uses_kernelopts |= refers;
        let o = CmdlineOpts {
            add_nic_options: opts.add_nic_options && !refers,
            ..*opts
        };
        let r = cmdline::rewrite_with_changes(args, &o);
        if r.changes.is_empty() {
            out.push_str(line);
            continue;
        }
        // An empty `options` gets its separating space.
        let sep = if args.is_empty() && !r.text.starts_with([' ', '\t']) {
            " "
        } else {
            ""
        };
        out.push_str(indent);
        out.push_str("options");
        out.push_str(sep);
        out.push_str(&r.text);
        out.push_str(&line[body.len()..]);
        changes.extend(r.changes);
    }
    (out, changes, uses_kernelopts)
}

/// What went wrong with a grubenv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrubenvError {
    /// Not a GRUB environment block (no header).
    NotAnEnvBlock,
    /// The new contents do not fit into the block's size.
    TooLarge { need: usize, size: usize },
}

impl std::fmt::Display for GrubenvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrubenvError::NotAnEnvBlock => {
                f.write_str("it does not start with \"# GRUB Environment Block\"")
            }
            GrubenvError::TooLarge { need, size } => write!(
                f,
                "the new variables need {need} bytes and the block holds {size}"
            ),
        }
    }
}

/// A rewritten environment block and what changed in it.
pub type NewGrubenv = (Vec<u8>, Vec<String>);

/// The value of `kernelopts` in an environment block.
pub fn grubenv_kernelopts(block: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(block);
    text.lines()
        .find_map(|l| l.strip_prefix("kernelopts=").map(str::to_string))
}

/// Rewrites `kernelopts=` in a GRUB environment block. The block keeps
/// its size (1024 bytes, or its own when larger), padded with `#` as GRUB
/// writes it. `Ok(None)`: no `kernelopts`, or nothing to change.
pub fn rewrite_grubenv(
    block: &[u8],
    opts: &CmdlineOpts,
) -> Result<Option<NewGrubenv>, GrubenvError> {
    if !block.starts_with(ENVBLK_HEADER.as_bytes()) {
        return Err(GrubenvError::NotAnEnvBlock);
    }
    // The variables end at the last newline; `#` padding follows.
    let end = block
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(block.len(), |i| i + 1);
    let vars = String::from_utf8_lossy(&block[..end]);
    let mut changes = Vec::new();
    let mut new_vars = String::with_capacity(vars.len() + 32);
    for line in vars.split_inclusive('\n') {
        match line
            .strip_prefix("kernelopts=")
            .map(|v| v.trim_end_matches('\n'))
        {
            Some(value) => {
                let r = cmdline::rewrite_with_changes(value, opts);
                new_vars.push_str("kernelopts=");
                new_vars.push_str(&r.text);
                new_vars.push('\n');
                changes.extend(r.changes);
            }
            None => new_vars.push_str(line),
        }
    }
    if changes.is_empty() {
        return Ok(None);
    }
    let size = block.len().max(ENVBLK_SIZE);
    if new_vars.len() > size {
        return Err(GrubenvError::TooLarge {
            need: new_vars.len(),
            size,
        });
    }
    let mut out = new_vars.into_bytes();
    out.resize(size, b'#');
    Ok(Some((out, changes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::identity::IdentityMap;

    fn envblk(vars: &str) -> Vec<u8> {
        let mut b = format!("{ENVBLK_HEADER}{vars}").into_bytes();
        b.resize(ENVBLK_SIZE, b'#');
        b
    }

    fn opts(map: &IdentityMap) -> CmdlineOpts<'_> {
        CmdlineOpts {
            map,
            rename_nics: true,
            add_nic_options: true,
            target_drivers: &[],
        }
    }

    #[test]
    fn grubenv_stays_1024_bytes() {
        let map = IdentityMap::from_pairs(&[("UUID=old", "UUID=new-and-much-longer")]);
        let block = envblk(
            "saved_entry=0a1b-4.18.0-477.el8.x86_64\nkernelopts=root=/dev/mapper/rhel-root ro crashkernel=auto resume=UUID=old rd.lvm.lv=rhel/root rhgb quiet console=hvc0\nboot_success=0\n",
        );
        let (new, changes) = rewrite_grubenv(&block, &opts(&map)).unwrap().unwrap();
        assert_eq!(new.len(), 1024);
        assert!(new.ends_with(b"#"));
        let opts_line = grubenv_kernelopts(&new).unwrap();
        assert_eq!(
            opts_line,
            "root=/dev/mapper/rhel-root ro crashkernel=auto resume=UUID=new-and-much-longer rd.lvm.lv=rhel/root rhgb quiet net.ifnames=0 biosdevname=0"
        );
        assert_eq!(changes.len(), 4);
        let text = String::from_utf8(new.clone()).unwrap();
        assert!(text.contains("\nboot_success=0\n") && text.contains("saved_entry=0a1b"));
        assert_eq!(rewrite_grubenv(&new, &opts(&map)).unwrap(), None);
        // Without kernelopts: nothing to do.
        assert_eq!(
            rewrite_grubenv(&envblk("saved_entry=x\n"), &opts(&map)).unwrap(),
            None
        );
        assert_eq!(
            rewrite_grubenv(b"garbage", &opts(&map)),
            Err(GrubenvError::NotAnEnvBlock)
        );
        let full = envblk(&format!("kernelopts=ro {}\n", "x".repeat(960)));
        assert!(matches!(
            rewrite_grubenv(&full, &opts(&map)),
            Err(GrubenvError::TooLarge { .. })
        ));
    }

    #[test]
    fn entries() {
        let map = IdentityMap::from_pairs(&[("/dev/sda2", "UUID=r00t")]);
        let rhel8 = "title Red Hat Enterprise Linux (4.18.0-477.el8.x86_64) 8.8 (Ootpa)\nversion 4.18.0-477.el8.x86_64\nlinux /vmlinuz-4.18.0-477.el8.x86_64\ninitrd /initramfs-4.18.0-477.el8.x86_64.img $tuned_initrd\noptions $kernelopts $tuned_params console=hvc0\nid rhel-20230101-4.18.0-477.el8.x86_64\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class kernel\n";
        let (new, changes, refers) = rewrite_entry(rhel8, &opts(&map));
        assert!(refers);
        assert!(
            new.contains("\noptions $kernelopts $tuned_params\n"),
            "{new}"
        );
        assert_eq!(changes.len(), 1);
        let rhel9 = "title Rocky Linux\nversion 5.14.0-362.el9.x86_64\nlinux /vmlinuz-5.14.0-362.el9.x86_64\noptions root=/dev/sda2 ro crashkernel=1G-4G:192M rhgb quiet\n";
        let (new, _, refers) = rewrite_entry(rhel9, &opts(&map));
        assert!(!refers);
        assert!(new.contains("\noptions root=UUID=r00t ro crashkernel=1G-4G:192M rhgb quiet net.ifnames=0 biosdevname=0\n"));
        assert!(rewrite_entry(&new, &opts(&map)).1.is_empty());
        assert_eq!(
            rewrite_entry("options\n", &opts(&map)).0,
            "options net.ifnames=0 biosdevname=0\n"
        );
    }
}
