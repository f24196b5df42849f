//! Feeds arbitrary bytes to the rpc protobuf decoder: it must never panic, and must never
//! hold more than the limit plus one read for a frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use missive::rpc::Decoder;
use missive::rpc::echo::ServerCodec;

fuzz_target!(|data: &[u8]| {
    let mut codec = ServerCodec::default().with_max_message_size(64 * 1024);
    // Split the input at every 7th byte to exercise partial frames.
    let mut buffer = BytesMut::new();
    for chunk in data.chunks(7) {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buffer.capacity() <= 64 * 1024 + 16 + data.len());
    }
});
