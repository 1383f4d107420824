//! The swarm task: the only owner of the libp2p `Swarm`. Others talk to it
//! through a [`NodeHandle`] (commands in) and a stream of [`NodeEvent`]s
//! (events out). Both channels are bounded and the task never waits on
//! either: a slow reader costs refused requests, not a stalled swarm.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    dcutr, identify, identity, mdns, noise, ping, relay, tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

use crate::budget::InboundBudget;
use crate::exchange::{Exchanges, Up};
use crate::wire::{
    CborCodec, Envelope, Inbound, JoinRequest, JoinResponse, SyncRequest, SyncResponse,
    JOIN_PROTOCOL, MAX_JOIN_ANSWER, MAX_JOIN_REQUEST, MAX_SYNC_MESSAGE, SYNC_PROTOCOL,
};
use crate::NetError;

/// What all inbound requests being read may hold together.
pub const INBOUND_BUDGET: usize = 256 << 20;
/// Connections a node keeps open, in and out, and per peer; more are refused.
pub const MAX_CONNECTIONS: u32 = 256;
/// Connections one peer may hold.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Inbound connections still in their handshake.
pub const MAX_PENDING_INBOUND: u32 = 64;
/// How long a request may take before it fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent streams per connection and protocol: one hostile peer cannot
/// open more.
const MAX_STREAMS: usize = 16;
/// Inbound requests one peer may make per second before being refused.
const MAX_REQUESTS_PER_SEC: u32 = 1000;
/// How often each connection is pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// A connection whose pings go unanswered this long is declared dead, so a
/// dead link is noticed within `PING_SILENCE` plus one watchdog tick.
pub const PING_SILENCE: Duration = Duration::from_secs(5);
/// How long an outbound connection (TCP connect, noise, yamux; or a relay
/// circuit) may take: a dial into a black hole fails in this time.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two dials of the same peer by id; the caller runs
/// its own back-off, this only absorbs bursts.
const REDIAL_AFTER: Duration = Duration::from_millis(500);
/// Dials by id that may be pending for one peer at once.
const MAX_PENDING_DIALS: usize = 2;
/// Commands that may wait for the swarm task.
const COMMAND_QUEUE: usize = 1024;
/// Events that may wait in the channel for the layer above.
const EVENT_QUEUE: usize = 1024;
/// Events held inside the task once the channel is full; past it inbound
/// requests are refused.
const OUTBOX_SOFT_CAP: usize = 1024;
/// Past this even connection events are dropped (with a warning).
const OUTBOX_HARD_CAP: usize = 8192;
/// Peers whose addresses are remembered.
const KNOWN_PEERS: usize = 1024;
/// Addresses remembered per peer.
const KNOWN_ADDRS: usize = 32;
/// A closing connection not reported closed after this is forgotten.
const CLOSE_FORGET: Duration = Duration::from_secs(60);

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The device key's 32-byte seed; it is the node's libp2p identity.
    pub seed: [u8; 32],
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Relays to keep a reservation on.
    pub relays: Vec<Multiaddr>,
    /// Agent string shown to peers by identify.
    pub agent: String,
}

impl NodeConfig {
    /// Listen on every interface, TCP and QUIC, on `port` (0: the OS picks).
    pub fn listen_everywhere(port: u16) -> Vec<Multiaddr> {
        vec![
            Multiaddr::empty()
                .with(Protocol::Ip4(std::net::Ipv4Addr::UNSPECIFIED))
                .with(Protocol::Tcp(port)),
            Multiaddr::empty()
                .with(Protocol::Ip4(std::net::Ipv4Addr::UNSPECIFIED))
                .with(Protocol::Udp(port))
                .with(Protocol::QuicV1),
        ]
    }
}

/// Which protocol a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `/dontpanic/sync/2`
    Sync,
    /// `/dontpanic/join/2`
    Join,
}

/// How a peer or an address came to be known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoundBy {
    /// LAN discovery.
    Mdns,
    /// `connect <addr>`.
    Manual,
    /// From an invite.
    Invite,
    /// It dialed us.
    Inbound,
    /// Through a relay.
    Relay,
    /// The peer announced it (identify).
    Identify,
    /// From this node's address book (an earlier run).
    Remembered,
    /// Another member told us.
    Member,
}

impl FoundBy {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FoundBy::Mdns => "mdns",
            FoundBy::Manual => "manual",
            FoundBy::Invite => "invite",
            FoundBy::Inbound => "inbound",
            FoundBy::Relay => "relay",
            FoundBy::Identify => "identify",
            FoundBy::Remembered => "remembered",
            FoundBy::Member => "member",
        }
    }
}

/// What the node knows of one peer.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer.
    pub peer: PeerId,
    /// The address in use (or last known).
    pub address: Option<Multiaddr>,
    /// How it was found.
    pub found_by: FoundBy,
    /// Whether a connection is open.
    pub connected: bool,
    /// Whether the open connection goes through a relay.
    pub relayed: bool,
    /// Last ping round-trip time.
    pub rtt: Option<Duration>,
}

/// Something the node saw, for the layer above.
#[derive(Debug)]
pub enum NodeEvent {
    /// A first live connection to `peer` opened.
    Connected {
        /// The peer.
        peer: PeerId,
        /// The peer's address on that connection.
        address: Multiaddr,
        /// Whether the connection goes through a relay.
        relayed: bool,
    },
    /// The last live connection to `peer` closed or was declared dead.
    Disconnected {
        /// The peer.
        peer: PeerId,
        /// Why, for people ("no answer to ping for 5 s", ...).
        reason: String,
    },
    /// The node learned addresses of `peer`; each ends in `/p2p/<peer>`.
    /// Sent only when at least one of them is new to the node.
    Addresses {
        /// The peer.
        peer: PeerId,
        /// The addresses the source gave, new and already known.
        addresses: Vec<Multiaddr>,
        /// Where they came from; for a dial, how its address was found.
        source: FoundBy,
    },
    /// A dial by id ([`NodeHandle::dial_peer`]) failed on every address.
    DialFailed {
        /// The peer.
        peer: PeerId,
        /// What went wrong, per address where the transport said.
        error: String,
    },
    /// A member or stranger sent a sync request; answer it with
    /// [`NodeHandle::answer_sync`].
    Sync {
        /// Who sent it (authenticated by noise).
        peer: PeerId,
        /// The request.
        request: SyncRequest,
        /// Token for the answer.
        token: u64,
    },
    /// Someone asks to join; answer with [`NodeHandle::answer_join`].
    Join {
        /// Who sent it (authenticated by noise).
        peer: PeerId,
        /// The request.
        request: JoinRequest,
        /// Token for the answer.
        token: u64,
    },
    /// A peer sent something that could not be read (oversize, garbage),
    /// or sent requests too fast.
    BadInput {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        reason: String,
    },
    /// Now listening on an address.
    Listening {
        /// The address.
        address: Multiaddr,
    },
}

