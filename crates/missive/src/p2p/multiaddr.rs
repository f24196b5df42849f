//! [`Multiaddr`]: libp2p's self-describing addresses, in text and binary form.
//!
//! The components of the transports libp2p peers announce are supported: `/ip4`, `/ip6`, `/dns`,
//! `/dns4`, `/dns6`, `/tcp`, `/udp`, `/quic-v1`, `/webtransport`, `/certhash/<multibase>`,
//! `/tls`, `/sni/<host>`, `/ws`, `/wss` and `/p2p/<peer>`. Anything else is refused with [`ParseMultiaddrError::Unsupported`] (or
//! [`DecodeMultiaddrError::Unsupported`]) rather than carried along unread. Which of them a node
//! can dial or listen on is the node's business, not the address's.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use super::PeerId;
use super::identity::{read_uvarint, write_uvarint};

/// Longest accepted text form; real addresses are far shorter. Every binary form we accept
/// must print to text we accept too: a 2-byte `webtransport` code prints as 13 characters, so
/// the text limit is 8 times the binary one.
const MAX_TEXT_LEN: usize = 8 * MAX_BINARY_LEN;
/// Longest accepted DNS name (RFC 1035).
const MAX_DNS_LEN: usize = 253;
/// Longest accepted binary form.
const MAX_BINARY_LEN: usize = 1024;

/// Multicodec codes of the supported components, as the binary form carries them.
mod code {
    pub(super) const IP4: u64 = 4;
    pub(super) const TCP: u64 = 6;
    pub(super) const IP6: u64 = 41;
    pub(super) const DNS: u64 = 53;
    pub(super) const DNS4: u64 = 54;
    pub(super) const DNS6: u64 = 55;
    pub(super) const UDP: u64 = 273;
    pub(super) const P2P: u64 = 421;
    pub(super) const TLS: u64 = 448;
    pub(super) const SNI: u64 = 449;
    pub(super) const QUIC_V1: u64 = 461;
    pub(super) const WEBTRANSPORT: u64 = 465;
    pub(super) const CERTHASH: u64 = 466;
    pub(super) const WS: u64 = 477;
    pub(super) const WSS: u64 = 478;
}

/// One component of a [`Multiaddr`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// `/ip4/<address>`
    Ip4(Ipv4Addr),
    /// `/ip6/<address>`
    Ip6(Ipv6Addr),
    /// `/dns/<name>`: resolved to IPv4 or IPv6.
    Dns(String),
    /// `/dns4/<name>`: resolved to IPv4 only.
    Dns4(String),
    /// `/dns6/<name>`: resolved to IPv6 only.
    Dns6(String),
    /// `/tcp/<port>`
    Tcp(u16),
    /// `/udp/<port>`
    Udp(u16),
    /// `/quic-v1`: QUIC (RFC 9000) over the preceding `/udp`.
    QuicV1,
    /// `/webtransport`: WebTransport over the preceding `/quic-v1`.
    WebTransport,
    /// `/certhash/<multibase>`: a multihash (in practice `12 20` ‖ SHA-256) of a certificate
    /// the WebTransport server may present. Any multibase parses; base64url (`u…`) is printed.
    Certhash(Vec<u8>),
    /// `/tls`: TLS over the preceding transport (as in `/tls/ws`).
    Tls,
    /// `/sni/<host>`: the server name TLS sends, for a TLS address given by IP.
    Sni(String),
    /// `/ws`: WebSocket.
    Ws,
    /// `/wss`: WebSocket over TLS, the older spelling of `/tls/ws`.
    Wss,
    /// `/p2p/<peer id>`
    P2p(PeerId),
}

/// A libp2p address such as `/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Multiaddr {
    parts: Vec<Protocol>,
}

