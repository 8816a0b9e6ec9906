//! Generated data: the simulated organization and the three log datasets.

pub(crate) mod access;
pub(crate) mod audit;
pub(crate) mod integration;
pub(crate) mod world;
