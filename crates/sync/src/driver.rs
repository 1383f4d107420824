//! The driver task: one loop over node events, kicks from the REPL, the
//! notebook's published rosters and two ticks (redial, resync). It never
//! waits on the notebook: every request to it runs in a task of its own,
//! whose outcome comes back to the loop as a [`Done`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use dontpanic_net::wire::{
    JoinRequest, JoinResponse, MemberAddresses, SignedSync, SyncRequest, SyncResponse,
};
use dontpanic_net::{FoundBy, Multiaddr, NodeEvent, PeerId};
use dontpanic_notebook::actor::{Received, RemoteEvent};
use dontpanic_notebook::incident::render::one_line;
use dontpanic_notebook::{NotebookError, Published};
use serde_bytes::ByteBuf;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::join::{self, invite_key, joiner_name, proof, verify_proof, Terms};
use crate::redial::Backoff;
use crate::wire::{from_wire, history_to_wire, to_wire};
use crate::{hex_key, key_peer, Kick, Notifier, Problem, Replicator};

/// Longest sync dialogue; one that reaches it ends and says so (a peer that
/// never converges must not keep the link busy).
const MAX_ROUNDS: usize = 64;
/// How often connected members are re-synced even without edits.
const RESYNC_EVERY: Duration = Duration::from_secs(3);
/// How long changes received from a member wait before they are offered
/// to the other members. In a room where everyone is connected to everyone
/// the author has reached them all by then, and forwarding at once would
/// cost every edit a dialogue between every pair of members, on the path
/// of the next edit; members reached only through others get the edit
/// this much later, coalesced with whatever else arrived meanwhile.
const FORWARD_AFTER: Duration = Duration::from_millis(250);
/// How often due forwards are checked.
const FORWARD_TICK: Duration = Duration::from_millis(50);
/// How often missing members are checked for a redial.
const REDIAL_TICK: Duration = Duration::from_millis(200);
/// Least time between two notices of the same local fault.
const LOCAL_FAULT_QUIET: Duration = Duration::from_secs(30);
/// Addresses kept per member in one exchange.
const ADDRESSES_PER_MEMBER: usize = 16;
/// Peers not (yet) on a roster whose addresses are kept in memory.
const UNFILED_KEPT: usize = 256;
/// Members an address exchange may name; a longer one is ignored.
const MAX_ADDRESSES_TOLD: usize = 1024;

/// How one outbound dialogue ended.
#[derive(Debug)]
enum Outcome {
    /// Both sides have nothing more to say.
    Converged,
    /// The peer does not hold the incident or does not count us a member.
    Denied,
    /// The request failed (link down, timeout).
    Failed(String),
    /// We could not store what the peer sent (a full disk): ours to fix.
    LocalFault(String),
    /// The peer could not store what we sent, for a reason of its own.
    TheyCannot(String),
    /// The peer refused our changes as invalid.
    TheyRefused(String),
    /// The peer sent something hostile; it is rejected.
    Rejected,
    /// The dialogue reached [`MAX_ROUNDS`].
    RoundLimit,
}

/// A finished dialogue, back to the loop.
struct Done {
    peer: PeerId,
    incident: String,
    outcome: Outcome,
}

type Pair = (PeerId, String);

struct Driver {
    r: Replicator,
    notices: Notifier,
    me: PeerId,
    my_key: String,
    rosters: BTreeMap<String, Vec<dontpanic_notebook::actor::Member>>,
    in_flight: HashSet<Pair>,
    dirty: HashSet<Pair>,
    redial: HashMap<PeerId, Backoff>,
    /// Addresses of connected peers not (yet) on any roster: a joiner's,
    /// kept until it is admitted; pruned on disconnect.
    unfiled: HashMap<PeerId, Vec<Multiaddr>>,
    flushes: Vec<oneshot::Sender<()>>,
    done: mpsc::Sender<Done>,
    /// Incidents with received changes to offer the other members, and
    /// when.
    forwards: BTreeMap<String, Instant>,
}