impl Multiaddr {
    /// The empty address.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The components, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Protocol> {
        self.parts.iter()
    }

    /// Appends a component.
    pub fn push(&mut self, p: Protocol) {
        self.parts.push(p);
    }

    /// This address with `p` appended.
    pub fn with(mut self, p: Protocol) -> Self {
        self.push(p);
        self
    }

    /// Removes and returns the last component.
    pub fn pop(&mut self) -> Option<Protocol> {
        self.parts.pop()
    }

    /// `true` when the address has no component.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The PeerId of a trailing `/p2p/<peer>` component.
    pub fn peer_id(&self) -> Option<PeerId> {
        match self.parts.last() {
            Some(Protocol::P2p(p)) => Some(*p),
            _ => None,
        }
    }

    /// The address without a trailing `/p2p/<peer>` component.
    pub fn without_peer_id(&self) -> Multiaddr {
        let mut a = self.clone();
        if matches!(a.parts.last(), Some(Protocol::P2p(_))) {
            a.parts.pop();
        }
        a
    }

    /// `/ip4|ip6/<ip>/tcp/<port>` for a socket address.
    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => Protocol::Ip4(v4),
            IpAddr::V6(v6) => Protocol::Ip6(v6),
        };
        Self {
            parts: vec![ip, Protocol::Tcp(addr.port())],
        }
    }

    /// The TCP target of this address: host and port, ignoring a trailing `/p2p` component.
    pub(crate) fn tcp_target(&self) -> Option<TcpTarget> {
        let mut it = self.parts.iter();
        let host = match it.next()? {
            Protocol::Ip4(ip) => TcpHost::Ip(IpAddr::V4(*ip)),
            Protocol::Ip6(ip) => TcpHost::Ip(IpAddr::V6(*ip)),
            Protocol::Dns(name) => TcpHost::Dns(name.clone(), DnsFamily::Any),
            Protocol::Dns4(name) => TcpHost::Dns(name.clone(), DnsFamily::V4),
            Protocol::Dns6(name) => TcpHost::Dns(name.clone(), DnsFamily::V6),
            _ => return None,
        };
        let Protocol::Tcp(port) = it.next()? else {
            return None;
        };
        match it.next() {
            None | Some(Protocol::P2p(_)) if it.next().is_none() => {
                Some(TcpTarget { host, port: *port })
            }
            _ => None,
        }
    }
}

/// Where a TCP address points.
#[derive(Debug, Clone)]
pub(crate) struct TcpTarget {
    pub(crate) host: TcpHost,
    pub(crate) port: u16,
}

/// The host part of a TCP address.
#[derive(Debug, Clone)]
pub(crate) enum TcpHost {
    Ip(IpAddr),
    Dns(String, DnsFamily),
}

/// Which address family a DNS name may resolve to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DnsFamily {
    Any,
    V4,
    V6,
}

