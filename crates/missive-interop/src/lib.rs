//! Compatibility tests against the real implementations.
//!
//! This library holds what the tests share: certificates for both rustls generations (missive uses
//! the current one, connect 0.2.4 uses 0.19 through async-tls), the messages they exchange, and a
//! way to run the async-std side on its own thread; and, in [`browser`], the missive node a
//! js-libp2p page in headless Chromium talks to, with the runner of that page.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use connect::tls::rustls as rustls019;
use missive::transport::tls::SelfSigned;

pub mod browser;

/// The name certificates are issued for and clients verify.
pub const SERVER_NAME: &str = "localhost";

/// A freshly generated certificate as configurations for both sides of both rustls generations.
#[derive(Clone)]
pub struct TlsPair {
    /// missive's server configuration.
    pub server: Arc<rustls::ServerConfig>,
    /// missive's client configuration, trusting only this certificate.
    pub client: Arc<rustls::ClientConfig>,
    /// connect's server configuration (rustls 0.19).
    pub server019: Arc<rustls019::ServerConfig>,
    /// connect's client configuration (rustls 0.19), trusting only this certificate.
    pub client019: Arc<rustls019::ClientConfig>,
}

impl std::fmt::Debug for TlsPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPair").finish_non_exhaustive()
    }
}

impl TlsPair {
    /// Generates a fresh self-signed certificate for [`SERVER_NAME`].
    pub fn generate() -> anyhow::Result<Self> {
        let cert = SelfSigned::generate(&[SERVER_NAME])?;
        let cert_der = cert.cert.to_vec();
        let key_der = cert.key.secret_der().to_vec();

        let mut server019 = rustls019::ServerConfig::new(rustls019::NoClientAuth::new());
        server019
            .set_single_cert(
                vec![rustls019::Certificate(cert_der.clone())],
                rustls019::PrivateKey(key_der),
            )
            .map_err(|e| anyhow!("rustls 0.19 refused the certificate: {e}"))?;
        let mut client019 = rustls019::ClientConfig::new();
        client019
            .root_store
            .add(&rustls019::Certificate(cert_der))
            .map_err(|e| anyhow!("rustls 0.19 refused the root: {e:?}"))?;

        Ok(Self {
            server: cert.server_config()?,
            client: cert.client_config()?,
            server019: Arc::new(server019),
            client019: Arc::new(client019),
        })
    }

    /// connect's TLS acceptor for this certificate.
    pub fn connect_acceptor(&self) -> connect::tls::async_tls::TlsAcceptor {
        connect::tls::async_tls::TlsAcceptor::from(self.server019.clone())
    }

    /// connect's TLS connector trusting this certificate.
    pub fn connect_connector(&self) -> connect::tls::async_tls::TlsConnector {
        connect::tls::async_tls::TlsConnector::from(self.client019.clone())
    }
}

/// The tag of message `i`: spread over the whole `u16` range, including 0 and 65535.
pub fn tag(i: usize) -> u16 {
    match i % 7 {
        0 => 0,
        1 => u16::MAX,
        _ => (i.wrapping_mul(7919) % 65_536) as u16,
    }
}

/// The payload of message `i`: 1 to 300 bytes (connect refuses empty payloads) that encode `i`.
pub fn payload(i: usize) -> Vec<u8> {
    let len = 1 + (i * 37) % 300;
    (0..len)
        .map(|k| (i.wrapping_add(k * 31) % 251) as u8)
        .collect()
}

/// A loopback address whose port was free a moment ago, for connect's listeners, which do not
/// report the address they are bound to.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(probe.local_addr()?)
}

/// Runs `f` to completion on a new thread with async-std's executor, as connect expects.
pub fn on_async_std<F, T>(name: &str, f: F) -> anyhow::Result<std::thread::JoinHandle<T>>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || async_std::task::block_on(f))
        .context("spawning the async-std thread")
}

/// Waits for the thread of [`on_async_std`] and hands back what its future returned.
pub fn join<T>(handle: std::thread::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    handle
        .join()
        .map_err(|_| anyhow!("the async-std side panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_never_empty_and_vary_in_length() {
        let lens: std::collections::BTreeSet<usize> = (0..1000).map(|i| payload(i).len()).collect();
        assert!(lens.iter().all(|&l| l >= 1));
        assert!(lens.len() > 100);
    }

    #[test]
    fn tags_cover_both_ends_of_the_range() {
        let tags: Vec<u16> = (0..14).map(tag).collect();
        assert!(tags.contains(&0));
        assert!(tags.contains(&u16::MAX));
    }
}
