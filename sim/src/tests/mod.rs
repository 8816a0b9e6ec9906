//! Tests over real HTTP on loopback, with a tiny std::net client.

mod access;
mod audit;
mod client;
mod integration;
mod oauth;
mod server;

use crate::{SimConfig, Simulator};

/// A fixed "now" for reproducible tests (2025-10-09).
pub(crate) const NOW: i64 = 1_760_000_000;

pub(crate) fn config() -> SimConfig {
    SimConfig {
        seed: 7,
        ..SimConfig::at(NOW)
    }
}

pub(crate) fn start(config: SimConfig) -> Simulator {
    Simulator::start(config).expect("simulator starts")
}