/// Runs the driver until the node stops.
pub(crate) async fn run(
    r: Replicator,
    notices: Notifier,
    mut events: mpsc::Receiver<NodeEvent>,
    mut kicks: mpsc::Receiver<Kick>,
) {
    let (done, mut finished) = mpsc::channel(256);
    let mut published = r.notebook.watch();
    let mut d = Driver {
        me: r.node.peer_id(),
        my_key: r.notebook.device().key.to_string(),
        r,
        notices,
        rosters: BTreeMap::new(),
        in_flight: HashSet::new(),
        dirty: HashSet::new(),
        redial: HashMap::new(),
        unfiled: HashMap::new(),
        flushes: Vec::new(),
        done,
        forwards: BTreeMap::new(),
    };
    d.rosters.clone_from(&published.borrow_and_update().rosters);
    // After a restart: the members' remembered addresses before the first
    // redial.
    give_remembered(&d.r, d.member_peers()).await;
    let mut redial = tokio::time::interval(REDIAL_TICK);
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    let mut forward = tokio::time::interval(FORWARD_TICK);
    let mut remote = d.r.notebook.remote_events();
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Some(e) => d.event(e),
                None => break,
            },
            k = kicks.recv() => match k {
                Some(k) => d.kick(k),
                None => break,
            },
            Some(f) = finished.recv() => d.finished(f),
            changed = published.changed() => match changed {
                Ok(()) => {
                    let p = published.borrow_and_update().clone();
                    d.rosters_changed(p);
                }
                Err(_) => break,
            },
            _ = redial.tick() => d.redial(),
            _ = resync.tick() => d.sync_all(),
            _ = forward.tick() => d.forward_due(),
            e = remote.recv() => match e {
                Ok(e) => show(&d.r, &d.notices, e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => d.notify(
                    format!("! {n} remote edit notice(s) were dropped: the terminal fell behind; `timeline` shows them"),
                    json!({"event": "notices_dropped", "count": n}),
                ),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

impl Driver {
    fn notify(&self, text: String, json: serde_json::Value) {
        self.notices.send(text, json);
    }

    /// A member's roster name, safe to print on one line.
    fn name_of(&self, peer: &PeerId) -> Option<String> {
        let key = hex_key(peer)?;
        self.rosters
            .values()
            .flatten()
            .find(|m| m.key == key)
            .map(|m| one_line(&m.name))
    }

    /// Incidents `peer` is a member of.
    fn incidents_of(&self, peer: &PeerId) -> Vec<String> {
        let Some(key) = hex_key(peer) else {
            return Vec::new();
        };
        self.rosters
            .iter()
            .filter(|(_, r)| r.iter().any(|m| m.key == key))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every member of every held incident but us.
    fn member_peers(&self) -> HashSet<PeerId> {
        self.rosters
            .values()
            .flatten()
            .filter(|m| m.key != self.my_key)
            .filter_map(|m| key_peer(&m.key))
            .collect()
    }

    fn connected(&self, peer: &PeerId) -> bool {
        self.r.shared().connected.contains(peer)
    }

    fn blocked(&self, peer: &PeerId) -> bool {
        self.r.shared().blocked.contains_key(peer)
    }

    fn kick(&mut self, k: Kick) {
        match k {
            Kick::Edit(incident) => self.sync_incident(&incident),
            Kick::Forward(incident) => {
                self.forwards
                    .entry(incident)
                    .or_insert_with(|| Instant::now() + FORWARD_AFTER);
            }
            Kick::Opened => self.sync_all(),
            Kick::Flush(done) => {
                self.sync_all();
                self.flushes.push(done);
                self.maybe_flushed();
            }
        }
    }

    /// Syncs `incident` with every connected member of it.
    fn sync_incident(&mut self, incident: &str) {
        let peers: Vec<PeerId> = self.r.shared().connected.iter().copied().collect();
        for p in peers {
            if self.incidents_of(&p).iter().any(|i| i == incident) {
                self.sync_pair(p, incident.to_string());
            }
        }
    }

    /// Offers received changes whose wait is over to the other members.
    fn forward_due(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .forwards
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.forwards.remove(&id);
            self.sync_incident(&id);
        }
    }

    fn maybe_flushed(&mut self) {
        if self.in_flight.is_empty() && self.dirty.is_empty() {
            for f in self.flushes.drain(..) {
                let _ = f.send(());
            }
        }
    }

    fn sync_all(&mut self) {
        let peers: Vec<PeerId> = self.r.shared().connected.iter().copied().collect();
        for p in peers {
            self.sync_peer(p);
        }
    }

    fn sync_peer(&mut self, peer: PeerId) {
        for incident in self.incidents_of(&peer) {
            self.sync_pair(peer, incident);
        }
    }

    /// Starts (or marks for another round) the dialogue of one incident
    /// with one peer.
    fn sync_pair(&mut self, peer: PeerId, incident: String) {
        if self.blocked(&peer) || !self.connected(&peer) {
            return;
        }
        let Some(key) = hex_key(&peer) else {
            return;
        };
        let pair = (peer, incident.clone());
        if self.in_flight.contains(&pair) {
            self.dirty.insert(pair);
            return;
        }
        self.in_flight.insert(pair);
        let r = self.r.clone();
        let notices = self.notices.clone();
        let done = self.done.clone();
        tokio::spawn(async move {
            let outcome = dialogue(&r, &notices, peer, &key, &incident).await;
            let _ = done
                .send(Done {
                    peer,
                    incident,
                    outcome,
                })
                .await;
        });
    }

    fn finished(&mut self, f: Done) {
        let pair = (f.peer, f.incident.clone());
        self.in_flight.remove(&pair);
        let again = self.dirty.remove(&pair);
        let name = self.name_of(&f.peer).unwrap_or_else(|| f.peer.to_string());
        let short: &str = &f.incident.chars().take(5).collect::<String>();
        let mut problem = None;
        match f.outcome {
            Outcome::Converged => {
                if again {
                    self.sync_pair(f.peer, f.incident.clone());
                }
            }
            Outcome::Denied | Outcome::Rejected => {}
            Outcome::Failed(e) => problem = Some(format!("sync of {short} failed: {e}")),
            Outcome::TheyCannot(e) => {
                problem = Some(format!("{name} cannot store changes of {short} now: {e}"))
            }
            Outcome::TheyRefused(e) => {
                self.notify(
                    format!("! {name} refused our changes of incident {short}: {}", one_line(&e)),
                    json!({"event": "refused", "peer": f.peer.to_string(), "name": name, "incident": f.incident, "reason": e}),
                );
                problem = Some(format!("refused our changes of {short}: {e}"));
            }
            Outcome::LocalFault(e) => {
                local_fault(&self.r, &self.notices, &f.incident, &name, &e);
                problem = Some(format!("local fault, not {name}'s: {e}"));
            }
            Outcome::RoundLimit => {
                self.notify(
                    format!("! sync of incident {short} with {name} stopped after {MAX_ROUNDS} rounds; it is tried again in {} s", RESYNC_EVERY.as_secs()),
                    json!({"event": "sync_stopped", "peer": f.peer.to_string(), "name": name, "incident": f.incident, "rounds": MAX_ROUNDS}),
                );
                problem = Some(format!(
                    "sync of {short} did not converge in {MAX_ROUNDS} rounds"
                ));
            }
        }
        if let Some(p) = problem {
            if let Some(key) = hex_key(&f.peer) {
                // What the peer may not have stored is offered again.
                self.r.notebook.peer_gone(key);
            }
            let mut s = self.r.shared();
            if s.connected.contains(&f.peer) {
                s.peers.entry(f.peer).or_default().problem = Some(Problem::SyncFailing(p));
            }
        }
        self.maybe_flushed();
    }

    /// Members that left every roster (removed) are disconnected: nothing
    /// more is sent to them, and their requests are refused as a
    /// non-member's.
    fn drop_removed(&mut self, before: &BTreeMap<String, Vec<dontpanic_notebook::actor::Member>>) {
        let now = self.member_peers();
        let gone: Vec<(PeerId, String)> = before
            .iter()
            .filter_map(|(id, old)| Some((old, self.rosters.get(id)?)))
            .flat_map(|(old, new)| old.iter().filter(move |m| !new.contains(m)))
            .filter(|m| m.key != self.my_key)
            .filter_map(|m| Some((key_peer(&m.key)?, one_line(&m.name))))
            .filter(|(p, _)| !now.contains(p))
            .collect();
        for (peer, name) in gone {
            self.redial.remove(&peer);
            self.r.shared().redialing.remove(&peer);
            if self.connected(&peer) {
                self.r.node.disconnect(peer);
            }
            self.notify(
                format!("* {name} is no longer a member: disconnected"),
                json!({"event": "member_removed", "peer": peer.to_string(), "name": name}),
            );
        }
    }

    /// The notebook published new rosters: file addresses of new members,
    /// tell connected members about them, and sync what is new.
    fn rosters_changed(&mut self, published: Published) {
        let before = std::mem::replace(&mut self.rosters, published.rosters);
        self.drop_removed(&before);
        let mut grown: Vec<String> = Vec::new();
        for (id, roster) in &self.rosters {
            let old = before.get(id);
            if old.is_none_or(|o| roster.iter().any(|m| !o.contains(m))) {
                grown.push(id.clone());
            }
        }
        if grown.is_empty() {
            return;
        }
        // Joiners seen before they were admitted.
        let members = self.member_peers();
        let filed: Vec<PeerId> = self
            .unfiled
            .keys()
            .filter(|p| members.contains(p))
            .copied()
            .collect();
        for p in filed {
            if let (Some(addrs), Some(key)) = (self.unfiled.remove(&p), hex_key(&p)) {
                self.r
                    .notebook
                    .learn_addresses(key, addrs.iter().map(|a| a.to_string()).collect());
            }
        }
        // Remembered addresses of members just added go to the node so
        // redials have somewhere to go.
        let r = self.r.clone();
        tokio::spawn(async move { give_remembered(&r, members).await });
        let connected: Vec<PeerId> = self.r.shared().connected.iter().copied().collect();
        for incident in grown {
            for &p in &connected {
                if self.incidents_of(&p).contains(&incident) {
                    exchange_addresses(&self.r, p, incident.clone());
                    self.sync_pair(p, incident.clone());
                }
            }
        }
    }

    /// Dials members that are missing, each on its own jittered schedule.
    fn redial(&mut self) {
        let now = Instant::now();
        let members = self.member_peers();
        self.redial.retain(|p, _| members.contains(p));
        let mut s = self.r.shared();
        s.redialing.retain(|p, _| members.contains(p));
        for peer in members {
            if s.connected.contains(&peer) || s.blocked.contains_key(&peer) || peer == self.me {
                self.redial.remove(&peer);
                s.redialing.remove(&peer);
                continue;
            }
            let b = self.redial.entry(peer).or_insert_with(|| Backoff::new(now));
            s.redialing.entry(peer).or_insert((b.since, None));
            if b.due(now) {
                b.dialed(now, rand::random::<f64>());
                self.r.node.dial_peer(peer);
            }
        }
    }

    fn event(&mut self, e: NodeEvent) {
        match e {
            NodeEvent::Connected { peer, relayed, .. } => {
                {
                    let mut s = self.r.shared();
                    s.connected.insert(peer);
                    s.redialing.remove(&peer);
                    if let Some(st) = s.peers.get_mut(&peer) {
                        st.problem = None;
                    }
                }
                self.redial.remove(&peer);
                if let Some(name) = self.name_of(&peer) {
                    let how = if relayed { " (relayed)" } else { "" };
                    self.notify(
                        format!("* {name} connected{how}"),
                        json!({"event": "peer_connected", "peer": peer.to_string(), "name": name, "relayed": relayed}),
                    );
                    for incident in self.incidents_of(&peer) {
                        exchange_addresses(&self.r, peer, incident);
                    }
                }
                self.sync_peer(peer);
            }
            NodeEvent::Disconnected { peer, reason } => {
                let member = self.member_peers().contains(&peer);
                {
                    let mut s = self.r.shared();
                    s.connected.remove(&peer);
                    if member {
                        if let Some(st) = s.peers.get_mut(&peer) {
                            st.problem = None;
                        }
                        s.redialing
                            .insert(peer, (Instant::now(), Some(reason.clone())));
                    } else {
                        s.peers.remove(&peer);
                    }
                }
                self.dirty.retain(|(p, _)| *p != peer);
                self.unfiled.remove(&peer);
                if let Some(key) = hex_key(&peer) {
                    self.r.notebook.peer_gone(key);
                }
                if let Some(name) = self.name_of(&peer) {
                    self.notify(
                        format!("* {name} disconnected: {reason}"),
                        json!({"event": "peer_disconnected", "peer": peer.to_string(), "name": name, "reason": reason}),
                    );
                }
                self.maybe_flushed();
            }
            NodeEvent::Addresses {
                peer, addresses, ..
            } => {
                let Some(key) = hex_key(&peer) else { return };
                if self.member_peers().contains(&peer) {
                    self.r
                        .notebook
                        .learn_addresses(key, addresses.iter().map(|a| a.to_string()).collect());
                } else if self.unfiled.len() < UNFILED_KEPT || self.unfiled.contains_key(&peer) {
                    // Identify may report a joiner's addresses before its
                    // connection is announced and before it is admitted.
                    let list = self.unfiled.entry(peer).or_default();
                    for a in addresses {
                        if !list.contains(&a) && list.len() < ADDRESSES_PER_MEMBER {
                            list.push(a);
                        }
                    }
                }
            }
            NodeEvent::DialFailed { peer, error } => {
                if let Some(entry) = self.r.shared().redialing.get_mut(&peer) {
                    entry.1 = Some(error);
                }
            }
            NodeEvent::Sync {
                peer,
                request,
                token,
            } => self.inbound_sync(peer, request, token),
            NodeEvent::Join {
                peer,
                request,
                token,
            } => self.inbound_join(peer, request, token),
            NodeEvent::BadInput { peer, reason } => reject(
                &self.r,
                &self.notices,
                peer,
                format!("unreadable message: {reason}"),
            ),
            NodeEvent::Listening { .. } => {}
        }
    }

    fn inbound_sync(&mut self, peer: PeerId, request: SyncRequest, token: u64) {
        let node = self.r.node.clone();
        if self.blocked(&peer) {
            let reason = "not trusted".into();
            node.answer_sync(token, SyncResponse::Denied { reason });
            return;
        }
        let incident = match &request {
            SyncRequest::Sync { incident, .. } | SyncRequest::Addresses { incident, .. } => {
                incident.clone()
            }
        };
        // Nothing of any document, not even whether we hold it, is told to
        // a non-member.
        let key = hex_key(&peer).unwrap_or_default();
        let Some(roster) = self
            .rosters
            .get(&incident)
            .filter(|r| r.iter().any(|m| m.key == key))
        else {
            let reason = String::new();
            node.answer_sync(token, SyncResponse::Denied { reason });
            return;
        };
        let roster: Vec<String> = roster.iter().map(|m| m.key.clone()).collect();
        let r = self.r.clone();
        let notices = self.notices.clone();
        let name = self.name_of(&peer).unwrap_or_else(|| peer.to_string());
        match request {
            SyncRequest::Addresses { members, .. } => {
                tokio::spawn(async move {
                    learn_addresses(&r, &roster, members);
                    let members = our_addresses(&r, &roster).await;
                    r.node
                        .answer_sync(token, SyncResponse::Addresses { members });
                });
            }
            SyncRequest::Sync { message, .. } => {
                tokio::spawn(async move {
                    let received = wire_len(&message);
                    let result = match from_wire(message) {
                        Ok(m) => {
                            r.notebook
                                .receive_sync(incident.clone(), key.clone(), m, true)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(rcv) => {
                            let answer = rcv.answer.clone().map(to_wire);
                            count(&r, answer.as_ref().map_or(0, wire_len), received);
                            r.node
                                .answer_sync(token, SyncResponse::Sync { message: answer });
                            synced(&r, peer);
                            if !rcv.edits.is_empty() {
                                announce(&r, &notices, &incident, &rcv);
                                r.kick(Kick::Forward(incident));
                            }
                        }
                        Err(e) if e.blames_sender() => {
                            let reason = e.to_string();
                            r.node.answer_sync(token, SyncResponse::Rejected { reason });
                            reject(&r, &notices, peer, e.to_string());
                        }
                        Err(e) => {
                            let reason = e.to_string();
                            r.node.answer_sync(token, SyncResponse::Retry { reason });
                            r.notebook.peer_gone(key);
                            local_fault(&r, &notices, &incident, &name, &e.to_string());
                        }
                    }
                });
            }
        }
    }

    fn inbound_join(&mut self, peer: PeerId, request: JoinRequest, token: u64) {
        let r = self.r.clone();
        let notices = self.notices.clone();
        let me = self.me;
        // One answer for every refusal, so a stranger cannot tell whether
        // this node holds the incident.
        let deny = move |r: &Replicator, why: &str| {
            tracing::warn!("join from {peer} refused: {why}");
            let reason = "wrong invite".into();
            r.node.answer_join(token, JoinResponse::Denied { reason });
        };
        if self.blocked(&peer) {
            return deny(&r, "blocked");
        }
        let Some(key) = hex_key(&peer) else {
            return deny(&r, "peer id carries no ed25519 key");
        };
        let JoinRequest {
            incident,
            proof: joiner_proof,
            terms,
            name,
        } = request;
        tokio::spawn(async move {
            let secret = match r.notebook.join_secret(incident.clone()).await {
                Ok(s) => s,
                Err(e) => return deny(&r, &e.to_string()),
            };
            let Some(terms) = Terms::from_wire(&terms) else {
                return deny(&r, "malformed invite terms");
            };
            let invite = invite_key(&secret, &terms);
            if !verify_proof(&invite, b"join", &peer, &me, &joiner_proof) {
                return deny(&r, "wrong proof");
            }
            // The joiner holds a genuine invite of this incident: it may
            // learn why it is not admitted.
            let refuse = |r: &Replicator, reason: String| {
                tracing::warn!("join from {peer} refused: {reason}");
                r.node.answer_join(token, JoinResponse::Denied { reason });
            };
            if join::now_ms() >= terms.expires_ms {
                let at = dontpanic_notebook::incident::render::utc(terms.expires_ms as i64);
                return refuse(
                    &r,
                    format!("this invite expired at {at}; ask a member for a new one"),
                );
            }
            let once = match terms.once {
                false => None,
                true if terms.inviter != me => {
                    return refuse(
                        &r,
                        "a single-use invite admits only through the member who made it".into(),
                    )
                }
                true => Some(dontpanic_notebook::SingleUse {
                    nonce: terms.nonce,
                    expires_ms: terms.expires_ms,
                }),
            };
            let name = joiner_name(&name);
            match r
                .notebook
                .admit(incident.clone(), key, name.clone(), once)
                .await
            {
                Ok(history) => {
                    let history = history_to_wire(&history);
                    let sent: usize = history.changes.iter().map(|c| c.len()).sum();
                    count(&r, sent, 0);
                    let proof = ByteBuf::from(proof(&invite, b"admit", &me, &peer).to_vec());
                    r.node
                        .answer_join(token, JoinResponse::Admitted { proof, history });
                    notices.send(
                        format!("* {} joined with an invite", one_line(&name)),
                        json!({"event": "member_joined", "peer": peer.to_string(), "name": name, "incident": incident}),
                    );
                    r.kick(Kick::Edit(incident));
                }
                Err(
                    e @ (NotebookError::Rule(dontpanic_notebook::incident::RuleError::Removed(_))
                    | NotebookError::InviteUsed),
                ) => refuse(&r, e.to_string()),
                Err(e) => deny(&r, &e.to_string()),
            }
        });
    }
}

/// Bytes a message takes on the wire (its CBOR encoding).
fn wire_len(m: &SignedSync) -> usize {
    dontpanic_net::wire::to_cbor(m).len()
}

fn count(r: &Replicator, sent: usize, received: usize) {
    let mut s = r.shared();
    s.traffic.sent += sent as u64;
    s.traffic.received += received as u64;
}

fn synced(r: &Replicator, peer: PeerId) {
    let mut s = r.shared();
    if s.connected.contains(&peer) {
        let st = s.peers.entry(peer).or_default();
        st.last_sync = Some(Instant::now());
        if matches!(st.problem, Some(Problem::SyncFailing(_))) {
            st.problem = None;
        }
    }
}

/// Says a local fault out loud (at most every [`LOCAL_FAULT_QUIET`] per
/// incident): it is ours to fix, never the peer's.
fn local_fault(r: &Replicator, notices: &Notifier, incident: &str, from: &str, error: &str) {
    {
        let mut s = r.shared();
        if s.local_faults
            .get(incident)
            .is_some_and(|t| t.elapsed() < LOCAL_FAULT_QUIET)
        {
            return;
        }
        s.local_faults.insert(incident.to_string(), Instant::now());
    }
    tracing::error!("incident {incident}: cannot store changes from {from}: {error}");
    notices.send(
        format!(
            "! local error: cannot store changes of incident {} from {from}: {error}. This is a problem on this machine, not {from}'s; sync resumes by itself once it is fixed",
            incident.chars().take(5).collect::<String>()
        ),
        json!({"event": "local_error", "incident": incident, "from": from, "error": error}),
    );
}

/// Gives the node the address book's addresses of `members`.
async fn give_remembered(r: &Replicator, members: HashSet<PeerId>) {
    let Ok(book) = r.notebook.address_book().await else {
        return;
    };
    for peer in members {
        let Some(key) = hex_key(&peer) else { continue };
        let addrs: Vec<Multiaddr> = book
            .addresses(&key)
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        if !addrs.is_empty() {
            r.node.add_addresses(peer, addrs, FoundBy::Remembered);
        }
    }
}

/// Marks a peer untrusted: shown in `peers`, announced, disconnected; its
/// further requests are refused.
pub(crate) fn reject(r: &Replicator, notices: &Notifier, peer: PeerId, reason: String) {
    tracing::warn!("rejected {peer}: {reason}");
    {
        let mut s = r.shared();
        if s.blocked.len() >= crate::BLOCKED_KEPT {
            if let Some(oldest) = s
                .blocked
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(p, _)| *p)
            {
                s.blocked.remove(&oldest);
            }
        }
        s.blocked.insert(peer, (Instant::now(), reason.clone()));
        s.peers.entry(peer).or_default().problem = Some(Problem::Rejected(reason.clone()));
    }
    r.notebook.block(peer.to_string(), reason.clone());
    notices.send(
        format!("! rejected {peer}: {}", one_line(&reason)),
        json!({"event": "rejected", "peer": peer.to_string(), "reason": reason}),
    );
    // Give the REJECTED answer (with its reason) time to leave before the
    // connection is closed; the peer's further requests are refused meanwhile.
    let node = r.node.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        node.disconnect(peer);
    });
}

