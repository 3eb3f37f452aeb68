//! The stack's binaries are static executables for their architecture:
//! no program interpreter (PT_INTERP), no shared libraries (DT_NEEDED).
//! They run as PID 1 in an initramfs that has no libc.

use goblin::elf::{Elf, header, program_header};
use osam_qemu::arch::Arch;
use osam_qemu::paths::stack_binary;

fn check(arch: Arch, name: &str) {
    let path = stack_binary(arch, name).unwrap_or_else(|e| panic!("building {name}: {e}"));
    let bytes = std::fs::read(&path).unwrap();
    let elf = Elf::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (machine, is_64) = match arch {
        Arch::X86_64 => (header::EM_X86_64, true),
        Arch::I686 => (header::EM_386, false),
    };
    assert_eq!(
        elf.header.e_machine,
        machine,
        "{}: wrong machine",
        path.display()
    );
    assert_eq!(elf.is_64, is_64, "{}: wrong class", path.display());
    assert!(
        !elf.program_headers
            .iter()
            .any(|p| p.p_type == program_header::PT_INTERP),
        "{} has a program interpreter",
        path.display()
    );
    assert!(elf.interpreter.is_none(), "{}", path.display());
    assert!(
        elf.libraries.is_empty(),
        "{} needs shared libraries: {:?}",
        path.display(),
        elf.libraries
    );
    assert!(
        elf.header.e_type == header::ET_EXEC || elf.header.e_type == header::ET_DYN,
        "{}: not an executable",
        path.display()
    );
}

#[test]
fn x86_64_binaries_are_static() {
    for name in ["osam-init", "fixupctl", "osam-stage2"] {
        check(Arch::X86_64, name);
    }
}

#[test]
fn i686_binaries_are_static() {
    for name in ["osam-init", "fixupctl", "osam-stage2"] {
        check(Arch::I686, name);
    }
}
