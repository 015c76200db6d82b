//! The real `wbuild` binary on real files.
