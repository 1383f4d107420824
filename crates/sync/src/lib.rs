//! Keeps the open incident in sync with peers: the glue between the
//! notebook (signed, verified Automerge sync) and the node (libp2p).
//!
//! # Brief overview
//!
//! * [`Replicator::start`] spawns the driver task, which reacts to node
//!   events (peers connecting, sync and join requests) and to kicks from the
//!   REPL (a local edit, an incident opened).
//! * Per peer, at most one outbound sync dialogue runs at a time; an edit made
//!   meanwhile marks the peer dirty and the dialogue goes one more round.
//! * Joining: [`Replicator::join`] proves knowledge of the invite's secret to
//!   a member (an HMAC bound to both peer ids), checks the member's proof in
//!   return, verifies the whole signed history and stores it.
//! * Only roster members are sent anything: a non-member's sync request is
//!   refused before any content is read from the document.
//!
//! Notices for the user (remote edits, peers, rejections) come out of a
//! channel as [`Notice`]s; how they are shown is the caller's business.
#![deny(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dontpanic_net::{FoundBy, Frame, Invite, Multiaddr, NodeEvent, NodeHandle, PeerId, Proto};
use dontpanic_notebook::sync::{decode_changes, encode_changes};
use dontpanic_notebook::{Notebook, NotebookError, RemoteEdit};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};

/// Frame kinds of `/dontpanic/sync/1` and `/dontpanic/join/1`.
mod kind {
    /// A sync message (request or answer); empty body = nothing to say.
    pub const SYNC: u8 = 0;
    /// Not a member of this incident, or not our incident.
    pub const DENIED: u8 = 1;
    /// The message failed verification; body = reason.
    pub const REJECTED: u8 = 2;
    /// Join accepted: body = proof | signed history.
    pub const ADMITTED: u8 = 3;
}

/// Longest sync dialogue before giving the loop back (guards against a peer
/// that never converges).
const MAX_ROUNDS: usize = 64;
/// How long `join` keeps looking for a member to admit it.
const JOIN_PATIENCE: Duration = Duration::from_secs(15);
/// How often connected peers are re-synced even without edits.
const RESYNC_EVERY: Duration = Duration::from_secs(3);

/// Something the user should see.
#[derive(Clone, Debug)]
pub struct Notice {
    /// For humans.
    pub text: String,
    /// For scripts; has an `event` field.
    pub json: serde_json::Value,
}

/// Errors of joining and connecting; each says what failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The invite did not parse.
    #[error(transparent)]
    Invite(#[from] dontpanic_net::InviteError),
    /// A network failure.
    #[error(transparent)]
    Net(#[from] dontpanic_net::NetError),
    /// The notebook refused.
    #[error(transparent)]
    Notebook(#[from] NotebookError),
    /// Joining failed.
    #[error("join failed: {0}")]
    Join(String),
    /// A bad address.
    #[error("`{0}` is not a multiaddr (e.g. /ip4/192.168.1.7/tcp/4001/p2p/12D3…): {1}")]
    Address(String, String),
}

#[derive(Default, Clone)]
struct PeerState {
    last_sync: Option<Instant>,
    problem: Option<String>,
}

enum Kick {
    Edit,
    Opened,
    Done(PeerId, bool),
    Flush(oneshot::Sender<()>),
}

/// Shared view of peers for `peers`.
#[derive(Default)]
struct Shared {
    peers: HashMap<PeerId, PeerState>,
    blocked: HashSet<PeerId>,
    traffic: Traffic,
}

/// Bytes of sync frame bodies sent and received, in both directions of
/// both protocols, since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes sent (requests and answers).
    pub sent: u64,
    /// Bytes received (requests and answers).
    pub received: u64,
}

fn count(r: &Replicator, sent: usize, received: usize) {
    let mut s = r.shared.lock().unwrap_or_else(|p| p.into_inner());
    s.traffic.sent += sent as u64;
    s.traffic.received += received as u64;
}

/// The running sync driver; cheap to clone.
#[derive(Clone)]
pub struct Replicator {
    notebook: Arc<Mutex<Notebook>>,
    node: NodeHandle,
    kicks: mpsc::UnboundedSender<Kick>,
    shared: Arc<Mutex<Shared>>,
    runtime: tokio::runtime::Handle,
}

/// One row of `peers`.
#[derive(Clone, Debug)]
pub struct PeerRow {
    /// Roster name (empty if not a member).
    pub name: String,
    /// Peer id.
    pub peer: PeerId,
    /// Address in use.
    pub address: String,
    /// How found.
    pub found_by: &'static str,
    /// connected / discovered / rejected.
    pub state: &'static str,
    /// direct / relayed.
    pub route: &'static str,
    /// Seconds since the last sync.
    pub last_sync_secs: Option<u64>,
    /// Ping RTT in ms.
    pub rtt_ms: Option<f64>,
    /// Why untrusted.
    pub problem: Option<String>,
}

fn lock(nb: &Arc<Mutex<Notebook>>) -> MutexGuard<'_, Notebook> {
    nb.lock().unwrap_or_else(|p| p.into_inner())
}

