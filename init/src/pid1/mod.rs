//! PID 1 (placeholder until written).
pub fn main() {}
