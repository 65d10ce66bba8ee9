//! The policy language (SLA-SEMANTICS §1): TOML source → validated, compiled `PolicySet`.
pub mod diagnostics;
pub mod model;
pub mod parse;
pub use model::*;
