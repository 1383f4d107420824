//! Between the notebook's signed messages and the network's typed ones.
//! Every length a peer sent is checked here, and a wrong one named.

use automerge::ChangeHash;
use dontpanic_identity::{ChangeSignature, PublicKey, Signature, SignedRuns};
use dontpanic_net::wire::{SignedHistory, SignedSync, WireSignature};
use dontpanic_notebook::sync::{decode_history, SignedSyncMessage};
use dontpanic_notebook::NotebookError;
use serde_bytes::ByteBuf;

/// What was wrong with a message as typed (before any signature is
/// checked): the sender's fault.
pub(crate) fn malformed(what: String) -> NotebookError {
    NotebookError::Rejected {
        count: 0,
        reason: format!("malformed message: {what}"),
    }
}

fn wire_signature(s: &ChangeSignature) -> WireSignature {
    WireSignature {
        hash: ByteBuf::from(s.hash.as_ref().to_vec()),
        signer: ByteBuf::from(s.signer.to_bytes().to_vec()),
        signature: ByteBuf::from(s.signature.to_bytes().to_vec()),
    }
}

fn change_signature(w: &WireSignature, i: usize) -> Result<ChangeSignature, NotebookError> {
    let hash = ChangeHash::try_from(w.hash.as_slice()).map_err(|_| {
        malformed(format!(
            "signature {i}: hash of {} bytes, not 32",
            w.hash.len()
        ))
    })?;
    let signer = PublicKey::from_bytes(&w.signer)
        .map_err(|e| malformed(format!("signature {i}: signer: {e}")))?;
    let signature = Signature::from_bytes(&w.signature)
        .map_err(|e| malformed(format!("signature {i}: {e}")))?;
    Ok(ChangeSignature {
        hash,
        signer,
        signature,
    })
}

/// The notebook's message as sent.
pub(crate) fn to_wire(m: SignedSyncMessage) -> SignedSync {
    SignedSync {
        automerge: ByteBuf::from(m.message),
        signatures: m.signatures.iter().map(wire_signature).collect(),
    }
}

/// A received message as the notebook takes it.
pub(crate) fn from_wire(w: SignedSync) -> Result<SignedSyncMessage, NotebookError> {
    let signatures = w
        .signatures
        .iter()
        .enumerate()
        .map(|(i, s)| change_signature(s, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SignedSyncMessage {
        message: w.automerge.into_vec(),
        signatures,
    })
}

/// A whole history as sent to a joiner.
pub(crate) fn history_to_wire(history: &SignedRuns) -> SignedHistory {
    SignedHistory {
        changes: history
            .changes
            .iter()
            .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
            .collect(),
        signatures: history.signatures.iter().map(wire_signature).collect(),
    }
}

/// A received history as the notebook takes it (coverage is checked there,
/// with everything else).
pub(crate) fn history_from_wire(h: SignedHistory) -> Result<SignedRuns, NotebookError> {
    let signatures = h
        .signatures
        .iter()
        .enumerate()
        .map(|(i, s)| change_signature(s, i))
        .collect::<Result<Vec<_>, _>>()?;
    let changes = decode_history(h.changes.iter().map(|c| c.as_slice()))?;
    Ok(SignedRuns {
        changes,
        signatures,
    })
}
