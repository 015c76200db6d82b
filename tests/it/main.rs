//! wbuild's integration tests, one binary (one link of wasmtime, not
//! nineteen), a module per area as ripgrep keeps its own: each drives the
//! real `wbuild` binary (`harness`) on real contexts in temp dirs.
//! `cargo test --test it AREA::` runs one area (`cargo test --test it
//! parity::`).

mod fault_lab;
#[path = "../guests/build.rs"]
mod guest_build;
mod harness;

mod architecture;
mod base;
mod build;
mod cache;
mod cli;
mod compare;
mod corpus;
mod emulated;
mod examples;
mod explain;
mod faults;
mod fuzz;
mod gc;
mod parity;
mod registry;
mod remote;
mod report;
mod run;
mod tty;
mod watch;
