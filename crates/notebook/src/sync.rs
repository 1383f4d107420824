//! Automerge sync messages that carry the signatures of their changes.
//!
//! Automerge's sync protocol decides *what* to send; this module makes sure
//! nothing it sends arrives unsigned and nothing it receives is applied
//! unverified. The envelope on the wire:
//!
//! ```text
//! "DPS1" | u32 BE len | automerge sync message | u32 BE count
//!        | count × (change hash 32 | signer key 32 | signature 64)
//! ```
//!
//! The signatures are one per run, not one per change
//! ([`dontpanic_identity::runs`]): per actor, that of its latest change in
//! the message, which covers its earlier ones. A message whose changes that
//! does not cover (Automerge answering a `need` for a change in the middle
//! of a chain) is widened by the sender to every descendant of its changes,
//! so that each actor's latest is its head, whose signature is always held.
//! A whole saved document goes with each actor's head signature.
//!
//! On receipt, every change inside the Automerge message is extracted (also
//! when Automerge ships a whole saved document instead of changes) and
//! passed with the signatures to [`Notebook::accept`], which checks that
//! each one not held yet is covered; only if all pass is the message handed
//! to Automerge, with its changes already applied.

use std::collections::HashMap;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, Change, ChangeHash};
use dontpanic_identity::{runs, ChangeSignature, PublicKey, Signature, SignedRuns};

use crate::{Notebook, NotebookError, RemoteEdit};

const MAGIC: &[u8; 4] = b"DPS1";
/// Automerge storage chunk magic bytes.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;

/// A sync message with the signatures of the changes it carries.
#[derive(Clone, Debug)]
pub struct SignedSyncMessage {
    /// The encoded Automerge sync message.
    pub message: Vec<u8>,
    /// Signatures that cover the changes inside: per actor, its latest's.
    pub signatures: Vec<ChangeSignature>,
}

fn malformed(reason: impl Into<String>) -> NotebookError {
    NotebookError::Rejected {
        count: 0,
        reason: format!("malformed sync message: {}", reason.into()),
    }
}

impl SignedSyncMessage {
    /// Wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.message.len() + 128 * self.signatures.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.message.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.message);
        out.extend_from_slice(&(self.signatures.len() as u32).to_be_bytes());
        for s in &self.signatures {
            out.extend_from_slice(s.hash.as_ref());
            out.extend_from_slice(&s.signer.to_bytes());
            out.extend_from_slice(&s.signature.to_bytes());
        }
        out
    }

    /// Parses wire bytes; every length is checked against what is there.
    pub fn decode(bytes: &[u8]) -> Result<Self, NotebookError> {
        let take = |at: usize, n: usize, what: &str| {
            bytes
                .get(at..at.saturating_add(n))
                .ok_or_else(|| malformed(format!("{what} is cut short")))
        };
        if take(0, 4, "magic")? != MAGIC {
            return Err(malformed("bad magic"));
        }
        let len = u32::from_be_bytes(take(4, 4, "length")?.try_into().expect("4")) as usize;
        let message = take(8, len, "automerge message")?.to_vec();
        let at = 8 + len;
        let count =
            u32::from_be_bytes(take(at, 4, "signature count")?.try_into().expect("4")) as usize;
        let sigs = take(
            at + 4,
            count.checked_mul(128).ok_or_else(|| malformed("count"))?,
            "signatures",
        )?;
        if at + 4 + count * 128 != bytes.len() {
            return Err(malformed("trailing bytes"));
        }
        let signatures = sigs
            .chunks(128)
            .map(|c| {
                Ok(ChangeSignature {
                    hash: ChangeHash::try_from(&c[..32]).map_err(|e| malformed(e.to_string()))?,
                    signer: PublicKey::from_bytes(&c[32..64])
                        .map_err(|e| malformed(e.to_string()))?,
                    signature: Signature::from_bytes(&c[64..])
                        .map_err(|e| malformed(e.to_string()))?,
                })
            })
            .collect::<Result<_, NotebookError>>()?;
        Ok(SignedSyncMessage {
            message,
            signatures,
        })
    }
}