enum Command {
    Dial(
        Multiaddr,
        FoundBy,
        oneshot::Sender<Result<PeerId, NetError>>,
    ),
    Sync(
        PeerId,
        SyncRequest,
        oneshot::Sender<Result<SyncResponse, NetError>>,
    ),
    Join(
        PeerId,
        JoinRequest,
        oneshot::Sender<Result<JoinResponse, NetError>>,
    ),
    AnswerSync(u64, SyncResponse),
    AnswerJoin(u64, JoinResponse),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Addresses(oneshot::Sender<Vec<Multiaddr>>),
    AddAddresses(PeerId, Vec<Multiaddr>, FoundBy),
    DialPeer(PeerId),
    UseRelay(Multiaddr),
    Disconnect(PeerId),
    Shutdown(oneshot::Sender<()>),
}

/// A handle on the running node; cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
}

impl NodeHandle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn send(&self, c: Command) -> Result<(), NetError> {
        self.tx.send(c).await.map_err(|_| NetError::Stopped)
    }

    /// Queues a command nobody waits on; a full queue drops it, said out
    /// loud, rather than block a caller that may be the event reader.
    fn post(&self, c: Command, what: std::fmt::Arguments<'_>) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(c) {
            tracing::warn!("network node busy: dropped {what}");
        }
    }

    /// Dials an address; resolves once connected (or failed). The peer is
    /// the last `/p2p` of the address, so `/p2p/RELAY/p2p-circuit/p2p/PEER`
    /// reaches PEER through RELAY.
    pub async fn dial(&self, addr: Multiaddr, how: FoundBy) -> Result<PeerId, NetError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Dial(addr, how, tx)).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Sends a sync request and waits for the answer.
    pub async fn sync(&self, peer: PeerId, request: SyncRequest) -> Result<SyncResponse, NetError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Sync(peer, request, tx)).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Asks `peer` to join, and waits for the answer.
    pub async fn join(&self, peer: PeerId, request: JoinRequest) -> Result<JoinResponse, NetError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Join(peer, request, tx)).await?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Answers a request received as [`NodeEvent::Sync`].
    pub fn answer_sync(&self, token: u64, answer: SyncResponse) {
        self.post(
            Command::AnswerSync(token, answer),
            format_args!("the answer to sync request {token}"),
        );
    }

    /// Answers a request received as [`NodeEvent::Join`].
    pub fn answer_join(&self, token: u64, answer: JoinResponse) {
        self.post(
            Command::AnswerJoin(token, answer),
            format_args!("the answer to join request {token}"),
        );
    }

    /// What is known of each connected or mDNS-discovered peer.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Peers(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Addresses others can dial, each ending in `/p2p/<our id>`.
    pub async fn addresses(&self) -> Vec<Multiaddr> {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Addresses(tx)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Tells the node where a peer may be reached (from an address book,
    /// an invite, ...). No [`NodeEvent::Addresses`] echoes them back.
    pub fn add_addresses(&self, peer: PeerId, addrs: Vec<Multiaddr>, how: FoundBy) {
        self.post(
            Command::AddAddresses(peer, addrs, how),
            format_args!("addresses of {peer}"),
        );
    }

    /// Tells the node one address where a peer may be reached.
    pub fn add_address(&self, peer: PeerId, addr: Multiaddr, how: FoundBy) {
        self.add_addresses(peer, vec![addr], how);
    }

    /// Dials a peer by id on every remembered address unless it is
    /// connected, was dialed in the last 500 ms or has two dials pending;
    /// failure comes back as [`NodeEvent::DialFailed`].
    pub fn dial_peer(&self, peer: PeerId) {
        self.post(Command::DialPeer(peer), format_args!("a dial of {peer}"));
    }

    /// Keeps a reservation on one more relay (from an invite, say).
    pub fn use_relay(&self, relay: Multiaddr) {
        self.post(
            Command::UseRelay(relay.clone()),
            format_args!("relay {relay}"),
        );
    }

    /// Closes every connection to a peer that is not trusted.
    pub fn disconnect(&self, peer: PeerId) {
        self.post(
            Command::Disconnect(peer),
            format_args!("a disconnect of {peer}"),
        );
    }

    /// Stops the swarm task.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay_client: relay::client::Behaviour,
    dcutr: dcutr::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    sync: request_response::Behaviour<CborCodec<SyncRequest, SyncResponse>>,
    join: request_response::Behaviour<CborCodec<JoinRequest, JoinResponse>>,
    limits: libp2p::connection_limits::Behaviour,
}

/// Starts the node on the current tokio runtime.
pub async fn start(
    config: NodeConfig,
) -> Result<(NodeHandle, mpsc::Receiver<NodeEvent>), NetError> {
    let mut seed = config.seed;
    let keypair = identity::Keypair::ed25519_from_bytes(&mut seed)
        .map_err(|e| NetError::Setup(e.to_string()))?;
    let peer_id = keypair.public().to_peer_id();
    let mdns_on = config.mdns;
    let budget = InboundBudget::new(INBOUND_BUDGET);
    let agent = config.agent.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_behaviour(|key, relay_client| {
            let config = || {
                request_response::Config::default()
                    .with_request_timeout(REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(MAX_STREAMS)
            };
            let mdns = if mdns_on {
                let cfg = mdns::Config {
                    query_interval: Duration::from_secs(20),
                    ..Default::default()
                };
                Some(mdns::tokio::Behaviour::new(cfg, key.public().to_peer_id())?)
            } else {
                None
            };
            Ok(Behaviour {
                relay_client,
                dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
                identify: identify::Behaviour::new(
                    identify::Config::new("/dontpanic/id/1".into(), key.public())
                        .with_agent_version(agent),
                ),
                // A failed ping leaves the connection open (and the first
                // failure is not even reported): the task's watchdog closes
                // connections whose pings stop succeeding.
                ping: ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(PING_INTERVAL)
                        .with_timeout(PING_SILENCE),
                ),
                mdns: mdns.into(),
                sync: request_response::Behaviour::with_codec(
                    CborCodec::new(budget.clone()),
                    [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                    config(),
                ),
                join: request_response::Behaviour::with_codec(
                    CborCodec::new(budget.clone()),
                    [(JOIN_PROTOCOL, ProtocolSupport::Full)],
                    config(),
                ),
                limits: libp2p::connection_limits::Behaviour::new(
                    libp2p::connection_limits::ConnectionLimits::default()
                        .with_max_established(Some(MAX_CONNECTIONS))
                        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
                        .with_max_pending_incoming(Some(MAX_PENDING_INBOUND)),
                ),
            })
        })
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        // Bounds the whole outbound set-up, TCP connect included: without it
        // a SYN into a downed link waits for the kernel's minutes.
        .with_connection_timeout(DIAL_TIMEOUT)
        .build();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Setup(format!("cannot listen on {addr}: {e}")))?;
    }
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let mut task = SwarmTask {
        swarm,
        events: events_tx,
        outbox: VecDeque::new(),
        syncs: Exchanges::new("sync", MAX_SYNC_MESSAGE, MAX_SYNC_MESSAGE, budget.clone()),
        joins: Exchanges::new("join", MAX_JOIN_REQUEST, MAX_JOIN_ANSWER, budget),
        dials: HashMap::new(),
        dial_how: HashMap::new(),
        next_token: 0,
        peers: HashMap::new(),
        rate: HashMap::new(),
        relays: Vec::new(),
        conns: HashMap::new(),
        closing: HashMap::new(),
        dialing: HashMap::new(),
        known: AddressBook::new(KNOWN_PEERS, KNOWN_ADDRS),
    };
    for r in config.relays {
        task.add_relay(r);
    }
    tokio::spawn(task.run(rx));
    Ok((NodeHandle { tx, peer_id }, events_rx))
}

