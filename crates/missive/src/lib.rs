//! missive: typed message protocols between programs and peers.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod transport;

#[cfg(feature = "queue")]
pub mod queue;

#[cfg(feature = "rpc")]
pub mod rpc;
