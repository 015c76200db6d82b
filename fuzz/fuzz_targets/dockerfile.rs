//! Any bytes as a Dockerfile: parsing, typing, planning and expansion must
//! return a value or an error, never panic or hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wbuild::fuzz::dockerfile(data);
});