/// One live connection as the task sees it.
struct Conn {
    /// The peer's address on it.
    addr: Multiaddr,
    relayed: bool,
    /// When it last proved alive (opened, or a ping answered).
    alive: Instant,
    /// False once the peer says it does not speak ping: silence proves
    /// nothing then.
    pinged: bool,
}

/// Dials by id in flight for one peer.
struct Dialing {
    started: Instant,
    pending: Vec<ConnectionId>,
}

struct SwarmTask {
    swarm: Swarm<Behaviour>,
    events: mpsc::Sender<NodeEvent>,
    /// Events waiting for room in `events`.
    outbox: VecDeque<NodeEvent>,
    syncs: Exchanges<SyncRequest, SyncResponse>,
    joins: Exchanges<JoinRequest, JoinResponse>,
    dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, NetError>>>,
    dial_how: HashMap<ConnectionId, FoundBy>,
    next_token: u64,
    /// Connected or mDNS-discovered peers.
    peers: HashMap<PeerId, PeerInfo>,
    rate: HashMap<PeerId, (Instant, u32)>,
    /// Each relay and the circuit listener on it, while one is up.
    relays: Vec<(Multiaddr, Option<ListenerId>)>,
    /// Live connections per peer. A connection declared dead leaves this
    /// map at once, before libp2p reports it closed.
    conns: HashMap<PeerId, HashMap<ConnectionId, Conn>>,
    /// Connections declared dead and asked to close, with when.
    closing: HashMap<ConnectionId, Instant>,
    dialing: HashMap<PeerId, Dialing>,
    known: AddressBook,
}

/// How often lost relay reservations are retried.
const RELAY_RETRY: Duration = Duration::from_secs(3);
/// How often connections are checked for silence.
const WATCHDOG_TICK: Duration = Duration::from_millis(500);

/// An event of one request-response behaviour.
type RrEvent<Req, Resp> = request_response::Event<Inbound<Envelope<Req>>, Inbound<Envelope<Resp>>>;

/// Feeds one request-response event to its protocol's exchanges; `token`
/// is the inbound request's, or why it is refused.
fn drive<Req, Resp>(
    x: &mut Exchanges<Req, Resp>,
    b: &mut crate::exchange::Behaviour<Req, Resp>,
    event: RrEvent<Req, Resp>,
    token: Result<u64, Option<String>>,
) -> Option<Up<Req>>
where
    Req: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    Resp: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    use request_response::{Event, Message};
    match event {
        Event::Message {
            peer,
            message: Message::Request {
                request, channel, ..
            },
            ..
        } => match token {
            Ok(token) => x.request_in(b, peer, request, channel, token),
            Err(Some(reason)) => Some(Up::BadInput { peer, reason }),
            Err(None) => None,
        },
        Event::Message {
            message:
                Message::Response {
                    request_id,
                    response,
                },
            ..
        } => {
            x.response(b, request_id, response);
            None
        }
        Event::OutboundFailure {
            request_id, error, ..
        } => {
            x.failed(request_id, error.to_string());
            None
        }
        Event::InboundFailure { peer, error, .. } => {
            tracing::debug!("an inbound request from {peer} failed: {error}");
            None
        }
        Event::ResponseSent { .. } => None,
    }
}

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