/// " in <incident>" unless it is the one at the prompt.
fn place_of(r: &Replicator, incident: &str) -> String {
    let current = r.notebook.published().current.map(|c| c.id);
    if current.as_deref() == Some(incident) {
        String::new()
    } else {
        format!(" in {}", incident.chars().take(5).collect::<String>())
    }
}

/// Says remote edits the notebook has verified, as it tells them: before
/// its own append, which follows (their sender holds them durably).
fn show(r: &Replicator, notices: &Notifier, event: RemoteEvent) {
    match event {
        RemoteEvent::Shown { incident, edits } => {
            let place = place_of(r, &incident);
            for e in &edits {
                notices.send(
                    format!("[{}{place}] {}", one_line(&e.author), one_line(&e.summary)),
                    json!({"event": "remote_edit", "incident": incident, "author": e.author, "summary": e.summary}),
                );
            }
        }
        RemoteEvent::NotStored {
            incident,
            edits,
            error,
        } => {
            let place = place_of(r, &incident);
            notices.send(
                format!(
                    "! {} edit(s){place} shown above could not be stored here ({}); they come again from their sender",
                    edits.len(),
                    one_line(&error)
                ),
                json!({"event": "not_stored", "incident": incident, "edits": edits.len(), "error": error}),
            );
        }
    }
}

