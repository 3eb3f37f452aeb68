//! PID 1 of the fixup stack. All the work is in the library.
fn main() {
    osam_init::pid1::main()
}
