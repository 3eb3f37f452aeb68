//! xz compression the Linux kernel can decompress.
//!
//! The kernel's XZ decoder (lib/xz) checks CRC32 only: a stream with xz's
//! default CRC64 check makes it refuse the initramfs ("XZ-compressed data
//! is corrupt" / unsupported check). Everything the stack's kernel reads is
//! therefore compressed here with the CRC32 check.

use std::io::{self, Write};

use xz2::stream::{Check, Stream};
use xz2::write::XzEncoder;

/// An error of xz compression.
#[derive(Debug, thiserror::Error)]
pub enum XzError {
    /// The encoder could not be set up (for instance a level above 9).
    #[error("setting up the xz encoder at level {level}")]
    Encoder {
        /// The preset level asked for.
        level: u32,
        /// What liblzma said.
        #[source]
        source: xz2::stream::Error,
    },
    /// Writing the compressed stream failed.
    #[error("writing the xz stream")]
    Io(#[from] io::Error),
}

/// The byte of an xz stream header that holds the integrity check type.
pub const STREAM_FLAGS_CHECK_BYTE: usize = 7;
/// The check type value for CRC32.
pub const CHECK_CRC32: u8 = 0x01;

/// An xz writer with the CRC32 check at preset `level` (0–9) around `inner`;
/// call [`XzEncoder::finish`] to end the stream.
pub fn xz_crc32_writer<W: Write>(inner: W, level: u32) -> Result<XzEncoder<W>, XzError> {
    let stream = Stream::new_easy_encoder(level, Check::Crc32)
        .map_err(|source| XzError::Encoder { level, source })?;
    Ok(XzEncoder::new_stream(inner, stream))
}

/// Compresses `data` into one xz stream with the CRC32 check.
pub fn compress_xz_crc32(data: &[u8], level: u32) -> Result<Vec<u8>, XzError> {
    let mut encoder = xz_crc32_writer(Vec::with_capacity(data.len() / 3 + 64), level)?;
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stream_uses_crc32_check() {
        let data = b"initramfs ".repeat(1000);
        let xz = compress_xz_crc32(&data, 6).unwrap();
        assert_eq!(&xz[..6], b"\xfd7zXZ\x00", "xz stream magic");
        assert_eq!(xz[6], 0x00, "first stream flags byte is reserved");
        assert_eq!(
            xz[STREAM_FLAGS_CHECK_BYTE], CHECK_CRC32,
            "check type must be CRC32"
        );
        // The stream footer repeats the flags.
        assert_eq!(xz[xz.len() - 3], CHECK_CRC32);
        assert_eq!(&xz[xz.len() - 2..], b"YZ");

        let mut back = Vec::new();
        xz2::read::XzDecoder::new(&xz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn bad_level_is_an_error() {
        let err = compress_xz_crc32(b"x", 42).unwrap_err();
        assert!(matches!(err, XzError::Encoder { level: 42, .. }), "{err}");
    }
}
