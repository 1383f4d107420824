//! Signatures per run: one signature over an actor's latest change vouches
//! for every earlier change of that actor it reaches through dependencies.
//!
//! An Automerge change hash covers the change's bytes, its dependencies'
//! hashes included, and an actor's change n depends (directly or through
//! other actors' changes) on its change n−1. So a signature over the hash of
//! actor A's change h also fixes, hash by hash, every ancestor of h. The
//! rule ([`verify_runs`]): every change `c` of a batch must be *covered*:
//! some change `h` of the same batch carries a valid signature by key K,
//! `c` is `h` or is reached from `h` through dependencies inside the batch,
//! `actor(c) == actor(h)`, and the actor is bound to K.
//!
//! The binding: Automerge 0.12 writes a change's author field only in the
//! first change (seq 1) of its actor, so that change binds the actor to its
//! key, once. A seq-1 change must name an author that is a key; a later
//! change must name none or the same; an actor whose first change is
//! neither in the document nor in the batch is refused; and a change whose
//! actor is already bound (in the document, or earlier in the batch) to
//! another key is refused. docs/security.md has the argument.
//!
//! Hashes are computed from the change bytes by Automerge on parse, never
//! taken from a claim; signatures name the hash they sign, which is looked
//! up among the batch's computed hashes.

use std::collections::HashMap;

use automerge::{ActorId, Change, ChangeHash};

use crate::{change_message, ChangeSignature, PublicKey};

/// Signed heads one batch may carry: bounds the coverage walk to
/// O(heads × batch) whatever a hostile sender puts in.
pub const MAX_SIGNED_HEADS: usize = 1_024;

/// Changes with the signatures that cover them: what a sync message, a
/// joining history or a verified journal batch carries.
#[derive(Clone, Debug, Default)]
pub struct SignedRuns {
    /// The changes, in any order.
    pub changes: Vec<Change>,
    /// Signatures of some of them: at least each actor's latest.
    pub signatures: Vec<ChangeSignature>,
}

impl SignedRuns {
    /// Number of changes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether there are no changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Changes each with its own signature (a live edit, or a test): each is
/// its own covering head.
impl From<Vec<crate::SignedChange>> for SignedRuns {
    fn from(signed: Vec<crate::SignedChange>) -> Self {
        SignedRuns {
            signatures: signed.iter().map(crate::SignedChange::detached).collect(),
            changes: signed.into_iter().map(|c| c.change).collect(),
        }
    }
}

/// Why a batch is not covered; each names the change concerned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoverageError {
    /// More signatures than changes: nothing honest sends that.
    #[error("{signatures} signatures for {changes} changes")]
    TooManySignatures {
        /// Signatures sent.
        signatures: usize,
        /// Changes sent.
        changes: usize,
    },
    /// More signed heads than [`MAX_SIGNED_HEADS`].
    #[error("{0} signed changes in one batch (at most {MAX_SIGNED_HEADS})")]
    TooManyHeads(usize),
    /// The first change of an actor names no author, or a later change's
    /// actor is bound nowhere (its first change is neither held nor sent).
    #[error("change {0} names no author, and its actor is bound to no key (its first change is neither held nor in the batch)")]
    NoAuthor(ChangeHash),
    /// The author field is not an ed25519 public key.
    #[error("change {0} names an author that is not a key")]
    AuthorNotAKey(ChangeHash),
    /// The change's actor is bound to another key.
    #[error("change {hash} is by actor {actor}, bound to key {bound}, but names author {named}")]
    ActorRebound {
        /// The change.
        hash: ChangeHash,
        /// Its actor.
        actor: String,
        /// Fingerprint of the key the actor is bound to.
        bound: String,
        /// Fingerprint of the author it names.
        named: String,
    },
    /// A signature is by another key than the one the change's actor is
    /// bound to.
    #[error("change {hash} is by an actor bound to key {named} but is signed by {signer}")]
    SignerNotAuthor {
        /// The change.
        hash: ChangeHash,
        /// Fingerprint of its author.
        named: String,
        /// Fingerprint of the signer.
        signer: String,
    },
    /// A signature does not verify.
    #[error("bad signature on change {hash} by key {signer}")]
    BadSignature {
        /// The change.
        hash: ChangeHash,
        /// Fingerprint of the signer.
        signer: String,
    },
    /// No signature reaches the change.
    #[error("change {hash} (actor {actor}, seq {seq}) is covered by no signature: no signed later change of its actor reaches it within the batch")]
    Uncovered {
        /// The change.
        hash: ChangeHash,
        /// Its actor.
        actor: String,
        /// Its sequence number.
        seq: u64,
    },
}