impl Multiaddr {
    /// The binary form: each component's multicodec code as a varint, then its value (fixed
    /// size for addresses and ports, length-prefixed for names and peer ids). This is how
    /// identify and other libp2p messages carry addresses.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.parts.len() * 8);
        for p in &self.parts {
            match p {
                Protocol::Ip4(ip) => {
                    write_uvarint(&mut out, code::IP4);
                    out.extend_from_slice(&ip.octets());
                }
                Protocol::Ip6(ip) => {
                    write_uvarint(&mut out, code::IP6);
                    out.extend_from_slice(&ip.octets());
                }
                Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name) => {
                    let c = match p {
                        Protocol::Dns(_) => code::DNS,
                        Protocol::Dns4(_) => code::DNS4,
                        _ => code::DNS6,
                    };
                    write_uvarint(&mut out, c);
                    write_uvarint(&mut out, name.len() as u64);
                    out.extend_from_slice(name.as_bytes());
                }
                Protocol::Tcp(port) => {
                    write_uvarint(&mut out, code::TCP);
                    out.extend_from_slice(&port.to_be_bytes());
                }
                Protocol::Udp(port) => {
                    write_uvarint(&mut out, code::UDP);
                    out.extend_from_slice(&port.to_be_bytes());
                }
                Protocol::QuicV1 => write_uvarint(&mut out, code::QUIC_V1),
                Protocol::WebTransport => write_uvarint(&mut out, code::WEBTRANSPORT),
                Protocol::Certhash(hash) => {
                    write_uvarint(&mut out, code::CERTHASH);
                    write_uvarint(&mut out, hash.len() as u64);
                    out.extend_from_slice(hash);
                }
                Protocol::Tls => write_uvarint(&mut out, code::TLS),
                Protocol::Ws => write_uvarint(&mut out, code::WS),
                Protocol::Wss => write_uvarint(&mut out, code::WSS),
                Protocol::Sni(name) => {
                    write_uvarint(&mut out, code::SNI);
                    write_uvarint(&mut out, name.len() as u64);
                    out.extend_from_slice(name.as_bytes());
                }
                Protocol::P2p(peer) => {
                    write_uvarint(&mut out, code::P2P);
                    write_uvarint(&mut out, peer.as_bytes().len() as u64);
                    out.extend_from_slice(peer.as_bytes());
                }
            }
        }
        out
    }

    /// Reads the binary form of [`Multiaddr::to_bytes`].
    ///
    /// # Errors
    /// The bytes are truncated, too long, hold an invalid value, or a component this node
    /// does not support (its multicodec code is in the error).
    pub fn from_bytes(mut bytes: &[u8]) -> Result<Self, DecodeMultiaddrError> {
        if bytes.len() > MAX_BINARY_LEN {
            return Err(DecodeMultiaddrError::TooLong);
        }
        let mut parts = Vec::new();
        while !bytes.is_empty() {
            let (c, rest) = read_uvarint(bytes).ok_or(DecodeMultiaddrError::Truncated)?;
            let (p, rest) = match c {
                code::IP4 => {
                    let (v, rest) = split(rest, 4)?;
                    let octets: [u8; 4] =
                        v.try_into().map_err(|_| DecodeMultiaddrError::Truncated)?;
                    (Protocol::Ip4(octets.into()), rest)
                }
                code::IP6 => {
                    let (v, rest) = split(rest, 16)?;
                    let octets: [u8; 16] =
                        v.try_into().map_err(|_| DecodeMultiaddrError::Truncated)?;
                    (Protocol::Ip6(octets.into()), rest)
                }
                code::TCP => {
                    let (v, rest) = split(rest, 2)?;
                    (Protocol::Tcp(u16::from_be_bytes([v[0], v[1]])), rest)
                }
                code::UDP => {
                    let (v, rest) = split(rest, 2)?;
                    (Protocol::Udp(u16::from_be_bytes([v[0], v[1]])), rest)
                }
                code::QUIC_V1 => (Protocol::QuicV1, rest),
                code::WEBTRANSPORT => (Protocol::WebTransport, rest),
                code::CERTHASH => {
                    let (v, rest) = length_prefixed(rest)?;
                    if !is_multihash(v) {
                        return Err(DecodeMultiaddrError::InvalidValue(
                            "a certhash is not a multihash",
                        ));
                    }
                    (Protocol::Certhash(v.to_vec()), rest)
                }
                code::TLS => (Protocol::Tls, rest),
                code::WS => (Protocol::Ws, rest),
                code::WSS => (Protocol::Wss, rest),
                code::SNI => {
                    let (v, rest) = length_prefixed(rest)?;
                    (Protocol::Sni(host_name(v)?), rest)
                }
                code::DNS | code::DNS4 | code::DNS6 => {
                    let (v, rest) = length_prefixed(rest)?;
                    let name = host_name(v)?;
                    let p = match c {
                        code::DNS => Protocol::Dns(name),
                        code::DNS4 => Protocol::Dns4(name),
                        _ => Protocol::Dns6(name),
                    };
                    (p, rest)
                }
                code::P2P => {
                    let (v, rest) = length_prefixed(rest)?;
                    let peer = PeerId::from_bytes(v)
                        .map_err(|_| DecodeMultiaddrError::InvalidValue("an invalid peer id"))?;
                    (Protocol::P2p(peer), rest)
                }
                other => return Err(DecodeMultiaddrError::Unsupported(other)),
            };
            parts.push(p);
            bytes = rest;
        }
        Ok(Self { parts })
    }
}

/// `true` when `v` is one multihash: a code, a digest length and exactly that many bytes.
fn is_multihash(v: &[u8]) -> bool {
    let Some((_code, rest)) = read_uvarint(v) else {
        return false;
    };
    let Some((len, digest)) = read_uvarint(rest) else {
        return false;
    };
    usize::try_from(len).is_ok_and(|len| len == digest.len())
}