/// What one peer's message may expand to. Every limit is the sender's
/// fault when exceeded: the message is rejected as a whole, nothing of it is
/// applied, and the sender is treated like any sender of a bad message.
/// docs/protocol.md has the table.
pub mod limits {
    /// Bytes of one change once decompressed (a change chunk is never
    /// compressed inside; a compressed change chunk is inflated at most this far).
    pub const MAX_CHANGE_BYTES: usize = 1 << 20;
    /// Operations in one change.
    pub const MAX_OPS_PER_CHANGE: usize = 100_000;
    /// Decompressed bytes of all the chunks of one message together, whole
    /// documents included.
    pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
    /// Decompressed bytes of a joining history: twice its 128 MiB frame, so
    /// a history that fits the frame is never refused for its size (about
    /// 200,000 timeline entries), while compressed chunks still cannot
    /// inflate without bound.
    pub const MAX_JOIN_HISTORY_BYTES: usize = 256 << 20;
    /// Changes in one message or joining history (a whole document counts
    /// every change it holds).
    pub const MAX_CHANGES_PER_MESSAGE: usize = 500_000;
    /// Operations in one message or joining history.
    pub const MAX_OPS_PER_MESSAGE: usize = 4_000_000;
    /// Columns a document chunk may declare (Automerge writes about 25).
    pub const MAX_COLUMNS: u64 = 256;
}

use limits::*;

const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED: u8 = 2;

/// One Automerge chunk, its header read by us (magic, checksum, type,
/// LEB128 length) so that its size is known before Automerge sees it.
#[derive(Clone, Copy)]
struct Chunk<'a> {
    kind: u8,
    checksum: [u8; 4],
    /// The whole chunk, header included.
    bytes: &'a [u8],
    /// The data after the header.
    data: &'a [u8],
}

/// Reads an unsigned LEB128 number (at most 64 bits) at the front of `bytes`.
fn leb128(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        value |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, bytes.get(i + 1..)?));
        }
    }
    None
}

/// Splits a byte string of concatenated Automerge chunks.
fn chunks(mut bytes: &[u8]) -> Result<Vec<Chunk<'_>>, NotebookError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (magic, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed("changes are not Automerge chunks"))?;
        if *magic != CHUNK_MAGIC {
            return Err(malformed("changes are not Automerge chunks"));
        }
        let (checksum, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed("chunk header is cut short"))?;
        let (&kind, after_kind) = rest
            .split_first()
            .ok_or_else(|| malformed("chunk header is cut short"))?;
        let (len, data) = leb128(after_kind).ok_or_else(|| malformed("chunk length"))?;
        let len = usize::try_from(len).map_err(|_| malformed("chunk length"))?;
        if len > data.len() {
            return Err(malformed("chunk is cut short"));
        }
        let header = bytes.len() - data.len();
        let (whole, next) = bytes.split_at(header + len);
        out.push(Chunk {
            kind,
            checksum: *checksum,
            bytes: whole,
            data: &data[..len],
        });
        bytes = next;
    }
    Ok(out)
}

fn checksum_of(kind: u8, len: usize, data: &[u8]) -> [u8; 4] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update([kind]);
    let mut n = len as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            h.update([b]);
            break;
        }
        h.update([b | 0x80]);
    }
    h.update(data);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// What a message has used of its [`limits`] so far.
struct Budget {
    bytes: usize,
    max_bytes: usize,
    changes: usize,
    ops: usize,
}

impl Budget {
    fn new() -> Budget {
        Budget::of_bytes(MAX_MESSAGE_BYTES)
    }

    /// The budget of a joining history.
    fn for_join() -> Budget {
        Budget::of_bytes(MAX_JOIN_HISTORY_BYTES)
    }