/// The key a change names as its author, if it names one.
pub fn author_of(change: &Change) -> Result<Option<PublicKey>, CoverageError> {
    change
        .author()
        .map(|a| {
            PublicKey::from_bytes(a.as_bytes())
                .map_err(|_| CoverageError::AuthorNotAKey(change.hash()))
        })
        .transpose()
}

/// What [`verify_runs`] found: the batch's key per change, in batch order.
pub type Authors = Vec<PublicKey>;

/// Checks that every change of `batch` is covered (see the module docs).
/// `message_changes` is how many changes the message held before those
/// already held were left out (signatures of held changes are allowed and
/// ignored); `bound` says which key an actor already has in the document.
/// Returns each change's author key.
pub fn verify_runs(
    batch: &[Change],
    signatures: &[ChangeSignature],
    message_changes: usize,
    bound: impl Fn(&ActorId) -> Option<PublicKey>,
) -> Result<Authors, CoverageError> {
    if signatures.len() > message_changes.max(batch.len()) {
        return Err(CoverageError::TooManySignatures {
            signatures: signatures.len(),
            changes: message_changes.max(batch.len()),
        });
    }
    let index: HashMap<ChangeHash, usize> = batch
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash(), i))
        .collect();
    // Authors, and the actor binding: one key per actor.
    let mut keys: HashMap<&ActorId, PublicKey> = HashMap::new();
    // First the actors' first changes, which name their keys.
    for c in batch.iter().filter(|c| c.seq() == 1) {
        let key = author_of(c)?.ok_or_else(|| CoverageError::NoAuthor(c.hash()))?;
        let known = keys
            .get(c.actor_id())
            .copied()
            .or_else(|| bound(c.actor_id()));
        if let Some(bound) = known.filter(|k| *k != key) {
            return Err(rebound(c, bound, key));
        }
        keys.insert(c.actor_id(), key);
    }
    let mut authors = Vec::with_capacity(batch.len());
    for c in batch {
        let known = match keys.get(c.actor_id()) {
            Some(k) => *k,
            None => {
                let k = bound(c.actor_id()).ok_or_else(|| CoverageError::NoAuthor(c.hash()))?;
                keys.insert(c.actor_id(), k);
                k
            }
        };
        if let Some(named) = author_of(c)?.filter(|k| *k != known) {
            return Err(rebound(c, known, named));
        }
        authors.push(known);
    }
    // The signed heads: those that sign a change of this batch.
    let mut heads: Vec<(usize, &ChangeSignature)> = Vec::new();
    for s in signatures {
        if let Some(&i) = index.get(&s.hash) {
            if heads.iter().any(|(j, h)| *j == i && *h == s) {
                continue;
            }
            heads.push((i, s));
        }
    }
    if heads.len() > MAX_SIGNED_HEADS {
        return Err(CoverageError::TooManyHeads(heads.len()));
    }
    for (i, s) in &heads {
        if s.signer != authors[*i] {
            return Err(CoverageError::SignerNotAuthor {
                hash: s.hash,
                named: authors[*i].fingerprint(),
                signer: s.signer.fingerprint(),
            });
        }
    }
    verify_signatures(&heads)?;
    let signed: Vec<usize> = heads.iter().map(|(i, _)| *i).collect();
    let covered = covered(batch, &signed);
    // Named: the uncovered change nearest the break (the highest seq),
    // where a chain was cut or a change swapped.
    let uncovered = (0..batch.len()).filter(|i| !covered[*i]);
    if let Some(i) = uncovered.max_by_key(|i| batch[*i].seq()) {
        let c = &batch[i];
        return Err(CoverageError::Uncovered {
            hash: c.hash(),
            actor: c.actor_id().to_hex_string(),
            seq: c.seq(),
        });
    }
    Ok(authors)
}

