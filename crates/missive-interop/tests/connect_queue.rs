//! missive's queue against the real connect 0.2.4, over TCP and TLS, in both directions.
//!
//! connect runs on async-std on its own thread; missive runs on tokio. Senders on the connect side
//! wait for every flush (`send`), the pace at which connect does not drop datagrams; every
//! datagram must then arrive with its tag and payload, in order.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use connect::{ConnectDatagram, SinkExt as _, StreamExt as _};
use missive::queue::{Connection, Datagram, Listener};
use missive_interop::{SERVER_NAME, TlsPair, free_port, join, on_async_std, payload, tag};

/// Datagrams per test: enough to show order, few enough to stay fast.
const COUNT: usize = 1_000;
/// Bound on each side of each test.
const LIMIT: Duration = Duration::from_secs(20);
/// Attempts at binding connect's listener to a port found free a moment before.
const BIND_ATTEMPTS: usize = 5;

// ---------------------------------------------------------------------------------------------
// connect client → missive listener

#[tokio::test]
async fn connect_client_to_missive_listener_over_tcp_keeps_tags_and_order() -> anyhow::Result<()> {
    let listener = Listener::bind_tcp("127.0.0.1:0").await?;
    connect_client_to_missive(listener, None).await
}

#[tokio::test]
async fn connect_client_to_missive_listener_over_tls_keeps_tags_and_order() -> anyhow::Result<()> {
    let tls = TlsPair::generate()?;
    let listener = Listener::bind_tls("127.0.0.1:0", tls.server.clone()).await?;
    connect_client_to_missive(listener, Some(tls)).await
}

async fn connect_client_to_missive(
    mut listener: Listener,
    tls: Option<TlsPair>,
) -> anyhow::Result<()> {
    let addr = socket_addr(&listener)?;
    let client = on_async_std("connect-client", async move {
        let mut conn = connect_dial(addr, tls.as_ref()).await?;
        for i in 0..COUNT {
            let d = ConnectDatagram::new(tag(i), payload(i)).map_err(|e| anyhow!("{e}"))?;
            conn.writer().send(d).await?;
        }
        close_connect(conn).await
    })?;

    let received = tokio::time::timeout(LIMIT, async {
        let mut conn = listener.accept().await?;
        receive_in_order(&mut conn).await
    })
    .await
    .context("missive's side timed out")?;
    join(client)?;
    received
}

// ---------------------------------------------------------------------------------------------
// missive client → connect listener

#[tokio::test]
async fn missive_client_to_connect_listener_over_tcp_keeps_tags_and_order() -> anyhow::Result<()> {
    missive_client_to_connect(None).await
}

#[tokio::test]
async fn missive_client_to_connect_listener_over_tls_keeps_tags_and_order() -> anyhow::Result<()> {
    missive_client_to_connect(Some(TlsPair::generate()?)).await
}

async fn missive_client_to_connect(tls: Option<TlsPair>) -> anyhow::Result<()> {
    let (addr_rx, server) =
        connect_serves_one("connect-listener", tls.clone(), |mut conn| async move {
            for i in 0..COUNT {
                let d = conn
                    .reader()
                    .next()
                    .await
                    .with_context(|| format!("connect's stream ended after {i} datagrams"))?;
                check_connect(&d, i)?;
            }
            ensure!(
                conn.reader().next().await.is_none(),
                "connect received more datagrams than were sent"
            );
            anyhow::Ok(())
        })?;

    let sent = tokio::time::timeout(LIMIT, async {
        let addr = addr_rx.await.context("connect's listener did not bind")?;
        let mut conn = missive_dial(addr, tls.as_ref()).await?;
        for i in 0..COUNT {
            conn.writer()
                .send(Datagram::new(tag(i), payload(i)))
                .await?;
        }
        close_missive(conn).await
    })
    .await
    .context("missive's side timed out")?;
    let received = join(server);
    sent?;
    received
}

// ---------------------------------------------------------------------------------------------
// echo: connect server, missive client

#[tokio::test]
async fn missive_client_round_trips_through_connect_echo_over_tcp() -> anyhow::Result<()> {
    missive_through_connect_echo(None).await
}

#[tokio::test]
async fn missive_client_round_trips_through_connect_echo_over_tls() -> anyhow::Result<()> {
    missive_through_connect_echo(Some(TlsPair::generate()?)).await
}

