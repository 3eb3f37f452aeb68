//! The stream compressions that package members and kernel modules come in.

use std::borrow::Cow;
use std::io::{self, Read};

/// A compression method of a stream, told by a file name's suffix or by the
/// stream's magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as it is.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// xz (with any integrity check).
    Xz,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The method named by a file name's last suffix (`.gz`, `.xz`, `.zst`),
    /// [`Compression::None`] for a name without one of those, or `None` for
    /// a compression suffix this crate does not read (`.bz2`, `.lzma`, `.lz4`).
    pub fn from_file_name(name: &str) -> Option<Self> {
        let ext = match name.rsplit_once('.') {
            Some((_, ext)) => ext,
            None => return Some(Self::None),
        };
        match ext {
            "gz" => Some(Self::Gzip),
            "xz" => Some(Self::Xz),
            "zst" => Some(Self::Zstd),
            "bz2" | "lzma" | "lz4" | "lz" | "Z" => None,
            _ => Some(Self::None),
        }
    }

    /// The method whose magic bytes start `head`, else [`Compression::None`].
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Self::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }

    /// Wraps `reader` in the matching decoder.
    pub fn decoder<'a, R: Read + 'a>(self, reader: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Self::None => Box::new(reader),
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Self::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(reader)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
        })
    }

    /// Decodes a whole buffer, the method told by its magic bytes (an
    /// uncompressed buffer is handed back as it is).
    pub fn decode_sniffed(data: &[u8]) -> io::Result<Cow<'_, [u8]>> {
        let method = Self::sniff(data);
        if method == Self::None {
            return Ok(Cow::Borrowed(data));
        }
        let mut out = Vec::with_capacity(data.len() * 3);
        method.decoder(data)?.read_to_end(&mut out)?;
        Ok(Cow::Owned(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names_and_magic() {
        for (name, want) in [
            ("data.tar.xz", Some(Compression::Xz)),
            ("data.tar.zst", Some(Compression::Zstd)),
            ("control.tar.gz", Some(Compression::Gzip)),
            ("control.tar", Some(Compression::None)),
            ("data.tar.bz2", None),
            ("vmw_pvscsi.ko", Some(Compression::None)),
            ("noext", Some(Compression::None)),
        ] {
            assert_eq!(Compression::from_file_name(name), want, "{name}");
        }
        assert_eq!(Compression::sniff(b"plain"), Compression::None);
    }

    #[test]
    fn round_trips_every_method() {
        let data = b"hello, hello, hello, compression".repeat(50);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let xz = crate::xz::compress_xz_crc32(&data, 1).unwrap();
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        for (enc, method) in [
            (gz, Compression::Gzip),
            (xz, Compression::Xz),
            (zst, Compression::Zstd),
            (data.clone(), Compression::None),
        ] {
            assert_eq!(Compression::sniff(&enc), method);
            assert_eq!(&*Compression::decode_sniffed(&enc).unwrap(), &data[..]);
        }
    }
}
