//! Snapshots: the whole document saved at once, with the signatures that
//! cover its changes (per actor, the signature of its latest change:
//! docs/security.md, "Signatures per run"), sealed by the device key. A journal holds only what came
//! after the latest snapshot, so opening a large incident loads one compact
//! document instead of replaying every change.
//!
//! ```text
//! "DPSNAP02" | u32 LE doc length | Automerge saved document
//! | u32 LE count | count × (change hash 32 | signer 32 | signature 64)
//! | u32 LE heads | heads × change hash 32
//! | sealer public key 32 | seal signature 64 | u32 LE crc32(everything before)
//! seal = sign("dontpanic/snapshot/v1:" ‖ sha256(everything before the sealer key))
//! ```

use std::path::Path;

use automerge::ChangeHash;
use dontpanic_identity::{ChangeSignature, PublicKey, SecretKey, Signature};
use sha2::{Digest, Sha256};

use crate::{write_atomic, StoreError};

/// The snapshot's file name inside an incident directory.
pub(crate) const FILE: &str = "snapshot";
const MAGIC: &[u8; 8] = b"DPSNAP02";
/// The format with one signature per change, before signatures per run.
const OLD_MAGIC: &[u8; 8] = b"DPSNAP01";
const SEAL_CONTEXT: &[u8] = b"dontpanic/snapshot/v1:";

/// A saved document and the signatures of all its changes.
#[derive(Debug)]
pub struct Snapshot {
    /// `Automerge::save()` output.
    pub doc: Vec<u8>,
    /// Per actor of `doc`, the signature of its latest change.
    pub signatures: Vec<ChangeSignature>,
    /// The document's heads, so its age can be told without loading it.
    pub heads: Vec<ChangeHash>,
}

fn seal_message(body: &[u8]) -> Vec<u8> {
    let mut m = SEAL_CONTEXT.to_vec();
    m.extend_from_slice(&Sha256::digest(body));
    m
}

/// Writes a sealed snapshot atomically.
pub(crate) fn write(path: &Path, key: &SecretKey, snap: &Snapshot) -> Result<(), StoreError> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(snap.doc.len() as u32).to_le_bytes());
    out.extend_from_slice(&snap.doc);
    out.extend_from_slice(&(snap.signatures.len() as u32).to_le_bytes());
    for s in &snap.signatures {
        out.extend_from_slice(s.hash.as_ref());
        out.extend_from_slice(&s.signer.to_bytes());
        out.extend_from_slice(&s.signature.to_bytes());
    }
    out.extend_from_slice(&(snap.heads.len() as u32).to_le_bytes());
    for h in &snap.heads {
        out.extend_from_slice(h.as_ref());
    }
    let seal = key.sign(&seal_message(&out));
    out.extend_from_slice(&key.public().to_bytes());
    out.extend_from_slice(&seal.to_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    write_atomic(path, &out)
}

/// The sealer key and the document of a snapshot, nothing checked but the
/// layout: for the start-up question of whose history this is.
pub(crate) fn peek(bytes: &[u8]) -> Option<([u8; 32], Vec<u8>)> {
    if bytes.len() < 8 + 4 + 4 + 96 + 4 || &bytes[..8] != MAGIC {
        return None;
    }
    let at = bytes.len() - 4 - 96;
    let sealer: [u8; 32] = bytes[at..at + 32].try_into().ok()?;
    let n = u32::from_le_bytes(bytes[8..12].try_into().ok()?) as usize;
    let doc = bytes.get(12..12usize.checked_add(n)?)?.to_vec();
    Some((sealer, doc))
}

/// Reads and checks a snapshot: checksum, then the seal, which must be by
/// `sealer` (this device: only it writes its snapshots).
pub(crate) fn read(path: &Path, bytes: &[u8], sealer: &PublicKey) -> Result<Snapshot, StoreError> {
    let (snap, key) = read_any(path, bytes)?;
    if key != *sealer {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: "snapshot: seal is not this device's signature".into(),
        });
    }
    Ok(snap)
}

/// Reads and checks a sealed file whatever key sealed it (a segment written
/// under an earlier identity): checksum, then the seal against the key it
/// names. Returns that key; its content is vouched for only by it.
pub(crate) fn read_any(path: &Path, bytes: &[u8]) -> Result<(Snapshot, PublicKey), StoreError> {
    let bad = |reason: &str| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("snapshot: {reason}"),
    };
    if bytes.starts_with(OLD_MAGIC) {
        return Err(bad(
            "the older per-change-signature format (DPSNAP01), which this version does not read",
        ));
    }
    if bytes.len() < 8 + 4 + 4 + 96 + 4 || &bytes[..8] != MAGIC {
        return Err(bad("not a dontpanic snapshot, or cut short"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4")) {
        return Err(bad("checksum mismatch"));
    }
    let (content, seal) = body.split_at(body.len() - 96);
    let key = PublicKey::from_bytes(&seal[..32]).map_err(|e| bad(&e.to_string()))?;
    let sig = Signature::from_bytes(&seal[32..]).map_err(|e| bad(&e.to_string()))?;
    if !key.verify(&seal_message(content), &sig) {
        return Err(bad("seal does not verify"));
    }
    let n = u32::from_le_bytes(content[8..12].try_into().expect("4")) as usize;
    let doc = content
        .get(12..12 + n)
        .ok_or_else(|| bad("document cut short"))?
        .to_vec();
    let rest = &content[12 + n..];
    let count = u32::from_le_bytes(
        rest.get(..4)
            .ok_or_else(|| bad("count"))?
            .try_into()
            .expect("4"),
    ) as usize;
    let table = rest
        .get(4..4 + count.saturating_mul(128))
        .ok_or_else(|| bad("signature table is cut short"))?;
    let rest = &rest[4 + table.len()..];
    let heads = u32::from_le_bytes(
        rest.get(..4)
            .ok_or_else(|| bad("head count"))?
            .try_into()
            .expect("4"),
    ) as usize;
    if rest.len() != 4 + heads.saturating_mul(32) {
        return Err(bad("heads have the wrong length"));
    }
    let heads = rest[4..]
        .chunks(32)
        .map(|h| ChangeHash::try_from(h).map_err(|e| bad(&e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    // A handful of members sign everything: decompress each key once.
    let mut keys: std::collections::HashMap<&[u8], PublicKey> = std::collections::HashMap::new();
    let signatures = table
        .chunks(128)
        .map(|c| {
            let signer = match keys.get(&c[32..64]) {
                Some(k) => *k,
                None => {
                    let k = PublicKey::from_bytes(&c[32..64]).map_err(|e| bad(&e.to_string()))?;
                    keys.insert(&c[32..64], k);
                    k
                }
            };
            Ok(ChangeSignature {
                hash: ChangeHash::try_from(&c[..32]).map_err(|e| bad(&e.to_string()))?,
                signer,
                signature: Signature::from_bytes(&c[64..]).map_err(|e| bad(&e.to_string()))?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok((
        Snapshot {
            doc,
            signatures,
            heads,
        },
        key,
    ))
}
