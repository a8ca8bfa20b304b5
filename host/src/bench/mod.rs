//! Benchmarks that need a live server and a network: `herald bench ...`.
//! Timings are reported, never asserted (see BENCHMARKS.md).

pub mod decide;
pub mod hol;
pub mod instructions;
pub mod pageload;
pub mod proxy;
pub mod swap;

use std::time::Duration;

/// The `p` quantile (0 to 1) of `v`, nearest rank; zero for an empty list.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut sorted = v.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[((n - 1) as f64 * p).round() as usize],
    }
}
