//! The policy language (SLA-SEMANTICS §1): TOML source → validated, compiled `PolicySet`.
pub mod model;
pub use model::*;