/// A DNS name (or TLS server name) from its bytes.
fn host_name(v: &[u8]) -> Result<String, DecodeMultiaddrError> {
    let name = std::str::from_utf8(v)
        .map_err(|_| DecodeMultiaddrError::InvalidValue("a DNS name is not UTF-8"))?;
    if name.is_empty() || name.len() > MAX_DNS_LEN || name.contains('/') {
        return Err(DecodeMultiaddrError::InvalidValue(
            "a DNS name is empty, too long or holds '/'",
        ));
    }
    Ok(name.to_owned())
}

/// The first `n` bytes and the rest.
fn split(bytes: &[u8], n: usize) -> Result<(&[u8], &[u8]), DecodeMultiaddrError> {
    if bytes.len() < n {
        return Err(DecodeMultiaddrError::Truncated);
    }
    Ok(bytes.split_at(n))
}

/// A varint length, then that many bytes.
fn length_prefixed(bytes: &[u8]) -> Result<(&[u8], &[u8]), DecodeMultiaddrError> {
    let (len, rest) = read_uvarint(bytes).ok_or(DecodeMultiaddrError::Truncated)?;
    let len = usize::try_from(len).map_err(|_| DecodeMultiaddrError::Truncated)?;
    split(rest, len)
}

/// Why a binary address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeMultiaddrError {
    /// Longer than any real address.
    #[error("binary multiaddr longer than {MAX_BINARY_LEN} bytes")]
    TooLong,
    /// A code, length or value runs past the end.
    #[error("truncated binary multiaddr")]
    Truncated,
    /// A component's value is malformed.
    #[error("invalid binary multiaddr: {0}")]
    InvalidValue(&'static str),
    /// A component this node does not support, by multicodec code (p2p-circuit…).
    #[error("unsupported multiaddr component with code {0}")]
    Unsupported(u64),
}

impl From<Protocol> for Multiaddr {
    fn from(p: Protocol) -> Self {
        Self { parts: vec![p] }
    }
}

impl fmt::Display for Multiaddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Protocol::Ip4(ip) => write!(f, "/ip4/{ip}")?,
                Protocol::Ip6(ip) => write!(f, "/ip6/{ip}")?,
                Protocol::Dns(n) => write!(f, "/dns/{n}")?,
                Protocol::Dns4(n) => write!(f, "/dns4/{n}")?,
                Protocol::Dns6(n) => write!(f, "/dns6/{n}")?,
                Protocol::Tcp(port) => write!(f, "/tcp/{port}")?,
                Protocol::Udp(port) => write!(f, "/udp/{port}")?,
                Protocol::QuicV1 => f.write_str("/quic-v1")?,
                Protocol::WebTransport => f.write_str("/webtransport")?,
                Protocol::Certhash(hash) => {
                    write!(f, "/certhash/{}", super::multibase::encode_base64url(hash))?
                }
                Protocol::Tls => f.write_str("/tls")?,
                Protocol::Sni(n) => write!(f, "/sni/{n}")?,
                Protocol::Ws => f.write_str("/ws")?,
                Protocol::Wss => f.write_str("/wss")?,
                Protocol::P2p(peer) => write!(f, "/p2p/{peer}")?,
            }
        }
        Ok(())
    }
}

