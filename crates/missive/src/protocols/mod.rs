//! Small standard protocols served by a [`crate::p2p::Node`]: ping and perf.

pub mod perf;
pub mod ping;
