//! Feeds arbitrary bytes, in arbitrary chunks, to both multistream-select state machines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use missive::p2p::negotiate::{
    DialerProgress, DialerSelect, ListenerProgress, ListenerSelect, Version, decode_message,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_message(data);
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (a, b) = data.split_at(split);

    let mut l = ListenerSelect::new();
    for chunk in [a, b] {
        l.input(chunk);
        for _ in 0..128 {
            match l.poll() {
                Ok(ListenerProgress::Proposed(p)) => {
                    if p.len() % 2 == 0 {
                        let _ = l.accept();
                        break;
                    }
                    let _ = l.reject();
                }
                _ => break,
            }
            let _ = l.take_transmit();
        }
    }

    for version in [Version::V1, Version::V1Lazy] {
        let Ok(mut d) = DialerSelect::new(["/a", "/b/1.0.0"], version) else {
            return;
        };
        for chunk in [a, b] {
            d.input(chunk);
            for _ in 0..128 {
                match d.poll() {
                    Ok(DialerProgress::NeedInput) | Err(_) => break,
                    Ok(DialerProgress::Selected { .. }) => break,
                    Ok(_) => {}
                }
                let _ = d.take_transmit();
            }
        }
    }
});
