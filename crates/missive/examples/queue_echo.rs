//! A connect-style echo client and server on the queue, over TCP and then TLS.
//!
//! The server answers every datagram with itself; the client sends a few tagged messages,
//! checks that each echo comes back in order with its tag, and closes. Everything runs on
//! loopback and the program ends by itself:
//!
//! ```text
//! cargo run -p missive --example queue_echo
//! ```
//!
//! connect's names map to these: `Connection::tcp_client` / `tls_client` are the same,
//! `TcpListener::bind` + `incoming.next()` is `Listener::bind_tcp` + `accept()`,
//! `ConnectDatagram::new(tag, bytes)` is `Datagram::new(tag, bytes)`, and the reader yields
//! `Result<Datagram, RecvError>` so a broken connection is never mistaken for a closed one.

use std::time::Duration;

use futures_util::StreamExt;
use missive::queue::{Connection, Datagram, Listener};
use missive::transport::tls::SelfSigned;

/// Any error, from any task.
type Error = Box<dyn std::error::Error + Send + Sync>;

/// The messages the client sends, each with its tag.
const MESSAGES: [(u16, &str); 3] = [(1, "Hello world!"), (2, "ordered"), (65535, "and tagged")];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run().await
}

/// Both transports, one after the other, under one deadline.
pub(crate) async fn run() -> Result<(), Error> {
    tokio::time::timeout(Duration::from_secs(20), async {
        // TCP
        let listener = Listener::bind_tcp("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let server = tokio::spawn(echo_server(listener));
        let conn = Connection::tcp_client(&addr).await?;
        client(conn).await?;
        server.await??;
        println!("tcp: {} echoes", MESSAGES.len());

        // TLS, with a certificate made for this run
        let cert = SelfSigned::generate(&["localhost"])?;
        let listener = Listener::bind_tls("127.0.0.1:0", cert.server_config()?).await?;
        let addr = listener.local_addr()?.to_string();
        let server = tokio::spawn(echo_server(listener));
        let conn = Connection::tls_client(&addr, "localhost", cert.client_config()?).await?;
        client(conn).await?;
        server.await??;
        println!("tls: {} echoes", MESSAGES.len());
        Ok(())
    })
    .await
    .map_err(|_| "the echo did not finish within 20 s")?
}

/// Accepts one connection and echoes every datagram until the client closes.
async fn echo_server(mut listener: Listener) -> Result<(), Error> {
    let mut conn = listener.accept().await?;
    while let Some(datagram) = conn.reader().next().await {
        // A frame error or a cut connection is an error here, not the end of the stream.
        let datagram = datagram?;
        conn.writer().send(datagram).await?;
    }
    conn.close().await?;
    Ok(())
}

/// Sends the messages, reads the echoes, then closes without losing anything.
async fn client(mut conn: Connection) -> Result<(), Error> {
    for (tag, text) in MESSAGES {
        conn.writer().feed(Datagram::new(tag, text)).await?;
    }
    conn.writer().flush().await?;
    for (tag, text) in MESSAGES {
        let echo = conn.reader().next().await.ok_or("server closed early")??;
        assert_eq!(echo.tag(), tag);
        assert_eq!(echo.payload(), text.as_bytes());
    }
    let closed = conn.close().await?;
    assert!(closed.peer_closed);
    Ok(())
}
