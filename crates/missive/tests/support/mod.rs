//! Helpers shared by integration tests.

pub(crate) mod fault_proxy;
pub(crate) mod rpc_wire;
