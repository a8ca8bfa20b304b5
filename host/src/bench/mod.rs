//! Benchmarks that need a live server and a network: `herald bench ...`.
//! Timings are reported, never asserted (see BENCHMARKS.md).

pub mod decide;
pub mod hol;
pub mod pageload;
pub mod proxy;
pub mod swap;
