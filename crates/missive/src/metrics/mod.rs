//! OpenMetrics counters, gauges and histograms of every layer, with `prometheus-client`.
//!
//! Each layer has one handle ([`RpcMetrics`], [`QueueMetrics`]) that registers its metric
//! families in a [`Registry`] and is given to the layer's configuration
//! (`ServerConfig::with_metrics`, `QueueConfig::with_metrics`, …). A configuration that is given
//! none records into the crate's default registry ([`default_registry`]), so turning the feature
//! on is enough to have numbers. The hooks sit where the layers already do their work (a decoded
//! frame, a finished call, a write), and the hot paths add to plain atomics, batched per system
//! call where there is one per message. Without the `metrics` feature none of this code exists.
//!
//! ```
//! # #[cfg(all(feature = "rpc", feature = "prost"))]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::metrics::{Registry, RpcMetrics, encode};
//! use missive::rpc::echo::{self, EchoService, Request};
//! use missive::rpc::{Client, ClientConfig, Server, ServerConfig};
//!
//! let mut registry = Registry::default();
//! let metrics = RpcMetrics::register(&mut registry);
//! let (a, b) = missive::transport::memory::pair(64 * 1024);
//! let server = Server::new(ServerConfig::default().with_metrics(metrics.clone()));
//! tokio::spawn(server.connection(b, echo::ServerCodec::default(), EchoService::default()));
//! let client = Client::spawn(
//!     a,
//!     echo::ClientCodec::default(),
//!     ClientConfig::default().with_metrics(metrics),
//! );
//! client.call(Request::unary("hello")).await?;
//!
//! let text = encode(&registry);
//! assert!(text.contains(r#"missive_rpc_calls_total{side="client",kind="unary",status="ok"} 1"#));
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "rpc", feature = "prost")))]
//! # fn main() {}
//! ```

use std::sync::{Mutex, OnceLock};

pub use prometheus_client;
pub use prometheus_client::registry::Registry;

#[cfg(any(feature = "rpc", feature = "p2p"))]
pub(crate) mod histogram;
#[cfg(feature = "p2p")]
pub(crate) mod node;
#[cfg(feature = "queue")]
pub(crate) mod queue;
#[cfg(feature = "request-response")]
pub(crate) mod request_response;
#[cfg(feature = "rpc")]
pub(crate) mod rpc;

#[cfg(feature = "p2p")]
pub use node::NodeMetrics;
#[cfg(feature = "queue")]
pub use queue::QueueMetrics;
#[cfg(feature = "request-response")]
pub use request_response::RrMetrics;
#[cfg(feature = "rpc")]
pub use rpc::RpcMetrics;

pub(crate) use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};

/// Label sets of the crate's metrics: a few fixed names with values from small fixed sets.
pub(crate) type Labels = Vec<(&'static str, &'static str)>;

/// The registry that layers configured without metrics of their own record into.
///
/// Encode it with [`encode_default`]; hold the lock only briefly, since registering the
/// default metrics of a layer takes it once.
pub fn default_registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

/// The OpenMetrics text of `registry` (ending in `# EOF`).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// The OpenMetrics text of the [`default_registry`].
pub fn encode_default() -> String {
    let registry = default_registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    encode(&registry)
}

/// Registers into the default registry once and hands out clones after.
pub(crate) fn default_of<M: Clone>(
    cell: &'static OnceLock<M>,
    register: fn(&mut Registry) -> M,
) -> M {
    cell.get_or_init(|| {
        let mut registry = default_registry()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        register(&mut registry)
    })
    .clone()
}

/// Keeps a shared gauge equal to the sum of every connection's count: each connection adds
/// the change since it last reported, and takes its share back when dropped.
#[derive(Debug)]
#[cfg_attr(not(feature = "rpc"), allow(dead_code))]
pub(crate) struct GaugeShare {
    gauge: Gauge,
    reported: i64,
}

#[cfg_attr(not(feature = "rpc"), allow(dead_code))]
impl GaugeShare {
    pub(crate) fn new(gauge: Gauge) -> Self {
        GaugeShare { gauge, reported: 0 }
    }

    pub(crate) fn set(&mut self, now: usize) {
        let now = now as i64;
        if now != self.reported {
            self.gauge.inc_by(now - self.reported);
            self.reported = now;
        }
    }
}

impl Drop for GaugeShare {
    fn drop(&mut self) {
        self.gauge.dec_by(self.reported);
    }
}
