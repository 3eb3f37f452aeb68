//! A kernel module's `.modinfo` section: `key=value` strings separated by
//! NUL bytes (name, depends, alias, softdep, firmware, …), read from the
//! ELF relocatable object of either word size.

use goblin::container::Ctx;
use goblin::elf::{Elf, SectionHeader};

/// The parts of a module's .modinfo this builder uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=` (normalized: `-` → `_`), where present.
    pub name: Option<String>,
    /// `depends=`: the modules it needs loaded first (normalized).
    pub depends: Vec<String>,
    /// `alias=` patterns, in file order.
    pub aliases: Vec<String>,
    /// `softdep=` `pre:` names (module names or aliases, as written).
    pub softdep_pre: Vec<String>,
    /// `softdep=` `post:` names.
    pub softdep_post: Vec<String>,
    /// `firmware=` files.
    pub firmware: Vec<String>,
}

/// A module name as the kernel and kmod compare them (`-` and `_` alike).
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Reads the .modinfo section of an (uncompressed) module.
pub fn parse_module(bytes: &[u8]) -> Result<ModInfo, String> {
    let section = modinfo_section(bytes)?;
    Ok(parse_strings(section))
}

fn modinfo_section(bytes: &[u8]) -> Result<&[u8], String> {
    let header = Elf::parse_header(bytes).map_err(|e| format!("not an ELF file: {e}"))?;
    let container = header.container().map_err(|e| e.to_string())?;
    let endian = header.endianness().map_err(|e| e.to_string())?;
    let ctx = Ctx::new(container, endian);
    let shoff = usize::try_from(header.e_shoff).map_err(|e| e.to_string())?;
    let shdrs = SectionHeader::parse(bytes, shoff, usize::from(header.e_shnum), ctx)
        .map_err(|e| format!("reading section headers: {e}"))?;
    let range = |sh: &SectionHeader| {
        sh.file_range()
            .filter(|r| r.end <= bytes.len())
            .ok_or_else(|| "a section runs past the end of the file".to_owned())
    };
    let shstr = shdrs
        .get(usize::from(header.e_shstrndx))
        .ok_or("no section name table")?;
    let names = &bytes[range(shstr)?];
    for sh in &shdrs {
        let Some(name) = names.get(sh.sh_name..) else {
            continue;
        };
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        if &name[..end] == b".modinfo" {
            return Ok(&bytes[range(sh)?]);
        }
    }
    Err("no .modinfo section".to_owned())
}

/// Parses the NUL-separated `key=value` strings of a .modinfo section.
pub fn parse_strings(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for raw in section.split(|&b| b == 0) {
        let Ok(s) = std::str::from_utf8(raw) else {
            continue;
        };
        let Some((key, value)) = s.split_once('=') else {
            continue;
        };
        match key {
            "name" => info.name = Some(normalize_name(value)),
            "depends" => info.depends.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(normalize_name),
            ),
            "alias" => info.aliases.push(value.to_owned()),
            "softdep" => parse_softdep(value, &mut info.softdep_pre, &mut info.softdep_post),
            "firmware" => info.firmware.push(value.to_owned()),
            _ => {}
        }
    }
    info
}

/// `pre: a b post: c` → pre `[a, b]`, post `[c]`.
pub fn parse_softdep(value: &str, pre: &mut Vec<String>, post: &mut Vec<String>) {
    let mut into_post = None;
    for word in value.split_whitespace() {
        match word {
            "pre:" => into_post = Some(false),
            "post:" => into_post = Some(true),
            w => match into_post {
                Some(false) => pre.push(w.to_owned()),
                Some(true) => post.push(w.to_owned()),
                None => {}
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn parses_strings() {
        let section = b"alias=fs-9p\0depends=9pnet,fscache,t10-pi\0name=9p\0\
softdep=pre: crc32c post: foo bar\0alias=9p\0license=GPL\0\0\0";
        let info = parse_strings(section);
        assert_eq!(info.name.as_deref(), Some("9p"));
        assert_eq!(info.depends, ["9pnet", "fscache", "t10_pi"]);
        assert_eq!(info.aliases, ["fs-9p", "9p"]);
        assert_eq!(info.softdep_pre, ["crc32c"]);
        assert_eq!(info.softdep_post, ["foo", "bar"]);
        assert!(parse_strings(b"depends=\0").depends.is_empty());
    }

    #[test]
    fn rejects_non_elf() {
        assert!(parse_module(b"not an elf").is_err());
    }

    /// A minimal ELF64 relocatable object with .modinfo and .shstrtab.
    pub(crate) fn fake_module(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little-endian
        f[6] = 1; // version
        f[16] = 1; // ET_REL
        f[18] = 62; // x86-64
        f[20] = 1;
        let modinfo_off = f.len();
        f.extend_from_slice(modinfo);
        let shstr_off = f.len();
        f.extend_from_slice(shstrtab);
        while f.len() % 8 != 0 {
            f.push(0);
        }
        let shoff = f.len();
        let mut sh = |name: u32, typ: u32, off: usize, size: usize| {
            let mut s = vec![0u8; 64];
            s[..4].copy_from_slice(&name.to_le_bytes());
            s[4..8].copy_from_slice(&typ.to_le_bytes());
            s[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            s[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            s[48..56].copy_from_slice(&1u64.to_le_bytes());
            f.extend_from_slice(&s);
        };
        sh(0, 0, 0, 0);
        sh(1, 1, modinfo_off, modinfo.len());
        sh(10, 3, shstr_off, shstrtab.len());
        // e_shoff, e_ehsize, e_shentsize, e_shnum, e_shstrndx
        f[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes());
        f[60..62].copy_from_slice(&3u16.to_le_bytes());
        f[62..64].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    #[test]
    fn reads_the_section_of_an_elf_object() {
        let ko = fake_module(
            b"name=vmw_pvscsi\0depends=scsi_mod\0alias=pci:v000015ADd000007C0sv*sd*bc*sc*i*\0",
        );
        let info = parse_module(&ko).unwrap();
        assert_eq!(info.name.as_deref(), Some("vmw_pvscsi"));
        assert_eq!(info.depends, ["scsi_mod"]);
        assert_eq!(info.aliases.len(), 1);
    }
}
