//! Keeps every incident a node holds in sync with its members: the glue
//! between the notebook (signed, verified Automerge sync, behind its
//! [`NotebookHandle`]) and the node (libp2p).
//!
//! # Brief overview
//!
//! * [`Replicator::start`] spawns the driver task, which reacts to node
//!   events (peers connecting, sync and join requests, addresses learned),
//!   to kicks from the REPL (a local edit, an incident opened) and to the
//!   notebook's published rosters.
//! * Per peer and incident, at most one outbound sync dialogue runs at a
//!   time; an edit made meanwhile marks the pair dirty and the dialogue goes
//!   again. A dialogue that reaches its round limit ends and says so.
//! * The room holds together by itself: members' addresses are kept in the
//!   notebook's address book, exchanged between members (so a joiner meshes
//!   with everyone, not only its inviter), and a missing member is redialed
//!   with jittered backoff ([`redial`]).
//! * Joining: [`Replicator::join`] proves knowledge of the invite's secret to
//!   a member (an HMAC bound to both peer ids), checks the member's proof in
//!   return, verifies the whole signed history and stores it.
//! * Only roster members are sent anything: a non-member's request is
//!   refused before any content is read from the document. A change that
//!   fails verification gets its sender rejected; a change this node cannot
//!   store (a full disk) is a local fault, said as such, and retried.
//!
//! The driver never waits on the disk: every notebook request runs in a task
//! of its own, so pings, relay renewals and other peers go on meanwhile.
//! Notices for the user come out of a bounded channel as [`Notice`]s.
#![deny(missing_docs)]
// Strings here come from peers, files and the prompt: no byte-index slicing.
#![deny(clippy::string_slice)]

mod driver;
mod join;
pub mod redial;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dontpanic_net::{FoundBy, Invite, Multiaddr, NodeEvent, NodeHandle, PeerId};
use dontpanic_notebook::{NotebookError, NotebookHandle};
use tokio::sync::{mpsc, oneshot};

use join::{ask_to_join, relays_in};

/// How long `join` keeps looking for a member to admit it.
const JOIN_PATIENCE: Duration = Duration::from_secs(15);
/// Notices waiting for the REPL; beyond this they are counted, not kept.
const NOTICE_QUEUE: usize = 1024;

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
    /// `unblock` found no single rejected peer.
    #[error("{0}")]
    Unblock(String),
    /// A bad address.
    #[error("`{0}` is not an address this node can dial ({1}); for example /ip4/192.168.1.7/tcp/4001/p2p/12D3…")]
    Address(String, String),
}

/// Why a peer is not (fully) trusted or reachable right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// It sent something hostile; refused until restart.
    Rejected(String),
    /// Connected, but the last sync with it failed.
    SyncFailing(String),
}

#[derive(Default, Clone)]
struct PeerState {
    last_sync: Option<Instant>,
    problem: Option<Problem>,
}

/// Rejected peers kept; the oldest is forgotten beyond this.
const BLOCKED_KEPT: usize = 1024;

