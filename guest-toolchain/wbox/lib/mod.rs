//! What the applets, the shell and awk share, below all of them: streams
//! and the applet table ([`io`]), paths and program lookup ([`paths`]),
//! running commands ([`proc`]), pattern matching ([`glob`]), number
//! formatting ([`fmt`]), option parsing ([`opts`]), regular expressions
//! ([`re`]), codecs and checksums ([`codec`]), reading and writing as the
//! data comes ([`stream`]) and the host interface ([`sys`]). Nothing here imports an applet, the shell or awk.

pub mod codec;
pub mod fmt;
pub mod glob;
pub mod io;
pub mod opts;
pub mod paths;
pub mod proc;
pub mod re;
pub mod stream;
pub mod sys;
