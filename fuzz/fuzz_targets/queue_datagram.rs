//! Feeds arbitrary bytes to the queue's frame decoder: it must never panic, never take more than it
//! was given, and every datagram it yields must encode back to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use missive::queue::datagram::Decoder;

fuzz_target!(|data: &[u8]| {
    let decoder = Decoder::new(1 << 16).with_any_version(data.first() == Some(&0));
    let mut buf = BytesMut::from(data);
    let mut consumed = 0;
    while let Ok(Some(datagram)) = decoder.decode(&mut buf) {
        let mut encoded = BytesMut::new();
        datagram.encode(&mut encoded);
        assert_eq!(&encoded[..], &data[consumed..consumed + encoded.len()]);
        consumed += encoded.len();
    }
    assert_eq!(consumed + buf.len(), data.len());
});
