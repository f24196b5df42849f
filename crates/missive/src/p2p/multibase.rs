//! Multibase text of binary values: what `/certhash` components carry. Any of the RFC 4648
//! bases (16, 32 and 64, in their padded, unpadded, upper- and lower-case forms) and base58btc
//! are read, since go writes base58btc (`z…`) and rust base64url (`u…`); base64url without
//! padding is written, as rust-libp2p does.

/// The longest text accepted (a certhash is ~46 characters).
const MAX_LEN: usize = 512;

const BASE16: &[u8] = b"0123456789abcdef";
const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const BASE32_HEX: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `bytes` as multibase base64url without padding (prefix `u`).
pub(crate) fn encode_base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(1 + bytes.len().div_ceil(3) * 4);
    out.push('u');
    let mut acc = 0u32;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(BASE64_URL[((acc >> bits) & 0x3f) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(
            BASE64_URL[((acc << (6 - bits)) & 0x3f) as usize],
        ));
    }
    out
}

/// Decodes multibase text; `None` for an unknown prefix, a character outside the base,
/// misplaced padding or leftover bits that are not zero.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    if text.len() > MAX_LEN {
        return None;
    }
    let mut chars = text.chars();
    let prefix = chars.next()?;
    let body = chars.as_str();
    match prefix {
        'z' => bs58::decode(body).into_vec().ok(),
        'f' => rfc4648(body, BASE16, 4, false, false),
        'F' => rfc4648(body, BASE16, 4, false, true),
        'b' => rfc4648(body, BASE32, 5, false, false),
        'B' => rfc4648(body, BASE32, 5, false, true),
        'c' => rfc4648(body, BASE32, 5, true, false),
        'C' => rfc4648(body, BASE32, 5, true, true),
        'v' => rfc4648(body, BASE32_HEX, 5, false, false),
        'V' => rfc4648(body, BASE32_HEX, 5, false, true),
        't' => rfc4648(body, BASE32_HEX, 5, true, false),
        'T' => rfc4648(body, BASE32_HEX, 5, true, true),
        'm' => rfc4648(body, BASE64, 6, false, false),
        'M' => rfc4648(body, BASE64, 6, true, false),
        'u' => rfc4648(body, BASE64_URL, 6, false, false),
        'U' => rfc4648(body, BASE64_URL, 6, true, false),
        _ => None,
    }
}

/// One of the power-of-two bases of RFC 4648, `bits` per character; `padded` bases must end
/// with `=` to a whole group, unpadded ones must have none. `upper` reads the alphabet's
/// letters in upper case.
fn rfc4648(body: &str, alphabet: &[u8], bits: u32, padded: bool, upper: bool) -> Option<Vec<u8>> {
    let data = if padded {
        let group = if bits == 5 { 8 } else { 4 };
        if !body.len().is_multiple_of(group) {
            return None;
        }
        body.trim_end_matches('=')
    } else {
        body
    };
    let mut out = Vec::with_capacity(data.len() * bits as usize / 8);
    let mut acc = 0u32;
    let mut have = 0;
    for c in data.bytes() {
        if upper && c.is_ascii_lowercase() {
            return None;
        }
        let c = if upper { c.to_ascii_lowercase() } else { c };
        let v = alphabet.iter().position(|&a| a == c)? as u32;
        acc = ((acc << bits) | v) & 0xffff;
        have += bits;
        if have >= 8 {
            have -= 8;
            out.push((acc >> have) as u8);
        }
    }
    // Leftover bits must be fewer than a character's and all zero.
    if have >= bits || acc & ((1 << have) - 1) != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_multibase_spec_examples_decode() {
        // "yes mani !" in the multibase spec's test vectors.
        let want = b"yes mani !".to_vec();
        for text in [
            "f796573206d616e692021",
            "F796573206D616E692021",
            "bpfsxgidnmfxgsibb",
            "BPFSXGIDNMFXGSIBB",
            "cpfsxgidnmfxgsibb",
            "CPFSXGIDNMFXGSIBB",
            "vf5in683dc5n6i811",
            "VF5IN683DC5N6I811",
            "tf5in683dc5n6i811",
            "z7paNL19xttacUY",
            "meWVzIG1hbmkgIQ",
            "MeWVzIG1hbmkgIQ==",
            "ueWVzIG1hbmkgIQ",
            "UeWVzIG1hbmkgIQ==",
        ] {
            assert_eq!(decode(text), Some(want.clone()), "{text}");
        }
        assert_eq!(encode_base64url(&want), "ueWVzIG1hbmkgIQ");
    }

    #[test]
    fn malformed_text_is_refused() {
        for text in [
            "",
            "x",
            "qabc",
            "ueWVzIG1hbmkgIQ=",
            "MeWVzIG1hbmkgIQ",
            "f7",
            "b!!",
            "z0OIl",
        ] {
            assert_eq!(decode(text), None, "{text}");
        }
    }

    proptest! {
        #[test]
        fn base64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(decode(&encode_base64url(&bytes)), Some(bytes));
        }

        #[test]
        fn decoder_never_panics(text in "\\PC{0,100}") {
            let _ = decode(&text);
        }
    }
}
