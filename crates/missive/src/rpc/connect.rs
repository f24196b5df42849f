//! Ready-made clients and accept loops for TCP, TLS and Unix sockets: a thin layer over
//! [`Client::spawn`] and [`Server::connection`], which take any byte stream.

#[cfg(any(feature = "tcp", feature = "unix"))]
use std::future::Future;
#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(any(feature = "tcp", feature = "unix"))]
use super::{Client, ClientConfig, Decoder, Encoder, Message, Server, Service};

#[cfg(feature = "tls")]
use crate::transport::tls::{self, Acceptor, TlsError};

#[cfg(any(feature = "tcp", feature = "unix"))]
impl<Req, Resp> Client<Req, Resp>
where
    Req: Message + Send + 'static,
    Resp: Message + Send + 'static,
{
    /// Connects over TCP (with `TCP_NODELAY`) and spawns the driver on the current runtime.
    ///
    /// # Errors
    /// The connection could not be made; an error of kind [`std::io::ErrorKind::TimedOut`] when
    /// it was not made within `ClientConfig::with_connect_timeout` (10 s by default).
    #[cfg(feature = "tcp")]
    pub async fn connect_tcp<C>(
        addr: impl tokio::net::ToSocketAddrs,
        codec: C,
        config: ClientConfig,
    ) -> std::io::Result<Self>
    where
        C: Encoder<Message = Req> + Decoder<Message = Resp> + Send + 'static,
        C::Serialized: Send,
    {
        let stream = crate::transport::tcp::connect_with(
            addr,
            config.socket_options(),
            config.connect_timeout(),
        )
        .await?;
        Ok(Self::spawn(stream, codec, config))
    }

    /// Dials `addr` over TCP, completes a TLS handshake for `server_name`, and spawns the driver
    /// on the current runtime.
    ///
    /// # Errors
    /// The server name is invalid, the TCP connection failed or was not made within
    /// `ClientConfig::with_connect_timeout` ([`TlsError::ConnectTimeout`]), or the handshake
    /// failed or did not finish within `ClientConfig::with_handshake_timeout`
    /// ([`TlsError::HandshakeTimeout`]); 10 s each by default.
    #[cfg(feature = "tls")]
    pub async fn connect_tls<C>(
        addr: impl tokio::net::ToSocketAddrs,
        server_name: &str,
        tls_config: Arc<rustls::ClientConfig>,
        codec: C,
        config: ClientConfig,
    ) -> Result<Self, TlsError>
    where
        C: Encoder<Message = Req> + Decoder<Message = Resp> + Send + 'static,
        C::Serialized: Send,
    {
        let stream = tls::connect_with(
            addr,
            server_name,
            tls_config,
            (config.connect_timeout(), config.handshake_timeout()),
            config.socket_options(),
        )
        .await?;
        Ok(Self::spawn(stream, codec, config))
    }

    /// Connects to the Unix socket at `path` and spawns the driver on the current runtime.
    ///
    /// # Errors
    /// The connection could not be made; an error of kind [`std::io::ErrorKind::TimedOut`] when
    /// it was not made within `ClientConfig::with_connect_timeout` (10 s by default).
    #[cfg(feature = "unix")]
    pub async fn connect_unix<C>(
        path: impl AsRef<std::path::Path>,
        codec: C,
        config: ClientConfig,
    ) -> std::io::Result<Self>
    where
        C: Encoder<Message = Req> + Decoder<Message = Resp> + Send + 'static,
        C::Serialized: Send,
    {
        let stream = crate::transport::unix::connect_within(path, config.connect_timeout()).await?;
        Ok(Self::spawn(stream, codec, config))
    }
}

