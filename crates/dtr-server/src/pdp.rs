//! The OpenID AuthZEN policy decision point as dtr talks to it: the
//! messages ([`wire`], pure) and the client ([`client`]: discovery,
//! timeouts, retries, circuit breaker). What dtr does with the answers,
//! the deferrals and the ARAP tasks, is [`crate::authzen`].

pub mod client;
pub mod wire;

pub use client::{Pdp, PdpError};