impl SwarmTask {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut relay_tick = tokio::time::interval(RELAY_RETRY);
        let mut watchdog = tokio::time::interval(WATCHDOG_TICK);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A permit borrows its sender for as long as select!'s output lives,
        // which spans every branch: borrow a clone, not `self`.
        let events = self.events.clone();
        loop {
            let deliver = !self.outbox.is_empty() && !self.events.is_closed();
            tokio::select! {
                permit = events.reserve(), if deliver => {
                    if let (Ok(permit), Some(e)) = (permit, self.outbox.pop_front()) {
                        permit.send(e);
                    }
                }
                _ = relay_tick.tick() => self.keep_reservations(),
                _ = watchdog.tick() => self.check_liveness(),
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown(done)) => {
                        let _ = done.send(());
                        break;
                    }
                    Some(c) => self.command(c),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.event(event),
            }
        }
    }

    /// Queues an event for the layer above. Requests and bad-input reports
    /// stop at the soft cap (the caller refuses the request instead); the
    /// hard cap only guards memory against a reader that stopped reading.
    fn emit(&mut self, e: NodeEvent) {
        if self.events.is_closed() {
            return;
        }
        let cap = match e {
            NodeEvent::Sync { .. } | NodeEvent::Join { .. } | NodeEvent::BadInput { .. } => {
                OUTBOX_SOFT_CAP
            }
            _ => OUTBOX_HARD_CAP,
        };
        if self.outbox.len() >= cap {
            tracing::warn!(
                "event queue full ({} waiting): dropped {e:?}",
                self.outbox.len()
            );
            return;
        }
        self.outbox.push_back(e);
    }

    fn live(&self, peer: &PeerId) -> bool {
        self.conns.get(peer).is_some_and(|c| !c.is_empty())
    }

    /// Declares dead every connection whose pings went unanswered for
    /// [`PING_SILENCE`].
    fn check_liveness(&mut self) {
        let now = Instant::now();
        self.syncs.expire(now);
        self.joins.expire(now);
        let now = Instant::now();
        let dead: Vec<(PeerId, ConnectionId)> = self
            .conns
            .iter()
            .flat_map(|(peer, c)| {
                c.iter()
                    .filter(|(_, c)| c.pinged && now.duration_since(c.alive) > PING_SILENCE)
                    .map(|(id, _)| (*peer, *id))
            })
            .collect();
        for (peer, id) in dead {
            let reason = format!("no answer to ping for {} s", PING_SILENCE.as_secs());
            self.declare_dead(peer, id, reason);
        }
        self.closing.retain(|id, since| {
            let keep = now.duration_since(*since) < CLOSE_FORGET;
            if !keep {
                tracing::warn!(
                    "connection {id} declared dead has not closed after {CLOSE_FORGET:?}"
                );
            }
            keep
        });
    }

    /// Closes a connection that stopped answering and, if it was the peer's
    /// last, says so at once: closing a dead socket need not finish soon.
    fn declare_dead(&mut self, peer: PeerId, id: ConnectionId, reason: String) {
        let Some(c) = self.conns.get_mut(&peer) else {
            return;
        };
        if c.remove(&id).is_none() {
            return;
        }
        tracing::debug!("connection {id} to {peer} is dead: {reason}");
        self.closing.insert(id, Instant::now());
        self.swarm.close_connection(id);
        if self.live(&peer) {
            self.refresh_route(peer);
        } else {
            self.peer_gone(peer, reason);
        }
    }

    /// The last live connection to `peer` is gone: forget what only a
    /// connected peer needs and tell the layer above.
    fn peer_gone(&mut self, peer: PeerId, reason: String) {
        self.conns.remove(&peer);
        self.rate.remove(&peer);
        if self
            .dialing
            .get(&peer)
            .is_some_and(|d| d.pending.is_empty())
        {
            self.dialing.remove(&peer);
        }
        if self.mdns_sees(&peer) {
            if let Some(info) = self.peers.get_mut(&peer) {
                info.connected = false;
                info.rtt = None;
            }
        } else {
            self.peers.remove(&peer);
        }
        self.emit(NodeEvent::Disconnected { peer, reason });
    }

    fn mdns_sees(&self, peer: &PeerId) -> bool {
        self.swarm
            .behaviour()
            .mdns
            .as_ref()
            .is_some_and(|m| m.discovered_nodes().any(|p| p == peer))
    }

    fn peer(&mut self, peer: PeerId, how: FoundBy) -> &mut PeerInfo {
        self.peers.entry(peer).or_insert(PeerInfo {
            peer,
            address: None,
            found_by: how,
            connected: false,
            relayed: false,
            rtt: None,
        })
    }

    /// Dial options for `peer`. A connection declared dead may still be
    /// closing, and it must not stop a fresh dial; a dial hung on a dead
    /// route must not either, so pending dials never block a new one.
    fn dial_opts(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> DialOpts {
        let condition = if self.swarm.is_connected(&peer) {
            PeerCondition::Always
        } else {
            PeerCondition::Disconnected
        };
        DialOpts::peer_id(peer)
            .condition(condition)
            .addresses(addrs)
            .build()
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Dial(addr, how, reply) => {
                let peer = target_peer(&addr);
                let found = if is_relayed(&addr) {
                    FoundBy::Relay
                } else {
                    how
                };
                let opts = match peer {
                    Some(peer) if self.live(&peer) => {
                        let _ = reply.send(Ok(peer));
                        return;
                    }
                    // Remembered once it works: see `connected`.
                    Some(peer) => self.dial_opts(peer, vec![addr.clone()]),
                    None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
                };
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, reply);
                        self.dial_how.insert(id, found);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial(dial_problem(&e))));
                    }
                }
            }
            Command::Sync(peer, request, reply) => {
                let addrs = self.offered(peer);
                let b = &mut self.swarm.behaviour_mut().sync;
                self.syncs.request(b, peer, request, addrs, reply);
            }
            Command::Join(peer, request, reply) => {
                let addrs = self.offered(peer);
                let b = &mut self.swarm.behaviour_mut().join;
                self.joins.request(b, peer, request, addrs, reply);
            }
            Command::AnswerSync(token, answer) => {
                let b = &mut self.swarm.behaviour_mut().sync;
                self.syncs.answer(b, token, answer);
            }
            Command::AnswerJoin(token, answer) => {
                let b = &mut self.swarm.behaviour_mut().join;
                self.joins.answer(b, token, answer);
            }
            Command::Peers(reply) => {
                let mut list: Vec<PeerInfo> = self.peers.values().cloned().collect();
                list.sort_by_key(|p| p.peer.to_string());
                let _ = reply.send(list);
            }
            Command::Addresses(reply) => {
                let me = *self.swarm.local_peer_id();
                let mut out: Vec<Multiaddr> = self
                    .swarm
                    .listeners()
                    .chain(self.swarm.external_addresses())
                    .filter_map(|a| dialable_form(a.clone(), me))
                    .collect();
                out.sort_by_key(|a| (is_relayed(a), a.to_string()));
                out.dedup();
                let _ = reply.send(out);
            }
            Command::AddAddresses(peer, addrs, how) => {
                let addrs: Vec<Multiaddr> = addrs
                    .into_iter()
                    .filter_map(|a| dialable_form(a, peer))
                    .collect();
                self.known.learn(peer, &addrs, how);
            }
            Command::DialPeer(peer) => self.dial_peer(peer),
            Command::UseRelay(relay) => {
                self.add_relay(relay);
                self.keep_reservations();
            }
            Command::Disconnect(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Shutdown(_) => unreachable!("handled in run"),
        }
    }

    fn dial_peer(&mut self, peer: PeerId) {
        if self.live(&peer) || peer == *self.swarm.local_peer_id() {
            return;
        }
        if let Some(d) = self.dialing.get(&peer) {
            if d.started.elapsed() < REDIAL_AFTER || d.pending.len() >= MAX_PENDING_DIALS {
                tracing::debug!("dial of {peer} skipped: {} pending", d.pending.len());
                return;
            }
        }
        let addrs = self.dialable(peer);
        if addrs.is_empty() {
            self.emit(NodeEvent::DialFailed {
                peer,
                error: "no known address".into(),
            });
            return;
        }
        let opts = self.dial_opts(peer, addrs);
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                let d = self.dialing.entry(peer).or_insert(Dialing {
                    started: Instant::now(),
                    pending: Vec::new(),
                });
                d.started = Instant::now();
                d.pending.push(id);
                let how = self.known.found_by(&peer).unwrap_or(FoundBy::Manual);
                self.dial_how.insert(id, how);
            }
            Err(e) => self.emit(NodeEvent::DialFailed {
                peer,
                error: e.to_string(),
            }),
        }
    }

    /// Forgets a dial by id that ended; true if it was one.
    fn dial_ended(&mut self, peer: PeerId, id: ConnectionId) -> bool {
        let Some(d) = self.dialing.get_mut(&peer) else {
            return false;
        };
        let Some(i) = d.pending.iter().position(|p| *p == id) else {
            return false;
        };
        d.pending.swap_remove(i);
        if d.pending.is_empty() {
            self.dialing.remove(&peer);
        }
        true
    }

    /// (Re)starts a circuit listener on every relay that has none, so a
    /// relay that died and came back is used again.
    fn keep_reservations(&mut self) {
        for i in 0..self.relays.len() {
            if self.relays[i].1.is_some() {
                continue;
            }
            let circuit = self.relays[i].0.clone().with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit) {
                Ok(id) => self.relays[i].1 = Some(id),
                Err(e) => tracing::debug!("relay {}: {e}", self.relays[i].0),
            }
        }
    }

    /// Adds a relay unless one with the same peer id is known: two
    /// reservations on one relay replace each other in a loop.
    fn add_relay(&mut self, relay: Multiaddr) {
        let peer = relay_peer(&relay);
        if !self
            .relays
            .iter()
            .any(|(r, _)| *r == relay || (peer.is_some() && relay_peer(r) == peer))
        {
            self.relays.push((relay, None));
        }
    }

    /// Remembers addresses from `source` and reports them if any is new.
    fn learned(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, source: FoundBy) {
        if !addrs.is_empty() && self.known.learn(peer, &addrs, source) {
            self.emit(NodeEvent::Addresses {
                peer,
                addresses: addrs,
                source,
            });
        }
    }

    /// Addresses worth dialing for a peer: direct ones, and one circuit per
    /// relay we are connected to. Several circuits through one relay at once
    /// cancel each other in the relay client.
    /// Addresses to hand request-response with a request: it forgets an
    /// address as soon as one dial to it fails, so a join retried once our
    /// relay is connected would find nothing left to dial.
    fn offered(&self, peer: PeerId) -> Vec<Multiaddr> {
        if self.live(&peer) {
            Vec::new()
        } else {
            self.dialable(peer)
        }
    }

    fn dialable(&self, peer: PeerId) -> Vec<Multiaddr> {
        let mut out = Vec::new();
        let mut via = Vec::new();
        for a in self.known.get(&peer) {
            if !is_relayed(a) {
                out.push(a.clone());
            } else if let Some(r) = relay_peer(a) {
                if self.live(&r) && !via.contains(&r) {
                    via.push(r);
                    out.push(a.clone());
                }
            }
        }
        out
    }

    fn listener_gone(&mut self, id: ListenerId) {
        for r in &mut self.relays {
            if r.1 == Some(id) {
                r.1 = None;
            }
        }
    }

    fn refresh_route(&mut self, peer: PeerId) {
        let conns = self.conns.get(&peer);
        let direct = conns.and_then(|c| c.values().find(|c| !c.relayed));
        let route = direct
            .or_else(|| conns.and_then(|c| c.values().next()))
            .map(|c| (c.addr.clone(), c.relayed));
        if let Some(info) = self.peers.get_mut(&peer) {
            match route {
                Some((addr, relayed)) => {
                    info.connected = true;
                    info.address = Some(addr);
                    info.relayed = relayed;
                }
                None => {
                    info.connected = false;
                    info.rtt = None;
                }
            }
        }
    }

    fn rate_ok(&mut self, peer: PeerId) -> bool {
        let now = Instant::now();
        let entry = self.rate.entry(peer).or_insert((now, 0));
        if now.duration_since(entry.0) > Duration::from_secs(1) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= MAX_REQUESTS_PER_SEC
    }

    /// Whether an inbound request may be read now, and its token. Dropping
    /// a refused request's channel closes its stream unanswered.
    fn admit_request(&mut self, peer: PeerId, proto: Proto) -> Result<u64, Option<String>> {
        if self.outbox.len() >= OUTBOX_SOFT_CAP {
            tracing::warn!(
                "refused a {proto:?} request from {peer}: {} events wait to be read",
                self.outbox.len()
            );
            return Err(None);
        }
        if !self.rate_ok(peer) {
            return Err(Some("too many requests per second".into()));
        }
        self.next_token += 1;
        Ok(self.next_token)
    }

    fn sync_event(&mut self, event: RrEvent<SyncRequest, SyncResponse>) {
        let token = self.token_for(&event, Proto::Sync);
        let b = &mut self.swarm.behaviour_mut().sync;
        let up = drive(&mut self.syncs, b, event, token);
        self.deliver(up, |peer, request, token| NodeEvent::Sync {
            peer,
            request,
            token,
        });
    }

    fn join_event(&mut self, event: RrEvent<JoinRequest, JoinResponse>) {
        let token = self.token_for(&event, Proto::Join);
        let b = &mut self.swarm.behaviour_mut().join;
        let up = drive(&mut self.joins, b, event, token);
        self.deliver(up, |peer, request, token| NodeEvent::Join {
            peer,
            request,
            token,
        });
    }

    /// Hands what an exchange gave up to the layer above.
    fn deliver<Req>(
        &mut self,
        up: Option<Up<Req>>,
        event: impl FnOnce(PeerId, Req, u64) -> NodeEvent,
    ) {
        match up {
            Some(Up::Request {
                peer,
                request,
                token,
            }) => self.emit(event(peer, request, token)),
            Some(Up::BadInput { peer, reason }) => self.emit(NodeEvent::BadInput { peer, reason }),
            None => {}
        }
    }

    /// For an inbound request: its token, or why it is refused.
    fn token_for<Req, Resp>(
        &mut self,
        event: &RrEvent<Req, Resp>,
        proto: Proto,
    ) -> Result<u64, Option<String>> {
        match event {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { .. },
                ..
            } => self.admit_request(*peer, proto),
            _ => Err(None),
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.emit(NodeEvent::Listening { address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => self.connected(peer_id, connection_id, endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            } => {
                if let Some(since) = self.closing.remove(&connection_id) {
                    tracing::debug!(
                        "dead connection {connection_id} to {peer_id} closed {:?} after it was declared dead",
                        since.elapsed()
                    );
                    return;
                }
                let was_live = self
                    .conns
                    .get_mut(&peer_id)
                    .and_then(|c| c.remove(&connection_id))
                    .is_some();
                if !was_live {
                    return;
                }
                if self.live(&peer_id) {
                    self.refresh_route(peer_id);
                } else {
                    let reason = match cause {
                        Some(e) => format!("connection closed: {e}"),
                        None => "connection closed".to_string(),
                    };
                    self.peer_gone(peer_id, reason);
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                tracing::debug!("listener {listener_id:?} closed: {reason:?}");
                self.listener_gone(listener_id)
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::debug!("listener error (not fatal): {error}")
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                peer_id,
                ..
            } => {
                let who = peer_id
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "unknown peer".into());
                tracing::debug!("dial of {who} failed: {error}");
                self.dial_how.remove(&connection_id);
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(NetError::Dial(dial_problem(&error))));
                }
                if let Some(peer) = peer_id {
                    if self.dial_ended(peer, connection_id) && !self.live(&peer) {
                        self.emit(NodeEvent::DialFailed {
                            peer,
                            error: dial_problem(&error),
                        });
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let me = *self.swarm.local_peer_id();
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    if peer != me {
                        if let Some(a) = dialable_form(addr, peer) {
                            by_peer.entry(peer).or_default().push(a);
                        }
                    }
                }
                for (peer, addrs) in by_peer {
                    let info = self.peer(peer, FoundBy::Mdns);
                    if info.address.is_none() {
                        info.address = addrs.first().cloned();
                    }
                    self.learned(peer, addrs.clone(), FoundBy::Mdns);
                    if !self.live(&peer) {
                        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
                        self.dial_how.insert(opts.connection_id(), FoundBy::Mdns);
                        let _ = self.swarm.dial(opts);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Expired(gone))) => {
                for (peer, _) in gone {
                    if !self.live(&peer) && !self.mdns_sees(&peer) {
                        self.peers.remove(&peer);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result,
            })) => self.pinged(peer, connection, result),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // A relay tells us our observed address; peers learn where we listen.
                let addrs = info
                    .listen_addrs
                    .into_iter()
                    .filter_map(|a| dialable_form(a, peer_id))
                    .collect();
                self.learned(peer_id, addrs, FoundBy::Identify);
                if self
                    .relays
                    .iter()
                    .any(|(r, _)| relay_peer(r) == Some(peer_id))
                {
                    self.swarm.add_external_address(info.observed_addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.sync_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Join(e)) => self.join_event(e),
            _ => {}
        }
    }

    fn connected(&mut self, peer: PeerId, id: ConnectionId, endpoint: ConnectedPoint) {
        let dialed = matches!(endpoint, ConnectedPoint::Dialer { .. });
        let (addr, how) = match &endpoint {
            ConnectedPoint::Dialer { address, .. } => (
                address.clone(),
                self.dial_how.remove(&id).unwrap_or(FoundBy::Manual),
            ),
            ConnectedPoint::Listener { send_back_addr, .. } => {
                (send_back_addr.clone(), FoundBy::Inbound)
            }
        };
        self.dial_ended(peer, id);
        // On the listening side the remote address of a relayed
        // connection does not show the circuit; the endpoint knows.
        let relayed = endpoint.is_relayed() || is_relayed(&addr);
        let first = !self.live(&peer);
        let found =
            self.known
                .found_by(&peer)
                .unwrap_or(if relayed { FoundBy::Relay } else { how });
        self.peer(peer, found);
        self.conns.entry(peer).or_default().insert(
            id,
            Conn {
                addr: addr.clone(),
                relayed,
                alive: Instant::now(),
                pinged: true,
            },
        );
        // A direct connection (e.g. after hole punching) wins over a relayed one.
        self.refresh_route(peer);
        if let Some(reply) = self.dials.remove(&id) {
            let _ = reply.send(Ok(peer));
        }
        if first {
            self.emit(NodeEvent::Connected {
                peer,
                address: addr.clone(),
                relayed,
            });
        }
        if dialed {
            // The address that worked; a listener's view of the remote is an
            // ephemeral port, useless for dialing back.
            self.known.touch(&peer);
            if let Some(a) = dialable_form(addr, peer) {
                self.learned(peer, vec![a], how);
            }
        }
    }

    fn pinged(&mut self, peer: PeerId, id: ConnectionId, result: Result<Duration, ping::Failure>) {
        match result {
            Ok(rtt) => {
                if let Some(c) = self.conns.get_mut(&peer).and_then(|c| c.get_mut(&id)) {
                    c.alive = Instant::now();
                }
                if let Some(info) = self.peers.get_mut(&peer) {
                    info.rtt = Some(rtt);
                }
            }
            Err(ping::Failure::Unsupported) => {
                if let Some(c) = self.conns.get_mut(&peer).and_then(|c| c.get_mut(&id)) {
                    c.pinged = false;
                }
            }
            Err(e) => self.declare_dead(peer, id, format!("ping failed: {e}")),
        }
    }
}

/// Remembered addresses per peer, capped in peers and in addresses per
/// peer; the least recently seen peer goes first.
struct AddressBook {
    peers: HashMap<PeerId, Known>,
    /// Logical clock: bumped on every use, so eviction needs no wall time.
    clock: u64,
    max_peers: usize,
    max_addrs: usize,
}

struct Known {
    addrs: VecDeque<Multiaddr>,
    found_by: FoundBy,
    seen: u64,
}

impl AddressBook {
    fn new(max_peers: usize, max_addrs: usize) -> AddressBook {
        AddressBook {
            peers: HashMap::new(),
            clock: 0,
            max_peers,
            max_addrs,
        }
    }

    /// Adds addresses; true if any was not known. A full list drops its
    /// oldest address: what was heard last is likelier to work.
    fn learn(&mut self, peer: PeerId, addrs: &[Multiaddr], how: FoundBy) -> bool {
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.max_peers {
            if let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, k)| k.seen)
                .map(|(p, _)| *p)
            {
                self.peers.remove(&oldest);
            }
        }
        self.clock += 1;
        let max = self.max_addrs;
        let k = self.peers.entry(peer).or_insert(Known {
            addrs: VecDeque::new(),
            found_by: how,
            seen: 0,
        });
        k.seen = self.clock;
        let mut new = false;
        for a in addrs {
            if k.addrs.contains(a) {
                continue;
            }
            if k.addrs.len() >= max {
                k.addrs.pop_front();
            }
            k.addrs.push_back(a.clone());
            new = true;
        }
        new
    }

    fn touch(&mut self, peer: &PeerId) {
        self.clock += 1;
        if let Some(k) = self.peers.get_mut(peer) {
            k.seen = self.clock;
        }
    }

    fn get(&self, peer: &PeerId) -> impl Iterator<Item = &Multiaddr> {
        self.peers
            .get(peer)
            .into_iter()
            .flat_map(|k| k.addrs.iter())
    }

    fn found_by(&self, peer: &PeerId) -> Option<FoundBy> {
        self.peers.get(peer).map(|k| k.found_by)
    }
}

