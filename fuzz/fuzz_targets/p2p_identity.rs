//! Parses arbitrary bytes as a PeerId, a public key, a key file and a multiaddr text form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive::p2p::{Keypair, Multiaddr, PeerId, PublicKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = PeerId::from_bytes(data) {
        assert_eq!(id.to_string().parse::<PeerId>().expect("text round trip"), id);
    }
    let _ = PublicKey::from_protobuf_encoding(data);
    let _ = Keypair::from_protobuf_encoding(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<PeerId>();
        if let Ok(a) = s.parse::<Multiaddr>() {
            assert_eq!(a.to_string().parse::<Multiaddr>().expect("text round trip"), a);
        }
    }
});