async fn missive_through_connect_echo(tls: Option<TlsPair>) -> anyhow::Result<()> {
    let (addr_rx, server) =
        connect_serves_one("connect-echo", tls.clone(), |mut conn| async move {
            let mut echoed = 0usize;
            while let Some(d) = conn.reader().next().await {
                ensure!(echoed < COUNT, "more datagrams than were sent");
                conn.writer().send(d).await?;
                echoed += 1;
            }
            ensure!(echoed == COUNT, "echoed {echoed} of {COUNT} datagrams");
            anyhow::Ok(())
        })?;

    let client = tokio::time::timeout(LIMIT, async {
        let addr = addr_rx.await.context("connect's listener did not bind")?;
        let mut conn = missive_dial(addr, tls.as_ref()).await?;
        for i in 0..COUNT {
            conn.writer()
                .send(Datagram::new(tag(i), payload(i)))
                .await?;
            let back = conn
                .reader()
                .next()
                .await
                .with_context(|| format!("the echo ended after {i} round trips"))??;
            check_missive(&back, i)?;
        }
        conn.close().await?;
        anyhow::Ok(())
    })
    .await
    .context("missive's side timed out")?;
    let server = join(server);
    client?;
    server
}

// ---------------------------------------------------------------------------------------------
// echo: missive server, connect client

#[tokio::test]
async fn connect_client_round_trips_through_missive_echo_over_tcp() -> anyhow::Result<()> {
    let listener = Listener::bind_tcp("127.0.0.1:0").await?;
    connect_through_missive_echo(listener, None).await
}

#[tokio::test]
async fn connect_client_round_trips_through_missive_echo_over_tls() -> anyhow::Result<()> {
    let tls = TlsPair::generate()?;
    let listener = Listener::bind_tls("127.0.0.1:0", tls.server.clone()).await?;
    connect_through_missive_echo(listener, Some(tls)).await
}

async fn connect_through_missive_echo(
    mut listener: Listener,
    tls: Option<TlsPair>,
) -> anyhow::Result<()> {
    let addr = socket_addr(&listener)?;
    let client = on_async_std("connect-client", async move {
        async_std::future::timeout(LIMIT, async {
            let mut conn = connect_dial(addr, tls.as_ref()).await?;
            for i in 0..COUNT {
                let d = ConnectDatagram::new(tag(i), payload(i)).map_err(|e| anyhow!("{e}"))?;
                conn.writer().send(d).await?;
                let back = conn
                    .reader()
                    .next()
                    .await
                    .with_context(|| format!("the echo ended after {i} round trips"))?;
                check_connect(&back, i)?;
            }
            close_connect(conn).await
        })
        .await
        .map_err(|_| anyhow!("connect's side timed out"))?
    })?;

    let server = tokio::time::timeout(LIMIT, async {
        let mut conn = listener.accept().await?;
        let mut echoed = 0usize;
        while let Some(d) = conn.reader().next().await {
            let d = d?;
            ensure!(echoed < COUNT, "more datagrams than were sent");
            conn.writer().send(d).await?;
            echoed += 1;
        }
        ensure!(echoed == COUNT, "echoed {echoed} of {COUNT} datagrams");
        anyhow::Ok(())
    })
    .await
    .context("missive's side timed out")?;
    join(client)?;
    server
}

// ---------------------------------------------------------------------------------------------
// connect's own close