/// Says conflicts that appeared with received changes.
fn announce(r: &Replicator, notices: &Notifier, incident: &str, rcv: &Received) {
    let place = place_of(r, incident);
    for field in &rcv.new_conflicts {
        notices.send(
            format!("! conflict{place} on {}: concurrent edits disagree; see `conflicts`, settle with `resolve`", one_line(field)),
            json!({"event": "conflict", "incident": incident, "field": field}),
        );
    }
}

/// Tells `peer` what we know of where the members of `incident` are, and
/// learns what it knows.
fn exchange_addresses(r: &Replicator, peer: PeerId, incident: String) {
    let r = r.clone();
    let roster: Vec<String> = r
        .notebook
        .published()
        .rosters
        .get(&incident)
        .map(|m| m.iter().map(|m| m.key.clone()).collect())
        .unwrap_or_default();
    tokio::spawn(async move {
        let members = our_addresses(&r, &roster).await;
        match r
            .node
            .sync(peer, SyncRequest::Addresses { incident, members })
            .await
        {
            Ok(SyncResponse::Addresses { members }) => learn_addresses(&r, &roster, members),
            Ok(_) => {}
            Err(e) => tracing::debug!("address exchange with {peer}: {e}"),
        }
    });
}

/// Our address book's entries for `roster`, and our own addresses.
async fn our_addresses(r: &Replicator, roster: &[String]) -> MemberAddresses {
    let mut out = MemberAddresses::new();
    if let Ok(book) = r.notebook.address_book().await {
        for key in roster {
            let addrs = book.addresses(key);
            if !addrs.is_empty() {
                out.insert(key.clone(), addrs.to_vec());
            }
        }
    }
    let mine: Vec<String> = r
        .node
        .addresses()
        .await
        .iter()
        .map(|a| a.to_string())
        .collect();
    out.insert(r.notebook.device().key.to_string(), mine);
    out
}

