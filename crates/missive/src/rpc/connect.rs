//! Ready-made clients and accept loops for TLS and Unix sockets (TCP's live with the client and
//! server themselves). Everything here is a thin layer over [`Client::spawn`] and
//! [`Server::connection`], which take any byte stream.

#[cfg(any(feature = "tls", feature = "unix"))]
use std::future::Future;
#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(any(feature = "tls", feature = "unix"))]
use tokio::io::{AsyncRead, AsyncWrite};

#[cfg(any(feature = "tls", feature = "unix"))]
use super::{Client, ClientConfig, Decoder, Encoder, Message, Server, Service};

#[cfg(feature = "tls")]
use crate::transport::tls::{self, Acceptor, TlsError};

#[cfg(feature = "tls")]
impl<Req, Resp> Client<Req, Resp>
where
    Req: Message + Send + 'static,
    Resp: Message + Send + 'static,
{
    /// Dials `addr` over TCP, completes a TLS handshake for `server_name`, and spawns the driver
    /// on the current runtime.
    ///
    /// # Errors
    /// The server name is invalid, the TCP connection failed, or the handshake failed.
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
        let stream = tls::connect(addr, server_name, tls_config).await?;
        Ok(Self::spawn(stream, codec, config))
    }
}

#[cfg(feature = "unix")]
impl<Req, Resp> Client<Req, Resp>
where
    Req: Message + Send + 'static,
    Resp: Message + Send + 'static,
{
    /// Connects to the Unix socket at `path` and spawns the driver on the current runtime.
    ///
    /// # Errors
    /// The connection could not be made.
    pub async fn connect_unix<C>(
        path: impl AsRef<std::path::Path>,
        codec: C,
        config: ClientConfig,
    ) -> std::io::Result<Self>
    where
        C: Encoder<Message = Req> + Decoder<Message = Resp> + Send + 'static,
        C::Serialized: Send,
    {
        let stream = crate::transport::unix::connect(path).await?;
        Ok(Self::spawn(stream, codec, config))
    }
}

#[cfg(any(feature = "tls", feature = "unix"))]
impl Server {
    /// Accepts TCP connections (with `TCP_NODELAY`), completes each TLS handshake on the
    /// connection's own task under `acceptor`'s deadline, and serves it, until
    /// [`Server::shutdown`]. A failed or stalled handshake ends that connection only; it is
    /// logged, and the listener goes on.
    ///
    /// # Errors
    /// None so far: accept errors are logged and retried after a short pause, as in
    /// [`Server::serve_tcp`].
    #[cfg(feature = "tls")]
    pub async fn serve_tls<C, S, F>(
        &self,
        listener: tokio::net::TcpListener,
        acceptor: Acceptor,
        mut new_connection: F,
    ) -> std::io::Result<()>
    where
        F: FnMut(std::net::SocketAddr) -> (C, S),
        S: Service + Send + 'static,
        S::Unary: Send,
        S::Stream: Send,
        S::Request: Send,
        S::Response: Send,
        C: Encoder<Message = S::Response> + Decoder<Message = S::Request> + Send + 'static,
        C::Serialized: Send,
    {
        accept_loop(
            self,
            || listener.accept(),
            |socket, peer| {
                let _ = socket.set_nodelay(true);
                let (codec, service) = new_connection(peer);
                let acceptor = acceptor.clone();
                let server = self.clone();
                tokio::spawn(async move {
                    let stream = match acceptor.accept(socket).await {
                        Ok(stream) => stream,
                        Err(e) => {
                            tracing::debug!(error = %e, %peer, "rpc TLS handshake failed");
                            return;
                        }
                    };
                    if let Err(e) = server.connection(stream, codec, service).await {
                        tracing::debug!(error = %e, %peer, "rpc connection ended");
                    }
                });
            },
        )
        .await
    }

    /// Accepts Unix socket connections and serves each on its own task until
    /// [`Server::shutdown`]; `new_connection` gives the codec and service for each.
    ///
    /// # Errors
    /// None so far: accept errors are logged and retried after a short pause, as in
    /// [`Server::serve_tcp`].
    #[cfg(feature = "unix")]
    pub async fn serve_unix<C, S, F>(
        &self,
        listener: tokio::net::UnixListener,
        mut new_connection: F,
    ) -> std::io::Result<()>
    where
        F: FnMut() -> (C, S),
        S: Service + Send + 'static,
        S::Unary: Send,
        S::Stream: Send,
        S::Request: Send,
        S::Response: Send,
        C: Encoder<Message = S::Response> + Decoder<Message = S::Request> + Send + 'static,
        C::Serialized: Send,
    {
        accept_loop(
            self,
            || listener.accept(),
            |socket, _peer| {
                let (codec, service) = new_connection();
                let connection = self.connection(socket, codec, service);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "rpc connection ended");
                    }
                });
            },
        )
        .await
    }
}

/// Accepts until the server stops, handing each connection to `serve`. An accept error (such as
/// running out of file descriptors) is logged and retried after a pause, never fatal.
#[cfg(any(feature = "tls", feature = "unix"))]
async fn accept_loop<A, Fut, T, P>(
    server: &Server,
    mut accept: A,
    mut serve: impl FnMut(T, P),
) -> std::io::Result<()>
where
    A: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<(T, P)>>,
    T: AsyncRead + AsyncWrite,
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