fn hex_key(peer: &PeerId) -> Option<String> {
    dontpanic_net::node::peer_key(peer).map(|k| k.iter().map(|b| format!("{b:02x}")).collect())
}

fn key_peer(hex: &str) -> Option<PeerId> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    dontpanic_net::node::key_peer(&bytes.try_into().ok()?)
}

/// The join proof: an HMAC of the invite secret bound to both peer ids, so
/// it proves knowledge of the secret without revealing it and cannot be
/// replayed by anyone else.
fn proof_mac(secret: &[u8], label: &[u8], a: &PeerId, b: &PeerId) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(b"dontpanic/join/v1:");
    mac.update(label);
    mac.update(&a.to_bytes());
    mac.update(&b.to_bytes());
    mac
}

fn proof(secret: &[u8], label: &[u8], a: &PeerId, b: &PeerId) -> [u8; 32] {
    proof_mac(secret, label, a, b)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of a proof.
fn verify_proof(secret: &[u8], label: &[u8], a: &PeerId, b: &PeerId, got: &[u8]) -> bool {
    proof_mac(secret, label, a, b).verify_slice(got).is_ok()
}

impl Replicator {
    /// Starts the driver on `runtime`, consuming the node's events.
    pub fn start(
        notebook: Arc<Mutex<Notebook>>,
        node: NodeHandle,
        events: mpsc::UnboundedReceiver<NodeEvent>,
        notices: std::sync::mpsc::Sender<Notice>,
        runtime: tokio::runtime::Handle,
    ) -> Replicator {
        let (kicks, kick_rx) = mpsc::unbounded_channel();
        let r = Replicator {
            notebook,
            node,
            kicks,
            shared: Arc::new(Mutex::new(Shared::default())),
            runtime: runtime.clone(),
        };
        let driver = Driver {
            r: r.clone(),
            notices,
            connected: HashSet::new(),
            in_flight: HashSet::new(),
            dirty: HashSet::new(),
            flushes: Vec::new(),
        };
        runtime.spawn(driver.run(events, kick_rx));
        r
    }

    /// The node.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// A local edit was made: tell peers.
    pub fn local_edit(&self) {
        let _ = self.kicks.send(Kick::Edit);
    }

    /// Another incident is open now: sync it.
    pub fn incident_opened(&self) {
        let _ = self.kicks.send(Kick::Opened);
    }

    /// Waits (up to `limit`) until outstanding edits have been offered to
    /// every connected member, so a script that ends does not strand them.
    pub fn flush(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.kicks.send(Kick::Flush(tx)).is_ok() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(limit, rx).await });
        }
    }

    /// Sync bytes sent and received so far.
    pub fn traffic(&self) -> Traffic {
        self.shared.lock().map(|s| s.traffic).unwrap_or_default()
    }

    /// `connect <multiaddr>`.
    pub fn connect(&self, addr: &str) -> Result<PeerId, SyncError> {
        let ma = addr
            .parse::<Multiaddr>()
            .map_err(|e| SyncError::Address(addr.into(), e.to_string()))?;
        let node = self.node.clone();
        let peer = self.runtime.block_on(async move {
            tokio::time::timeout(Duration::from_secs(15), node.dial(ma, FoundBy::Manual))
                .await
                .unwrap_or_else(|_| {
                    Err(dontpanic_net::NetError::Dial(format!(
                        "{addr}: timed out after 15 s"
                    )))
                })
        })?;
        Ok(peer)
    }

    /// `peers`.
    pub fn peers(&self) -> Vec<PeerRow> {
        let infos = self.runtime.block_on(self.node.peers());
        let names: HashMap<String, String> = {
            let nb = lock(&self.notebook);
            nb.incident()
                .ok()
                .and_then(|i| i.view().ok())
                .map(|v| v.members.into_iter().map(|m| (m.key, m.name)).collect())
                .unwrap_or_default()
        };
        let shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        infos
            .into_iter()
            .map(|p| {
                let st = shared.peers.get(&p.peer).cloned().unwrap_or_default();
                let blocked = shared.blocked.contains(&p.peer);
                PeerRow {
                    name: hex_key(&p.peer)
                        .and_then(|k| names.get(&k).cloned())
                        .unwrap_or_default(),
                    peer: p.peer,
                    address: p.address.map(|a| a.to_string()).unwrap_or_default(),
                    found_by: p.found_by.as_str(),
                    state: if blocked {
                        "rejected"
                    } else if p.connected {
                        "connected"
                    } else {
                        "discovered"
                    },
                    route: if p.relayed { "relayed" } else { "direct" },
                    last_sync_secs: st.last_sync.map(|t| t.elapsed().as_secs()),
                    rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    problem: st.problem,
                }
            })
            .collect()
    }

    /// `invite`: a capability to join the open incident, with our addresses.
    pub fn invite(&self) -> Result<Invite, SyncError> {
        let (incident, secret) = {
            let nb = lock(&self.notebook);
            let inc = nb.incident()?;
            let secret = inc
                .join_secret()
                .and_then(|s| <[u8; 32]>::try_from(s.as_slice()).ok())
                .ok_or_else(|| SyncError::Join("this incident has no join secret".into()))?;
            (inc.id().map_err(NotebookError::from)?.to_string(), secret)
        };
        let addresses = self.runtime.block_on(self.node.addresses());
        Ok(Invite {
            incident,
            secret,
            inviter: self.node.peer_id(),
            addresses,
        })
    }

    /// `join <invite>`: fetch the incident from the inviter (or any connected
    /// member), store it verified, and open it.
    pub fn join(&self, invite: &str) -> Result<String, SyncError> {
        let invite: Invite = invite.parse()?;
        let name = lock(&self.notebook).device().name.clone();
        let me = self.node.peer_id();
        let node = self.node.clone();
        let inv = invite.clone();
        let result: Result<Vec<u8>, SyncError> = self.runtime.block_on(async move {
            for a in &inv.addresses {
                node.add_address(inv.inviter, a.clone(), FoundBy::Invite);
            }
            // An invite without a reachable address relies on discovery (mDNS
            // or peers already connected): keep trying while peers turn up.
            let deadline = tokio::time::Instant::now() + JOIN_PATIENCE;
            let mut errors = Vec::new();
            let relays = relays_in(&inv.addresses);
            loop {
                // Reach the invite's relays first: a circuit dial made while
                // the relay itself is still being dialed is dropped by libp2p.
                for r in &relays {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        node.dial(r.clone(), FoundBy::Relay),
                    )
                    .await;
                }
                let mut candidates = vec![inv.inviter];
                for p in node.peers().await {
                    if p.connected && p.peer != inv.inviter {
                        candidates.push(p.peer);
                    }
                }
                for peer in candidates {
                    match ask_to_join(&node, &inv, &me, &name, peer).await {
                        Ok(history) => return Ok(history),
                        Err(e) => errors.push(e),
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    errors.dedup();
                    return Err(SyncError::Join(format!(
                        "no member of incident {} could be reached or admitted us within {} s: {}",
                        inv.incident,
                        JOIN_PATIENCE.as_secs(),
                        errors.join("; ")
                    )));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        let history = decode_changes(&result?)?;
        let id = lock(&self.notebook).adopt(history)?;
        if id != invite.incident {
            return Err(SyncError::Join(format!(
                "the member sent incident {id}, not {}",
                invite.incident
            )));
        }
        // Relays the inviter is reachable through become ours too, so the
        // members can find each other again after restarts.
        let relays = relays_in(&invite.addresses);
        if !relays.is_empty() {
            let nb = lock(&self.notebook);
            let mut cfg = nb.data().config().map_err(NotebookError::from)?;
            for r in relays {
                self.node.use_relay(r.clone());
                let peer = dontpanic_net::node::relay_peer(&r);
                let known = cfg.relays.iter().any(|c| {
                    c.parse::<Multiaddr>()
                        .ok()
                        .and_then(|c| dontpanic_net::node::relay_peer(&c))
                        == peer
                });
                if !known {
                    cfg.relays.push(r.to_string());
                }
            }
            nb.data().save_config(&cfg).map_err(NotebookError::from)?;
        }
        self.incident_opened();
        Ok(id)
    }
}

/// The relay part (`…/p2p/<relay>`) of every circuit address.
fn relays_in(addresses: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    for a in addresses {
        let protos: Vec<_> = a.iter().collect();
        if let Some(i) = protos
            .iter()
            .position(|p| matches!(p, dontpanic_net::Protocol::P2pCircuit))
        {
            let relay: Multiaddr = protos[..i].iter().cloned().collect();
            if !out.contains(&relay) {
                out.push(relay);
            }
        }
    }
    out
}

/// Asks one peer to admit us; returns the signed history it sent.
async fn ask_to_join(
    node: &NodeHandle,
    inv: &Invite,
    me: &PeerId,
    name: &str,
    peer: PeerId,
) -> Result<Vec<u8>, String> {
    let mut body = proof(&inv.secret, b"join", me, &peer).to_vec();
    body.extend_from_slice(name.as_bytes());
    let frame = Frame::new(0, &inv.incident, body);
    match tokio::time::timeout(
        Duration::from_secs(30),
        node.request(Proto::Join, peer, frame),
    )
    .await
    {
        Ok(Ok(f)) if f.kind == kind::ADMITTED && f.body.len() >= 32 => {
            if verify_proof(&inv.secret, b"admit", &peer, me, &f.body[..32]) {
                Ok(f.body[32..].to_vec())
            } else {
                Err(format!("{peer}: its proof of membership is wrong"))
            }
        }
        Ok(Ok(f)) => Err(format!(
            "{peer}: refused ({})",
            String::from_utf8_lossy(&f.body)
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{peer}: no answer within 30 s")),
    }
}

struct Driver {
    r: Replicator,
    notices: std::sync::mpsc::Sender<Notice>,
    connected: HashSet<PeerId>,
    in_flight: HashSet<PeerId>,
    dirty: HashSet<PeerId>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Driver {
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<NodeEvent>,
        mut kicks: mpsc::UnboundedReceiver<Kick>,
    ) {
        let mut tick = tokio::time::interval(RESYNC_EVERY);
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Some(e) => self.event(e),
                    None => break,
                },
                k = kicks.recv() => match k {
                    Some(k) => self.kick(k),
                    None => break,
                },
                _ = tick.tick() => self.tick(),
            }
        }
    }

    /// Periodic: re-sync connected peers, and redial members we lost (after
    /// a restart, a partition, or a relay outage).
    fn tick(&mut self) {
        self.sync_all(None);
        let members = {
            let nb = lock(&self.r.notebook);
            nb.incident().map(|i| i.member_keys()).unwrap_or_default()
        };
        let me = self.r.node.peer_id();
        for key in members {
            let Some(peer) = key_peer(&key) else { continue };
            if peer != me && !self.connected.contains(&peer) && !self.blocked(&peer) {
                tracing::debug!("redialing member {peer}");
                self.r.node.dial_peer(peer);
            }
        }
    }

    fn notify(&self, text: String, json: serde_json::Value) {
        let _ = self.notices.send(Notice { text, json });
    }

    fn is_member(&self, peer: &PeerId) -> bool {
        let Some(key) = hex_key(peer) else {
            return false;
        };
        let nb = lock(&self.r.notebook);
        nb.incident()
            .map(|i| i.member_keys().contains(&key))
            .unwrap_or(false)
    }

    fn open_incident_id(&self) -> Option<String> {
        let nb = lock(&self.r.notebook);
        nb.incident().ok()?.id().ok().map(|i| i.to_string())
    }

    fn blocked(&self, peer: &PeerId) -> bool {
        self.r
            .shared
            .lock()
            .map(|s| s.blocked.contains(peer))
            .unwrap_or(false)
    }

    fn kick(&mut self, k: Kick) {
        match k {
            Kick::Edit | Kick::Opened => self.sync_all(None),
            Kick::Done(peer, again) => {
                self.in_flight.remove(&peer);
                if again || self.dirty.remove(&peer) {
                    self.sync_peer(peer);
                }
                self.maybe_flushed();
            }
            Kick::Flush(done) => {
                self.sync_all(None);
                self.flushes.push(done);
                self.maybe_flushed();
            }
        }
    }

    fn maybe_flushed(&mut self) {
        if self.in_flight.is_empty() && self.dirty.is_empty() {
            for f in self.flushes.drain(..) {
                let _ = f.send(());
            }
        }
    }

    fn sync_all(&mut self, except: Option<PeerId>) {
        let peers: Vec<PeerId> = self
            .connected
            .iter()
            .copied()
            .filter(|p| Some(*p) != except)
            .collect();
        for p in peers {
            self.sync_peer(p);
        }
    }

    /// Starts (or marks for another round) the outbound dialogue with a peer.
    fn sync_peer(&mut self, peer: PeerId) {
        if self.blocked(&peer) || !self.is_member(&peer) {
            return;
        }
        if self.in_flight.contains(&peer) {
            self.dirty.insert(peer);
            return;
        }
        let Some(incident) = self.open_incident_id() else {
            return;
        };
        let Some(key) = hex_key(&peer) else {
            return;
        };
        self.in_flight.insert(peer);
        let r = self.r.clone();
        let notices = self.notices.clone();
        tokio::spawn(async move {
            let again = dialogue(&r, &notices, peer, &key, &incident).await;
            let _ = r.kicks.send(Kick::Done(peer, again));
        });
    }

    fn event(&mut self, e: NodeEvent) {
        match e {
            NodeEvent::Connected { peer } => {
                self.connected.insert(peer);
                let name = self.member_name(&peer);
                if let Some(name) = &name {
                    self.notify(
                        format!("* {name} connected"),
                        json!({"event": "peer_connected", "peer": peer.to_string(), "name": name}),
                    );
                }
                self.sync_peer(peer);
            }
            NodeEvent::Disconnected { peer } => {
                self.connected.remove(&peer);
                self.dirty.remove(&peer);
                if let Some(key) = hex_key(&peer) {
                    let _ = lock(&self.r.notebook).peer_gone(&key);
                }
                if let Some(name) = self.member_name(&peer) {
                    self.notify(format!("* {name} disconnected"), json!({"event": "peer_disconnected", "peer": peer.to_string(), "name": name}));
                }
                self.maybe_flushed();
            }
            NodeEvent::Request {
                proto: Proto::Sync,
                peer,
                frame,
                token,
            } => self.inbound_sync(peer, frame, token),
            NodeEvent::Request {
                proto: Proto::Join,
                peer,
                frame,
                token,
            } => self.inbound_join(peer, frame, token),
            NodeEvent::BadInput { peer, reason } => {
                self.reject(peer, format!("unreadable message: {reason}"))
            }
            NodeEvent::Listening { .. } => {}
        }
    }

    fn member_name(&self, peer: &PeerId) -> Option<String> {
        let key = hex_key(peer)?;
        let nb = lock(&self.r.notebook);
        let v = nb.incident().ok()?.view().ok()?;
        v.members.into_iter().find(|m| m.key == key).map(|m| m.name)
    }

    fn reject(&mut self, peer: PeerId, reason: String) {
        reject(&self.r, &self.notices, peer, reason);
    }

    fn inbound_sync(&mut self, peer: PeerId, frame: Frame, token: u64) {
        let node = self.r.node.clone();
        if self.blocked(&peer) {
            node.respond(
                token,
                Frame::new(kind::DENIED, &frame.incident, b"not trusted".to_vec()),
            );
            return;
        }
        // Nothing of the document, not even whether we hold it, is told to
        // a non-member.
        if self.open_incident_id().as_deref() != Some(frame.incident.as_str())
            || !self.is_member(&peer)
        {
            node.respond(token, Frame::new(kind::DENIED, &frame.incident, Vec::new()));
            return;
        }
        let key = hex_key(&peer).unwrap_or_default();
        let outcome = {
            let mut nb = lock(&self.r.notebook);
            let edits = if frame.body.is_empty() {
                Ok(Vec::new())
            } else {
                nb.receive_sync(&key, &frame.body)
            };
            edits.and_then(|e| nb.sync_message_for(&key).map(|m| (e, m)))
        };
        match outcome {
            Ok((edits, reply)) => {
                let reply = reply.unwrap_or_default();
                count(&self.r, reply.len(), frame.body.len());
                node.respond(token, Frame::new(kind::SYNC, &frame.incident, reply));
                self.synced(peer);
                if !edits.is_empty() {
                    announce(&self.notices, &edits);
                    self.sync_all(Some(peer));
                }
            }
            Err(e) => {
                node.respond(
                    token,
                    Frame::new(kind::REJECTED, &frame.incident, e.to_string().into_bytes()),
                );
                self.reject(peer, e.to_string());
            }
        }
    }

    fn synced(&self, peer: PeerId) {
        let mut s = self.r.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.peers.entry(peer).or_default().last_sync = Some(Instant::now());
    }

    fn inbound_join(&mut self, peer: PeerId, frame: Frame, token: u64) {
        let node = self.r.node.clone();
        let deny = |why: &str| {
            node.respond(
                token,
                Frame::new(kind::DENIED, &frame.incident, why.as_bytes().to_vec()),
            )
        };
        if self.blocked(&peer)
            || frame.body.len() < 32
            || self.open_incident_id().as_deref() != Some(frame.incident.as_str())
        {
            return deny("unknown incident");
        }
        let me = self.r.node.peer_id();
        let Some(key) = hex_key(&peer) else {
            return deny("peer id carries no ed25519 key");
        };
        let name = String::from_utf8_lossy(&frame.body[32..])
            .trim()
            .chars()
            .take(64)
            .collect::<String>();
        let result = {
            let mut nb = lock(&self.r.notebook);
            let secret = nb
                .incident()
                .ok()
                .and_then(|i| i.join_secret())
                .unwrap_or_default();
            if secret.is_empty() || !verify_proof(&secret, b"join", &peer, &me, &frame.body[..32]) {
                Err("wrong invite".to_string())
            } else {
                let already = nb
                    .incident()
                    .map(|i| i.member_keys().contains(&key))
                    .unwrap_or(false);
                let added = if already {
                    Ok(())
                } else {
                    nb.edit(dontpanic_notebook::incident::Edit::AddMember {
                        key: key.clone(),
                        name: if name.is_empty() {
                            "anonymous".into()
                        } else {
                            name.clone()
                        },
                    })
                    .map(|_| ())
                    .map_err(|e| e.to_string())
                };
                added.and_then(|_| {
                    let history = nb.signed_changes().map_err(|e| e.to_string())?;
                    let mut body = proof(&secret, b"admit", &me, &peer).to_vec();
                    body.extend_from_slice(&encode_changes(&history));
                    Ok(body)
                })
            }
        };
        match result {
            Ok(body) => {
                node.respond(token, Frame::new(kind::ADMITTED, &frame.incident, body));
                self.notify(
                    format!("* {name} joined with an invite"),
                    json!({"event": "member_joined", "peer": peer.to_string(), "name": name}),
                );
                self.sync_all(Some(peer));
            }
            Err(why) => {
                deny(&why);
                tracing::warn!("join from {peer} refused: {why}");
            }
        }
    }
}

/// Marks a peer untrusted: shown in `peers`, announced, disconnected; its
/// further requests are refused.
fn reject(r: &Replicator, notices: &std::sync::mpsc::Sender<Notice>, peer: PeerId, reason: String) {
    tracing::warn!("rejected {peer}: {reason}");
    {
        let mut s = r.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.blocked.insert(peer);
        s.peers.entry(peer).or_default().problem = Some(reason.clone());
    }
    let _ = notices.send(Notice {
        text: format!("! rejected {peer}: {reason}"),
        json: json!({"event": "rejected", "peer": peer.to_string(), "reason": reason}),
    });
    // Give the REJECTED answer (with its reason) time to leave before the
    // connection is closed; the peer's further requests are refused meanwhile.
    let node = r.node.clone();
    r.runtime.spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        node.disconnect(peer);
    });
}

