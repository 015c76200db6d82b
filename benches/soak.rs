//! `cargo bench --bench soak`: the fault-injection trials of
//! `tests/it/faults.rs`, longer, printing how many held. `SOAK_SEED` and
//! `SOAK_SCALE` (a multiplier, default 1) change the run. Figures, not
//! assertions: a trial that did not hold is listed with what replays it.

#[path = "../tests/it/fault_lab.rs"]
mod faults;

use faults::{concurrent_with_prune, flips, kills, Counts, Lab};

fn print(name: &str, c: &Counts) {
    println!(
        "{name}: {} tries, {} held, {} failed",
        c.tries,
        c.held,
        c.failed.len()
    );
    for f in &c.failed {
        println!("  {f}");
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let scale: usize = std::env::var("SOAK_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let t0 = std::time::Instant::now();
    let lab = Lab::new(env!("CARGO_BIN_EXE_wbuild").as_ref());
    println!(
        "soak (seed {seed}, scale {scale}): reference {}; a build with RUN and export takes {:.2} s",
        lab.reference,
        lab.cold.as_secs_f64()
    );
    print(
        "kill -9 during build, RUN and export",
        &kills(&lab, seed, 40 * scale),
    );
    print(
        "bit flips in stored files",
        &flips(&lab, seed + 1, 60 * scale),
    );
    let mut together = Counts::default();
    for _ in 0..4 * scale {
        together.add(concurrent_with_prune(&lab, 4));
    }
    print("4 builds at once with prune --all in a loop", &together);
    println!("soak took {:.0} s", t0.elapsed().as_secs_f64());
}
