//! Device keys and signed Automerge changes: who wrote what, provably.
//!
//! Every dontpanic device holds one ed25519 [`SecretKey`]. Every Automerge
//! change it makes is wrapped in a [`SignedChange`]: the change bytes, the
//! signer's [`PublicKey`] and a [`Signature`] over the change hash. A change
//! is trusted only after [`SignedChange::verify`] (or [`verify_all`]) says so.
//!
//! This crate knows nothing of the disk, the network or the incident model;
//! it only makes and checks signatures.
//!
//! ```
//! use dontpanic_identity::{SecretKey, SignedChange};
//! let key = SecretKey::generate();
//! let mut doc = automerge::AutoCommit::new();
//! use automerge::transaction::Transactable;
//! doc.put(automerge::ROOT, "title", "DNS down").unwrap();
//! let change = doc.get_last_local_change().unwrap();
//! let signed = SignedChange::sign(&key, change);
//! signed.verify().unwrap();
//! ```
#![deny(missing_docs)]

use std::fmt;
use std::str::FromStr;

use automerge::{Change, ChangeHash};
use ed25519_dalek::{Signer, Verifier};

pub mod runs;
pub use runs::{verify_runs, CoverageError, SignedRuns, MAX_SIGNED_HEADS};

/// Domain separation for change signatures, so a change signature can never
/// be replayed as a signature of anything else.
const CHANGE_CONTEXT: &[u8] = b"dontpanic/change/v1:";

/// Errors from parsing keys and checking signatures.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A key or signature had the wrong length or encoding.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed ("public key", "signature", ...).
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A signature did not verify.
    #[error("bad signature on change {hash} by key {signer}")]
    BadSignature {
        /// The change whose signature failed.
        hash: ChangeHash,
        /// Fingerprint of the key that supposedly signed it.
        signer: String,
    },
    /// The change names a different author than the key that signed it.
    #[error("change {hash} names author {named} but is signed by {signer}")]
    AuthorMismatch {
        /// The change.
        hash: ChangeHash,
        /// The author recorded inside the change.
        named: String,
        /// Fingerprint of the key that signed it.
        signer: String,
    },
    /// Change bytes could not be parsed.
    #[error("change bytes do not parse: {0}")]
    BadChange(String),
}

/// A device's private signing key.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

/// A device's public key: it names a responder and checks their signatures.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl SecretKey {
    /// Creates a new random key from the operating system's RNG.
    pub fn generate() -> Self {
        SecretKey(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// Restores a key from its 32-byte seed.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        SecretKey(ed25519_dalek::SigningKey::from_bytes(bytes))
    }

    /// The 32-byte seed; keep it secret.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs an arbitrary message (callers add their own domain separation).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public())
    }
}

impl PublicKey {
    /// Parses 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| IdentityError::Malformed {
            what: "public key",
            reason: format!("expected 32 bytes, got {}", bytes.len()),
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|e| IdentityError::Malformed {
                what: "public key",
                reason: e.to_string(),
            })
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// A short, human-comparable fingerprint, e.g. `3f9a:1c02:77be:0d41`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.to_string())
    }

    /// Checks a signature over an arbitrary message.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.0.verify(message, &signature.0).is_ok()
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_bytes().cmp(other.0.as_bytes())
    }
}

/// The fingerprint of a key given in hex (as rosters store keys): its
/// first 8 bytes as four groups of four hex digits, `3f9a:1c02:77be:0d41`.
/// The one format every key is shown in; typing it (colons and all) where
/// a key prefix is asked for works.
pub fn fingerprint(hex: &str) -> String {
    let digits: Vec<char> = hex.chars().filter(|c| *c != ':').take(16).collect();
    digits
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl FromStr for PublicKey {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(s.as_bytes())
            .map_err(|e| IdentityError::Malformed {
                what: "public key",
                reason: e.to_string(),
            })?;
        PublicKey::from_bytes(&bytes)
    }
}

impl Signature {
    /// Parses 64 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr: [u8; 64] = bytes.try_into().map_err(|_| IdentityError::Malformed {
            what: "signature",
            reason: format!("expected 64 bytes, got {}", bytes.len()),
        })?;
        Ok(Signature(ed25519_dalek::Signature::from_bytes(&arr)))
    }

    /// The 64 raw bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(..)")
    }
}

/// The bytes a change signature covers: a context string and the change hash.
fn change_message(hash: &ChangeHash) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHANGE_CONTEXT.len() + 32);
    m.extend_from_slice(CHANGE_CONTEXT);
    m.extend_from_slice(hash.as_ref());
    m
}

/// An Automerge change together with its author's key and signature.
#[derive(Clone, Debug)]
pub struct SignedChange {
    /// The change itself; its hash is what is signed.
    pub change: Change,
    /// The key that signed the change.
    pub signer: PublicKey,
    /// The signature over [`SignedChange::hash`].
    pub signature: Signature,
}

/// A change signature without the change: what travels beside Automerge sync
/// messages and what the store keeps next to each change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChangeSignature {
    /// The change hash that was signed.
    pub hash: ChangeHash,
    /// The signer.
    pub signer: PublicKey,
    /// The signature.
    pub signature: Signature,
}

impl ChangeSignature {
    /// Signs a change hash.
    pub fn sign(key: &SecretKey, hash: ChangeHash) -> Self {
        ChangeSignature {
            hash,
            signer: key.public(),
            signature: key.sign(&change_message(&hash)),
        }
    }

    /// Checks the signature over its hash.
    pub fn verify(&self) -> Result<(), IdentityError> {
        if self
            .signer
            .verify(&change_message(&self.hash), &self.signature)
        {
            Ok(())
        } else {
            Err(IdentityError::BadSignature {
                hash: self.hash,
                signer: self.signer.fingerprint(),
            })
        }
    }
}

