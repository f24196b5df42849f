//! Small standard protocols served by a [`crate::p2p::Node`]: ping, identify and perf.

pub mod identify;
pub mod perf;
pub mod ping;
