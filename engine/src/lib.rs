//! wbuild: builds Dockerfiles into OCI images the way BuildKit does, with
//! every RUN step executed as a WebAssembly (WASI) program.
//!
//! The flow (see `../shared/design/ARCHITECTURE.md`):
//! `frontend` (Dockerfile → instructions) → `plan` (stages, ARG scoping,
//! `--target`) → solver → export. This crate holds the library; the
//! `wbuild` binary (`main.rs`, `cli`) is a thin layer over it.

pub mod base;
pub mod build;
pub mod cache;
pub mod cli;
pub mod context;
pub mod digest;
pub mod export;
pub mod frontend;
pub mod fs;
pub mod plan;
pub mod progress;
#[cfg(feature = "sandbox")]
pub mod runimage;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod solver;
pub mod store;
