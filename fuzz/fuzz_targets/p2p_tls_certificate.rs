//! Parses and verifies arbitrary bytes as a libp2p-tls certificate: no input may panic, and an
//! input that proves a PeerId must prove the same one when checked again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive::p2p::verify_tls_certificate_for_fuzzing as verify;

fuzz_target!(|data: &[u8]| {
    if let Some(peer) = verify(data) {
        assert_eq!(verify(data), Some(peer));
    }
});