#[cfg(any(feature = "tcp", feature = "unix"))]
impl Server {
    /// Accepts TCP connections (with `TCP_NODELAY`, and keepalive per
    /// `ServerConfig::with_tcp_keepalive`) until [`Server::shutdown`], and runs each on its own
    /// task; `new_connection` gives the codec and service for each peer address.
    ///
    /// # Errors
    /// None so far: accept errors (such as running out of file descriptors) are logged and
    /// retried after a short pause, so that one bad moment never stops the listener.
    #[cfg(feature = "tcp")]
    pub async fn serve_tcp<C, S, F>(
        &self,
        listener: tokio::net::TcpListener,
        mut new_connection: F,
    ) -> std::io::Result<()>
    where
        S: Service + Send + 'static,
        S::Unary: Send,
        S::Stream: Send,
        S::Request: Send,
        S::Response: Send,
        C: Encoder<Message = S::Response> + Decoder<Message = S::Request> + Send + 'static,
        C::Serialized: Send,
        F: FnMut(std::net::SocketAddr) -> (C, S),
    {
        accept_loop(
            self,
            || listener.accept(),
            |socket, peer| {
                self.prepare_accepted(&socket);
                let (codec, service) = new_connection(peer);
                let span = connection_span(&peer);
                let connection = self.connection(socket, codec, service);
                spawn_connection(tracing::Instrument::instrument(connection, span));
            },
        )
        .await
    }

    /// As [`Server::serve_tcp`] for services that are not `Send`: every connection runs with
    /// `spawn_local`, so call this inside a `LocalSet`.
    ///
    /// # Errors
    /// As [`Server::serve_tcp`].
    #[cfg(feature = "tcp")]
    pub async fn serve_tcp_local<C, S, F>(
        &self,
        listener: tokio::net::TcpListener,
        mut new_connection: F,
    ) -> std::io::Result<()>
    where
        F: FnMut(std::net::SocketAddr) -> (C, S),
        S: Service + 'static,
        C: Encoder<Message = S::Response> + Decoder<Message = S::Request> + 'static,
    {
        accept_loop(
            self,
            || listener.accept(),
            |socket, peer| {
                self.prepare_accepted(&socket);
                let (codec, service) = new_connection(peer);
                tokio::task::spawn_local(run_connection(self.connection(socket, codec, service)));
            },
        )
        .await
    }

    /// Accepts TCP connections (with `TCP_NODELAY` and keepalive, as [`Server::serve_tcp`]),
    /// completes each TLS handshake on the connection's own task under `acceptor`'s deadline,
    /// and serves it, until [`Server::shutdown`]. A failed or stalled handshake ends that
    /// connection only; it is logged, and the listener goes on. At most
    /// `ServerConfig::with_max_pending_handshakes` (64 by default) run at once: past that, no
    /// connection is accepted until one finishes. Shutdown ends the handshakes under way, and
    /// waits for them as for connections.
    ///
    /// # Errors
    /// None so far, as in [`Server::serve_tcp`].
    #[cfg(feature = "tls")]
    pub async fn serve_tls<C, S, F>(
        &self,
        listener: tokio::net::TcpListener,
        acceptor: Acceptor,
        mut new_connection: F,
    ) -> std::io::Result<()>
    where
        S: Service + Send + 'static,
        S::Unary: Send,
        S::Stream: Send,
        S::Request: Send,
        S::Response: Send,
        C: Encoder<Message = S::Response> + Decoder<Message = S::Request> + Send + 'static,
        C::Serialized: Send,
        F: FnMut(std::net::SocketAddr) -> (C, S),
    {
        let max = self.config().max_pending_handshakes();
        let pending = Arc::new(crate::transport::pending::Pending::new(
            max,
            max.div_ceil(2),
        ));
        let silence = self
            .config()
            .first_bytes_timeout()
            .min(acceptor.handshake_timeout());
        accept_loop(
            self,
            || listener.accept(),
            |socket, peer| {
                // Admitted at once: when the table is full, a less advanced handshake yields.
                let slot = pending.admit(peer.ip());
                self.prepare_accepted(&socket);
                let (codec, service) = new_connection(peer);
                let acceptor = acceptor.clone();
                let server = self.clone();
                // Shutdown waits for this task as for a connection.
                let tracked = self.track();
                let span = connection_span(&peer);
                let serve = async move {
                    let _tracked = tracked;
                    let evicted = slot.evicted();
                    let work = async {
                        if !crate::transport::pending::first_bytes(&socket, silence, &slot).await {
                            return None;
                        }
                        Some(acceptor.accept(socket).await)
                    };
                    let handshake = tokio::select! {
                        handshake = work => match handshake {
                            Some(h) => h,
                            None => {
                                tracing::debug!(%peer, "rpc TLS client sent nothing; closed");
                                return;
                            }
                        },
                        () = evicted.cancelled() => {
                            tracing::debug!(%peer, "rpc TLS handshake closed to make room");
                            return;
                        }
                        () = server.stopping() => {
                            tracing::debug!(%peer, "rpc TLS handshake ended by shutdown");
                            return;
                        }
                    };
                    drop(slot);
                    match handshake {
                        Ok(stream) => {
                            run_connection(server.connection(stream, codec, service)).await
                        }
                        Err(e) => tracing::debug!(error = %e, %peer, "rpc TLS handshake failed"),
                    }
                };
                tokio::spawn(tracing::Instrument::instrument(serve, span));
            },
        )
        .await
    }