    fn of_bytes(max_bytes: usize) -> Budget {
        Budget {
            bytes: max_bytes,
            max_bytes,
            changes: MAX_CHANGES_PER_MESSAGE,
            ops: MAX_OPS_PER_MESSAGE,
        }
    }

    fn spend_bytes(&mut self, n: usize) -> Result<(), NotebookError> {
        let max = self.max_bytes;
        self.bytes = self
            .bytes
            .checked_sub(n)
            .ok_or_else(|| malformed(format!("expands to more than {max} bytes")))?;
        Ok(())
    }

    fn spend_changes(&mut self, changes: usize, ops: usize) -> Result<(), NotebookError> {
        self.changes = self.changes.checked_sub(changes).ok_or_else(|| {
            malformed(format!("holds more than {MAX_CHANGES_PER_MESSAGE} changes"))
        })?;
        self.ops = self.ops.checked_sub(ops).ok_or_else(|| {
            malformed(format!("holds more than {MAX_OPS_PER_MESSAGE} operations"))
        })?;
        Ok(())
    }
}

/// Inflates raw DEFLATE `data`, refusing to produce more than `max` bytes.
fn inflate_at_most(data: &[u8], max: usize) -> Result<Vec<u8>, NotebookError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len().min(max));
    flate2::read::DeflateDecoder::new(data)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| malformed(format!("compressed data: {e}")))?;
    if out.len() > max {
        return Err(malformed(format!(
            "compressed data expands beyond {max} bytes"
        )));
    }
    Ok(out)
}

/// Parses one change chunk (plain or compressed) within the limits.
fn change_within(chunk: &Chunk<'_>, budget: &mut Budget) -> Result<Change, NotebookError> {
    match chunk.kind {
        CHUNK_CHANGE => {
            if chunk.data.len() > MAX_CHANGE_BYTES {
                return Err(malformed(format!(
                    "a change of {} bytes exceeds the limit of {MAX_CHANGE_BYTES}",
                    chunk.data.len()
                )));
            }
            budget.spend_bytes(chunk.bytes.len())?;
        }
        CHUNK_COMPRESSED => {
            // The format does not declare the inflated size: inflate here,
            // at most one change's worth, and check the checksum (which
            // covers the inflated change) before Automerge inflates it again.
            let data = inflate_at_most(chunk.data, MAX_CHANGE_BYTES)?;
            budget.spend_bytes(data.len())?;
            if checksum_of(CHUNK_CHANGE, data.len(), &data) != chunk.checksum {
                return Err(malformed("compressed change chunk checksum mismatch"));
            }
        }
        other => return Err(malformed(format!("unexpected chunk type {other}"))),
    }
    let change = parse_guarded("change chunk", || Change::try_from(chunk.bytes))?
        .map_err(|e| malformed(format!("change chunk: {e}")))?;
    if change.len() > MAX_OPS_PER_CHANGE {
        return Err(malformed(format!(
            "a change of {} operations exceeds the limit of {MAX_OPS_PER_CHANGE}",
            change.len()
        )));
    }
    budget.spend_changes(1, change.len())?;
    if !expands_cleanly(&change) {
        return Err(malformed("change refers to an actor it does not list"));
    }
    Ok(change)
}

/// Whether Automerge can expand `change` without panicking. Automerge 0.12
/// parses a change whose operations name an actor index missing from its
/// actor table, then panics in `Change::decode` (found by the fuzz target
/// `validator`); the validator decodes every change, so the check is made
/// here, where changes enter.
fn expands_cleanly(change: &Change) -> bool {
    parse_guarded("change", || change.decode()).is_ok()
}

/// Runs one of Automerge's parsers on bytes from a peer. Automerge 0.12
/// panics on some malformed input instead of returning an error (a change
/// chunk whose op counter overflows `u32` panics in `Change::try_from`,
/// found by the fuzz target `sync_message`), so the panic is caught here and
/// becomes a malformed-input error that names `what`: the sender is blamed,
/// the thread that parsed it lives on.
fn parse_guarded<T>(what: &str, parse: impl FnOnce() -> T) -> Result<T, NotebookError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse))
        .map_err(|_| malformed(format!("{what}: Automerge could not parse it")))
}

