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

pub mod identify;
pub mod perf;
pub mod ping;
