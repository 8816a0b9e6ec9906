//! The slack-logs collector component (`wasm32-wasip2`).
//!
//! This crate is the thin layer between WIT and the pure logic in `slack-logs-core`: it reads the
//! config through `wasi:config/store`, keeps checkpoints in `wasi:keyvalue/store`, calls Slack
//! through `wasi:http/outgoing-handler`, hands records to the `sink` import, and exports the
//! `collector` interface and `wasi:http/incoming-handler` (routes `POST /collect`, `GET /healthz`,
//! `GET /status`, the status page `GET /`, and the OAuth install flow `GET /oauth/start`,
//! `GET /oauth/callback`, `POST /oauth/revoke`). It holds no collection or OAuth logic of its own (that is in the core's
//! `oauth` module); [`routes`] is plain Rust and tested natively, the WASI glue only exists when
//! built for wasm32.

pub mod routes;
pub mod status_page;

#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(target_arch = "wasm32")]
mod wasi_env;
