//! Decodes arbitrary bytes as an identify message and as a binary multiaddr; whatever decodes
//! must survive its own encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive::p2p::Multiaddr;
use missive::protocols::identify::Info;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = Info::decode(data) {
        let again = Info::decode(&info.encode()).expect("an encoded info decodes");
        assert_eq!(again.public_key, info.public_key);
        assert_eq!(again.agent_version, info.agent_version);
    }
    if let Ok(addr) = Multiaddr::from_bytes(data) {
        assert_eq!(Multiaddr::from_bytes(&addr.to_bytes()).expect("binary round trip"), addr);
    }
});
