//! Synthetic traffic for the demo (placeholder until written).
