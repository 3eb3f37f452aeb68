//! What the stack needs to know about an ELF file: its machine, its
//! interpreter (`PT_INTERP`), the libraries it names (`DT_NEEDED`) and its
//! search paths (`DT_RPATH`, `DT_RUNPATH`).

use goblin::elf::Elf;
use goblin::elf::header::{EM_386, EM_X86_64};

use super::StackArch;

/// The dynamic-linking facts of one ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfInfo {
    /// `PT_INTERP`, where the file has one.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`, in file order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` and `DT_RPATH` entries, colon lists split.
    pub search: Vec<String>,
}

/// `true` where `bytes` start with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Reads an ELF file built for `arch`. `Ok(None)` for a file that is not
/// ELF; an error string for an ELF file that goblin cannot read or that is
/// built for another machine.
pub fn read(bytes: &[u8], arch: StackArch) -> Result<Option<ElfInfo>, String> {
    if !is_elf(bytes) {
        return Ok(None);
    }
    let elf = Elf::parse(bytes).map_err(|e| e.to_string())?;
    let (machine, is_64) = match arch {
        StackArch::X86_64 => (EM_X86_64, true),
        StackArch::I686 => (EM_386, false),
    };
    if elf.header.e_machine != machine || elf.is_64 != is_64 {
        return Err(format!(
            "built for machine {} ({}-bit), not {arch}",
            elf.header.e_machine,
            if elf.is_64 { 64 } else { 32 }
        ));
    }
    let mut search = Vec::new();
    for list in elf.runpaths.iter().chain(elf.rpaths.iter()) {
        search.extend(list.split(':').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    Ok(Some(ElfInfo {
        interpreter: elf.interpreter.map(str::to_owned),
        needed: elf.libraries.iter().map(|s| (*s).to_owned()).collect(),
        search,
    }))
}
