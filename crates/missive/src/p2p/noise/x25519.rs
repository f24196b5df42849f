//! X25519 for snow's Noise handshake: curve25519-dalek (with its precomputed base-point tables)
//! by default, aws-lc-rs with the `aws-lc` feature. Written here rather than taken from snow's
//! own resolver so that snow's RustCrypto cipher stack is not built next to ring's.

use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::types::{Cipher, Dh, Hash, Random};

/// Resolves only the Diffie-Hellman function, and only X25519; ring resolves the rest.
pub(super) struct Resolver;

impl snow::resolvers::CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        None
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            #[cfg(not(feature = "aws-lc"))]
            DHChoice::Curve25519 => Some(Box::new(dalek::X25519Key::default())),
            #[cfg(feature = "aws-lc")]
            DHChoice::Curve25519 => Some(Box::new(aws_lc::X25519Key::default())),
            _ => None,
        }
    }

    fn resolve_hash(&self, _: &HashChoice) -> Option<Box<dyn Hash>> {
        None
    }

    fn resolve_cipher(&self, _: &CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

/// Fills a fresh private key from the handshake's random source and sets it.
fn generate_with(key: &mut dyn Dh, rng: &mut dyn Random) -> Result<(), snow::Error> {
    let mut bytes = [0u8; 32];
    rng.try_fill_bytes(&mut bytes)?;
    key.set(&bytes);
    bytes.fill(0);
    Ok(())
}

// With aws-lc, the dalek implementation stays as the reference the tests compare it with.
#[cfg(any(not(feature = "aws-lc"), test))]
mod dalek {
    use curve25519_dalek::montgomery::MontgomeryPoint;
    use snow::types::{Dh, Random};

    /// One X25519 key pair; `set` is false until a private key is set or generated.
    #[derive(Default)]
    pub(super) struct X25519Key {
        set: bool,
        public: [u8; 32],
        private: [u8; 32],
    }

    impl Dh for X25519Key {
        fn name(&self) -> &'static str {
            "25519"
        }

        fn pub_len(&self) -> usize {
            32
        }

        fn priv_len(&self) -> usize {
            32
        }

        fn set(&mut self, privkey: &[u8]) {
            // A wrong length leaves no key, and every later use of it fails.
            self.set = false;
            let Some(bytes) = privkey.get(..32) else {
                return;
            };
            self.private.copy_from_slice(bytes);
            self.public = MontgomeryPoint::mul_base_clamped(self.private).to_bytes();
            self.set = true;
        }

        fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
            super::generate_with(self, rng)?;
            if self.set {
                Ok(())
            } else {
                Err(snow::Error::Dh)
            }
        }

        fn pubkey(&self) -> &[u8] {
            &self.public
        }

        fn privkey(&self) -> &[u8] {
            &self.private
        }

        fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
            if !self.set {
                return Err(snow::Error::Dh);
            }
            let pubkey: [u8; 32] = pubkey
                .get(..32)
                .and_then(|k| k.try_into().ok())
                .ok_or(snow::Error::Dh)?;
            let out = out.get_mut(..32).ok_or(snow::Error::Dh)?;
            let shared = MontgomeryPoint(pubkey).mul_clamped(self.private).to_bytes();
            // A peer key of small order gives the all-zero secret (RFC 7748 §6.1): refused,
            // as aws-lc refuses it.
            if shared.iter().fold(0u8, |acc, b| acc | b) == 0 {
                return Err(snow::Error::Dh);
            }
            out.copy_from_slice(&shared);
            Ok(())
        }
    }

    impl Drop for X25519Key {
        fn drop(&mut self) {
            self.private.fill(0);
        }
    }
}

#[cfg(feature = "aws-lc")]
mod aws_lc {
    use aws_lc_rs::agreement::{PrivateKey, UnparsedPublicKey, X25519, agree};
    use snow::types::{Dh, Random};

