//! Guest storage in the stack: finding the replica disks by their
//! controller address (PROTOCOL.md, replica-disk-map.json) and the stack's
//! own disk by its GPT GUID, probing what they hold, and assembling the
//! md arrays and LVM volume groups on them.

pub mod assemble;
pub mod devlinks;
pub mod discover;
pub mod partition;
pub mod probe;