/// Which changes of `batch` are covered by its changes at `signed` (whose
/// signatures the caller has checked): per actor, its signed changes and
/// every change of that actor they reach through deps inside the batch.
/// O(actors × batch).
pub fn covered(batch: &[Change], signed: &[usize]) -> Vec<bool> {
    let index: HashMap<ChangeHash, usize> = batch
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash(), i))
        .collect();
    let mut by_actor: HashMap<&ActorId, Vec<usize>> = HashMap::new();
    for i in signed {
        by_actor.entry(batch[*i].actor_id()).or_default().push(*i);
    }
    let mut covered = vec![false; batch.len()];
    let mut seen = vec![usize::MAX; batch.len()];
    for (round, (actor, starts)) in by_actor.into_iter().enumerate() {
        let mut stack = starts;
        while let Some(i) = stack.pop() {
            if seen[i] == round {
                continue;
            }
            seen[i] = round;
            let c = &batch[i];
            if c.actor_id() == actor {
                covered[i] = true;
            }
            stack.extend(c.deps().iter().filter_map(|d| index.get(d).copied()));
        }
    }
    covered
}

fn rebound(c: &Change, bound: PublicKey, named: PublicKey) -> CoverageError {
    CoverageError::ActorRebound {
        hash: c.hash(),
        actor: c.actor_id().to_hex_string(),
        bound: bound.fingerprint(),
        named: named.fingerprint(),
    }
}

/// Batch-verifies the signed heads; on failure names the first bad one.
fn verify_signatures(heads: &[(usize, &ChangeSignature)]) -> Result<(), CoverageError> {
    if heads.is_empty() {
        return Ok(());
    }
    let messages: Vec<Vec<u8>> = heads.iter().map(|(_, s)| change_message(&s.hash)).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let sigs: Vec<ed25519_dalek::Signature> = heads.iter().map(|(_, s)| s.signature.0).collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = heads.iter().map(|(_, s)| s.signer.0).collect();
    if ed25519_dalek::verify_batch(&refs, &sigs, &keys).is_ok() {
        return Ok(());
    }
    for (_, s) in heads {
        if s.verify().is_err() {
            return Err(CoverageError::BadSignature {
                hash: s.hash,
                signer: s.signer.fingerprint(),
            });
        }
    }
    Ok(())
}

