//! A small, bounds-checked reader of initramfs images: the "newc" cpio
//! archives (`070701`, and `070702` with checksums) the kernel unpacks,
//! uncompressed ones first (early microcode), then the compressed main
//! archive. Only the entry names and modes are kept. Images are hostile
//! input: every header field is checked against the data, and
//! decompression is capped.

use crate::decompress::{self, Compression, DecompressError};

/// The size of a newc header.
const HEADER: usize = 110;
/// The longest name accepted (the kernel's PATH_MAX).
const MAX_NAME: usize = 4096;
/// The most entries listed (a large distribution initramfs has ~5,000).
const MAX_ENTRIES: usize = 1_000_000;
/// The most archive segments followed in one image.
const MAX_SEGMENTS: usize = 64;
const TRAILER: &str = "TRAILER!!!";

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name without a leading `./` or `/`.
    pub name: String,
    /// `st_mode` (type and permissions).
    pub mode: u32,
}

impl Entry {
    /// A regular file or a symlink (what a module can be).
    pub fn is_file_or_link(&self) -> bool {
        matches!(self.mode & 0o170_000, 0o100_000 | 0o120_000)
    }
}

/// Why an image could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("cpio data ends inside a header or member at byte {offset}")]
    Truncated { offset: usize },
    #[error("no cpio newc header at byte {offset}")]
    BadMagic { offset: usize },
    #[error("cpio header at byte {offset}: field {field} is not hexadecimal")]
    BadField { offset: usize, field: usize },
    #[error("cpio header at byte {offset}: name size {size} is out of range")]
    BadName { offset: usize, size: usize },
    #[error("more than {MAX_ENTRIES} cpio entries")]
    TooManyEntries,
    #[error("more than {MAX_SEGMENTS} archives in one image")]
    TooManySegments,
    #[error("the image's {format} part: {source}")]
    Decompress {
        format: Compression,
        #[source]
        source: DecompressError,
    },
    #[error("the image holds {format} data after its compressed archive")]
    Nested { format: Compression },
}

fn is_newc(data: &[u8]) -> bool {
    data.starts_with(b"070701") || data.starts_with(b"070702")
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

fn hex_field(header: &[u8], index: usize, offset: usize) -> Result<usize, CpioError> {
    let bad = CpioError::BadField {
        offset,
        field: index,
    };
    let start = 6 + index * 8;
    let text = header
        .get(start..start + 8)
        .ok_or(CpioError::Truncated { offset })?;
    let text = std::str::from_utf8(text).map_err(|_| bad)?;
    let value = u32::from_str_radix(text, 16).map_err(|_| CpioError::BadField {
        offset,
        field: index,
    })?;
    usize::try_from(value).map_err(|_| CpioError::BadField {
        offset,
        field: index,
    })
}

/// Reads one newc archive of `data` starting at `start` (4-aligned
/// relative to `data`, as the kernel requires) up to and including its
/// trailer, appending its members to `out`. Returns the offset after the
/// trailer's padding.
pub fn read_archive(data: &[u8], start: usize, out: &mut Vec<Entry>) -> Result<usize, CpioError> {
    let mut pos = start;
    loop {
        let header = data
            .get(pos..pos.saturating_add(HEADER))
            .ok_or(CpioError::Truncated { offset: pos })?;
        if !is_newc(header) {
            return Err(CpioError::BadMagic { offset: pos });
        }
        let mode = hex_field(header, 1, pos)?;
        let file_size = hex_field(header, 6, pos)?;
        let name_size = hex_field(header, 11, pos)?;
        if name_size == 0 || name_size > MAX_NAME {
            return Err(CpioError::BadName {
                offset: pos,
                size: name_size,
            });
        }
        let name_start = pos + HEADER;
        let name_end = name_start
            .checked_add(name_size)
            .ok_or(CpioError::Truncated { offset: pos })?;
        let raw = data
            .get(name_start..name_end)
            .ok_or(CpioError::Truncated { offset: pos })?;
        // The name size counts the terminating NUL.
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        let name = String::from_utf8_lossy(raw);
        let data_start = align4(name_end).ok_or(CpioError::Truncated { offset: pos })?;
        let data_end = data_start
            .checked_add(file_size)
            .ok_or(CpioError::Truncated { offset: pos })?;
        if data_end > data.len() {
            return Err(CpioError::Truncated { offset: pos });
        }
        let next = align4(data_end).ok_or(CpioError::Truncated { offset: pos })?;
        if name == TRAILER {
            return Ok(next.min(data.len()));
        }
        if out.len() >= MAX_ENTRIES {
            return Err(CpioError::TooManyEntries);
        }
        let name = name.trim_start_matches("./").trim_start_matches('/');
        if !name.is_empty() && name != "." {
            out.push(Entry {
                name: name.to_string(),
                mode: u32::try_from(mode).unwrap_or(0),
            });
        }
        pos = next;
    }
}

/// Skips the zero padding between archives.
fn skip_zeros(data: &[u8], pos: usize) -> usize {
    let rest = data.get(pos..).unwrap_or(&[]);
    pos + rest.iter().take_while(|b| **b == 0).count()
}

/// Reads the uncompressed archives at the start of `data`; returns where
/// the first non-cpio data begins (`data.len()` when none follows).
fn read_plain_archives(
    data: &[u8],
    out: &mut Vec<Entry>,
    segments: &mut usize,
) -> Result<usize, CpioError> {
    let mut pos = skip_zeros(data, 0);
    while pos < data.len() && data.get(pos..).is_some_and(is_newc) {
        *segments += 1;
        if *segments > MAX_SEGMENTS {
            return Err(CpioError::TooManySegments);
        }
        pos = skip_zeros(data, read_archive(data, pos, out)?);
    }
    Ok(pos)
}

/// Lists every member of an initramfs image: leading uncompressed
/// archives (early microcode), then the main archive, decompressed with at
/// most `max_decompressed` bytes of output.
pub fn list_image(image: &[u8], max_decompressed: usize) -> Result<Vec<Entry>, CpioError> {
    let mut out = Vec::new();
    let mut segments = 0;
    let pos = read_plain_archives(image, &mut out, &mut segments)?;
    let rest = image.get(pos..).unwrap_or(&[]);
    if rest.is_empty() {
        return Ok(out);
    }
    let format = decompress::detect(rest);
    if format == Compression::None {
        return Err(CpioError::BadMagic { offset: pos });
    }
    let inner = decompress::decompress(rest, max_decompressed)
        .map_err(|source| CpioError::Decompress { format, source })?;
    let end = read_plain_archives(&inner, &mut out, &mut segments)?;
    if end < inner.len() {
        let format = decompress::detect(inner.get(end..).unwrap_or(&[]));
        return Err(CpioError::Nested { format });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod writer {
    //! A tiny newc writer for tests.

    /// One member: name, mode, contents.
    pub fn archive(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut all: Vec<(&str, u32, &[u8])> = entries.to_vec();
        all.push(("TRAILER!!!", 0, b""));
        for (i, (name, mode, data)) in all.iter().enumerate() {
            out.extend_from_slice(b"070701");
            let fields = [
                i as u32 + 1,
                *mode,
                0,
                0,
                1,
                0,
                data.len() as u32,
                0,
                0,
                0,
                0,
                name.len() as u32 + 1,
                0,
            ];
            for f in fields {
                out.extend_from_slice(format!("{f:08X}").as_bytes());
            }
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(data);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }
}