/// One change chunk from a peer, parsed within the [`limits`] and checked to
/// expand cleanly: the path every wire change takes to the validator.
pub fn decode_change(bytes: &[u8]) -> Result<Change, NotebookError> {
    let chunk = match chunks(bytes)?.as_slice() {
        [one] => *one,
        _ => return Err(malformed("change: not exactly one chunk")),
    };
    change_within(&chunk, &mut Budget::new())
}

/// Checks the declared layout of a document chunk and what its compressed
/// columns inflate to, before Automerge allocates anything for it. Columns
/// are inflated one at a time into a scratch buffer that is dropped.
fn check_document(chunk: &Chunk<'_>, budget: &mut Budget) -> Result<(), NotebookError> {
    let bad = |what: &str| malformed(format!("document chunk: {what}"));
    if checksum_of(chunk.kind, chunk.data.len(), chunk.data) != chunk.checksum {
        return Err(bad("checksum mismatch"));
    }
    budget.spend_bytes(chunk.bytes.len())?;
    let mut rest = chunk.data;
    let number = |rest: &mut &[u8], what: &str| -> Result<u64, NotebookError> {
        let (n, after) = leb128(rest).ok_or_else(|| bad(what))?;
        *rest = after;
        Ok(n)
    };
    // Actors: a count, then each a length-prefixed id.
    let actors = number(&mut rest, "actor count")?;
    if actors > rest.len() as u64 {
        return Err(bad("more actors than bytes"));
    }
    for _ in 0..actors {
        let len = number(&mut rest, "actor length")?;
        let len = usize::try_from(len).map_err(|_| bad("actor length"))?;
        rest = rest.get(len..).ok_or_else(|| bad("actor is cut short"))?;
    }
    // Heads: a count, then 32 bytes each.
    let heads = number(&mut rest, "head count")?;
    let head_bytes = heads
        .checked_mul(32)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| bad("head count"))?;
    rest = rest
        .get(head_bytes..)
        .ok_or_else(|| bad("heads are cut short"))?;
    // Change and op column metadata: a count, then (spec, stored length) pairs.
    let mut columns = Vec::new();
    for _ in 0..2 {
        let n = number(&mut rest, "column count")?;
        if n > MAX_COLUMNS {
            return Err(bad("too many columns"));
        }
        for _ in 0..n {
            let spec = number(&mut rest, "column spec")?;
            let len = number(&mut rest, "column length")?;
            let len = usize::try_from(len).map_err(|_| bad("column length"))?;
            columns.push((spec & 0b1000 != 0, len));
        }
    }
    // Column data follows in the same order. A compressed column is the
    // only thing here that grows: the format stores only its compressed
    // length, so inflate it, bounded by what the message has left.
    for (deflated, len) in columns {
        let data = rest.get(..len).ok_or_else(|| bad("column is cut short"))?;
        rest = &rest[len..];
        if deflated {
            let inflated = inflate_at_most(data, budget.bytes)?;
            budget.spend_bytes(inflated.len())?;
        }
    }
    Ok(())
}

/// Every change inside an Automerge sync message, whether sent as changes or
/// as a whole saved document, within the [`limits`].
pub fn changes_in(message: &sync::Message) -> Result<Vec<Change>, NotebookError> {
    let mut budget = Budget::new();
    let mut out = Vec::new();
    for blob in message.changes.iter() {
        for chunk in chunks(blob)? {
            if chunk.kind == CHUNK_DOCUMENT {
                check_document(&chunk, &mut budget)?;
                let doc = parse_guarded("document chunk", || Automerge::load(chunk.bytes))?
                    .map_err(|e| malformed(format!("document chunk: {e}")))?;
                // Counted before the changes are materialised.
                let stats = automerge::ReadDoc::stats(&doc);
                let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
                budget.spend_changes(count(stats.num_changes), count(stats.num_ops))?;
                for change in doc.get_changes(&[]) {
                    if change.len() > MAX_OPS_PER_CHANGE {
                        return Err(malformed(format!(
                            "a change of {} operations exceeds the limit of {MAX_OPS_PER_CHANGE}",
                            change.len()
                        )));
                    }
                    out.push(change);
                }
            } else {
                out.push(change_within(&chunk, &mut budget)?);
            }
        }
    }
    Ok(out)
}

