//! Reads arbitrary bytes as binary and text multiaddrs and checks the WebSocket transport's reading
//! of each: whatever it takes for a ws address keeps its WebSocket part as written.
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
