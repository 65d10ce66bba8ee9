//! Metric catalogue (being written).