/// State the driver shares with `peers` and the prompt; every lock is taken
/// and dropped inside one synchronous block.
#[derive(Default)]
struct Shared {
    /// Connected peers that are members or were synced with; pruned on
    /// disconnect unless a member.
    peers: HashMap<PeerId, PeerState>,
    blocked: HashMap<PeerId, (Instant, String)>,
    connected: HashSet<PeerId>,
    /// Members being redialed: since when, and the last dial error.
    redialing: HashMap<PeerId, (Instant, Option<String>)>,
    /// When a local fault was last said, per incident.
    local_faults: HashMap<String, Instant>,
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

pub(crate) enum Kick {
    /// A local edit: every connected member now.
    Edit(String),
    /// Changes arrived from a member: the others, a little later and
    /// coalesced (most have them from their author already).
    Forward(String),
    Opened,
    Flush(oneshot::Sender<()>),
}

/// A bounded notice queue that counts what it had to drop and says so.
#[derive(Clone)]
pub(crate) struct Notifier {
    tx: std::sync::mpsc::SyncSender<Notice>,
    dropped: Arc<std::sync::atomic::AtomicUsize>,
}

impl Notifier {
    pub(crate) fn send(&self, text: String, json: serde_json::Value) {
        use std::sync::atomic::Ordering;
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let n = Notice {
                text: format!("! {dropped} notice(s) were dropped: the screen could not keep up"),
                json: serde_json::json!({"event": "notices_dropped", "count": dropped}),
            };
            if self.tx.try_send(n).is_err() {
                self.dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        }
        if self.tx.try_send(Notice { text, json }).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The running sync driver; cheap to clone.
#[derive(Clone)]
pub struct Replicator {
    notebook: NotebookHandle,
    node: NodeHandle,
    kicks: mpsc::Sender<Kick>,
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
    /// Address in use or last known.
    pub address: String,
    /// How found.
    pub found_by: &'static str,
    /// connected / redialing / discovered / rejected / not syncing.
    pub state: &'static str,
    /// direct / relayed (when connected).
    pub route: &'static str,
    /// Seconds since the last sync.
    pub last_sync_secs: Option<u64>,
    /// Ping RTT in ms.
    pub rtt_ms: Option<f64>,
    /// What is wrong, when something is.
    pub problem: Option<String>,
}

pub(crate) fn hex_key(peer: &PeerId) -> Option<String> {
    dontpanic_net::node::peer_key(peer).map(|k| k.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn key_peer(hex: &str) -> Option<PeerId> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    dontpanic_net::node::key_peer(&bytes.try_into().ok()?)
}

impl Replicator {
    /// Starts the driver on `runtime`, consuming the node's events; returns
    /// it and the notices for the user.
    pub fn start(
        notebook: NotebookHandle,
        node: NodeHandle,
        events: mpsc::Receiver<NodeEvent>,
        runtime: tokio::runtime::Handle,
    ) -> (Replicator, std::sync::mpsc::Receiver<Notice>) {
        let (kicks, kick_rx) = mpsc::channel(1024);
        let (tx, notices) = std::sync::mpsc::sync_channel(NOTICE_QUEUE);
        // Peers rejected before stay rejected, from the first request on.
        let mut shared = Shared::default();
        for (peer, (ms, why)) in notebook.blocking(notebook.blocked()).unwrap_or_default() {
            if let Ok(peer) = peer.parse::<PeerId>() {
                let age = Duration::from_millis((dontpanic_notebook::now_ms() - ms).max(0) as u64);
                let since = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                shared.blocked.insert(peer, (since, why));
            }
        }
        let r = Replicator {
            notebook,
            node,
            kicks,
            shared: Arc::new(Mutex::new(shared)),
            runtime: runtime.clone(),
        };
        let notifier = Notifier {
            tx,
            dropped: Arc::default(),
        };
        runtime.spawn(driver::run(r.clone(), notifier, events, kick_rx));
        (r, notices)
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    fn kick(&self, k: Kick) {
        // A full queue loses nothing: the periodic resync covers it.
        let _ = self.kicks.try_send(k);
    }

    /// A local edit was made in `incident`: tell its members.
    pub fn local_edit(&self, incident: &str) {
        self.kick(Kick::Edit(incident.to_string()));
    }

    /// Another incident is at the prompt (or new): sync it now.
    pub fn incident_opened(&self) {
        self.kick(Kick::Opened);
    }

    /// Waits (up to `limit`) until outstanding edits have been offered to
    /// every connected member, so a script that ends does not strand them.
    pub fn flush(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.kicks.try_send(Kick::Flush(tx)).is_ok() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(limit, rx).await });
        }
    }

    /// Sync bytes sent and received so far.
    pub fn traffic(&self) -> Traffic {
        self.shared().traffic
    }

    /// How many members of `incident` (us excluded) are connected and
    /// syncing now. Never waits.
    pub fn members_online(&self, incident: &str) -> usize {
        let published = self.notebook.published();
        let Some(roster) = published.rosters.get(incident) else {
            return 0;
        };
        let s = self.shared();
        s.connected
            .iter()
            .filter(|p| {
                !s.blocked.contains_key(p)
                    && !matches!(
                        s.peers.get(p).and_then(|st| st.problem.as_ref()),
                        Some(Problem::SyncFailing(_))
                    )
                    && hex_key(p).is_some_and(|k| roster.iter().any(|m| m.key == k))
            })
            .count()
    }

    /// `connect <multiaddr>`: dials the peer named by the address's last
    /// `/p2p` component (through a relay for a circuit address).
    pub fn connect(&self, addr: &str) -> Result<PeerId, SyncError> {
        let ma = addr
            .parse::<Multiaddr>()
            .map_err(|e| SyncError::Address(addr.into(), address_hint(addr, &e.to_string())))?;
        let node = self.node.clone();
        let peer = self.runtime.block_on(async move {
            tokio::time::timeout(Duration::from_secs(15), node.dial(ma, FoundBy::Manual))
                .await
                .unwrap_or_else(|_| {
                    Err(dontpanic_net::NetError::Dial(format!(
                        "{addr}: no answer within 15 s: is the peer running, and reachable from here?"
                    )))
                })
        })?;
        Ok(peer)
    }

    /// `unblock <peer>`: trusts again a peer rejected for hostile input
    /// (by a unique prefix of its peer id).
    pub fn unblock(&self, typed: &str) -> Result<PeerId, SyncError> {
        let typed = typed.trim();
        let matches: Vec<PeerId> = self
            .shared()
            .blocked
            .keys()
            .filter(|p| !typed.is_empty() && p.to_string().starts_with(typed))
            .copied()
            .collect();
        let peer = match matches.as_slice() {
            [one] => *one,
            [] => {
                return Err(SyncError::Unblock(format!(
                    "no rejected peer matches `{typed}` (see `peers`)"
                )))
            }
            many => {
                return Err(SyncError::Unblock(format!(
                    "`{typed}` matches {} rejected peers; type more of the peer id",
                    many.len()
                )))
            }
        };
        self.notebook
            .blocking(self.notebook.unblock(peer.to_string()))?;
        let mut s = self.shared();
        s.blocked.remove(&peer);
        if let Some(st) = s.peers.get_mut(&peer) {
            st.problem = None;
        }
        Ok(peer)
    }

    /// `peers`: every connected or discovered peer, and every member of a
    /// held incident that is missing, with what is wrong.
    pub fn peers(&self) -> Vec<PeerRow> {
        let infos = self.runtime.block_on(self.node.peers());
        let published = self.notebook.published();
        let me = self.node.peer_id();
        let s = self.shared();
        let mut rows: Vec<PeerRow> = infos
            .into_iter()
            .filter(|p| p.peer != me)
            .map(|p| {
                let st = s.peers.get(&p.peer).cloned().unwrap_or_default();
                let name = hex_key(&p.peer)
                    .and_then(|k| published.name_of(&k))
                    .unwrap_or_default();
                let (state, problem) = if let Some((_, why)) = s.blocked.get(&p.peer) {
                    ("rejected", Some(format!("rejected: {why}")))
                } else if !p.connected {
                    ("discovered", None)
                } else if let Some(Problem::SyncFailing(why)) = &st.problem {
                    ("not syncing", Some(why.clone()))
                } else {
                    ("connected", None)
                };
                PeerRow {
                    name,
                    peer: p.peer,
                    address: p.address.map(|a| a.to_string()).unwrap_or_default(),
                    found_by: p.found_by.as_str(),
                    state,
                    route: if !p.connected {
                        "-"
                    } else if p.relayed {
                        "relayed"
                    } else {
                        "direct"
                    },
                    last_sync_secs: st.last_sync.map(|t| t.elapsed().as_secs()),
                    rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    problem,
                }
            })
            .collect();
        for (peer, (since, error)) in &s.redialing {
            if rows.iter().any(|r| r.peer == *peer) {
                continue;
            }
            let name = hex_key(peer)
                .and_then(|k| published.name_of(&k))
                .unwrap_or_default();
            let (state, problem) = match s.blocked.get(peer) {
                Some((_, why)) => ("rejected", format!("rejected: {why}")),
                None => (
                    "redialing",
                    format!(
                        "unreachable for {} s{}",
                        since.elapsed().as_secs(),
                        error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                    ),
                ),
            };
            rows.push(PeerRow {
                name,
                peer: *peer,
                address: String::new(),
                found_by: "member",
                state,
                route: "-",
                last_sync_secs: s
                    .peers
                    .get(peer)
                    .and_then(|st| st.last_sync)
                    .map(|t| t.elapsed().as_secs()),
                rtt_ms: None,
                problem: Some(problem),
            });
        }
        // Rejected peers stay listed after they are disconnected, so the
        // reason can still be read.
        for (peer, (_, why)) in &s.blocked {
            if rows.iter().any(|r| r.peer == *peer) {
                continue;
            }
            rows.push(PeerRow {
                name: hex_key(peer)
                    .and_then(|k| published.name_of(&k))
                    .unwrap_or_default(),
                peer: *peer,
                address: String::new(),
                found_by: "-",
                state: "rejected",
                route: "-",
                last_sync_secs: None,
                rtt_ms: None,
                problem: Some(format!("rejected: {why}")),
            });
        }
        rows.sort_by(|a, b| (a.name.is_empty(), &a.name).cmp(&(b.name.is_empty(), &b.name)));
        rows
    }

    /// `invite`: a capability to join the incident at the prompt, with our
    /// addresses, valid for `valid_for` (by the admitting member's clock),
    /// admitting one joiner only if `once`.
    pub fn invite(&self, valid_for: Duration, once: bool) -> Result<Invite, SyncError> {
        let incident = self
            .notebook
            .published()
            .current
            .map(|c| c.id)
            .ok_or(NotebookError::NoIncident)?;
        let nb = self.notebook.clone();
        let node = self.node.clone();
        let inc = incident.clone();
        let (secret, addresses) = self.runtime.block_on(async move {
            let secret = nb.join_secret(inc).await;
            (secret, node.addresses().await)
        });
        let secret = secret?;
        if secret.len() != 32 {
            return Err(SyncError::Join(
                "this incident's join secret is malformed".into(),
            ));
        }
        let terms = join::Terms {
            expires_ms: join::now_ms().saturating_add(valid_for.as_millis() as u64),
            once,
            nonce: rand::random(),
            inviter: self.node.peer_id(),
        };
        Ok(Invite {
            incident,
            secret: join::invite_key(&secret, &terms),
            expires_ms: terms.expires_ms,
            once,
            nonce: terms.nonce,
            inviter: self.node.peer_id(),
            addresses,
        })
    }

    /// `join <invite>`: fetch the incident from the inviter (or any connected
    /// member), store it verified, and open it.
    pub fn join(&self, invite: &str) -> Result<String, SyncError> {
        let invite: Invite = invite.parse()?;
        let name = self.notebook.device().name.clone();
        let me = self.node.peer_id();
        let node = self.node.clone();
        let inv = invite.clone();
        let history = self.runtime.block_on(async move {
            node.add_addresses(inv.inviter, inv.addresses.clone(), FoundBy::Invite);
            // An invite without a reachable address relies on discovery (mDNS
            // or peers already connected): keep trying while peers turn up.
            let deadline = tokio::time::Instant::now() + JOIN_PATIENCE;
            let mut errors: Vec<String> = Vec::new();
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
                let relay_peers: Vec<PeerId> = relays
                    .iter()
                    .filter_map(dontpanic_net::node::relay_peer)
                    .collect();
                let mut candidates = vec![inv.inviter];
                for p in node.peers().await {
                    if p.connected && p.peer != inv.inviter && !relay_peers.contains(&p.peer) {
                        candidates.push(p.peer);
                    }
                }
                for peer in candidates {
                    match ask_to_join(&node, &inv, &me, &name, peer).await {
                        Ok(history) => return Ok(history),
                        Err(e) if !errors.contains(&e) => errors.push(e),
                        Err(_) => {}
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(SyncError::Join(format!(
                        "no member of incident {} could be reached or admitted us within {} s: {}",
                        inv.incident,
                        JOIN_PATIENCE.as_secs(),
                        errors.join("; ")
                    )));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })?;
        let history = wire::history_from_wire(history)?;
        let id = self.notebook.blocking(self.notebook.adopt(history))?;
        if id != invite.incident {
            return Err(SyncError::Join(format!(
                "the member sent incident {id}, not {}",
                invite.incident
            )));
        }
        // Where the inviter was goes into the address book, so a restart
        // finds it again.
        if let Some(key) = hex_key(&invite.inviter) {
            self.notebook.learn_addresses(
                key,
                invite.addresses.iter().map(|a| a.to_string()).collect(),
            );
        }
        self.adopt_relays(&invite.addresses)?;
        self.incident_opened();
        Ok(id)
    }

    /// Relays the inviter is reachable through become ours too, so the
    /// members can find each other again after restarts.
    fn adopt_relays(&self, addresses: &[Multiaddr]) -> Result<(), SyncError> {
        let relays = relays_in(addresses);
        if relays.is_empty() {
            return Ok(());
        }
        let nb = &self.notebook;
        let mut cfg = nb.blocking(nb.config())?;
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
        nb.blocking(nb.save_config(cfg))?;
        Ok(())
    }
}

/// Why `typed` is not a multiaddr, in words: `host:port` gets the multiaddr
/// to type instead; otherwise the parser's own reason.
fn address_hint(typed: &str, reason: &str) -> String {
    if let Some((host, port)) = typed.rsplit_once(':') {
        if port.parse::<u16>().is_ok() && host.parse::<std::net::Ipv4Addr>().is_ok() {
            return format!("it looks like host:port; type /ip4/{host}/tcp/{port}");
        }
    }
    format!("{reason}; an address starts with /ip4/, /ip6/ or /dns/ and names a transport")
}
