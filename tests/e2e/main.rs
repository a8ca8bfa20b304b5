//! End-to-end tests: the real `herald` binary, real TLS, real HTTP/2 clients
//! (the `h2` crate with push enabled, and `nghttp`), real Wasm components
//! compiled from `plugins-example/` and `tests/fixtures/` during the run.

mod ab;
mod browser;
mod cli;
mod digest;
mod engine;
mod failures;
mod hostile;
mod http1;
mod languages;
mod nghttp;
mod origin;
mod proxy;
mod push;
mod raw;
mod shown;
mod support;
mod swap;
