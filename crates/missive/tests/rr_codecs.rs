//! The request-response codecs: what they put on the wire, their limits, and malformed input.

#[path = "support/deadline.rs"]
mod deadline;
use deadline::within;

use missive::request_response::{Codec, MessageKind, MessageTooLarge, cbor, json};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Greet {
    name: String,
    times: u32,
}

fn protocol() -> String {
    "/greet/1".to_owned()
}

/// Writes a request with `codec` and closes, as the requester does; returns the bytes on the wire.
async fn wire_of<C: Codec<Protocol = String>>(mut codec: C, request: C::Request) -> Vec<u8> {
    let (mut a, mut b) = tokio::io::duplex(1 << 20);
    codec
        .write_request(&protocol(), &mut a, request)
        .await
        .expect("write");
    a.shutdown().await.expect("close");
    drop(a);
    let mut wire = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut b, &mut wire)
        .await
        .expect("read");
    wire
}

#[tokio::test]
async fn cbor_writes_structs_as_maps_without_a_length_prefix() {
    within(async {
        let wire = wire_of(
            cbor::Codec::<Greet, Greet>::default(),
            Greet {
                name: "a".into(),
                times: 2,
            },
        )
        .await;
        // map(2) { "name": "a", "times": 2 }
        assert_eq!(
            wire,
            [
                0xa2, 0x64, b'n', b'a', b'm', b'e', 0x61, b'a', 0x65, b't', b'i', b'm', b'e', b's',
                0x02
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn json_writes_plain_json_without_a_length_prefix() {
    within(async {
        let wire = wire_of(
            json::Codec::<Greet, Greet>::default(),
            Greet {
                name: "a".into(),
                times: 2,
            },
        )
        .await;
        assert_eq!(wire, br#"{"name":"a","times":2}"#);
    })
    .await;
}

#[tokio::test]
async fn requests_and_responses_round_trip_in_both_formats() {
    within(async {
        async fn round_trip<C>(mut codec: C, value: Greet)
        where
            C: Codec<Protocol = String, Request = Greet, Response = Greet>,
        {
            let (mut a, mut b) = tokio::io::duplex(1 << 16);
            codec
                .write_request(&protocol(), &mut a, value.clone())
                .await
                .expect("write");
            drop(a);
            assert_eq!(
                codec.read_request(&protocol(), &mut b).await.expect("read"),
                value
            );
            let (mut a, mut b) = tokio::io::duplex(1 << 16);
            codec
                .write_response(&protocol(), &mut a, value.clone())
                .await
                .expect("write");
            drop(a);
            assert_eq!(
                codec
                    .read_response(&protocol(), &mut b)
                    .await
                    .expect("read"),
                value
            );
        }
        let value = Greet {
            name: "missive".into(),
            times: 7,
        };
        round_trip(cbor::Codec::default(), value.clone()).await;
        round_trip(json::Codec::default(), value).await;
    })
    .await;
}

#[tokio::test]
async fn an_oversized_request_is_refused_by_the_sender_before_writing() {
    within(async {
        let mut codec = cbor::Codec::<Vec<u8>, ()>::default().with_request_limit(100);
        let (mut a, _b) = tokio::io::duplex(1 << 16);
        let err = codec
            .write_request(&protocol(), &mut a, vec![0u8; 200])
            .await
            .expect_err("too large");
        let found = MessageTooLarge::find(&err).expect("typed size error");
        assert_eq!((found.kind, found.limit), (MessageKind::Request, 100));
        assert!(found.size.is_some_and(|s| s > 200));
    })
    .await;
}

#[tokio::test]
async fn an_oversized_response_is_refused_by_the_reader_not_truncated() {
    within(async {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let mut big = json::Codec::<(), String>::default();
        big.write_response(&protocol(), &mut a, "x".repeat(500))
            .await
            .expect("write");
        drop(a);
        let mut small = json::Codec::<(), String>::default().with_response_limit(100);
        let err = small
            .read_response(&protocol(), &mut b)
            .await
            .expect_err("too large");
        let found = MessageTooLarge::find(&err).expect("typed size error");
        assert_eq!((found.kind, found.limit), (MessageKind::Response, 100));
    })
    .await;
}

#[tokio::test]
async fn malformed_cbor_is_an_invalid_data_error() {
    within(async {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[0xa2, 0x64, b'n', 0xff, 0x00])
            .await
            .expect("write");
        drop(a);
        let err = cbor::Codec::<Greet, Greet>::default()
            .read_request(&protocol(), &mut b)
            .await
            .expect_err("malformed");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(MessageTooLarge::find(&err).is_none());
    })
    .await;
}

#[tokio::test]
async fn one_way_protocols_use_the_unit_response() {
    within(async {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut codec = cbor::Codec::<Greet, ()>::default();
        codec
            .write_response(&protocol(), &mut a, ())
            .await
            .expect("write");
        drop(a);
        codec
            .read_response(&protocol(), &mut b)
            .await
            .expect("unit reads back");
    })
    .await;
}

fn greet() -> impl Strategy<Value = Greet> {
    (".{0,40}", any::<u32>()).prop_map(|(name, times)| Greet { name, times })
}

proptest! {
    #[test]
    fn cbor_decode_of_encode_is_identity(value in greet()) {
        use missive::request_response::Format;
        let bytes = cbor::Cbor::encode(&value).expect("encode");
        prop_assert_eq!(cbor::Cbor::decode::<Greet>(&bytes).expect("decode"), value);
    }

    #[test]
    fn json_decode_of_encode_is_identity(value in greet()) {
        use missive::request_response::Format;
        let bytes = json::Json::encode(&value).expect("encode");
        prop_assert_eq!(json::Json::decode::<Greet>(&bytes).expect("decode"), value);
    }

    #[test]
    fn arbitrary_bytes_never_panic_either_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        use missive::request_response::Format;
        let _ = cbor::Cbor::decode::<Greet>(&bytes);
        let _ = json::Json::decode::<Greet>(&bytes);
    }
}
