//! The policy language (docs/sla-semantics.md §1): TOML source → validated, compiled
//! `PolicySet`.
pub mod builtin;
pub mod compiled;
pub mod diagnostics;
pub mod parse;
pub use compiled::*;
