//! Pure-Rust decompression of kernel modules and initramfs images.
//!
//! C libraries do not cross-build for i686-musl here, so every format is
//! decoded in Rust: gzip with `flate2`, zstd with `ruzstd`, LZ4 with
//! `lz4_flex` (the frame format and the kernel's legacy format), `.lzma`
//! and `.xz` with `lzma-rust2`'s streaming readers (not `lzma-rs`, which
//! holds a whole xz block in memory before the output cap can see it). The
//! format is found from the magic bytes.
//!
//! Every decoder writes into an output capped at the caller's `max_out`:
//! hostile input (a "zip bomb") gets [`DecompressError::TooLarge`], never
//! the whole memory of PID 1.

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read};

/// A compression format, as recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No known magic: the data is taken as it is.
    None,
    /// gzip (`1f 8b`), possibly several members.
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`), possibly several streams.
    Xz,
    /// The legacy "LZMA alone" format (`5d 00 00`).
    Lzma,
    /// zstd (`28 b5 2f fd`), possibly several frames.
    Zstd,
    /// The LZ4 frame format (`04 22 4d 18`).
    Lz4Frame,
    /// The kernel's LZ4 legacy format (`02 21 4c 18`), what `lz4 -l` makes.
    Lz4Legacy,
    /// bzip2 (`BZh1`..`BZh9`): recognised, not decoded.
    Bzip2,
}

impl Compression {
    /// The format's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Lzma => "lzma",
            Compression::Zstd => "zstd",
            Compression::Lz4Frame => "lz4",
            Compression::Lz4Legacy => "lz4 (legacy)",
            Compression::Bzip2 => "bzip2",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why data could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    /// The output would exceed the caller's cap.
    #[error("decompressed data exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The input ends in the middle of the compressed data.
    #[error("{format} data is truncated")]
    Truncated { format: Compression },
    /// The input is not valid data of its format.
    #[error("{format} data is corrupt: {reason}")]
    Corrupt { format: Compression, reason: String },
    /// The data is valid but uses a feature this decoder lacks.
    #[error("{format} data uses something not supported here: {what}")]
    Unsupported { format: Compression, what: String },
}

const GZIP_MAGIC: &[u8] = &[0x1F, 0x8B];
const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];
const LZMA_MAGIC: &[u8] = &[0x5D, 0x00, 0x00];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xB5, 0x2F, 0xFD];
const LZ4_FRAME_MAGIC: &[u8] = &[0x04, 0x22, 0x4D, 0x18];
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// The output size of every block of the LZ4 legacy format but the last.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

/// Recognises the compression format from the first bytes of `data`.
pub fn detect(data: &[u8]) -> Compression {
    if data.starts_with(XZ_MAGIC) {
        Compression::Xz
    } else if data.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if data.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else if data.starts_with(LZ4_FRAME_MAGIC) {
        Compression::Lz4Frame
    } else if data.starts_with(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
        Compression::Lz4Legacy
    } else if data.starts_with(LZMA_MAGIC) {
        Compression::Lzma
    } else if data.len() >= 4 && data.starts_with(b"BZh") && matches!(data[3], b'1'..=b'9') {
        Compression::Bzip2
    } else {
        Compression::None
    }
}

/// Decompresses `data` in whatever format [`detect`] finds, returning at
/// most `max_out` bytes. Data with no known magic is returned as it is
/// (still subject to the cap). Concatenated gzip members, xz streams, zstd
/// frames and LZ4 frames or legacy archives are decoded one after the
/// other; zero padding after the last one is ignored.
pub fn decompress(data: &[u8], max_out: usize) -> Result<Vec<u8>, DecompressError> {
    let format = detect(data);
    let mut out = Output::new(max_out);
    match format {
        Compression::None => out.extend(data)?,
        Compression::Gzip => gzip(data, &mut out)?,
        Compression::Xz => xz(data, &mut out)?,
        Compression::Lzma => lzma_alone(data, &mut out)?,
        Compression::Zstd => zstd(data, &mut out)?,
        Compression::Lz4Frame => lz4_frame(data, &mut out)?,
        Compression::Lz4Legacy => lz4_legacy(data, &mut out)?,
        Compression::Bzip2 => {
            return Err(DecompressError::Unsupported {
                format,
                what: "bzip2 is recognised but not decoded".into(),
            });
        }
    }
    Ok(out.buf)
}

/// The decoders' output buffer, refusing to grow past its limit.
struct Output {
    buf: Vec<u8>,
    limit: usize,
}

impl Output {
    fn new(limit: usize) -> Self {
        Output {
            buf: Vec::new(),
            limit,
        }
    }

    /// Fails unless `extra` more bytes fit under the limit.
    fn check_room(&self, extra: usize) -> Result<(), DecompressError> {
        match self.buf.len().checked_add(extra) {
            Some(n) if n <= self.limit => Ok(()),
            _ => Err(DecompressError::TooLarge { limit: self.limit }),
        }
    }

    fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    fn extend(&mut self, bytes: &[u8]) -> Result<(), DecompressError> {
        self.check_room(bytes.len())?;
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// Reads all of `reader` into the output, stopping one byte past the
    /// limit so an oversized stream is noticed without being stored.
    fn read_all(&mut self, reader: impl Read, format: Compression) -> Result<(), DecompressError> {
        let allowed = (self.room() as u64).saturating_add(1);
        let before = self.buf.len();
        reader
            .take(allowed)
            .read_to_end(&mut self.buf)
            .map_err(|e| io_error(format, &e))?;
        if self.buf.len() > self.limit {
            self.buf.truncate(before);
            return Err(DecompressError::TooLarge { limit: self.limit });
        }
        Ok(())
    }
}

/// Whether an error, or anything in its source chain, is an I/O error of
/// kind "unexpected end of file".
fn is_eof(mut e: &(dyn StdError + 'static)) -> bool {
    loop {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::UnexpectedEof {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                if is_eof(inner) {
                    return true;
                }
            }
        }
        match e.source() {
            Some(s) => e = s,
            None => return false,
        }
    }
}

fn io_error(format: Compression, e: &io::Error) -> DecompressError {
    if is_eof(e) {
        DecompressError::Truncated { format }
    } else {
        DecompressError::Corrupt {
            format,
            reason: e.to_string(),
        }
    }
}

/// The largest LZMA dictionary accepted (KiB): `xz -9` uses 64 MiB. A
/// stream that asks for more is refused before anything is allocated.
const LZMA_MEM_LIMIT_KB: u32 = 96 * 1024;

/// xz streams (several in a row, with stream padding) through lzma-rust2's
/// streaming reader: output goes straight into the capped buffer, so a
/// small hostile file cannot make PID 1 allocate past the cap.
fn xz(data: &[u8], out: &mut Output) -> Result<(), DecompressError> {
    let reader = lzma_rust2::XzReader::new_mem_limit(data, true, LZMA_MEM_LIMIT_KB);
    out.read_all(reader, Compression::Xz)
}

/// The legacy `.lzma` format (`lzma_alone`).
fn lzma_alone(data: &[u8], out: &mut Output) -> Result<(), DecompressError> {
    let reader = lzma_rust2::LzmaReader::new_mem_limit(data, LZMA_MEM_LIMIT_KB, None)
        .map_err(|e| io_error(Compression::Lzma, &e))?;
    out.read_all(reader, Compression::Lzma)
}

fn only_zeros(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
}

fn gzip(data: &[u8], out: &mut Output) -> Result<(), DecompressError> {
    let mut rest = data;
    while !rest.is_empty() && !only_zeros(rest) {
        if !rest.starts_with(GZIP_MAGIC) {
            return Err(DecompressError::Corrupt {
                format: Compression::Gzip,
                reason: "trailing data after the last member".into(),
            });
        }
        let before = rest.len();
        let mut member = flate2::bufread::GzDecoder::new(&mut rest);
        out.read_all(&mut member, Compression::Gzip)?;
        drop(member);
        if rest.len() == before {
            return Err(DecompressError::Truncated {
                format: Compression::Gzip,
            });
        }
    }
    Ok(())
}

/// The largest zstd window accepted: what `zstd -19` uses, or the output
/// cap when that is larger, and never more than `ruzstd`'s default bound.
fn zstd_window(max_out: usize) -> u64 {
    let cap = ruzstd::decoding::DEFAULT_MAX_WINDOW_SIZE;
    let wanted = u64::try_from(max_out).unwrap_or(u64::MAX).max(8 << 20);
    wanted.min(cap)
}

fn zstd(data: &[u8], out: &mut Output) -> Result<(), DecompressError> {
    use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
    use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

    let format = Compression::Zstd;
    let map = |e: FrameDecoderError| {
        if is_eof(&e) {
            DecompressError::Truncated { format }
        } else {
            DecompressError::Corrupt {
                format,
                reason: e.to_string(),
            }
        }
    };
    let mut dec = FrameDecoder::new();
    dec.set_max_window_size(zstd_window(out.limit));
    let mut input: &[u8] = data;
    while !input.is_empty() && !only_zeros(input) {
        match dec.reset(&mut input) {
            Ok(()) => {}
            Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                length,
                ..
            })) => {
                input = usize::try_from(length)
                    .ok()
                    .and_then(|n| input.get(n..))
                    .ok_or(DecompressError::Truncated { format })?;
                continue;
            }
            Err(e) => return Err(map(e)),
        }
        loop {
            // One block (at most 128 KiB of output) at a time, so the cap
            // is checked as the frame grows.
            let finished = dec
                .decode_blocks(&mut input, BlockDecodingStrategy::UptoBlocks(1))
                .map_err(map)?;
            if let Some(bytes) = dec.collect() {
                out.extend(&bytes)?;
            }
            if finished {
                break;
            }
        }
        if let (Some(stored), Some(computed)) =
            (dec.get_checksum_from_data(), dec.get_calculated_checksum())
        {
            if stored != computed {
                return Err(DecompressError::Corrupt {
                    format,
                    reason: "content checksum mismatch".into(),
                });
            }
        }
    }
    Ok(())
}

fn lz4_frame(data: &[u8], out: &mut Output) -> Result<(), DecompressError> {
    let mut rest = data;
    while !rest.is_empty() && !only_zeros(rest) {
        let (len, skippable) = lz4_frame_len(rest)?;
        let (frame, after) = rest.split_at(len);
        if !skippable {
            let decoder = lz4_flex::frame::FrameDecoder::new(frame);
            out.read_all(decoder, Compression::Lz4Frame)?;
        }
        rest = after;
    }
    Ok(())
}

/// The length of the LZ4 frame (or skippable frame) at the start of
/// `data`, found by walking its block headers, and whether it is a
/// skippable frame. Knowing where each frame ends lets zero padding after
/// the last one be told apart from a truncated frame.
fn lz4_frame_len(data: &[u8]) -> Result<(usize, bool), DecompressError> {
    let format = Compression::Lz4Frame;
    let truncated = || DecompressError::Truncated { format };
    let word = |at: usize| -> Result<u32, DecompressError> {
        at.checked_add(4)
            .and_then(|end| data.get(at..end))
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(DecompressError::Truncated { format })
    };
    let magic = word(0)?;
    if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
        let len = 8usize
            .checked_add(word(4)? as usize)
            .filter(|&n| n <= data.len())
            .ok_or_else(truncated)?;
        return Ok((len, true));
    }
    if data.get(..4) != Some(LZ4_FRAME_MAGIC) {
        return Err(DecompressError::Corrupt {
            format,
            reason: format!("bad frame magic {magic:08x}"),
        });
    }
    let flags = *data.get(4).ok_or(DecompressError::Truncated { format })?;
    let mut pos = 4 + 2 + 1; // magic, FLG and BD, header checksum
    if flags & 0x08 != 0 {
        pos += 8; // content size
    }
    if flags & 0x01 != 0 {
        pos += 4; // dictionary id
    }
    let block_checksum = if flags & 0x10 != 0 { 4 } else { 0 };
    loop {
        let size = word(pos)?;
        pos += 4;
        if size == 0 {
            break;
        }
        pos = pos
            .checked_add((size & 0x7FFF_FFFF) as usize + block_checksum)
            .ok_or(DecompressError::Truncated { format })?;
    }
    if flags & 0x04 != 0 {
        pos += 4; // content checksum
    }
    if pos > data.len() {
        return Err(truncated());
    }
    Ok((pos, false))
}

/// The worst-case compressed size of an LZ4 block of `n` bytes.
fn lz4_bound(n: usize) -> usize {
    n + n / 255 + 16
}

fn lz4_legacy(data: &[u8], out: &mut Output) -> Result<(), DecompressError> {
    let format = Compression::Lz4Legacy;
    let truncated = || DecompressError::Truncated { format };
    let magic = LZ4_LEGACY_MAGIC.to_le_bytes();
    let mut pos = 0usize;
    let mut scratch: Vec<u8> = Vec::new();
    loop {
        let rest = data.get(pos..).unwrap_or(&[]);
        if rest.is_empty() || only_zeros(rest) {
            return Ok(());
        }
        let word = rest.get(..4).ok_or_else(truncated)?;
        pos += 4;
        if word == magic {
            continue;
        }
        let len = u32::from_le_bytes([word[0], word[1], word[2], word[3]]) as usize;
        if len == 0 || len > lz4_bound(LZ4_LEGACY_BLOCK) {
            return Err(DecompressError::Corrupt {
                format,
                reason: format!("bad block length {len}"),
            });
        }
        let block = data.get(pos..pos + len).ok_or_else(truncated)?;
        pos += len;
        // A block may not be larger than what still fits: decode into a
        // buffer one byte larger than the room left, so overflowing is seen.
        let size = LZ4_LEGACY_BLOCK.min(out.room().saturating_add(1));
        if scratch.len() < size {
            scratch.resize(size, 0);
        }
        let buf = scratch.get_mut(..size).unwrap_or(&mut []);
        match lz4_flex::block::decompress_into(block, buf) {
            Ok(n) => {
                let bytes = buf.get(..n).unwrap_or(&[]);
                out.extend(bytes)?;
            }
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. })
                if size < LZ4_LEGACY_BLOCK =>
            {
                return Err(DecompressError::TooLarge { limit: out.limit });
            }
            Err(e) => {
                return Err(DecompressError::Corrupt {
                    format,
                    reason: e.to_string(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Reproducible test data with long and short repeats, text and noise.
    fn sample(len: usize) -> Vec<u8> {
        let words: [&[u8]; 8] = [
            b"module ",
            b"alias ",
            b"pci:v000015ADd000007C0",
            b" vmw_pvscsi\n",
            b"\x00\x01",
            b"kernel/fs/9p/9p.ko ",
            b"xyzzy",
            b"\xff\xfe\xfd",
        ];
        let mut state = 0x1234_5678u32;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let r = (state >> 16) as usize;
            if r % 7 == 0 {
                out.push((r >> 3) as u8);
            } else {
                out.extend_from_slice(words[r % words.len()]);
            }
        }
        out.truncate(len);
        out
    }

    fn gzip_bytes(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn lz4_frame_bytes(data: &[u8]) -> Vec<u8> {
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// The kernel's legacy LZ4 format, built here: magic, then blocks of
    /// up to 8 MiB of input, each a length and a raw LZ4 block.
    fn lz4_legacy_bytes(data: &[u8], block: usize) -> Vec<u8> {
        let mut out = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for chunk in data.chunks(block) {
            let c = lz4_flex::block::compress(chunk);
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    // Fixtures made with the command-line tools; see tests/data/decompress/gen.sh.
    const PLAIN_GZ: &[u8] = include_bytes!("../tests/data/decompress/plain.bin.gz");
    const PLAIN_XZ: &[u8] = include_bytes!("../tests/data/decompress/plain.bin.xz");
    const PLAIN_XZ_BLOCKS: &[u8] = include_bytes!("../tests/data/decompress/plain.blocks.xz");
    const PLAIN_XZ_CRC64: &[u8] = include_bytes!("../tests/data/decompress/plain.crc64.xz");
    const PLAIN_XZ_SHA256: &[u8] = include_bytes!("../tests/data/decompress/plain.sha256.xz");
    const PLAIN_XZ_NONE: &[u8] = include_bytes!("../tests/data/decompress/plain.none.xz");
    const PLAIN_XZ_EXTREME: &[u8] = include_bytes!("../tests/data/decompress/plain.extreme.xz");
    const PLAIN_XZ_LCLP: &[u8] = include_bytes!("../tests/data/decompress/plain.lclp.xz");
    const SMALL_XZ_BCJ: &[u8] = include_bytes!("../tests/data/decompress/small.bcj.xz");
    const PLAIN_LZMA: &[u8] = include_bytes!("../tests/data/decompress/plain.bin.lzma");
    const PLAIN_ZST: &[u8] = include_bytes!("../tests/data/decompress/plain.bin.zst");
    const PLAIN_ZST_MULTI: &[u8] = include_bytes!("../tests/data/decompress/plain.multi.zst");
    /// The LZ4 fixtures hold the first `LZ4_HEAD` bytes of the plain text.
    const HEAD_LZ4: &[u8] = include_bytes!("../tests/data/decompress/plain.head.lz4");
    const HEAD_LZ4_LEGACY: &[u8] = include_bytes!("../tests/data/decompress/plain.head.legacy.lz4");
    const LZ4_HEAD: usize = 40_000;
    const SMALL_BZ2: &[u8] = include_bytes!("../tests/data/decompress/small.txt.bz2");
    const SMALL_XZ: &[u8] = include_bytes!("../tests/data/decompress/small.txt.xz");
    const SMALL_ZST: &[u8] = include_bytes!("../tests/data/decompress/small.txt.zst");
    const SMALL: &[u8] = b"OSAM fixup stack: hello, modules!\n";
    const ZEROS_XZ: &[u8] = include_bytes!("../tests/data/decompress/zeros.xz");
    const ZEROS_ZST: &[u8] = include_bytes!("../tests/data/decompress/zeros.zst");
    /// The size of the zero-filled file behind `zeros.*`.
    const ZEROS_LEN: usize = 16 << 20;

    const BIG: usize = 64 << 20;

    /// The reference plain text of the fixtures, decoded by flate2.
    fn plain() -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(PLAIN_GZ)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn detects_magic() {
        let table: &[(&[u8], Compression)] = &[
            (PLAIN_GZ, Compression::Gzip),
            (PLAIN_XZ, Compression::Xz),
            (PLAIN_LZMA, Compression::Lzma),
            (PLAIN_ZST, Compression::Zstd),
            (HEAD_LZ4, Compression::Lz4Frame),
            (HEAD_LZ4_LEGACY, Compression::Lz4Legacy),
            (SMALL_BZ2, Compression::Bzip2),
            (b"\x7fELF\x02\x01\x01", Compression::None),
            (b"", Compression::None),
            (b"\x1f", Compression::None),
            (b"BZh0", Compression::None),
        ];
        for (data, want) in table {
            assert_eq!(detect(data), *want, "{:02x?}", &data[..data.len().min(6)]);
        }
    }

    #[test]
    fn decodes_fixtures() {
        let plain = plain();
        assert!(plain.len() > 100_000);
        let table: &[(&str, &[u8])] = &[
            ("xz", PLAIN_XZ),
            ("xz blocks and streams", PLAIN_XZ_BLOCKS),
            ("xz crc64", PLAIN_XZ_CRC64),
            ("xz sha256", PLAIN_XZ_SHA256),
            ("xz no check", PLAIN_XZ_NONE),
            ("xz -9e", PLAIN_XZ_EXTREME),
            ("xz lc/lp/pb", PLAIN_XZ_LCLP),
            ("lzma", PLAIN_LZMA),
            ("zstd", PLAIN_ZST),
            ("zstd frames", PLAIN_ZST_MULTI),
        ];
        for (name, data) in table {
            let got = decompress(data, BIG).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(got == plain, "{name}: output differs");
        }
        for (name, data) in [("lz4", HEAD_LZ4), ("lz4 -l", HEAD_LZ4_LEGACY)] {
            let got = decompress(data, BIG).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(got == plain[..LZ4_HEAD], "{name}: output differs");
        }
        assert_eq!(decompress(SMALL_XZ, 1024).unwrap(), SMALL);
        assert_eq!(decompress(SMALL_ZST, 1024).unwrap(), SMALL);
    }

    #[test]
    fn xz_agrees_with_lzma_rs() {
        // lzma-rs reads one stream only, so the multi-stream fixture is left out.
        for data in [
            PLAIN_XZ,
            PLAIN_XZ_CRC64,
            PLAIN_XZ_LCLP,
            PLAIN_XZ_EXTREME,
            SMALL_XZ,
        ] {
            let mut reference = Vec::new();
            lzma_rs::xz_decompress(&mut io::BufReader::new(data), &mut reference).unwrap();
            assert!(decompress(data, BIG).unwrap() == reference);
        }
    }

    #[test]
    fn xz_made_by_lzma_rs() {
        let data = sample(70_000);
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut io::BufReader::new(&data[..]), &mut xz).unwrap();
        assert!(decompress(&xz, BIG).unwrap() == data);
    }

    #[test]
    fn round_trips_made_here() {
        let data = sample(300_000);
        let table: &[(&str, Vec<u8>)] = &[
            ("gzip", gzip_bytes(&data)),
            ("lz4 frame", lz4_frame_bytes(&data)),
            ("lz4 legacy", lz4_legacy_bytes(&data, LZ4_LEGACY_BLOCK)),
            ("lz4 legacy small blocks", lz4_legacy_bytes(&data, 4096)),
        ];
        for (name, packed) in table {
            let got = decompress(packed, BIG).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(got == data, "{name}: output differs");
        }
    }

    #[test]
    fn concatenations_and_padding() {
        let a = sample(10_000);
        let b = b"second part".to_vec();
        let both: Vec<u8> = [a.clone(), b.clone()].concat();

        let mut gz = gzip_bytes(&a);
        gz.extend(gzip_bytes(&b));
        gz.extend([0u8; 512]);

        let mut lz4 = lz4_frame_bytes(&a);
        lz4.extend(lz4_frame_bytes(&b));
        lz4.extend([0u8; 16]);

        let mut legacy = lz4_legacy_bytes(&a, 4000);
        legacy.extend(lz4_legacy_bytes(&b, 4000));
        legacy.extend([0u8; 7]);

        let xz: Vec<u8> = [SMALL_XZ, &[0u8; 8], SMALL_XZ, &[0u8; 4]].concat();
        let zst: Vec<u8> = [SMALL_ZST, SMALL_ZST, &[0u8; 3]].concat();
        let small2 = [SMALL, SMALL].concat();

        let table: &[(&str, &[u8], &[u8])] = &[
            ("gzip", &gz, &both),
            ("lz4 frame", &lz4, &both),
            ("lz4 legacy", &legacy, &both),
            ("xz", &xz, &small2),
            ("zstd", &zst, &small2),
        ];
        for (name, packed, want) in table {
            let got = decompress(packed, BIG).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(got == *want, "{name}: output differs");
        }
    }

    #[test]
    fn xz_padding_must_be_whole_words() {
        let xz: Vec<u8> = [SMALL_XZ, &[0u8; 3]].concat();
        assert!(matches!(
            decompress(&xz, BIG),
            Err(DecompressError::Corrupt { .. })
        ));
    }

    #[test]
    fn uncompressed_passes_through() {
        assert_eq!(decompress(b"\x7fELF...", 100).unwrap(), b"\x7fELF...");
        assert!(matches!(
            decompress(b"\x7fELF...", 3),
            Err(DecompressError::TooLarge { limit: 3 })
        ));
    }

    #[test]
    fn truncated_input_fails() {
        let data = sample(50_000);
        let gz = gzip_bytes(&data);
        let lz4 = lz4_frame_bytes(&data);
        let legacy = lz4_legacy_bytes(&data, 8192);
        let table: &[(&str, &[u8])] = &[
            ("gzip", &gz),
            ("lz4 frame", &lz4),
            ("lz4 legacy", &legacy),
            ("xz", PLAIN_XZ),
            ("xz blocks", PLAIN_XZ_BLOCKS),
            ("lzma", PLAIN_LZMA),
            ("zstd", PLAIN_ZST),
            ("small xz", SMALL_XZ),
            ("small zstd", SMALL_ZST),
        ];
        for (name, packed) in table {
            for cut in [packed.len() / 3, packed.len() / 2, packed.len() - 1] {
                let r = decompress(&packed[..cut], BIG);
                assert!(r.is_err(), "{name} cut at {cut} decoded");
            }
        }
        for (name, packed) in [("xz", PLAIN_XZ), ("gzip", &gz[..]), ("lzma", PLAIN_LZMA)] {
            assert!(
                matches!(
                    decompress(&packed[..packed.len() / 2], BIG),
                    Err(DecompressError::Truncated { .. })
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn corrupt_input_fails() {
        let mut xz = PLAIN_XZ.to_vec();
        let mid = xz.len() / 2;
        xz[mid] ^= 0x55;
        assert!(decompress(&xz, BIG).is_err());

        let mut small = SMALL_XZ.to_vec();
        let last_data = small.len() - 40;
        small[last_data] ^= 0x01;
        assert!(decompress(&small, BIG).is_err());

        let mut zst = PLAIN_ZST.to_vec();
        let mid = zst.len() / 2;
        zst[mid] ^= 0x55;
        assert!(decompress(&zst, BIG).is_err());
    }

    #[test]
    fn xz_with_a_bcj_filter_decodes() {
        assert_eq!(decompress(SMALL_XZ_BCJ, BIG).unwrap(), SMALL);
    }

    #[test]
    fn bzip2_is_unsupported() {
        assert!(matches!(
            decompress(SMALL_BZ2, BIG),
            Err(DecompressError::Unsupported {
                format: Compression::Bzip2,
                ..
            })
        ));
    }

    #[test]
    fn cap_is_enforced() {
        let data = sample(200_000);
        let made: Vec<(&str, Vec<u8>)> = vec![
            ("gzip", gzip_bytes(&data)),
            ("lz4 frame", lz4_frame_bytes(&data)),
            ("lz4 legacy", lz4_legacy_bytes(&data, LZ4_LEGACY_BLOCK)),
            ("xz", PLAIN_XZ.to_vec()),
            ("lzma", PLAIN_LZMA.to_vec()),
            ("zstd", PLAIN_ZST.to_vec()),
        ];
        for (name, packed) in &made {
            let r = decompress(packed, 1000);
            assert!(
                matches!(r, Err(DecompressError::TooLarge { limit: 1000 })),
                "{name}: {r:?}"
            );
        }
        // Exactly at the limit is fine.
        let gz = gzip_bytes(&data);
        assert_eq!(decompress(&gz, data.len()).unwrap().len(), data.len());
        assert!(decompress(&gz, data.len() - 1).is_err());
        assert_eq!(decompress(SMALL_XZ, SMALL.len()).unwrap(), SMALL);
        assert!(decompress(SMALL_XZ, SMALL.len() - 1).is_err());
    }

    #[test]
    fn bombs_stop_at_the_cap() {
        // 16 MiB of zeros in a few KiB: refused at 1 MiB, decoded at 16 MiB.
        for (name, packed) in [("xz", ZEROS_XZ), ("zstd", ZEROS_ZST)] {
            assert!(packed.len() < 20_000, "{name} fixture too large");
            assert!(
                matches!(
                    decompress(packed, 1 << 20),
                    Err(DecompressError::TooLarge { .. })
                ),
                "{name}"
            );
            let all = decompress(packed, ZEROS_LEN).unwrap();
            assert_eq!(all.len(), ZEROS_LEN, "{name}");
            assert!(all.iter().all(|&b| b == 0), "{name}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 7u32;
        let fixtures: &[&[u8]] = &[
            PLAIN_XZ,
            PLAIN_ZST,
            PLAIN_LZMA,
            HEAD_LZ4,
            HEAD_LZ4_LEGACY,
            PLAIN_GZ,
            SMALL_XZ,
        ];
        for base in fixtures {
            let head = &base[..base.len().min(4096)];
            for _ in 0..64 {
                let mut data = head.to_vec();
                for _ in 0..4 {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let i = 4 + (state as usize >> 8) % (data.len() - 4);
                    data[i] = (state >> 24) as u8;
                }
                let _ = decompress(&data, 1 << 20);
            }
        }
    }
}
