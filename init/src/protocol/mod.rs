//! The protocol with the migration manager (docs/protocol.md): the inputs,
//! the report files and the run of stage 1 over a fixup directory.

pub mod config;
pub mod report;
pub mod result;
pub mod session;
pub mod testhook;