    /// One X25519 key pair; `key` is `None` until a private key is set or generated.
    #[derive(Default)]
    pub(super) struct X25519Key {
        key: Option<PrivateKey>,
        public: [u8; 32],
        private: [u8; 32],
    }

    impl Dh for X25519Key {
        fn name(&self) -> &'static str {
            "25519"
        }

        fn pub_len(&self) -> usize {
            32
        }

        fn priv_len(&self) -> usize {
            32
        }

        fn set(&mut self, privkey: &[u8]) {
            // A wrong length leaves no key, and every later use of it fails.
            self.key = None;
            let Some(bytes) = privkey.get(..32) else {
                return;
            };
            let Ok(key) = PrivateKey::from_private_key(&X25519, bytes) else {
                return;
            };
            let Ok(public) = key.compute_public_key() else {
                return;
            };
            self.public.copy_from_slice(public.as_ref());
            self.private.copy_from_slice(bytes);
            self.key = Some(key);
        }

        fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
            super::generate_with(self, rng)?;
            self.key.as_ref().map(|_| ()).ok_or(snow::Error::Dh)
        }

        fn pubkey(&self) -> &[u8] {
            &self.public
        }

        fn privkey(&self) -> &[u8] {
            &self.private
        }

        fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
            let key = self.key.as_ref().ok_or(snow::Error::Dh)?;
            let pubkey = pubkey.get(..32).ok_or(snow::Error::Dh)?;
            let out = out.get_mut(..32).ok_or(snow::Error::Dh)?;
            // aws-lc refuses a peer key of small order (an all-zero shared secret).
            agree(
                key,
                UnparsedPublicKey::new(&X25519, pubkey),
                snow::Error::Dh,
                |shared| {
                    out.copy_from_slice(shared);
                    Ok(())
                },
            )
        }
    }

    impl Drop for X25519Key {
        fn drop(&mut self) {
            self.private.fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    fn keys() -> Vec<Box<dyn Dh>> {
        vec![
            Box::new(dalek::X25519Key::default()),
            #[cfg(feature = "aws-lc")]
            Box::new(aws_lc::X25519Key::default()),
        ]
    }

    /// RFC 7748 §6.1: Alice's and Bob's keys and their shared secret.
    #[test]
    fn rfc7748_vectors() {
        let alice = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let alice_pub = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let bob = hex32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let bob_pub = hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let shared = hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        for mut key in keys() {
            key.set(&alice);
            assert_eq!(key.pubkey(), alice_pub, "{}", key.name());
            let mut out = [0u8; 32];
            key.dh(&bob_pub, &mut out).expect("agreement");
            assert_eq!(out, shared);
            key.set(&bob);
            assert_eq!(key.pubkey(), bob_pub);
        }
    }

    #[test]
    fn small_order_peer_key_and_missing_key_are_refused() {
        for mut key in keys() {
            let mut out = [0u8; 32];
            assert!(key.dh(&[9u8; 32], &mut out).is_err(), "no key set yet");
            key.set(&[9u8; 32]);
            assert!(key.dh(&[0u8; 32], &mut out).is_err());
            assert!(key.dh(&[9u8; 16], &mut out).is_err(), "short peer key");
        }
    }

    #[test]
    fn the_resolver_gives_x25519_only() {
        use snow::resolvers::CryptoResolver as _;
        assert!(Resolver.resolve_dh(&DHChoice::Curve25519).is_some());
        assert!(Resolver.resolve_dh(&DHChoice::Curve448).is_none());
    }

    proptest! {
        /// Both sides of an agreement compute the same secret, with every implementation
        /// built in (so aws-lc-rs against curve25519-dalek when the feature is on).
        #[test]
        fn agreements_match(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            for mut ours in keys() {
                for mut theirs in keys() {
                    ours.set(&a);
                    theirs.set(&b);
                    let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
                    ours.dh(theirs.pubkey(), &mut x).expect("ours");
                    theirs.dh(ours.pubkey(), &mut y).expect("theirs");
                    prop_assert_eq!(x, y);
                }
            }
        }
    }
}
