//! File sharing with request-response, in the spirit of rust-libp2p's `file-sharing` example:
//! one node provides named blobs, another fetches them by name over `/file-exchange/1` with the
//! CBOR codec (byte for byte what rust-libp2p's `request_response::cbor` writes, so either node
//! could be a rust-libp2p peer). rust-libp2p's example finds providers with Kademlia; here the
//! fetcher is given the provider's address. Both nodes run on loopback and the program ends by
//! itself:
//!
//! ```text
//! cargo run -p missive --example file_sharing
//! ```
//!
//! The provider answers with libp2p's event interface (`Event::Message` with a
//! `ResponseChannel`, then `send_response`); the fetcher uses the awaitable
//! `Behaviour::request`, which needs no event loop at all.

use std::collections::HashMap;
use std::time::Duration;

use missive::p2p::{Keypair, Node, NodeConfig};
use missive::request_response::{
    Behaviour, Config, Event, Message, OutboundFailure, ProtocolSupport, cbor,
};
use serde::{Deserialize, Serialize};

/// A request for the blob with this name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FileRequest(pub(crate) String);

/// The blob, or `None` when the provider has none by that name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FileResponse(pub(crate) Option<Vec<u8>>);

type FileExchange = Behaviour<cbor::Codec<FileRequest, FileResponse>>;

fn protocols() -> [(String, ProtocolSupport); 1] {
    [("/file-exchange/1".to_owned(), ProtocolSupport::Full)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await
}

/// A provider and a fetcher on loopback, under one deadline.
pub(crate) async fn run() -> Result<(), Box<dyn std::error::Error>> {
    tokio::time::timeout(Duration::from_secs(20), share())
        .await
        .map_err(|_| "file sharing did not finish within 20 s")?
}

async fn share() -> Result<(), Box<dyn std::error::Error>> {
    // The provider and its blobs.
    let files: HashMap<String, Vec<u8>> = [
        (
            "hello.txt".to_owned(),
            b"Hello from the provider!\n".to_vec(),
        ),
        (
            "numbers.bin".to_owned(),
            (0..=255u8).cycle().take(64 * 1024).collect(),
        ),
    ]
    .into();
    let provider = Node::new(Keypair::generate(), NodeConfig::default()).await?;
    let provider_addr = provider.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
    let exchange = FileExchange::new(&provider, protocols(), Config::default())?;
    let mut events = exchange.events()?;
    let serving = tokio::spawn({
        let exchange = exchange.clone();
        async move {
            while let Some(event) = events.next().await {
                match event {
                    Event::Message {
                        peer,
                        message:
                            Message::Request {
                                request, channel, ..
                            },
                        ..
                    } => {
                        let blob = files.get(&request.0).cloned();
                        println!(
                            "provider: {peer} asks for {:?} ({})",
                            request.0,
                            if blob.is_some() { "found" } else { "none" }
                        );
                        // Err gives the response back: the requester is gone.
                        if exchange.send_response(channel, FileResponse(blob)).is_err() {
                            eprintln!("provider: {peer} left before the answer");
                        }
                    }
                    Event::InboundFailure { peer, error, .. } => {
                        eprintln!("provider: a request from {peer} failed: {error}");
                    }
                    _ => {}
                }
            }
        }
    });

    // The fetcher: dials the provider's address on its first request.
    let fetcher = Node::new(Keypair::generate(), NodeConfig::default()).await?;
    fetcher.add_address(provider.peer_id(), provider_addr);
    let client = FileExchange::new(&fetcher, protocols(), Config::default())?;
    let names = ["hello.txt", "numbers.bin", "missing.txt"];
    let fetches = names.map(|name| {
        let client = client.clone();
        let peer = provider.peer_id();
        async move {
            (
                name,
                client.request(peer, FileRequest(name.to_owned())).await,
            )
        }
    });
    // Requests run at once, each on a stream of its own.
    for (name, result) in futures_util::future::join_all(fetches).await {
        match result {
            Ok(FileResponse(Some(blob))) => println!("fetcher: {name}: {} bytes", blob.len()),
            Ok(FileResponse(None)) => println!("fetcher: {name}: the provider has none"),
            Err(error @ OutboundFailure::Timeout) => return Err(error.into()),
            Err(error) => return Err(format!("fetching {name}: {error}").into()),
        }
    }
    let first = client
        .request(provider.peer_id(), FileRequest("hello.txt".into()))
        .await?;
    assert_eq!(first.0.as_deref(), Some(&b"Hello from the provider!\n"[..]));

    serving.abort();
    fetcher.shutdown().await;
    provider.shutdown().await;
    Ok(())
}