fn announce(notices: &std::sync::mpsc::Sender<Notice>, edits: &[RemoteEdit]) {
    for e in edits {
        let _ = notices.send(Notice {
            text: format!("[{}] {}", e.author, e.summary),
            json: json!({"event": "remote_edit", "author": e.author, "summary": e.summary}),
        });
    }
}

/// One outbound sync dialogue: send our message, apply the answer, repeat
/// until neither side has anything to say. Returns whether to go again.
async fn dialogue(
    r: &Replicator,
    notices: &std::sync::mpsc::Sender<Notice>,
    peer: PeerId,
    key: &str,
    incident: &str,
) -> bool {
    for _ in 0..MAX_ROUNDS {
        let msg = match lock(&r.notebook).sync_message_for(key) {
            Ok(Some(m)) => m,
            Ok(None) => return false,
            Err(_) => return false,
        };
        let sent = msg.len();
        let answer = r
            .node
            .request(Proto::Sync, peer, Frame::new(kind::SYNC, incident, msg))
            .await;
        let frame = match answer {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!("sync with {peer} failed: {e}");
                // Forget in-flight state so the next attempt resends.
                let _ = lock(&r.notebook).peer_gone(key);
                return false;
            }
        };
        count(r, sent, frame.body.len());
        {
            let mut s = r.shared.lock().unwrap_or_else(|p| p.into_inner());
            s.peers.entry(peer).or_default().last_sync = Some(Instant::now());
        }
        match frame.kind {
            kind::SYNC if frame.body.is_empty() => continue,
            kind::SYNC => {
                let result = lock(&r.notebook).receive_sync(key, &frame.body);
                match result {
                    Ok(edits) if !edits.is_empty() => {
                        announce(notices, &edits);
                        // Others may not have these yet.
                        let _ = r.kicks.send(Kick::Edit);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        reject(r, notices, peer, e.to_string());
                        return false;
                    }
                }
            }
            _ => return false,
        }
    }
    true
}
