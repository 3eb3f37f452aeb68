//! The image builder of the OSAM fixup stack.
//!
//! Building blocks that read the pinned inputs ([`pins`]) and write what
//! the stack boots from: Debian packages ([`deb`]), kernels and their
//! modules ([`kernel`]), initramfs archives ([`cpio`]) compressed the way
//! the kernel reads them ([`xz`]). Each takes paths or bytes and returns data; the
//! `osam-image` binary drives them.

pub mod build;
pub mod compression;
pub mod cpio;
pub mod deb;
pub mod disk;
pub mod inspect;
pub mod kernel;
pub mod kernel_config;
pub mod ova;
pub mod pins;
pub mod qcow2;
pub mod rawimg;
pub mod stack;
pub mod vmdk;
pub mod xz;
