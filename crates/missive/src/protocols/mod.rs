//! Small standard protocols served by a [`crate::p2p::Node`]: ping, identify and perf.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::p2p::{Keypair, Node, NodeConfig};
//!
//! let a = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let b = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let peer = b.dial(a.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?).await?;
//! let rtt = b.ping(peer).await?;
//! let info = missive::protocols::identify::request(&b.stream_control(), peer).await?;
//! assert_eq!(info.peer_id(), a.peer_id());
//! println!("{} ({}) answered in {rtt:?}", peer, info.agent_version);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use crate::p2p::{Keypair, NewNodeError, Node, NodeConfig, PeerId};

pub mod identify;
pub mod perf;
pub mod ping;

// The node's constructor lives with the protocols it installs, so that the node itself
// (`crate::p2p`) never reaches up to them.
impl Node {
    /// Creates a node with `keypair` as its identity. It serves `/ipfs/ping/1.0.0` and identify
    /// (`/ipfs/id/1.0.0`), and `/perf/1.0.0` when enabled in the config. Must run inside a
    /// tokio runtime.
    pub async fn new(keypair: Keypair, config: NodeConfig) -> Result<Self, NewNodeError> {
        let perf = config.enable_perf;
        let node = Node::bare(&keypair, config)?;
        let control = node.stream_control();
        ping::serve(&control);
        identify::serve(&control, keypair.public());
        if perf {
            perf::serve(&control);
        }
        Ok(node)
    }

    /// Measures one `/ipfs/ping/1.0.0` round trip to `peer`, dialing it first if needed.
    pub async fn ping(&self, peer: PeerId) -> Result<Duration, ping::PingError> {
        let timeout = self.shared().config.ping_timeout;
        ping::ping(&self.stream_control(), peer, timeout).await
    }
}
