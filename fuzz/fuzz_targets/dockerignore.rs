//! Any bytes as a .dockerignore file and paths to match.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wbuild::fuzz::dockerignore(data);
});
