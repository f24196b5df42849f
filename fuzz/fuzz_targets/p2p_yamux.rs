//! Feeds arbitrary bytes to a yamux session as a peer's frames, whole and cut into pieces of
//! every size the first byte picks, then reads, answers and drops the streams they opened: no
//! input panics it, and how reads cut the bytes changes neither what it sends nor the error
//! that ends it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive::p2p::yamux_session_for_fuzzing as session;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, bytes)) = data.split_first() else {
        return;
    };
    let whole = session(bytes, usize::MAX);
    assert_eq!(session(bytes, usize::from(piece).max(1)), whole);
    assert_eq!(session(bytes, 1), whole);
});
