//! criterion suites live in benches/; this crate has no library code.
