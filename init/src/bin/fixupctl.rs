//! `fixupctl`: the fixup engine on the command line.
fn main() {
    std::process::exit(osam_init::cli::main())
}
