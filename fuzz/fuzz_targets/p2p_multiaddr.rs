//! Parses arbitrary bytes as multiaddr text and as binary (certhash multibase included);
//! whatever parses must print and encode to a form that reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive::p2p::Multiaddr;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(addr) = text.parse::<Multiaddr>() {
            let again: Multiaddr = addr.to_string().parse().expect("printed text parses");
            assert_eq!(again, addr);
            assert_eq!(Multiaddr::from_bytes(&addr.to_bytes()).expect("binary form decodes"), addr);
        }
    }
    if let Ok(addr) = Multiaddr::from_bytes(data) {
        assert_eq!(addr.to_string().parse::<Multiaddr>().expect("text form parses"), addr);
    }
});