#[tokio::test]
async fn connect_tls_client_dropped_without_close_notify_is_reported_after_every_datagram()
-> anyhow::Result<()> {
    let tls = TlsPair::generate()?;
    let mut listener = Listener::bind_tls("127.0.0.1:0", tls.server.clone()).await?;
    let addr = socket_addr(&listener)?;
    let client = on_async_std("connect-client", async move {
        let mut conn = connect_dial(addr, Some(&tls)).await?;
        for i in 0..COUNT {
            let d = ConnectDatagram::new(tag(i), payload(i)).map_err(|e| anyhow!("{e}"))?;
            conn.writer().send(d).await?;
        }
        // connect's documented close drops both halves without a TLS close_notify.
        conn.close().await;
        anyhow::Ok(())
    })?;

    let outcome = tokio::time::timeout(LIMIT, async {
        let mut conn = listener.accept().await?;
        receive_exactly(&mut conn).await?;
        anyhow::Ok(conn.reader().next().await)
    })
    .await
    .context("missive's side timed out")??;
    join(client)?;
    match outcome {
        Some(Err(_)) => Ok(()),
        Some(Ok(_)) => bail!("more datagrams arrived than were sent"),
        None => bail!("an end without close_notify was taken for a clean end"),
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

/// Closes connect's writing side (a TLS close_notify; nothing over plain TCP, where connect ends
/// its stream only when the connection is dropped) and drops the connection.
async fn close_connect(mut conn: connect::Connection) -> anyhow::Result<()> {
    conn.writer().close().await?;
    drop(conn);
    Ok(())
}

/// Closes missive's writing side, then waits for the peer to close too, so that nothing the peer
/// sent (TLS session tickets) is left unread: closing a socket with unread bytes makes the kernel
/// reset the connection, and the peer may lose the datagrams it has not read yet.
async fn close_missive(conn: Connection) -> anyhow::Result<()> {
    conn.close().await?;
    Ok(())
}

fn socket_addr(listener: &Listener) -> anyhow::Result<SocketAddr> {
    listener
        .local_addr()?
        .as_socket_addr()
        .context("the listener has no socket address")
}

/// Reads `COUNT` datagrams, checking each one's tag, payload and place.
async fn receive_exactly(conn: &mut Connection) -> anyhow::Result<()> {
    for i in 0..COUNT {
        let d = conn
            .reader()
            .next()
            .await
            .with_context(|| format!("the stream ended after {i} datagrams"))??;
        check_missive(&d, i)?;
    }
    Ok(())
}

/// Reads exactly `COUNT` datagrams, checking each, then the end of the stream.
async fn receive_in_order(conn: &mut Connection) -> anyhow::Result<()> {
    receive_exactly(conn).await?;
    match conn.reader().next().await {
        None => Ok(()),
        Some(Ok(_)) => bail!("more datagrams arrived than were sent"),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("the stream did not end cleanly")),
    }
}

fn check_missive(d: &Datagram, i: usize) -> anyhow::Result<()> {
    ensure!(d.version() == 1, "datagram {i}: version {}", d.version());
    ensure!(
        d.tag() == tag(i),
        "datagram {i}: tag {} instead of {}",
        d.tag(),
        tag(i)
    );
    ensure!(
        d.payload()[..] == payload(i)[..],
        "datagram {i}: payload differs"
    );
    Ok(())
}

fn check_connect(d: &ConnectDatagram, i: usize) -> anyhow::Result<()> {
    ensure!(d.version() == 1, "datagram {i}: version {}", d.version());
    ensure!(
        d.recipient() == tag(i),
        "datagram {i}: tag {} instead of {}",
        d.recipient(),
        tag(i)
    );
    ensure!(
        d.data().map(Vec::as_slice) == Some(&payload(i)[..]),
        "datagram {i}: payload differs"
    );
    Ok(())
}

async fn missive_dial(addr: SocketAddr, tls: Option<&TlsPair>) -> anyhow::Result<Connection> {
    Ok(match tls {
        None => Connection::tcp_client(addr).await?,
        Some(tls) => Connection::tls_client(addr, SERVER_NAME, tls.client.clone()).await?,
    })
}

async fn connect_dial(
    addr: SocketAddr,
    tls: Option<&TlsPair>,
) -> anyhow::Result<connect::Connection> {
    match tls {
        None => connect::Connection::tcp_client(addr.to_string()).await,
        Some(tls) => {
            connect::Connection::tls_client(addr.to_string(), SERVER_NAME, tls.connect_connector())
                .await
        }
    }
}

/// connect's two listener types, both streams of connections.
enum ConnectListener {
    Tcp(connect::tcp::TcpListener),
    Tls(connect::tls::TlsListener),
}

impl ConnectListener {
    async fn next(&mut self) -> Option<connect::Connection> {
        match self {
            ConnectListener::Tcp(l) => l.next().await,
            ConnectListener::Tls(l) => l.next().await,
        }
    }
}

/// Runs connect's listener on its own async-std thread: binds it, reports its address through
/// the receiver, and hands the first connection to `serve`, all under [`LIMIT`].
fn connect_serves_one<F, Fut>(
    name: &str,
    tls: Option<TlsPair>,
    serve: F,
) -> anyhow::Result<(
    tokio::sync::oneshot::Receiver<SocketAddr>,
    std::thread::JoinHandle<anyhow::Result<()>>,
)>
where
    F: FnOnce(connect::Connection) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let server = on_async_std(name, async move {
        let (addr, mut listener) = connect_bind(tls.as_ref())
            .await
            .context("binding connect's listener")?;
        let _ = addr_tx.send(addr);
        async_std::future::timeout(LIMIT, async {
            let conn = listener.next().await.context("connect's listener ended")?;
            serve(conn).await
        })
        .await
        .map_err(|_| anyhow!("connect's side timed out"))?
    })?;
    Ok((addr_rx, server))
}

/// Binds connect's listener on a port that was free a moment ago (it cannot report its address).
async fn connect_bind(tls: Option<&TlsPair>) -> anyhow::Result<(SocketAddr, ConnectListener)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let addr = free_port()?;
        let bound = match tls {
            None => connect::tcp::TcpListener::bind(addr.to_string())
                .await
                .map(ConnectListener::Tcp),
            Some(tls) => connect::tls::TlsListener::bind(addr.to_string(), tls.connect_acceptor())
                .await
                .map(ConnectListener::Tls),
        };
        match bound {
            Ok(listener) => return Ok((addr, listener)),
            Err(e) if attempt >= BIND_ATTEMPTS => return Err(e.context("binding connect")),
            Err(_) => {}
        }
    }
}
