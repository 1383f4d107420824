//! An independent client of dontpanic's wire protocol, written from
//! `docs/protocol.md` (and `docs/security.md`) alone: it uses no
//! `dontpanic_*` crate, only libp2p, serde/CBOR, Automerge and the crypto
//! crates, and defines its own wire types from the CDDL in the docs.
//!
//! Against a real `dontpanic` process ("alice") on loopback it parses an
//! invite, joins with `/dontpanic/join/2` (a history big enough to come in
//! parts), verifies and loads the signed history, writes a signed note
//! following the documented document layout, and syncs it back with
//! `/dontpanic/sync/2`; alice must then show the note under the outsider's
//! roster name. It is also meant as an example for implementers: each step
//! names the section of `docs/protocol.md` it follows.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use automerge::sync::SyncDoc;
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Author, Automerge, Change, ChangeHash, ObjId, ReadDoc, ScalarValue};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use libp2p::request_response::{self, cbor, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

use support::Node;

// ---------------------------------------------------------------------------
// The wire types ("Protocols", the CDDL), defined here from the docs.

/// Every request and every response is an envelope around its message.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Envelope<T> {
    Whole(T),
    Part(Part),
    Next { transfer: u64, index: u32 },
}

/// One part of a message over 524,288 bytes ("Messages in parts").
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Part {
    transfer: u64,
    index: u32,
    count: u32,
    bytes: ByteBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum SyncRequest {
    Sync {
        incident: String,
        message: SignedSync,
    },
    Addresses {
        incident: String,
        members: BTreeMap<String, Vec<String>>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum SyncResponse {
    Sync {
        message: Option<SignedSync>,
    },
    Denied {
        reason: String,
    },
    Rejected {
        reason: String,
    },
    Retry {
        reason: String,
    },
    Addresses {
        members: BTreeMap<String, Vec<String>>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedSync {
    automerge: ByteBuf,
    signatures: Vec<Signature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Signature {
    hash: ByteBuf,
    signer: ByteBuf,
    signature: ByteBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JoinRequest {
    incident: String,
    proof: ByteBuf,
    terms: Terms,
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Terms {
    expires_ms: u64,
    once: bool,
    nonce: ByteBuf,
    inviter: ByteBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum JoinResponse {
    Admitted {
        proof: ByteBuf,
        history: SignedHistory,
    },
    Denied {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedHistory {
    changes: Vec<ByteBuf>,
    signatures: Vec<Signature>,
}

const SYNC: &str = "/dontpanic/sync/2";
const JOIN: &str = "/dontpanic/join/2";
/// The size of every part but the last.
const PART: usize = 524_288;
/// A join answer's limit, reassembled ("Limits").
const JOIN_ANSWER_LIMIT: usize = 128 << 20;
/// A sync request or answer's limit, whole or reassembled.
const SYNC_LIMIT: usize = 64 << 20;

fn to_cbor<T: Serialize>(m: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), m).expect("CBOR encoding")
}

/// A message as the envelopes that carry it: one `Whole`, or its parts.
fn envelopes<T: Serialize>(m: T) -> Vec<Envelope<T>> {
    let e = to_cbor(&m);
    if e.len() <= PART {
        return vec![Envelope::Whole(m)];
    }
    let transfer = rand::random::<u64>();
    let chunks: Vec<&[u8]> = e.chunks(PART).collect();
    let count = chunks.len() as u32;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            Envelope::Part(Part {
                transfer,
                index: i as u32,
                count,
                bytes: ByteBuf::from(c.to_vec()),
            })
        })
        .collect()
}

/// A message being put back together from its parts, each checked as it
/// arrives by the rules of "Messages in parts".
struct Assembly {
    transfer: u64,
    count: u32,
    bytes: Vec<u8>,
    next: u32,
    limit: usize,
}

impl Assembly {
    fn start(first: Part, limit: usize) -> Result<Assembly, String> {
        if first.index != 0 {
            return Err(format!("first part has index {}", first.index));
        }
        if first.count < 2 {
            return Err(format!("a message in {} part(s)", first.count));
        }
        if first.count as usize * PART > limit + PART {
            return Err(format!("{} parts exceed the limit", first.count));
        }
        let mut a = Assembly {
            transfer: first.transfer,
            count: first.count,
            bytes: Vec::new(),
            next: 0,
            limit,
        };
        a.add(first)?;
        Ok(a)
    }

    fn add(&mut self, p: Part) -> Result<(), String> {
        if (p.transfer, p.index, p.count) != (self.transfer, self.next, self.count) {
            return Err(format!(
                "part {}/{} of transfer {} where {}/{} of {} was due",
                p.index, p.count, p.transfer, self.next, self.count, self.transfer
            ));
        }
        let last = p.index + 1 == self.count;
        if (!last && p.bytes.len() != PART) || (last && p.bytes.len() > PART) {
            return Err(format!("part {} holds {} bytes", p.index, p.bytes.len()));
        }
        if self.bytes.len() + p.bytes.len() > self.limit {
            return Err("reassembled message over the limit".into());
        }
        self.bytes.extend_from_slice(&p.bytes);
        self.next += 1;
        Ok(())
    }

    fn done(&self) -> bool {
        self.next == self.count
    }

    fn message<T: DeserializeOwned>(&self) -> T {
        cbor4ii::serde::from_slice(&self.bytes).expect("a reassembled message decodes")
    }
}

// ---------------------------------------------------------------------------
// The invite ("The invite").

/// What an invite says.
struct Invite {
    incident: String,
    key: [u8; 32],
    expires_ms: u64,
    once: bool,
    nonce: [u8; 16],
    inviter: PeerId,
    inviter_bytes: Vec<u8>,
    addresses: Vec<Multiaddr>,
}

/// Reads the invite's fields in order, big-endian ("All integers are
/// big-endian on the wire").
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "invite cut short");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
}

fn parse_invite(text: &str) -> Invite {
    let body = text.strip_prefix("dpinv2").expect("not a dontpanic invite");
    let bytes = data_encoding::BASE32_NOPAD
        .decode(body.to_ascii_uppercase().as_bytes())
        .expect("invite: base32");
    let (payload, checksum) = bytes.split_at(bytes.len() - 4);
    assert_eq!(&Sha256::digest(payload)[..4], checksum, "invite checksum");
    let mut r = Reader(payload);
    assert_eq!(r.u8(), 2, "invite version");
    let n = r.u8() as usize;
    let incident = String::from_utf8(r.take(n).to_vec()).expect("incident id utf-8");
    let key: [u8; 32] = r.take(32).try_into().unwrap();
    let expires_ms = u64::from_be_bytes(r.take(8).try_into().unwrap());
    let once = r.u8() & 1 == 1;
    let nonce: [u8; 16] = r.take(16).try_into().unwrap();
    let n = r.u8() as usize;
    let inviter_bytes = r.take(n).to_vec();
    let inviter = PeerId::from_bytes(&inviter_bytes).expect("inviter peer id");
    let count = r.u8();
    let addresses = (0..count)
        .map(|_| {
            let n = u16::from_be_bytes(r.take(2).try_into().unwrap()) as usize;
            Multiaddr::try_from(r.take(n).to_vec()).expect("binary multiaddr")
        })
        .collect();
    assert!(r.0.is_empty(), "bytes left over in the invite");
    Invite {
        incident,
        key,
        expires_ms,
        once,
        nonce,
        inviter,
        inviter_bytes,
        addresses,
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

// ---------------------------------------------------------------------------
// Change signatures ("Change signatures").

const CHANGE_CONTEXT: &[u8] = b"dontpanic/change/v1:";

fn sign(key: &SigningKey, hash: ChangeHash) -> Signature {
    let signature = key.sign(&[CHANGE_CONTEXT, &hash.0].concat());
    Signature {
        hash: ByteBuf::from(hash.0.to_vec()),
        signer: ByteBuf::from(key.verifying_key().to_bytes().to_vec()),
        signature: ByteBuf::from(signature.to_bytes().to_vec()),
    }
}

/// The changes in one chunk: a change chunk, or a whole saved document.
fn changes_in(chunk: &[u8]) -> Vec<Change> {
    match Change::from_bytes(chunk.to_vec()) {
        Ok(c) => vec![c],
        Err(_) => Automerge::load(chunk)
            .expect("a chunk is a change or a document")
            .get_changes(&[]),
    }
}

/// Checks, by the rule in "Change signatures" (one signature per run),
/// that every change not yet in `doc` is covered; returns the key of each
/// such change, in order.
///
/// 1. An actor is bound to a key by its seq-1 change's author field (in the
///    batch, or already in `doc`).
/// 2. A signature must verify, by the key its change's actor is bound to.
/// 3. A change is covered if it is a signed change, or is reached from one
///    of its own actor through dependencies inside the batch.
fn verify(doc: &Automerge, changes: &[Change], signatures: &[Signature]) -> Vec<[u8; 32]> {
    let fresh: Vec<&Change> = changes
        .iter()
        .filter(|c| doc.get_change_by_hash(&c.hash()).is_none())
        .collect();
    let mut key_of: HashMap<ActorId, [u8; 32]> = HashMap::new();
    for c in fresh.iter().filter(|c| c.seq() == 1) {
        let author = c
            .author()
            .expect("an actor's first change names its author");
        let key: [u8; 32] = author.as_bytes().try_into().expect("a 32-byte author");
        key_of.insert(c.actor_id().clone(), key);
    }
    let bound = |actor: &ActorId| -> [u8; 32] {
        key_of.get(actor).copied().unwrap_or_else(|| {
            let a = doc
                .get_author_for_actor(actor)
                .unwrap_or_else(|| panic!("actor {actor} is bound to no key"));
            a.as_bytes().try_into().expect("a 32-byte author")
        })
    };
    let by_hash: HashMap<ChangeHash, &Change> = fresh.iter().map(|c| (c.hash(), *c)).collect();
    let mut covered: std::collections::HashSet<ChangeHash> = Default::default();
    for s in signatures {
        let hash = ChangeHash(s.hash.as_slice().try_into().expect("32-byte hash"));
        let Some(head) = by_hash.get(&hash) else {
            continue;
        };
        let signer: [u8; 32] = s.signer.as_slice().try_into().expect("32-byte signer");
        assert_eq!(
            signer,
            bound(head.actor_id()),
            "change {hash}: signed by a key its actor is not bound to"
        );
        let key = VerifyingKey::from_bytes(&signer).expect("signer is an ed25519 key");
        let sig = ed25519_dalek::Signature::from_slice(&s.signature).expect("64 bytes");
        key.verify(&[CHANGE_CONTEXT, &hash.0].concat(), &sig)
            .unwrap_or_else(|e| panic!("change {hash}: bad signature: {e}"));
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![hash];
        while let Some(x) = stack.pop() {
            if !seen.insert(x) {
                continue;
            }
            let Some(c) = by_hash.get(&x) else { continue };
            if c.actor_id() == head.actor_id() {
                covered.insert(x);
            }
            stack.extend(c.deps().iter().copied());
        }
    }
    fresh
        .iter()
        .map(|c| {
            let hash = c.hash();
            assert!(
                covered.contains(&hash),
                "change {hash} is covered by no signature"
            );
            if let Some(author) = c.author() {
                assert_eq!(
                    author.as_bytes(),
                    bound(c.actor_id()),
                    "change {hash}: another author"
                );
            }
            bound(c.actor_id())
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(b)
}

// ---------------------------------------------------------------------------
// The document ("The schema: what a change may write").

fn obj(doc: &Automerge, parent: &ObjId, key: &str) -> ObjId {
    match doc.get(parent, key).expect("read") {
        Some((automerge::Value::Object(_), id)) => id,
        other => panic!("{key}: not an object: {other:?}"),
    }
}

fn string(doc: &Automerge, parent: &ObjId, key: &str) -> String {
    match doc.get(parent, key).expect("read") {
        Some((automerge::Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(s) => s.to_string(),
            other => panic!("{key}: not a scalar string: {other:?}"),
        },
        other => panic!("{key}: not a scalar string: {other:?}"),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------------------
// The outsider's node.

#[derive(NetworkBehaviour)]
struct Behaviour {
    sync: cbor::Behaviour<Envelope<SyncRequest>, Envelope<SyncResponse>>,
    join: cbor::Behaviour<Envelope<JoinRequest>, Envelope<JoinResponse>>,
    // Members ping every connection every second and close one that does
    // not answer ("Liveness and redial").
    ping: ping::Behaviour,
}

/// An answer to one of our requests.
enum Answer {
    Sync(Envelope<SyncResponse>),
    Join(Envelope<JoinResponse>),
}

struct Outsider {
    swarm: Swarm<Behaviour>,
    key: SigningKey,
    doc: Automerge,
    /// The signature of every change we hold, to cover what we send.
    signatures: HashMap<ChangeHash, Signature>,
    /// What alice asked of us, for the report.
    asked: Vec<String>,
}

impl Outsider {
    fn new() -> Outsider {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        // The device key is also the libp2p identity ("Identities").
        let identity =
            libp2p::identity::Keypair::ed25519_from_bytes(key.to_bytes()).expect("an ed25519 seed");
        let config = request_response::Config::default()
            .with_request_timeout(Duration::from_secs(20))
            .with_max_concurrent_streams(16);
        let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_behaviour(|_| Behaviour {
                sync: cbor::Behaviour::new(
                    [(StreamProtocol::new(SYNC), ProtocolSupport::Full)],
                    config.clone(),
                ),
                join: cbor::Behaviour::new(
                    [(StreamProtocol::new(JOIN), ProtocolSupport::Full)],
                    config,
                ),
                ping: ping::Behaviour::default(),
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        Outsider {
            swarm,
            key,
            doc: Automerge::new(),
            signatures: HashMap::new(),
            asked: Vec::new(),
        }
    }

    fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    async fn connect(&mut self, peer: PeerId, addresses: Vec<Multiaddr>) {
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(addresses)
            .build();
        self.swarm.dial(opts).expect("dial");
        loop {
            match self.swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => return,
                SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial: {error}"),
                e => {
                    self.handle(e);
                }
            }
        }
    }

    /// Handles one swarm event: answers alice's requests, and returns the
    /// answer to one of ours.
    fn handle(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<(OutboundRequestId, Answer)> {
        use request_response::{Event, Message};
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::Message {
                message, peer, ..
            })) => {
                match message {
                    Message::Request {
                        request, channel, ..
                    } => {
                        // We keep our own dialogue as the only one; to
                        // alice's requests we answer as a non-member would
                        // (`Denied`), and our addresses as an empty view.
                        let answer = match &request {
                            Envelope::Whole(SyncRequest::Addresses { .. }) => {
                                SyncResponse::Addresses {
                                    members: BTreeMap::new(),
                                }
                            }
                            _ => SyncResponse::Denied {
                                reason: String::new(),
                            },
                        };
                        self.asked.push(format!("{peer}: {}", kind(&request)));
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .sync
                            .send_response(channel, Envelope::Whole(answer));
                        None
                    }
                    Message::Response {
                        request_id,
                        response,
                    } => Some((request_id, Answer::Sync(response))),
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Join(Event::Message { message, .. })) => {
                match message {
                    Message::Request { channel, .. } => {
                        let denied = JoinResponse::Denied {
                            reason: "wrong invite".into(),
                        };
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .join
                            .send_response(channel, Envelope::Whole(denied));
                        None
                    }
                    Message::Response {
                        request_id,
                        response,
                    } => Some((request_id, Answer::Join(response))),
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(Event::OutboundFailure {
                error, ..
            }))
            | SwarmEvent::Behaviour(BehaviourEvent::Join(Event::OutboundFailure {
                error, ..
            })) => panic!("our request failed: {error}"),
            _ => None,
        }
    }

    /// Waits for the answer to request `id`, answering alice meanwhile.
    async fn answer(&mut self, id: OutboundRequestId) -> Answer {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .expect("an answer within 30 s");
            if let Some((got, answer)) = self.handle(event) {
                if got == id {
                    return answer;
                }
            }
        }
    }

    /// Keeps the node running (answering alice) for `d`.
    async fn run_for(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        while let Ok(e) = tokio::time::timeout_at(until, self.swarm.select_next_some()).await {
            self.handle(e);
        }
    }

    async fn ask_join(&mut self, peer: PeerId, r: Envelope<JoinRequest>) -> Envelope<JoinResponse> {
        let id = self.swarm.behaviour_mut().join.send_request(&peer, r);
        match self.answer(id).await {
            Answer::Join(a) => a,
            Answer::Sync(_) => unreachable!("a sync answer to a join request"),
        }
    }

    /// Sends a sync request (in parts if it is large) and returns the whole
    /// answer (fetched part by part if it comes in parts).
    async fn ask_sync(&mut self, peer: PeerId, request: SyncRequest) -> SyncResponse {
        let envelopes = envelopes(request);
        let mut answer = None;
        for (i, env) in envelopes.iter().enumerate() {
            let id = self
                .swarm
                .behaviour_mut()
                .sync
                .send_request(&peer, env.clone());
            let Answer::Sync(a) = self.answer(id).await else {
                unreachable!("a join answer to a sync request")
            };
            // Each part but the last is answered with `Next`: the part the
            // responder wants next, which in order is the following one.
            if i + 1 < envelopes.len() {
                match a {
                    Envelope::Next { index, .. } if index as usize == i + 1 => continue,
                    other => panic!("part {i} answered with {other:?}"),
                }
            }
            answer = Some(a);
        }
        match answer.expect("at least one envelope") {
            Envelope::Whole(m) => m,
            Envelope::Part(first) => {
                let mut parts = Assembly::start(first, SYNC_LIMIT).expect("answer in parts");
                while !parts.done() {
                    let next = Envelope::Next {
                        transfer: parts.transfer,
                        index: parts.next,
                    };
                    let id = self.swarm.behaviour_mut().sync.send_request(&peer, next);
                    match self.answer(id).await {
                        Answer::Sync(Envelope::Part(p)) => parts.add(p).expect("next part"),
                        _ => panic!("a `Next` not answered with a part"),
                    }
                }
                parts.message()
            }
            Envelope::Next { .. } => panic!("our request's last envelope answered with `Next`"),
        }
    }

    /// `/dontpanic/join/2`: proves the invite, checks the member's proof,
    /// fetches the history (in parts when large), verifies and loads it.
    /// Returns the number of parts the answer came in (1: whole).
    async fn join(&mut self, invite: &Invite, name: &str) -> usize {
        let me = self.peer_id().to_bytes();
        let member = invite.inviter;
        let them = member.to_bytes();
        let proof = hmac(&invite.key, &[b"dontpanic/join/v2:", b"join", &me, &them]);
        let request = JoinRequest {
            incident: invite.incident.clone(),
            proof: ByteBuf::from(proof.to_vec()),
            terms: Terms {
                expires_ms: invite.expires_ms,
                once: invite.once,
                nonce: ByteBuf::from(invite.nonce.to_vec()),
                inviter: ByteBuf::from(invite.inviter_bytes.clone()),
            },
            name: name.into(),
        };
        let (answer, parts) = match self.ask_join(member, Envelope::Whole(request)).await {
            Envelope::Whole(m) => (m, 1),
            Envelope::Part(first) => {
                let mut a = Assembly::start(first, JOIN_ANSWER_LIMIT).expect("history parts");
                while !a.done() {
                    let next = Envelope::Next {
                        transfer: a.transfer,
                        index: a.next,
                    };
                    match self.ask_join(member, next).await {
                        Envelope::Part(p) => a.add(p).expect("next part"),
                        other => panic!("`Next` answered with {other:?}"),
                    }
                }
                (a.message(), a.count as usize)
            }
            Envelope::Next { .. } => panic!("a join request answered with `Next`"),
        };
        let (their_proof, history) = match answer {
            JoinResponse::Admitted { proof, history } => (proof, history),
            JoinResponse::Denied { reason } => panic!("join denied: {reason}"),
        };
        let expected = hmac(&invite.key, &[b"dontpanic/join/v2:", b"admit", &them, &me]);
        assert_eq!(their_proof.as_slice(), expected, "the member's proof");

        let changes: Vec<Change> = history.changes.iter().flat_map(|c| changes_in(c)).collect();
        let signers = verify(&self.doc, &changes, &history.signatures);
        for s in &history.signatures {
            let hash = ChangeHash(s.hash.as_slice().try_into().expect("32-byte hash"));
            self.signatures.insert(hash, s.clone());
        }
        self.doc
            .apply_changes(changes)
            .expect("the history applies");
        // Every signer must be on the roster the history builds.
        let roster = obj(&self.doc, &automerge::ROOT, "roster");
        for s in signers {
            assert!(
                self.doc.get(&roster, hex(&s)).unwrap().is_some(),
                "signer {} not on the roster",
                hex(&s)
            );
        }
        parts
    }

    /// Our roster name: the admitting member decides it.
    fn roster_name(&self) -> String {
        let roster = obj(&self.doc, &automerge::ROOT, "roster");
        let me = hex(&self.key.verifying_key().to_bytes());
        string(&self.doc, &obj(&self.doc, &roster, &me), "name")
    }

    /// A `note` change: one timeline entry, the entry as the change's
    /// message, our key as its author, a fresh actor; signed.
    fn note(&mut self, text: &str) -> ChangeHash {
        let me = self.key.verifying_key().to_bytes();
        self.doc.set_author(Some(Author::from(me.to_vec())));
        self.doc.set_actor(ActorId::random());
        let entry = serde_json::json!({
            "at": now_ms(),
            "by": hex(&me),
            "name": self.roster_name(),
            "kind": "note",
            "item": null,
            "text": text,
        })
        .to_string();
        let timeline = obj(&self.doc, &automerge::ROOT, "timeline");
        let end = self.doc.length(&timeline);
        self.doc
            .transact_with::<_, _, automerge::AutomergeError, _>(
                // "its Automerge *message* is the entry's text": read as
                // the entry's `text` field (the docs leave it open whether
                // the whole JSON entry is meant).
                |_| CommitOptions::default().with_message(text),
                |tx| {
                    tx.insert(&timeline, end, ScalarValue::Str(entry.as_str().into()))?;
                    Ok(())
                },
            )
            .expect("the note commits");
        let change = self.doc.get_last_local_change().expect("our change");
        let hash = change.hash();
        self.signatures.insert(hash, sign(&self.key, hash));
        hash
    }

    /// An Automerge sync message with signatures for every change it carries.
    fn signed(&self, m: automerge::sync::Message) -> SignedSync {
        let signatures = m
            .changes
            .iter()
            .flat_map(changes_in)
            .map(|c| self.signatures[&c.hash()].clone())
            .collect();
        SignedSync {
            automerge: ByteBuf::from(m.encode()),
            signatures,
        }
    }

    /// One outbound dialogue ("Dialogues"): send our sync message, apply the
    /// answer's, until neither side has anything to say. Returns the rounds.
    async fn sync_with(&mut self, peer: PeerId, incident: &str) -> usize {
        let mut state = automerge::sync::State::new();
        for round in 1..=64 {
            let Some(ours) = self.doc.generate_sync_message(&mut state) else {
                return round - 1;
            };
            let request = SyncRequest::Sync {
                incident: incident.into(),
                message: self.signed(ours),
            };
            match self.ask_sync(peer, request).await {
                SyncResponse::Sync { message: None } => {}
                SyncResponse::Sync {
                    message: Some(theirs),
                } => {
                    let m = automerge::sync::Message::decode(&theirs.automerge)
                        .expect("alice's sync message decodes");
                    let changes: Vec<Change> = m.changes.iter().flat_map(changes_in).collect();
                    verify(&self.doc, &changes, &theirs.signatures);
                    for s in theirs.signatures {
                        let hash = ChangeHash(s.hash.as_slice().try_into().unwrap());
                        self.signatures.insert(hash, s);
                    }
                    self.doc
                        .receive_sync_message(&mut state, m)
                        .expect("alice's sync message applies");
                }
                SyncResponse::Retry { reason } => {
                    // Alice could not store it, nobody is blamed: start over
                    // with a fresh state so everything is offered again.
                    eprintln!("outsider: retry ({reason})");
                    state = automerge::sync::State::new();
                    self.run_for(Duration::from_millis(500)).await;
                }
                SyncResponse::Rejected { reason } => panic!("alice rejected our change: {reason}"),
                SyncResponse::Denied { reason } => panic!("alice denied our sync: {reason:?}"),
                SyncResponse::Addresses { .. } => panic!("`Addresses` answer to `Sync`"),
            }
        }
        panic!("no agreement within 64 rounds");
    }
}

fn kind(r: &Envelope<SyncRequest>) -> &'static str {
    match r {
        Envelope::Whole(SyncRequest::Sync { .. }) => "Sync",
        Envelope::Whole(SyncRequest::Addresses { .. }) => "Addresses",
        Envelope::Part(_) => "Part",
        Envelope::Next { .. } => "Next",
    }
}

/// Text that neither Automerge's nor anyone's compression shrinks much.
fn noise_text(n: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n)
        .map(|_| A[rand::random::<usize>() % A.len()] as char)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_written_from_the_docs_joins_and_writes_a_note() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = tokio::task::block_in_place(|| {
        let mut alice = Node::loopback(&tmp.path().join("alice"), "alice", &[]);
        alice.ok("new \"db down\" --sev 2");
        // Enough history that the join answer must come in parts (over
        // 512 KiB once encoded).
        for i in 0..12 {
            alice.ok(&format!("note \"bulk {i} {}\"", noise_text(60_000)));
        }
        alice
    });
    let invite_text = tokio::task::block_in_place(|| alice.invite());

    // The invite.
    let invite = parse_invite(&invite_text);
    assert!(invite.incident.starts_with('i'), "{}", invite.incident);
    assert!(
        !invite.addresses.is_empty(),
        "the invite names alice's addresses"
    );

    // Join, asking for a name alice already holds: the roster decides.
    let mut outsider = Outsider::new();
    outsider
        .connect(invite.inviter, invite.addresses.clone())
        .await;
    let parts = outsider.join(&invite, "alice").await;
    assert!(
        parts >= 2,
        "the history came in {parts} part(s); expected parts"
    );
    assert_eq!(string(&outsider.doc, &automerge::ROOT, "title"), "db down");
    let name = outsider.roster_name();
    assert_eq!(name, "alice-2", "a taken name becomes name-2");

    // Write a note and sync it to alice.
    let hash = outsider.note("written by an outsider");
    let rounds = outsider.sync_with(invite.inviter, &invite.incident).await;
    assert!(rounds >= 1, "the dialogue sent something");

    // Alice shows the note under our roster name.
    let deadline = Instant::now() + support::CONVERGE;
    loop {
        let shown = tokio::task::block_in_place(|| alice.ok("timeline --all"));
        let entry = shown["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["text"] == "written by an outsider")
            .cloned();
        if let Some(e) = entry {
            assert_eq!(e["name"], name, "{e}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice lacks the note {hash}: {shown}\nstderr:\n{}",
            alice.stderr()
        );
        outsider.run_for(Duration::from_millis(200)).await;
    }
    // Stay a moment so alice's own requests (her dialogue, `Addresses`) are
    // answered and seen.
    outsider.run_for(Duration::from_secs(2)).await;
    eprintln!(
        "outsider: history in {parts} parts, {rounds} sync round(s), alice asked {:?}; {:?}",
        outsider.asked,
        started.elapsed()
    );
    let peers = tokio::task::block_in_place(|| alice.ok("peers"));
    assert!(
        !peers.to_string().contains("rejected"),
        "alice rejected the outsider: {peers}"
    );
}