impl SignedChange {
    /// Signs `change` with `key`.
    pub fn sign(key: &SecretKey, change: Change) -> Self {
        let sig = ChangeSignature::sign(key, change.hash());
        SignedChange {
            change,
            signer: sig.signer,
            signature: sig.signature,
        }
    }

    /// Pairs a change with a detached signature; the caller still has to
    /// [`verify`](Self::verify).
    pub fn from_parts(change: Change, signer: PublicKey, signature: Signature) -> Self {
        SignedChange {
            change,
            signer,
            signature,
        }
    }

    /// The change hash.
    pub fn hash(&self) -> ChangeHash {
        self.change.hash()
    }

    /// The detached signature.
    pub fn detached(&self) -> ChangeSignature {
        ChangeSignature {
            hash: self.hash(),
            signer: self.signer,
            signature: self.signature,
        }
    }

    /// Checks the signature, and that the author recorded in the change (if
    /// any) is the signer.
    pub fn verify(&self) -> Result<(), IdentityError> {
        self.check_author()?;
        self.detached().verify()
    }

    fn check_author(&self) -> Result<(), IdentityError> {
        match self.change.author() {
            Some(author) if author.as_bytes() != self.signer.to_bytes().as_slice() => {
                Err(IdentityError::AuthorMismatch {
                    hash: self.hash(),
                    named: data_encoding::HEXLOWER.encode(author.as_bytes()),
                    signer: self.signer.fingerprint(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Verifies many changes, in parallel batches; returns the index and error
/// of every change that fails, in order.
pub fn verify_all(changes: &[SignedChange]) -> Vec<(usize, IdentityError)> {
    // A live edit is one change: threads would cost more than they save.
    if changes.len() < 256 {
        return verify_chunk(0, changes);
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let chunk = changes.len().div_ceil(threads).max(256);
    let mut failures: Vec<(usize, IdentityError)> = std::thread::scope(|s| {
        let handles: Vec<_> = changes
            .chunks(chunk)
            .enumerate()
            .map(|(i, part)| s.spawn(move || verify_chunk(i * chunk, part)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("verification thread panicked"))
            .collect()
    });
    failures.sort_by_key(|(i, _)| *i);
    failures
}

/// Batch-verifies one slice; only when the batch fails is each checked alone
/// to find the culprits.
fn verify_chunk(offset: usize, part: &[SignedChange]) -> Vec<(usize, IdentityError)> {
    let mut failures = Vec::new();
    for (i, c) in part.iter().enumerate() {
        if let Err(e) = c.check_author() {
            failures.push((offset + i, e));
        }
    }
    let messages: Vec<Vec<u8>> = part.iter().map(|c| change_message(&c.hash())).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let sigs: Vec<ed25519_dalek::Signature> = part.iter().map(|c| c.signature.0).collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = part.iter().map(|c| c.signer.0).collect();
    if ed25519_dalek::verify_batch(&refs, &sigs, &keys).is_err() {
        for (i, c) in part.iter().enumerate() {
            if let Err(e) = c.detached().verify() {
                failures.push((offset + i, e));
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    fn change(author: Option<&PublicKey>, value: &str) -> Change {
        let mut doc = automerge::AutoCommit::new();
        if let Some(a) = author {
            doc.set_author(Some(automerge::Author::from(a.to_bytes().to_vec())));
        }
        doc.put(automerge::ROOT, "k", value).unwrap();
        doc.get_last_local_change().unwrap()
    }

    #[test]
    fn one_fingerprint_format_for_keys_and_hex() {
        let key = SecretKey::generate().public();
        let fp = key.fingerprint();
        assert_eq!(fp, fingerprint(&key.to_string()));
        assert_eq!(fingerprint(&fp), fp, "a fingerprint is its own fingerprint");
        for (hex, want) in [
            ("3f9a1c0277be0d41ffff", "3f9a:1c02:77be:0d41"),
            ("3f9a1c", "3f9a:1c"),
            ("", ""),
        ] {
            assert_eq!(fingerprint(hex), want, "{hex}");
        }
    }

    #[test]
    fn signed_change_verifies_and_tamper_fails() {
        let key = SecretKey::generate();
        let signed = SignedChange::sign(&key, change(Some(&key.public()), "a"));
        signed.verify().unwrap();
        let other = SignedChange::from_parts(
            change(Some(&key.public()), "b"),
            signed.signer,
            signed.signature,
        );
        assert!(matches!(
            other.verify(),
            Err(IdentityError::BadSignature { .. })
        ));
    }

    #[test]
    fn author_must_match_signer() {
        let alice = SecretKey::generate();
        let mallory = SecretKey::generate();
        let signed = SignedChange::sign(&mallory, change(Some(&alice.public()), "a"));
        assert!(matches!(
            signed.verify(),
            Err(IdentityError::AuthorMismatch { .. })
        ));
    }

    #[test]
    fn verify_all_finds_every_bad_one() {
        let key = SecretKey::generate();
        let mut all: Vec<SignedChange> = (0..600)
            .map(|i| SignedChange::sign(&key, change(None, &i.to_string())))
            .collect();
        all[3].signature = all[4].signature;
        all[599].signature = all[0].signature;
        let bad: Vec<usize> = verify_all(&all).into_iter().map(|(i, _)| i).collect();
        assert_eq!(bad, vec![3, 599]);
    }

    #[test]
    fn public_key_round_trips_through_text() {
        let key = SecretKey::generate().public();
        let parsed: PublicKey = key.to_string().parse().unwrap();
        assert_eq!(parsed, key);
        assert!("zz".parse::<PublicKey>().is_err());
    }
}
