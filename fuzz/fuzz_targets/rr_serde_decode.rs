//! Feeds arbitrary bytes to the request-response CBOR and JSON decoders: they must never panic, and
//! whatever they accept must re-encode to something they accept again.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use missive::request_response::Format;
use missive::request_response::cbor::Cbor;
use missive::request_response::json::Json;

type Message = BTreeMap<String, Vec<Option<u64>>>;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = Cbor::decode::<Message>(data) {
        let again = Cbor::encode(&value).expect("a decoded value encodes");
        assert_eq!(Cbor::decode::<Message>(&again).ok(), Some(value));
    }
    if let Ok(value) = Json::decode::<Message>(data) {
        let again = Json::encode(&value).expect("a decoded value encodes");
        assert_eq!(Json::decode::<Message>(&again).ok(), Some(value));
    }
});
