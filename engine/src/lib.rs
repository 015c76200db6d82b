//! wbuild: builds Dockerfiles into OCI images the way BuildKit does, with
//! every RUN step executed as a WebAssembly (WASI) program.
//!
//! The flow of one build (`docs/architecture.md` has the whole picture):
//! [`frontend`] (Dockerfile → typed instructions) → [`plan`] (stages, ARG
//! scoping, `--target`) → [`solve`] (the stage scheduler, one op per
//! instruction family, the lookup/record path) → [`cache`] and [`store`]
//! → [`oci`] (the image model) and [`export`] (the outputs). [`build`]
//! runs one build end to end from a [`request::BuildRequest`]; the
//! `wbuild` binary (`main.rs`, `cli.rs`) parses flags into one.

pub mod base;
pub mod build;
pub mod cache;
pub mod context;
pub mod digest;
pub mod env;
pub mod explain;
pub mod export;
#[cfg(feature = "registry")]
pub mod fetch;
pub mod frontend;
pub mod fs;
pub mod fuzz;
#[cfg(feature = "registry")]
pub mod net;
pub mod oci;
pub mod paths;
pub mod plan;
pub mod progress;
#[cfg(feature = "registry")]
pub mod registry;
pub mod report;
pub mod request;
#[cfg(feature = "sandbox")]
pub mod runimage;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod settings;
pub mod solve;
pub mod store;
pub mod watch;