impl FromStr for Multiaddr {
    type Err = ParseMultiaddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_TEXT_LEN {
            return Err(ParseMultiaddrError::TooLong);
        }
        if s.is_empty() {
            return Ok(Self::empty());
        }
        let rest = s
            .strip_prefix('/')
            .ok_or(ParseMultiaddrError::MissingSlash)?;
        let mut parts = Vec::new();
        if rest.is_empty() {
            return Ok(Self { parts });
        }
        let mut it = rest.split('/');
        while let Some(name) = it.next() {
            let flag = match name {
                "quic-v1" => Some(Protocol::QuicV1),
                "webtransport" => Some(Protocol::WebTransport),
                "tls" => Some(Protocol::Tls),
                "ws" => Some(Protocol::Ws),
                "wss" => Some(Protocol::Wss),
                _ => None,
            };
            if let Some(p) = flag {
                parts.push(p);
                continue;
            }
            let value = it
                .next()
                .ok_or_else(|| ParseMultiaddrError::MissingValue(name.to_owned()))?;
            let bad = || ParseMultiaddrError::InvalidValue(name.to_owned());
            let p = match name {
                "ip4" => Protocol::Ip4(value.parse().map_err(|_| bad())?),
                "ip6" => Protocol::Ip6(value.parse().map_err(|_| bad())?),
                "dns" | "dns4" | "dns6" => {
                    if value.is_empty() || value.len() > MAX_DNS_LEN {
                        return Err(bad());
                    }
                    let v = value.to_owned();
                    match name {
                        "dns" => Protocol::Dns(v),
                        "dns4" => Protocol::Dns4(v),
                        _ => Protocol::Dns6(v),
                    }
                }
                "tcp" => Protocol::Tcp(value.parse().map_err(|_| bad())?),
                "udp" => Protocol::Udp(value.parse().map_err(|_| bad())?),
                "sni" => {
                    if value.is_empty() || value.len() > MAX_DNS_LEN {
                        return Err(bad());
                    }
                    Protocol::Sni(value.to_owned())
                }
                "certhash" => {
                    let hash = super::multibase::decode(value)
                        .filter(|h| is_multihash(h))
                        .ok_or_else(bad)?;
                    Protocol::Certhash(hash)
                }
                "p2p" | "ipfs" => Protocol::P2p(value.parse().map_err(|_| bad())?),
                other => return Err(ParseMultiaddrError::Unsupported(other.to_owned())),
            };
            parts.push(p);
        }
        let addr = Self { parts };
        // Whatever text is accepted must have a binary form that is accepted too.
        if addr.to_bytes().len() > MAX_BINARY_LEN {
            return Err(ParseMultiaddrError::TooLong);
        }
        Ok(addr)
    }
}

/// Why a text address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseMultiaddrError {
    /// The text does not start with `/`.
    #[error("a multiaddr starts with '/'")]
    MissingSlash,
    /// The text, or its binary form, is longer than any real address.
    #[error(
        "multiaddr text longer than {MAX_TEXT_LEN} bytes, or its binary form than {MAX_BINARY_LEN}"
    )]
    TooLong,
    /// A component has no value.
    #[error("multiaddr component /{0} has no value")]
    MissingValue(String),
    /// A component's value does not parse.
    #[error("multiaddr component /{0} has an invalid value")]
    InvalidValue(String),
    /// The component is not one this node supports.
    #[error("unsupported multiaddr component /{0}")]
    Unsupported(String),
}

#[cfg(test)]
mod tests {
    /// Text whose binary form would be longer than the binary limit is refused, so that every
    /// accepted text encodes to bytes that decode again (found by the fuzzer).
    #[test]
    fn text_whose_binary_form_is_too_long_is_refused() {
        let name = "a".repeat(200);
        let text: String = std::iter::repeat_n(format!("/dns/{name}"), 6).collect();
        assert_eq!(
            text.parse::<super::Multiaddr>(),
            Err(super::ParseMultiaddrError::TooLong)
        );
        let fits: String = std::iter::repeat_n(format!("/dns/{name}"), 4).collect();
        let addr: super::Multiaddr = fits.parse().expect("within both limits");
        assert_eq!(
            super::Multiaddr::from_bytes(&addr.to_bytes()).expect("decodes"),
            addr
        );
    }

