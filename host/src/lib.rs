//! Herald: an HTTP/2 server whose push decisions are made per request by
//! sandboxed WebAssembly policies.
//!
//! The path of a request, one module per step: [`server`] accepts and
//! completes TLS; [`conn`] runs each request on the connection's
//! [`http2`] engine; [`origin`] prepares the response; [`policy`] runs the
//! Wasm policy; [`planner`] validates and routes its hints; `conn::push`
//! promises them through the engine, whose scheduler sends every body by
//! urgency and weight; [`metrics`] counts what happened.

pub mod admin;
pub mod bench;
pub mod client_cache;
pub mod config;
pub mod conn;
pub mod decide;
pub mod digest;
pub mod experiment;
pub mod fswatch;
pub mod h1;
pub mod hash;
pub mod http2;
pub mod metrics;
pub mod origin;
pub mod planner;
pub mod policy;
pub mod proxy;
pub mod report;
pub mod server;
pub mod template;
pub mod tls;
pub mod tools;
