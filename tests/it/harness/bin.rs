//! The wbuild binary the integration tests drive: this build's, or the one
//! `WBUILD_TEST_BIN` names, started through `WBUILD_TEST_RUNNER` when that
//! is set. CI uses the pair to run the tests against the Windows exe under
//! Wine (`.ci/windows/test.sh`). Every area that starts the binary goes
//! through it.

#![allow(dead_code)] // each area uses part of it

use std::process::Command;

/// A command that runs the binary under test.
pub fn command() -> Command {
    match (
        std::env::var_os("WBUILD_TEST_BIN"),
        std::env::var_os("WBUILD_TEST_RUNNER"),
    ) {
        (Some(bin), Some(runner)) => {
            let mut c = Command::new(runner);
            c.arg(bin);
            c
        }
        (Some(bin), None) => Command::new(bin),
        _ => Command::new(env!("CARGO_BIN_EXE_wbuild")),
    }
}

/// Whether the binary under test is another build than this one's (the
/// Windows exe under Wine, in CI).
pub fn foreign() -> bool {
    std::env::var_os("WBUILD_TEST_BIN").is_some()
}

/// For a test (or part of one) that holds only for this build's binary on
/// this OS, such as one that reads Unix permission bits or a Unix-only
/// file type: true, with a printed notice, when another binary is under
/// test. The Linux run of the same test covers it.
pub fn linux_only(why: &str) -> bool {
    if foreign() {
        println!("notice: skipped against WBUILD_TEST_BIN: {why}");
    }
    foreign()
}