/// `addr` as an address to reach `peer`: ending in `/p2p/<peer>`, or `None`
/// if it names another peer at its end or an unspecified IP (`0.0.0.0`, `::`).
fn dialable_form(addr: Multiaddr, peer: PeerId) -> Option<Multiaddr> {
    let unspecified = addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    });
    if unspecified {
        return None;
    }
    match addr.iter().last() {
        Some(Protocol::P2p(p)) if p == peer => Some(addr),
        Some(Protocol::P2p(_)) => None,
        _ => Some(addr.with(Protocol::P2p(peer))),
    }
}

/// The peer an address leads to: its last `/p2p` component, so a circuit
/// address `/p2p/RELAY/p2p-circuit/p2p/PEER` names PEER.
pub fn target_peer(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .last()
}

/// The relay's peer id in a relay or circuit address: its first `/p2p`.
pub fn relay_peer(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// The ed25519 public key bytes inside an ed25519 peer id.
pub fn peer_key(peer: &PeerId) -> Option<[u8; 32]> {
    let mh = multihash_digest(peer)?;
    let pk = identity::PublicKey::try_decode_protobuf(&mh).ok()?;
    Some(pk.try_into_ed25519().ok()?.to_bytes())
}

fn multihash_digest(peer: &PeerId) -> Option<Vec<u8>> {
    let bytes = peer.to_bytes();
    // Identity multihash: code 0x00, then a varint length (< 128 here), then the key.
    if bytes.len() < 2 || bytes[0] != 0x00 {
        return None;
    }
    let len = bytes[1] as usize;
    (bytes.len() == 2 + len).then(|| bytes[2..].to_vec())
}

/// The peer id of an ed25519 public key.
pub fn key_peer(key: &[u8; 32]) -> Option<PeerId> {
    let pk = identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(identity::PublicKey::from(pk).to_peer_id())
}

/// A failed dial in a sentence: what was wrong and, where it helps, what
/// to check; libp2p's own text only as the detail after a colon when no
/// plainer word fits.
pub(crate) fn dial_problem(error: &libp2p::swarm::DialError) -> String {
    use libp2p::swarm::DialError;
    match error {
        DialError::LocalPeerId { address } => format!("{address} is this node itself"),
        DialError::NoAddresses => "no address is known for that peer".into(),
        DialError::DialPeerConditionFalse(_) => "a dial to that peer is already under way".into(),
        DialError::Aborted => "the dial was abandoned before it completed".into(),
        DialError::WrongPeerId { obtained, address } => format!(
            "{address}: another peer answers there ({obtained}); check the /p2p/ part of the address"
        ),
        DialError::Denied { cause } => format!("refused by this node's connection limits: {cause}"),
        DialError::Transport(errors) if errors.is_empty() => "no address could be tried".into(),
        DialError::Transport(errors) => errors
            .iter()
            .map(|(addr, e)| transport_problem(addr, e))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn transport_problem(addr: &Multiaddr, error: &libp2p::TransportError<std::io::Error>) -> String {
    use std::io::ErrorKind;
    let e = match error {
        libp2p::TransportError::MultiaddrNotSupported(_) => {
            return format!(
                "{addr} is not an address this node can dial (use /ip4/<ip>/tcp/<port> or /ip4/<ip>/udp/<port>/quic-v1, with /p2p/<peer id> at the end)"
            )
        }
        libp2p::TransportError::Other(e) => e,
    };
    // The kind of the innermost I/O error: transports wrap the socket's.
    let mut kind = e.kind();
    let mut detail = e.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        detail = err.to_string();
        // An I/O error's `source` skips the error it wraps; `get_ref` does not.
        source = match err.downcast_ref::<std::io::Error>() {
            Some(io) => {
                if io.kind() != ErrorKind::Other {
                    kind = io.kind();
                }
                io.get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static))
            }
            None => err.source(),
        };
    }
    // Some transports wrap the socket's error in types of their own that
    // keep only its text: read the OS error number back from it.
    if kind == ErrorKind::Other {
        let code = detail
            .rsplit_once("(os error ")
            .and_then(|(_, n)| n.trim_end_matches(')').parse::<i32>().ok());
        if let Some(code) = code {
            kind = std::io::Error::from_raw_os_error(code).kind();
        }
    }
    let plain = match kind {
        ErrorKind::ConnectionRefused => {
            "nothing is listening there (connection refused): is dontpanic running on that port?"
        }
        ErrorKind::TimedOut => "no answer (timed out): is the host up and the port open?",
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
            "this machine has no route to that host"
        }
        ErrorKind::AddrNotAvailable => "that address is not usable from this machine",
        ErrorKind::PermissionDenied => "the system refused the connection (a firewall?)",
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof => {
            "the connection closed during the handshake: is it a dontpanic node?"
        }
        _ => return format!("{addr}: the connection failed: {detail}"),
    };
    format!("{addr}: {plain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        identity::Keypair::ed25519_from_bytes([n; 32])
            .expect("key")
            .public()
            .to_peer_id()
    }

    fn tcp(port: u16) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn the_address_book_reports_only_news_and_keeps_the_latest_addresses() {
        let p = peer(1);
        let mut book = AddressBook::new(4, 3);
        assert!(book.learn(p, &[tcp(1), tcp(2)], FoundBy::Invite));
        assert!(
            !book.learn(p, &[tcp(2), tcp(1)], FoundBy::Identify),
            "nothing new"
        );
        assert!(book.learn(p, &[tcp(3), tcp(4)], FoundBy::Identify));
        let kept: Vec<_> = book.get(&p).cloned().collect();
        assert_eq!(kept, vec![tcp(2), tcp(3), tcp(4)], "the oldest goes");
        assert_eq!(
            book.found_by(&p),
            Some(FoundBy::Invite),
            "first finder kept"
        );
    }

    #[test]
    fn the_address_book_evicts_the_least_recently_seen_peer() {
        let mut book = AddressBook::new(3, 8);
        let (a, b, c, d) = (peer(1), peer(2), peer(3), peer(4));
        book.learn(a, &[tcp(1)], FoundBy::Manual);
        book.learn(b, &[tcp(2)], FoundBy::Manual);
        book.learn(c, &[tcp(3)], FoundBy::Manual);
        book.touch(&a);
        book.learn(d, &[tcp(4)], FoundBy::Manual);
        assert_eq!(book.peers.len(), 3);
        assert!(book.found_by(&b).is_none(), "b was seen least recently");
        for p in [a, c, d] {
            assert!(book.found_by(&p).is_some());
        }
    }

    #[test]
    fn addresses_are_put_in_dialable_form() {
        let (p, q) = (peer(1), peer(2));
        let cases: Vec<(String, Option<String>)> = vec![
            (
                "/ip4/10.0.0.1/tcp/5".into(),
                Some(format!("/ip4/10.0.0.1/tcp/5/p2p/{p}")),
            ),
            (
                format!("/ip4/127.0.0.1/tcp/5/p2p/{p}"),
                Some(format!("/ip4/127.0.0.1/tcp/5/p2p/{p}")),
            ),
            ("/ip4/0.0.0.0/tcp/5".into(), None),
            ("/ip6/::/tcp/5".into(), None),
            (format!("/ip4/10.0.0.1/tcp/5/p2p/{q}"), None),
            (
                format!("/ip4/10.0.0.9/tcp/7/p2p/{q}/p2p-circuit"),
                Some(format!("/ip4/10.0.0.9/tcp/7/p2p/{q}/p2p-circuit/p2p/{p}")),
            ),
        ];
        for (input, want) in cases {
            let got = dialable_form(input.parse().unwrap(), p).map(|a| a.to_string());
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn a_circuit_address_targets_its_last_peer_and_names_its_relay_first() {
        let (relay, target) = (peer(1), peer(2));
        let circuit: Multiaddr =
            format!("/ip4/10.0.0.9/tcp/7/p2p/{relay}/p2p-circuit/p2p/{target}")
                .parse()
                .unwrap();
        assert_eq!(target_peer(&circuit), Some(target));
        assert_eq!(relay_peer(&circuit), Some(relay));
        assert_eq!(target_peer(&tcp(1)), None);
    }
}
