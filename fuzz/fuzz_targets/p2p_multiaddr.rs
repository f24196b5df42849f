//! Parses arbitrary bytes as a binary and as a text multiaddr (certhash
//! multibase included); whatever parses must survive both
//! of its forms, and the WebSocket transport's reading of it must agree with its text form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive::p2p::Multiaddr;
use missive::p2p::websocket::is_websocket_address_for_fuzzing as is_websocket;

fn check(addr: &Multiaddr) {
    assert_eq!(Multiaddr::from_bytes(&addr.to_bytes()).expect("binary round trip"), *addr);
    let text = addr.to_string();
    assert_eq!(text.parse::<Multiaddr>().expect("text round trip"), *addr);
    if is_websocket(addr) {
        assert!(text.contains("/ws") || text.contains("/wss"), "{text}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(addr) = Multiaddr::from_bytes(data) {
        check(&addr);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(addr) = text.parse::<Multiaddr>()
    {
        check(&addr);
    }
});
