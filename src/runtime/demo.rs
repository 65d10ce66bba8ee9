//! `slawatch demo` (placeholder until written).