/// Files addresses a member told us, for members of `roster` only, each
/// address ending in the member's own peer id.
fn learn_addresses(r: &Replicator, roster: &[String], told: MemberAddresses) {
    if told.len() > MAX_ADDRESSES_TOLD {
        tracing::debug!("an address exchange named {} members: ignored", told.len());
        return;
    }
    let me = r.notebook.device().key.to_string();
    for (key, addrs) in told {
        if key == me || !roster.contains(&key) {
            continue;
        }
        let Some(peer) = key_peer(&key) else { continue };
        let valid: Vec<Multiaddr> = addrs
            .iter()
            .take(ADDRESSES_PER_MEMBER)
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .filter(|a| dontpanic_net::node::target_peer(a) == Some(peer))
            .collect();
        if valid.is_empty() {
            continue;
        }
        r.notebook
            .learn_addresses(key, valid.iter().map(|a| a.to_string()).collect());
        r.node.add_addresses(peer, valid, FoundBy::Member);
    }
}

/// One outbound sync dialogue of `incident` with `peer`: send our message,
/// apply the answer, repeat until neither side has anything to say.
async fn dialogue(
    r: &Replicator,
    notices: &Notifier,
    peer: PeerId,
    key: &str,
    incident: &str,
) -> Outcome {
    for _ in 0..MAX_ROUNDS {
        let msg = match r
            .notebook
            .sync_message_for(incident.to_string(), key.to_string())
            .await
        {
            Ok(Some(m)) => m,
            Ok(None) => return Outcome::Converged,
            Err(e) => return Outcome::LocalFault(e.to_string()),
        };
        let message = to_wire(msg);
        let sent = wire_len(&message);
        let request = SyncRequest::Sync {
            incident: incident.to_string(),
            message,
        };
        let answer = match r.node.sync(peer, request).await {
            Ok(SyncResponse::Sync { message }) => message,
            Ok(SyncResponse::Denied { .. }) => return Outcome::Denied,
            Ok(SyncResponse::Retry { reason }) => return Outcome::TheyCannot(reason),
            Ok(SyncResponse::Rejected { reason }) => return Outcome::TheyRefused(reason),
            Ok(SyncResponse::Addresses { .. }) => {
                return Outcome::Failed("addresses given for a sync message".into())
            }
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        synced(r, peer);
        count(r, sent, answer.as_ref().map_or(0, wire_len));
        let Some(answer) = answer else {
            continue;
        };
        let answer = match from_wire(answer) {
            Ok(m) => m,
            Err(e) => {
                reject(r, notices, peer, e.to_string());
                return Outcome::Rejected;
            }
        };
        match r
            .notebook
            .receive_sync(incident.to_string(), key.to_string(), answer, false)
            .await
        {
            Ok(rcv) => {
                if !rcv.edits.is_empty() {
                    announce(r, notices, incident, &rcv);
                    // Other members may not have these yet.
                    r.kick(Kick::Forward(incident.to_string()));
                }
            }
            Err(e) if e.blames_sender() => {
                reject(r, notices, peer, e.to_string());
                return Outcome::Rejected;
            }
            Err(NotebookError::Stopped) => return Outcome::Failed("the notebook stopped".into()),
            Err(e) => return Outcome::LocalFault(e.to_string()),
        }
    }
    Outcome::RoundLimit
}