    /// Accepts Unix socket connections and serves each on its own task until
    /// [`Server::shutdown`]; `new_connection` gives the codec and service for each.
    ///
    /// # Errors
    /// None so far, as in [`Server::serve_tcp`].
    #[cfg(feature = "unix")]
    pub async fn serve_unix<C, S, F>(
        &self,
        listener: tokio::net::UnixListener,
        mut new_connection: F,
    ) -> std::io::Result<()>
    where
        S: Service + Send + 'static,
        S::Unary: Send,
        S::Stream: Send,
        S::Request: Send,
        S::Response: Send,
        C: Encoder<Message = S::Response> + Decoder<Message = S::Request> + Send + 'static,
        C::Serialized: Send,
        F: FnMut() -> (C, S),
    {
        accept_loop(
            self,
            || listener.accept(),
            |socket, _peer| {
                let (codec, service) = new_connection();
                let span = connection_span(&"unix");
                let connection = self.connection(socket, codec, service);
                spawn_connection(tracing::Instrument::instrument(connection, span));
            },
        )
        .await
    }
}

/// The span of one accepted rpc connection: a number to tell connections apart, and the peer.
#[cfg(any(feature = "tcp", feature = "unix"))]
fn connection_span(peer: &dyn std::fmt::Display) -> tracing::Span {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let span = tracing::debug_span!("rpc_connection", id, peer = %peer);
    span.in_scope(|| tracing::debug!("rpc connection accepted"));
    span
}

/// Runs a connection on its own task.
#[cfg(any(feature = "tcp", feature = "unix"))]
fn spawn_connection<F>(connection: F)
where
    F: Future<Output = Result<(), super::server::ServeError>> + Send + 'static,
{
    tokio::spawn(run_connection(connection));
}

/// Runs a connection to its end; how it ended is logged, as nobody awaits it.
#[cfg(any(feature = "tcp", feature = "unix"))]
async fn run_connection<F>(connection: F)
where
    F: Future<Output = Result<(), super::server::ServeError>>,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "rpc connection ended");
    }
}

/// Accepts until the server stops, handing each connection to `serve`. An accept error (such as
/// running out of file descriptors) is logged and retried after a pause, never fatal.
#[cfg(any(feature = "tcp", feature = "unix"))]
async fn accept_loop<A, Fut, T, P>(
    server: &Server,
    mut accept: A,
    mut serve: impl FnMut(T, P),
) -> std::io::Result<()>
where
    A: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<(T, P)>>,
{
    loop {
        let (socket, peer) = tokio::select! {
            _ = server.stopping() => return Ok(()),
            accepted = accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "rpc accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        serve(socket, peer);
    }
}