/// The signatures that cover `changes` by the rule, if those held allow
/// it: per actor, the signature of its latest change (highest seq) among
/// `changes`. `None` if one of them is not held, or if some change would
/// still be uncovered (a chain broken by a change left out): the sender
/// then widens the message (see the notebook's sync).
pub fn covering_signatures(
    changes: &[Change],
    held: impl Fn(&ChangeHash) -> Option<ChangeSignature>,
) -> Option<Vec<ChangeSignature>> {
    let mut latest: HashMap<&ActorId, &Change> = HashMap::new();
    for c in changes {
        let e = latest.entry(c.actor_id()).or_insert(c);
        if c.seq() > e.seq() {
            *e = c;
        }
    }
    let sigs: Vec<ChangeSignature> = latest
        .values()
        .map(|c| held(&c.hash()))
        .collect::<Option<_>>()?;
    // Our own signatures: not verified again, only their reach is checked.
    let index: HashMap<ChangeHash, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash(), i))
        .collect();
    let signed: Vec<usize> = sigs
        .iter()
        .filter_map(|s| index.get(&s.hash).copied())
        .collect();
    covered(changes, &signed)
        .into_iter()
        .all(|c| c)
        .then_some(sigs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use automerge::transaction::Transactable;

    /// A document whose changes are written by `key` under a fresh actor.
    fn writer(key: &SecretKey) -> automerge::AutoCommit {
        let mut doc = automerge::AutoCommit::new().with_actor(ActorId::random());
        doc.set_author(Some(automerge::Author::from(
            key.public().to_bytes().to_vec(),
        )));
        doc
    }

    fn note(doc: &mut automerge::AutoCommit, v: &str) -> Change {
        doc.put(automerge::ROOT, "k", v).unwrap();
        doc.commit();
        doc.get_last_local_change().unwrap()
    }

    fn chain(key: &SecretKey, n: usize) -> Vec<Change> {
        let mut doc = writer(key);
        (0..n).map(|i| note(&mut doc, &i.to_string())).collect()
    }

    #[test]
    fn one_signature_covers_a_chain() {
        let k = SecretKey::generate();
        let cs = chain(&k, 50);
        let sig = ChangeSignature::sign(&k, cs[49].hash());
        verify_runs(&cs, &[sig], cs.len(), |_| None).unwrap();
        // Without it, the first change is not covered.
        let err = verify_runs(&cs, &[], cs.len(), |_| None).unwrap_err();
        assert!(matches!(err, CoverageError::Uncovered { .. }), "{err}");
    }

    #[test]
    fn a_signature_does_not_cover_later_changes() {
        let k = SecretKey::generate();
        let cs = chain(&k, 5);
        let sig = ChangeSignature::sign(&k, cs[2].hash());
        let err = verify_runs(&cs, &[sig], 5, |_| None).unwrap_err();
        assert!(
            matches!(err, CoverageError::Uncovered { hash, .. } if hash == cs[3].hash() || hash == cs[4].hash()),
            "{err}"
        );
    }

    #[test]
    fn a_change_of_another_actor_is_not_covered() {
        let k = SecretKey::generate();
        let mut a = writer(&k);
        let a1 = note(&mut a, "a1");
        let mut b = writer(&k);
        b.merge(&mut a).unwrap();
        let b1 = note(&mut b, "b1");
        let sig = ChangeSignature::sign(&k, b1.hash());
        // b1 reaches a1, but a1 is another actor's: it needs its own head.
        let err = verify_runs(&[a1.clone(), b1.clone()], &[sig], 2, |_| None).unwrap_err();
        assert!(matches!(err, CoverageError::Uncovered { hash, .. } if hash == a1.hash()));
        let sig_a = ChangeSignature::sign(&k, a1.hash());
        verify_runs(&[a1, b1], &[sig, sig_a], 2, |_| None).unwrap();
    }

    #[test]
    fn an_actor_bound_to_another_key_is_refused() {
        let k = SecretKey::generate();
        let m = SecretKey::generate();
        let cs = chain(&m, 2);
        let sig = ChangeSignature::sign(&m, cs[1].hash());
        let actor = cs[0].actor_id().clone();
        let err = verify_runs(&cs, &[sig], 2, |a| (*a == actor).then(|| k.public())).unwrap_err();
        assert!(matches!(err, CoverageError::ActorRebound { .. }), "{err}");
    }

    #[test]
    fn too_many_signatures_or_heads_are_refused() {
        let k = SecretKey::generate();
        let cs = chain(&k, 2);
        let sigs: Vec<_> = (0..3)
            .map(|_| ChangeSignature::sign(&k, cs[1].hash()))
            .collect();
        assert!(matches!(
            verify_runs(&cs, &sigs, 2, |_| None),
            Err(CoverageError::TooManySignatures { .. })
        ));
        let cs = chain(&k, MAX_SIGNED_HEADS + 1);
        let sigs: Vec<_> = cs
            .iter()
            .map(|c| ChangeSignature::sign(&k, c.hash()))
            .collect();
        assert!(matches!(
            verify_runs(&cs, &sigs, cs.len(), |_| None),
            Err(CoverageError::TooManyHeads(_))
        ));
    }

    #[test]
    fn a_change_without_author_is_refused() {
        let k = SecretKey::generate();
        let mut doc = automerge::AutoCommit::new();
        let c = note(&mut doc, "x");
        let sig = ChangeSignature::sign(&k, c.hash());
        assert!(matches!(
            verify_runs(&[c], &[sig], 1, |_| None),
            Err(CoverageError::NoAuthor(_))
        ));
    }

    #[test]
    fn covering_signatures_finds_each_actors_latest() {
        let k = SecretKey::generate();
        let cs = chain(&k, 10);
        let held = |h: &ChangeHash| Some(ChangeSignature::sign(&k, *h));
        let sigs = covering_signatures(&cs, held).unwrap();
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].hash, cs[9].hash());
        // A chain with a hole (change 5 left out) is not coverable as is.
        let mut holed = cs.clone();
        holed.remove(5);
        assert!(covering_signatures(&holed, held).is_none());
    }
}
