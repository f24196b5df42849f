//! Scans arbitrary bytes for the FIN and RST of yamux frames, read whole and cut into pieces of
//! every size the first byte picks: the ends found must not depend on how reads cut the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive::p2p::scan_stream_ends_for_fuzzing as scan;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, bytes)) = data.split_first() else {
        return;
    };
    let whole = scan(bytes, usize::MAX);
    assert_eq!(scan(bytes, usize::from(piece).max(1)), whole);
    assert_eq!(scan(bytes, 1), whole);
});
