#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| osam_init::fuzzing::keyfile(data));
