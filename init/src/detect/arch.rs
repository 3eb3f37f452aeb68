//! The guest's architecture, from the ELF header of its own binaries.

use goblin::elf::Elf;
use goblin::elf::header::{
    EI_CLASS, EI_DATA, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, EM_386, EM_AARCH64, EM_ARM, EM_MIPS,
    EM_PPC, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64, machine_to_str,
};

use crate::guestfs::GuestRoot;

/// The binaries looked at, in order; symlinks resolve inside the guest.
pub const ARCH_PROBES: &[&str] = &[
    "/bin/sh",
    "/usr/bin/env",
    "/sbin/init",
    "/bin/bash",
    "/usr/bin/bash",
    "/bin/ls",
    "/usr/bin/ls",
    "/lib/systemd/systemd",
    "/usr/lib/systemd/systemd",
    "/bin/busybox",
];

/// How much of a binary is read: the ELF header is the first 64 bytes.
const HEAD_BYTES: u64 = 64 * 1024;

/// The architecture of the first of [`ARCH_PROBES`] that is an ELF file.
pub fn detect_arch(root: &GuestRoot) -> Option<String> {
    ARCH_PROBES.iter().find_map(|p| {
        let head = root.read_head(p, HEAD_BYTES).ok()?;
        elf_arch(&head)
    })
}

/// The architecture an ELF header names, in the protocol's words:
/// `x86_64`, `i686`, `x32` (the x32 ABI: 32-bit class, x86-64 machine),
/// `aarch64`, ...; `None` when the bytes are not an ELF header.
pub fn elf_arch(bytes: &[u8]) -> Option<String> {
    let header = Elf::parse_header(bytes).ok()?;
    let class = header.e_ident[EI_CLASS];
    let little = header.e_ident[EI_DATA] == ELFDATA2LSB;
    let name = match (header.e_machine, class) {
        (EM_X86_64, ELFCLASS64) => "x86_64",
        (EM_X86_64, ELFCLASS32) => "x32",
        (EM_386, _) => "i686",
        (EM_AARCH64, _) => "aarch64",
        (EM_ARM, _) => "arm",
        (EM_PPC64, _) if little => "ppc64le",
        (EM_PPC64, _) => "ppc64",
        (EM_PPC, _) => "ppc",
        (EM_S390, ELFCLASS64) => "s390x",
        (EM_S390, _) => "s390",
        (EM_RISCV, ELFCLASS64) => "riscv64",
        (EM_RISCV, _) => "riscv32",
        (EM_MIPS, ELFCLASS64) if little => "mips64el",
        (EM_MIPS, ELFCLASS64) => "mips64",
        (EM_MIPS, _) if little => "mipsel",
        (EM_MIPS, _) => "mips",
        (m, _) => {
            let s = machine_to_str(m);
            return Some(if s.is_empty() || s == "EM_UNKNOWN" {
                format!("machine-{m}")
            } else {
                s.trim_start_matches("EM_").to_ascii_lowercase()
            });
        }
    };
    Some(name.to_string())
}

/// Builds a minimal ELF header (for tests): 64 bytes for class 64, 52 for
/// class 32, the rest zero.
#[cfg(test)]
pub(crate) fn test_elf_header(class: u8, little_endian: bool, machine: u16) -> Vec<u8> {
    use goblin::elf::header::{ELFDATA2MSB, ELFMAG, EV_CURRENT};
    let size = if class == ELFCLASS64 { 64 } else { 52 };
    let mut h = vec![0u8; size];
    h[..4].copy_from_slice(ELFMAG);
    h[4] = class;
    h[5] = if little_endian {
        ELFDATA2LSB
    } else {
        ELFDATA2MSB
    };
    h[6] = EV_CURRENT;
    let put16 = |h: &mut Vec<u8>, at: usize, v: u16| {
        let b = if little_endian {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        h[at..at + 2].copy_from_slice(&b);
    };
    put16(&mut h, 16, 2); // e_type: ET_EXEC
    put16(&mut h, 18, machine);
    let version = if little_endian {
        1u32.to_le_bytes()
    } else {
        1u32.to_be_bytes()
    };
    h[20..24].copy_from_slice(&version);
    let ehsize = size as u16;
    if class == ELFCLASS64 {
        put16(&mut h, 52, ehsize);
    } else {
        put16(&mut h, 40, ehsize);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_headers() {
        let cases = [
            (ELFCLASS64, true, EM_X86_64, "x86_64"),
            (ELFCLASS32, true, EM_X86_64, "x32"),
            (ELFCLASS32, true, EM_386, "i686"),
            (ELFCLASS64, true, EM_AARCH64, "aarch64"),
            (ELFCLASS32, true, EM_ARM, "arm"),
            (ELFCLASS64, false, EM_PPC64, "ppc64"),
            (ELFCLASS64, true, EM_PPC64, "ppc64le"),
            (ELFCLASS64, false, EM_S390, "s390x"),
            (ELFCLASS64, true, EM_RISCV, "riscv64"),
            (ELFCLASS64, true, 0xbeef, "machine-48879"),
        ];
        for (class, little, machine, want) in cases {
            let h = test_elf_header(class, little, machine);
            assert_eq!(
                elf_arch(&h).as_deref(),
                Some(want),
                "{class} {little} {machine}"
            );
            // Trailing bytes (a real binary) change nothing.
            let mut long = h.clone();
            long.extend_from_slice(&[0xAA; 4096]);
            assert_eq!(elf_arch(&long).as_deref(), Some(want));
        }
    }

    #[test]
    fn not_elf() {
        let good = test_elf_header(ELFCLASS64, true, EM_X86_64);
        assert_eq!(elf_arch(&good[..20]), None, "truncated");
        assert_eq!(elf_arch(b""), None);
        assert_eq!(elf_arch(b"#!/bin/sh\necho hi\n"), None);
        assert_eq!(elf_arch(&[0xff; 64]), None);
        let mut bad_class = good.clone();
        bad_class[4] = 7;
        assert_eq!(elf_arch(&bad_class), None);
        let mut bad_data = good;
        bad_data[5] = 9;
        assert_eq!(elf_arch(&bad_data), None);
    }
}