/// Encodes a whole history with its covering signatures (for joining):
/// `u32 BE count | count × (u32 BE len | change)`, then
/// `u32 BE count | count × (change hash 32 | signer key 32 | signature 64)`.
pub fn encode_changes(history: &SignedRuns) -> Vec<u8> {
    let mut out = (history.changes.len() as u32).to_be_bytes().to_vec();
    for c in &history.changes {
        let bytes = c.raw_bytes();
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(&(history.signatures.len() as u32).to_be_bytes());
    for s in &history.signatures {
        out.extend_from_slice(s.hash.as_ref());
        out.extend_from_slice(&s.signer.to_bytes());
        out.extend_from_slice(&s.signature.to_bytes());
    }
    out
}

/// Parses [`encode_changes`] output (a joining history, held to
/// [`MAX_JOIN_HISTORY_BYTES`], not to the smaller per-message budget);
/// signatures are not checked here.
pub fn decode_changes(bytes: &[u8]) -> Result<SignedRuns, NotebookError> {
    let mut at = 0usize;
    let mut take = |n: usize, what: &str| -> Result<&[u8], NotebookError> {
        let end = at.checked_add(n).filter(|e| *e <= bytes.len());
        let end = end.ok_or_else(|| malformed(format!("{what} is cut short")))?;
        let s = &bytes[at..end];
        at = end;
        Ok(s)
    };
    let mut budget = Budget::for_join();
    let count = u32::from_be_bytes(take(4, "count")?.try_into().expect("4")) as usize;
    // Each change takes at least 10 bytes: never reserve more than are there.
    let mut changes = Vec::with_capacity(count.min(bytes.len() / 10));
    for _ in 0..count {
        let len = u32::from_be_bytes(take(4, "length")?.try_into().expect("4")) as usize;
        let bytes = take(len, "change")?;
        let chunk = match chunks(bytes)?.as_slice() {
            [one] => *one,
            _ => return Err(malformed("change: not exactly one chunk")),
        };
        changes.push(change_within(&chunk, &mut budget)?);
    }
    let sigs = u32::from_be_bytes(take(4, "signature count")?.try_into().expect("4")) as usize;
    if sigs > changes.len() {
        return Err(malformed(format!(
            "{sigs} signatures for {} changes",
            changes.len()
        )));
    }
    let mut signatures = Vec::with_capacity(sigs);
    for _ in 0..sigs {
        let c = take(128, "signature")?;
        signatures.push(ChangeSignature {
            hash: ChangeHash::try_from(&c[..32]).map_err(|e| malformed(e.to_string()))?,
            signer: PublicKey::from_bytes(&c[32..64]).map_err(|e| malformed(e.to_string()))?,
            signature: Signature::from_bytes(&c[64..]).map_err(|e| malformed(e.to_string()))?,
        });
    }
    if at != bytes.len() {
        return Err(malformed("trailing bytes"));
    }
    Ok(SignedRuns {
        changes,
        signatures,
    })
}

/// Every change of `doc` that is one of `changes` or descends from one:
/// the upward closure, in which each actor's latest change is its head.
fn upward_closure(doc: &Automerge, changes: Vec<Change>) -> Vec<Change> {
    let mut inside: std::collections::HashSet<ChangeHash> =
        changes.iter().map(Change::hash).collect();
    let mut out = changes;
    // In causal order, so a descendant is seen after what it builds on.
    for c in doc.get_changes(&[]) {
        if !inside.contains(&c.hash()) && c.deps().iter().any(|d| inside.contains(d)) {
            inside.insert(c.hash());
            out.push(c);
        }
    }
    out
}

/// Parses the changes of a joining history, each one chunk, held together
/// to [`MAX_JOIN_HISTORY_BYTES`] (not to the smaller per-message budget).
pub fn decode_history<'a>(
    changes: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Change>, NotebookError> {
    let mut budget = Budget::for_join();
    changes
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            let chunk = match chunks(bytes)?.as_slice() {
                [one] => *one,
                _ => return Err(malformed(format!("change {i}: not exactly one chunk"))),
            };
            change_within(&chunk, &mut budget)
        })
        .collect()
}

