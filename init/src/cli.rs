//! fixupctl (placeholder until written).
pub fn main() -> i32 {
    0
}
