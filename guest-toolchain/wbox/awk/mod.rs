//! `awk`: the POSIX language (patterns and actions, BEGIN/END, ranges,
//! fields, arrays, user functions, getline, printf, output redirections
//! and pipes, the string and math builtins) with a few common gawk
//! extensions (`length(array)`, `tolower`/`toupper`, `fflush`, an empty FS
//! splitting characters, a regex RS). Numbers print as gawk prints them:
//! integers in full up to 2^53, others by OFMT / CONVFMT.
//!
//! [`lex`] → [`parse`] → [`interp`], over the values of [`value`].

mod interp;
mod lex;
mod parse;
mod value;

pub use interp::main;