/// Per-peer Automerge sync states of one incident.
#[derive(Default)]
pub struct SyncStates {
    states: HashMap<String, sync::State>,
    /// Peers whose dialogue broke off: the next message tells them to
    /// forget what they think they sent us.
    reset: std::collections::HashSet<String>,
}

fn state_file(peer: &str) -> String {
    format!("sync-{}.state", peer.chars().take(32).collect::<String>())
}

impl Notebook {
    /// Takes a peer's sync state of an incident out (to be put back), read
    /// from disk the first time.
    fn take_sync_state(&mut self, id: &str, peer: &str) -> Result<sync::State, NotebookError> {
        let data = &self.data;
        let open = self
            .held
            .get_mut(id)
            .ok_or_else(|| NotebookError::UnknownIncident(id.to_string()))?;
        let reset = &mut open.sync.reset;
        let doc = open.incident.doc();
        Ok(std::mem::take(
            open.sync.states.entry(peer.to_string()).or_insert_with(|| {
                // A persisted state remembers what the peer had, so a
                // reconnect sends only what is missing.
                let saved: Option<sync::State> = data
                    .read_aux(id, &state_file(peer))
                    .and_then(|b| sync::State::decode(&b).ok());
                // One that claims heads we no longer hold (a damaged
                // journal lost them) would make the peer think we have
                // them and send only what we name as missing, one change
                // at a time, never the earlier changes we lost with them:
                // start afresh, so the peer sends all we lack.
                let mut state = match saved {
                    Some(s) if s.shared_heads.iter().all(|h| crate::holds(doc, h)) => s,
                    _ => sync::State::new(),
                };
                if reset.remove(peer) {
                    // The peer may believe it sent us changes we never
                    // stored (a full disk, an answer lost on the way): its
                    // next message must resend them. Every dontpanic peer
                    // runs an Automerge that understands the reset flag.
                    state.needs_reset = true;
                    state.their_capabilities = Some(vec![
                        sync::Capability::MessageV2,
                        sync::Capability::SyncReset,
                    ]);
                }
                state
            }),
        ))
    }

    /// Saves every peer's sync state of every loaded incident.
    pub fn save_sync_states(&self) -> Result<(), NotebookError> {
        for (id, open) in &self.held {
            for (peer, state) in &open.sync.states {
                self.data
                    .write_aux(id, &state_file(peer), &state.encode())?;
            }
        }
        Ok(())
    }

    /// Forgets in-flight state for a peer that went away or whose dialogue
    /// broke off (its saved shared heads stay), so the next dialogue starts
    /// cleanly and resends what the peer may not have stored.
    pub fn peer_gone(&mut self, peer: &str) -> Result<(), NotebookError> {
        let saved = self.save_sync_states();
        for open in self.held.values_mut() {
            if open.sync.states.remove(peer).is_some() {
                open.sync.reset.insert(peer.to_string());
            }
        }
        saved
    }

