//! Feeds arbitrary bytes to the rpc MessagePack decoder (envelopes of a small serde body):
//! it must never panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use missive::rpc::Decoder;
use missive::rpc::msgpack::{Envelope, MessagePackCodec};

type Body = (String, Vec<u32>, Option<bool>);

fuzz_target!(|data: &[u8]| {
    let mut codec: MessagePackCodec<Envelope<Body>, Envelope<Body>> =
        MessagePackCodec::default().with_max_message_size(64 * 1024);
    let mut buffer = BytesMut::new();
    for chunk in data.chunks(5) {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
