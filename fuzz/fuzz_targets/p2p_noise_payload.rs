//! Decodes arbitrary bytes as a libp2p Noise handshake payload; checks the round trip of
//! whatever decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive::p2p::noise::{decode_payload, encode_payload};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = decode_payload(data) {
        let again = decode_payload(&encode_payload(&p)).expect("re-encoded payload decodes");
        assert_eq!(again, p);
    }
});