    /// The longest binary forms (here an IPv6-heavy one of 1,012 bytes found by the fuzzer, and
    /// 512 `/webtransport` codes) print to text that parses back.
    #[test]
    fn every_accepted_binary_form_prints_to_accepted_text() {
        let mut ip6 = Vec::new();
        for _ in 0..59 {
            ip6.push(0x29);
            ip6.extend_from_slice(&[0x29; 16]);
        }
        let webtransport: Vec<u8> = std::iter::repeat_n([0xd1, 0x03], 512).flatten().collect();
        for bytes in [ip6, webtransport] {
            let addr = super::Multiaddr::from_bytes(&bytes).expect("binary decodes");
            let text = addr.to_string();
            assert_eq!(
                text.parse::<super::Multiaddr>().expect("text parses"),
                addr,
                "{}",
                text.len()
            );
        }
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_tcp_address_with_peer() {
        let s = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq";
        let a: Multiaddr = s.parse().expect("parse");
        assert_eq!(a.to_string(), s);
        assert_eq!(
            a.peer_id().map(|p| p.to_string()).as_deref(),
            Some("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq")
        );
        assert_eq!(a.without_peer_id().to_string(), "/ip4/127.0.0.1/tcp/4001");
        assert!(a.tcp_target().is_some());
    }

    #[test]
    fn refuses_unsupported_and_malformed_addresses() {
        assert_eq!(
            "/ip4/1.2.3.4/udp/1/quic".parse::<Multiaddr>(),
            Err(ParseMultiaddrError::MissingValue("quic".into()))
        );
        assert_eq!(
            "/ip4/1.2.3.4/sctp/1".parse::<Multiaddr>(),
            Err(ParseMultiaddrError::Unsupported("sctp".into()))
        );
        assert!("ip4/1.2.3.4".parse::<Multiaddr>().is_err());
        assert!("/ip4/1.2.3.400/tcp/1".parse::<Multiaddr>().is_err());
        assert!("/tcp".parse::<Multiaddr>().is_err());
        assert!("/ip6/::1/tcp/65536".parse::<Multiaddr>().is_err());
        let no_tcp: Multiaddr = "/dns4/localhost".parse().expect("parse");
        assert!(no_tcp.tcp_target().is_none());
    }

    #[test]
    fn binary_form_matches_the_multiaddr_spec() {
        // /ip4/127.0.0.1/tcp/4001 = 04 7f000001 06 0fa1
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().expect("parse");
        assert_eq!(a.to_bytes(), [0x04, 127, 0, 0, 1, 0x06, 0x0f, 0xa1]);
        // /dns4/a.b = 36 03 'a.b'; /p2p/… = a5 03 <len> <multihash>
        let d: Multiaddr = "/dns4/a.b".parse().expect("parse");
        assert_eq!(d.to_bytes(), [0x36, 0x03, b'a', b'.', b'b']);
        let p: Multiaddr = "/p2p/12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
            .parse()
            .expect("parse");
        assert_eq!(p.to_bytes()[..3], [0xa5, 0x03, 38]);
    }

    #[test]
    fn quic_tls_and_websocket_components_match_the_multiaddr_spec() {
        let q: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().expect("parse");
        assert_eq!(
            q.to_bytes(),
            [0x04, 127, 0, 0, 1, 0x91, 0x02, 0x0f, 0xa1, 0xcd, 0x03]
        );
        assert_eq!(q.to_string(), "/ip4/127.0.0.1/udp/4001/quic-v1");
        let w: Multiaddr = "/ip4/1.2.3.4/tcp/443/tls/sni/example.com/ws"
            .parse()
            .expect("parse");
        let mut expected = vec![
            0x04, 1, 2, 3, 4, 0x06, 0x01, 0xbb, 0xc0, 0x03, 0xc1, 0x03, 11,
        ];
        expected.extend_from_slice(b"example.com");
        expected.extend_from_slice(&[0xdd, 0x03]);
        assert_eq!(w.to_bytes(), expected);
        assert_eq!(Multiaddr::from_bytes(&expected).expect("decode"), w);
        let wss: Multiaddr = "/dns4/example.com/tcp/443/wss".parse().expect("parse");
        assert_eq!(wss.to_bytes()[wss.to_bytes().len() - 2..], [0xde, 0x03]);
    }

    #[test]
    fn webtransport_and_certhash_components_match_the_multiaddr_spec() {
        // go writes base58btc, rust base64url: both name the same multihash.
        let hash: Vec<u8> = [0x12, 0x20].into_iter().chain(1..=32).collect();
        let b58 = format!("z{}", bs58::encode(&hash).into_string());
        let text = format!("/ip4/127.0.0.1/udp/4001/quic-v1/webtransport/certhash/{b58}");
        let a: Multiaddr = text.parse().expect("parse");
        assert_eq!(a.iter().last(), Some(&Protocol::Certhash(hash.clone())));
        let printed = a.to_string();
        assert!(
            printed.ends_with(
                "/quic-v1/webtransport/certhash/uEiABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fIA"
            ),
            "{printed}"
        );
        assert_eq!(printed.parse::<Multiaddr>().expect("reparse"), a);
        let bytes = a.to_bytes();
        let mut tail = vec![0xcd, 0x03, 0xd1, 0x03, 0xd2, 0x03, 34];
        tail.extend_from_slice(&hash);
        assert_eq!(bytes[bytes.len() - tail.len()..], tail);
        assert_eq!(Multiaddr::from_bytes(&bytes).expect("decode"), a);
        // A value that is not a multihash, or not multibase, is refused in both forms.
        assert_eq!(
            Multiaddr::from_bytes(&[0xd2, 0x03, 3, 0x12, 0x20, 0x01]),
            Err(DecodeMultiaddrError::InvalidValue(
                "a certhash is not a multihash"
            ))
        );
        assert_eq!(
            "/certhash/uEiAB".parse::<Multiaddr>(),
            Err(ParseMultiaddrError::InvalidValue("certhash".into()))
        );
        assert_eq!(
            "/certhash/qabc".parse::<Multiaddr>(),
            Err(ParseMultiaddrError::InvalidValue("certhash".into()))
        );
    }

    #[test]
    fn binary_decoder_refuses_unsupported_and_truncated_components() {
        // /p2p-circuit = 0xa2 0x02
        assert_eq!(
            Multiaddr::from_bytes(&[0xa2, 0x02]),
            Err(DecodeMultiaddrError::Unsupported(290))
        );
        assert_eq!(
            Multiaddr::from_bytes(&[0x91, 0x02, 0x00]),
            Err(DecodeMultiaddrError::Truncated)
        );
        assert_eq!(
            Multiaddr::from_bytes(&[0x04, 127, 0]),
            Err(DecodeMultiaddrError::Truncated)
        );
        assert_eq!(
            Multiaddr::from_bytes(&[0x36, 0x05, b'a']),
            Err(DecodeMultiaddrError::Truncated)
        );
        assert!(Multiaddr::from_bytes(&[0x36, 0x00]).is_err());
        assert!(Multiaddr::from_bytes(&vec![0x06; 2000]).is_err());
    }

    fn protocol() -> impl Strategy<Value = Protocol> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| Protocol::Ip4(b.into())),
            any::<[u8; 16]>().prop_map(|b| Protocol::Ip6(b.into())),
            "[a-z0-9.-]{1,30}".prop_map(Protocol::Dns),
            "[a-z0-9.-]{1,30}".prop_map(Protocol::Dns4),
            "[a-z0-9.-]{1,30}".prop_map(Protocol::Dns6),
            any::<u16>().prop_map(Protocol::Tcp),
            any::<u16>().prop_map(Protocol::Udp),
            Just(Protocol::QuicV1),
            Just(Protocol::WebTransport),
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)).prop_map(
                |(code, digest)| {
                    let mut hash = vec![code & 0x7f, digest.len() as u8];
                    hash.extend_from_slice(&digest);
                    Protocol::Certhash(hash)
                }
            ),
            Just(Protocol::Tls),
            Just(Protocol::Ws),
            Just(Protocol::Wss),
            "[a-z0-9.-]{1,30}".prop_map(Protocol::Sni),
            any::<[u8; 32]>()
                .prop_map(|s| Protocol::P2p(crate::p2p::Keypair::from_secret_bytes(s).peer_id())),
        ]
    }

    proptest! {
        #[test]
        fn text_form_round_trips(parts in proptest::collection::vec(protocol(), 0..6)) {
            let a = Multiaddr { parts };
            prop_assert_eq!(a.to_string().parse::<Multiaddr>().expect("parse"), a);
        }

        #[test]
        fn binary_form_round_trips(parts in proptest::collection::vec(protocol(), 0..6)) {
            let a = Multiaddr { parts };
            prop_assert_eq!(Multiaddr::from_bytes(&a.to_bytes()).expect("decode"), a);
        }

        #[test]
        fn binary_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Multiaddr::from_bytes(&bytes);
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,80}") {
            let _ = s.parse::<Multiaddr>();
        }
    }
}