    /// The next sync message of incident `id` for `peer` (hex key), if there
    /// is anything to say.
    pub fn sync_message_for(
        &mut self,
        id: &str,
        peer: &str,
    ) -> Result<Option<SignedSyncMessage>, NotebookError> {
        let mut state = self.take_sync_state(id, peer)?;
        let open = self.held_mut(id)?;
        let msg = open.incident.doc().generate_sync_message(&mut state);
        open.sync.states.insert(peer.to_string(), state);
        let Some(mut msg) = msg else {
            return Ok(None);
        };
        let doc = open.incident.doc();
        // A whole saved document carries every change: each actor's head
        // signature covers it, without loading our own document back.
        let whole = msg
            .changes
            .iter()
            .map(chunks)
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .flatten()
            .any(|c| c.kind == CHUNK_DOCUMENT);
        let signatures: Vec<ChangeSignature> = if whole {
            crate::head_signatures(doc, &open.signatures)
        } else {
            let changes = changes_in(&msg)?;
            let held = |h: &ChangeHash| open.signatures.get(h).copied();
            match runs::covering_signatures(&changes, held) {
                Some(s) => s,
                None => {
                    // Each actor's latest change here is not one we hold a
                    // signature of (or a chain is broken): send everything
                    // that builds on these changes too, up to the heads.
                    let wider = upward_closure(doc, changes);
                    let s = runs::covering_signatures(&wider, held).unwrap_or_else(|| {
                        tracing::error!(
                            "incident {id}: no held signature covers {} change(s) for {peer}",
                            wider.len()
                        );
                        Vec::new()
                    });
                    msg.changes = sync::ChunkList::from(
                        wider
                            .iter()
                            .map(|c| c.raw_bytes().to_vec())
                            .collect::<Vec<_>>(),
                    );
                    s
                }
            }
        };
        Ok(Some(SignedSyncMessage {
            message: msg.encode(),
            signatures,
        }))
    }

    /// Verifies and applies a signed sync message of incident `id` from
    /// `peer`. On any failure nothing is applied and the sync state is
    /// untouched.
    pub fn receive_sync(
        &mut self,
        id: &str,
        peer: &str,
        signed: SignedSyncMessage,
    ) -> Result<Vec<RemoteEdit>, NotebookError> {
        self.receive_sync_shown(id, peer, signed, |_| {})
    }

