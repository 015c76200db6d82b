//! The Dockerfile frontend: parsing (directives, continuations, JSON and
//! shell forms, heredocs), typed instructions, variable expansion with
//! BuildKit's shell lexer, and `.dockerignore` patterns.
//!
//! Nothing here touches the filesystem beyond reading the files it is
//! given.

pub mod dockerignore;
pub mod error;
mod goquote;
pub mod instructions;
pub mod parser;
pub mod shell;

pub use error::{FrontendError, Location};
pub use goquote::{quote, quote_slice};
