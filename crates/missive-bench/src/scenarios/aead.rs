//! `aead`: the crypto ceiling of a node's bulk transfer. ChaCha20-Poly1305 (ring's, the AEAD of
//! the node's Noise) seals and then opens the same bytes on one thread, in Noise's largest
//! messages (65,535 bytes with the tag), one 64 KiB chunk of the bulk scenario at a time. Every
//! encrypted byte of a transfer is sealed once by the sender and opened once by the receiver, so
//! this rate (both on one core) is what a node on two cores could reach if it did nothing else;
//! `stream-bulk` is shown against it as well as against plain TCP.

use std::time::Instant;

use anyhow::{anyhow, bail};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use super::{CHUNK, MAX_MESSAGES};
use crate::{RoundParams, Sample};

/// The largest Noise message (65,535 bytes) less the 16-byte tag.
const NOISE_PLAINTEXT: usize = 65_535 - 16;

/// Seals and opens chunks until the round's limit.
pub(super) fn round(params: &RoundParams) -> anyhow::Result<Sample> {
    let key = LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &[0x42; 32]).map_err(|_| anyhow!("AEAD key"))?,
    );
    let stop = params.limit().start();
    let mut frame = Vec::with_capacity(NOISE_PLAINTEXT + 16);
    let chunk = vec![0xa5u8; CHUNK];
    let mut counter = 0u64;
    let mut chunks = 0u64;
    let started = Instant::now();
    while stop.allows(chunks) && chunks < MAX_MESSAGES {
        for plain in chunk.chunks(NOISE_PLAINTEXT) {
            frame.clear();
            frame.extend_from_slice(plain);
            let tag = key
                .seal_in_place_separate_tag(nonce(counter), Aad::empty(), &mut frame)
                .map_err(|_| anyhow!("seal"))?;
            frame.extend_from_slice(tag.as_ref());
            let opened = key
                .open_in_place(nonce(counter), Aad::empty(), &mut frame)
                .map_err(|_| anyhow!("open"))?;
            if opened != plain {
                bail!("opened bytes differ from the sealed ones");
            }
            counter += 1;
        }
        chunks += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    if chunks == 0 || secs <= 0.0 {
        bail!("nothing was sealed");
    }
    Ok(Sample {
        value: (chunks * CHUNK as u64) as f64 / secs,
        sent: Some(chunks),
        delivered: None,
    })
}

/// Noise's ChaChaPoly nonce: 32 zero bits, then the message counter little-endian.
fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_round_seals_and_opens_every_chunk() -> anyhow::Result<()> {
        let params = RoundParams {
            duration: std::time::Duration::from_secs(10),
            burst: 1,
            quick: true,
            messages: Some(3),
        };
        let sample = round(&params)?;
        assert_eq!(sample.sent, Some(3));
        assert!(sample.value > 0.0);
        Ok(())
    }
}
