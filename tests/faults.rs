//! Fault injection with a small budget (issue 10, "keep it so"): `kill -9`
//! at random moments of builds, RUN steps and exports; bit flips in every
//! kind of stored file; builds at once while `prune` runs in a loop. The
//! seeds are fixed; `cargo bench --bench soak` runs the same trials longer
//! and prints their counts.

#[path = "faults/mod.rs"]
mod faults;

use faults::{concurrent_with_prune, flips, kills, Counts, Lab};

fn report(name: &str, c: &Counts) {
    println!(
        "{name}: {} tries, {} held, {} failed",
        c.tries,
        c.held,
        c.failed.len()
    );
    assert!(c.failed.is_empty(), "{name}:\n{}", c.failed.join("\n"));
    assert_eq!(c.tries, c.held);
}

#[test]
fn a_store_holds_under_kills_bit_flips_and_concurrent_prunes() {
    let lab = Lab::new(env!("CARGO_BIN_EXE_wbuild").as_ref());
    report("kill -9", &kills(&lab, 1, 4));
    report("bit flips", &flips(&lab, 2, 6));
    report("builds at once with prune", &concurrent_with_prune(&lab, 3));
}
