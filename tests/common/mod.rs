//! Helpers shared by the integration tests. Use from a test file with `mod common;`.
pub mod kafka;
