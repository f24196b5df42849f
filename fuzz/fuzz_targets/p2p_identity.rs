//! Parses arbitrary bytes as a PeerId, a public key of any type (with a signature check), a key
//! file and a multiaddr text form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive::p2p::{Keypair, Multiaddr, PeerId, PublicKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = PeerId::from_bytes(data) {
        assert_eq!(
            id.to_string().parse::<PeerId>().expect("text round trip"),
            id
        );
        assert_eq!(
            id.to_cid_string()
                .parse::<PeerId>()
                .expect("CID round trip"),
            id
        );
    }
    // The first byte splits the input into a key and a signature to check with it.
    let (key, sig) = data.split_at(usize::from(data.first().copied().unwrap_or(0)).min(data.len()));
    for bytes in [data, key] {
        if let Ok(public) = PublicKey::from_protobuf_encoding(bytes) {
            let again = PublicKey::from_protobuf_encoding(&public.to_protobuf_encoding())
                .expect("a decoded key re-encodes to a valid key");
            assert_eq!(again, public);
            assert_eq!(again.to_peer_id(), public.to_peer_id());
            let _ = public.verify(sig, sig);
        }
    }
    if let Ok(pair) = Keypair::from_protobuf_encoding(data) {
        let back = Keypair::from_protobuf_encoding(&pair.to_protobuf_encoding())
            .expect("a decoded key pair re-encodes");
        assert_eq!(back.peer_id(), pair.peer_id());
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<PeerId>();
        if let Ok(a) = s.parse::<Multiaddr>() {
            assert_eq!(
                a.to_string().parse::<Multiaddr>().expect("text round trip"),
                a
            );
        }
    }
});