    /// [`Notebook::receive_sync`], calling `shown` with the edits once they
    /// are verified, before they are journaled (see
    /// [`Notebook::accept_shown`]).
    pub fn receive_sync_shown(
        &mut self,
        id: &str,
        peer: &str,
        signed: SignedSyncMessage,
        shown: impl FnOnce(&[RemoteEdit]),
    ) -> Result<Vec<RemoteEdit>, NotebookError> {
        let mut msg = parse_guarded("sync message", || sync::Message::decode(&signed.message))?
            .map_err(|e| malformed(e.to_string()))?;
        let edits = self.accept_shown(
            id,
            SignedRuns {
                changes: changes_in(&msg)?,
                signatures: signed.signatures,
            },
            shown,
        )?;
        // The changes are applied; Automerge only updates what it knows of the peer.
        msg.changes = sync::ChunkList::empty();
        let mut state = self.take_sync_state(id, peer)?;
        let open = self.held_mut(id)?;
        let result = open
            .incident
            .doc_mut()
            .receive_sync_message(&mut state, msg);
        open.sync.states.insert(peer.to_string(), state);
        result.map_err(|e| NotebookError::Document(e.to_string()))?;
        Ok(edits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_truncation_fails() {
        let key = dontpanic_identity::SecretKey::generate();
        let m = SignedSyncMessage {
            message: vec![1, 2, 3],
            signatures: vec![ChangeSignature::sign(&key, ChangeHash([9; 32]))],
        };
        let bytes = m.encode();
        let back = SignedSyncMessage::decode(&bytes).unwrap();
        assert_eq!(back.message, m.message);
        assert_eq!(back.signatures, m.signatures);
        for cut in [0, 3, 8, 11, bytes.len() - 1] {
            assert!(
                SignedSyncMessage::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(SignedSyncMessage::decode(&huge).is_err());
    }

    #[test]
    fn chunks_of_a_saved_document_yield_every_change() {
        use automerge::transaction::Transactable;
        let mut doc = automerge::AutoCommit::new();
        for i in 0..5 {
            doc.put(automerge::ROOT, "n", i as i64).unwrap();
            doc.commit();
        }
        let saved = doc.save();
        let msg = sync::Message {
            heads: vec![],
            need: vec![],
            have: vec![],
            changes: sync::ChunkList::from(saved),
            flags: None,
            version: sync::MessageVersion::V2,
        };
        assert_eq!(changes_in(&msg).unwrap().len(), 5);
        let bad = sync::Message {
            changes: sync::ChunkList::from(vec![1u8, 2, 3]),
            ..msg
        };
        assert!(changes_in(&bad).is_err());
    }

    fn message_of(changes: Vec<u8>) -> sync::Message {
        sync::Message {
            heads: vec![],
            need: vec![],
            have: vec![],
            changes: sync::ChunkList::from(changes),
            flags: None,
            version: sync::MessageVersion::V2,
        }
    }

    #[test]
    fn a_compressed_document_that_expands_past_the_limit_is_refused_before_load() {
        use automerge::transaction::Transactable;
        let mut doc = automerge::AutoCommit::new();
        doc.put(automerge::ROOT, "n", "x".repeat(MAX_MESSAGE_BYTES + 1))
            .unwrap();
        doc.commit();
        let saved = doc.save();
        assert!(
            saved.len() < MAX_MESSAGE_BYTES / 100,
            "{} bytes",
            saved.len()
        );
        let err = changes_in(&message_of(saved)).unwrap_err().to_string();
        assert!(err.contains("expands"), "{err}");
    }

    /// A joining history may be bigger than one sync message: 72 MiB of
    /// changes (each under the per-change cap) decode, where the message
    /// budget of 64 MiB would refuse them.
    #[test]
    fn a_joining_history_may_exceed_the_message_budget() {
        use automerge::transaction::Transactable;
        let key = dontpanic_identity::SecretKey::generate();
        let mut doc = automerge::AutoCommit::new();
        let mut history = SignedRuns::default();
        for i in 0..80 {
            doc.put(automerge::ROOT, format!("n{i}"), "x".repeat(900 << 10))
                .unwrap();
            doc.commit();
            history.changes.push(doc.get_last_local_change().unwrap());
        }
        let last = history.changes[79].hash();
        history.signatures.push(ChangeSignature::sign(&key, last));
        let bytes = encode_changes(&history);
        assert!(bytes.len() > MAX_MESSAGE_BYTES, "{} bytes", bytes.len());
        assert_eq!(decode_changes(&bytes).unwrap().len(), 80);
    }

    #[test]
    fn a_change_over_the_byte_limit_is_refused() {
        use automerge::transaction::Transactable;
        let mut doc = automerge::AutoCommit::new();
        doc.put(automerge::ROOT, "n", "x".repeat(MAX_CHANGE_BYTES))
            .unwrap();
        doc.commit();
        let big = doc.get_changes(&[]).last().unwrap().raw_bytes().to_vec();
        let err = changes_in(&message_of(big.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exceeds the limit"), "{err}");
        assert!(decode_change(&big).is_err());
    }

    #[test]
    fn a_garbage_document_header_is_refused() {
        // A document chunk whose column count is absurd: refused by our reader.
        let mut data = vec![0u8, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        data.extend([0u8; 8]);
        let mut chunk = CHUNK_MAGIC.to_vec();
        chunk.extend(checksum_of(CHUNK_DOCUMENT, data.len(), &data));
        chunk.push(CHUNK_DOCUMENT);
        chunk.push(data.len() as u8);
        chunk.extend(&data);
        let err = changes_in(&message_of(chunk)).unwrap_err().to_string();
        assert!(err.contains("columns"), "{err}");
    }
}
