//! Guest storage in the stack: finding the replica disks by their
//! controller address (PROTOCOL.md, replica-disk-map.json) and the stack's
//! own disk by its GPT GUID.

pub mod devlinks;
pub mod discover;
pub mod partition;
pub mod probe;
