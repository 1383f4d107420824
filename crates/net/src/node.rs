//! The swarm task: the only owner of the libp2p `Swarm`. Others talk to it
//! through a [`NodeHandle`] (commands in) and a stream of [`NodeEvent`]s
//! (events out).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    dcutr, identify, identity, mdns, noise, ping, relay, tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot};

use crate::frame::{Frame, FrameCodec, JOIN_PROTOCOL, SYNC_PROTOCOL};
use crate::NetError;

/// Frame kind [`GuardedCodec`] gives a request it could not read. No
/// protocol uses it, so a frame that arrives with this kind is unreadable too.
const UNREADABLE: u8 = 0xff;

/// [`FrameCodec`] for inbound requests, turning an unreadable request
/// (oversize, malformed) into an [`UNREADABLE`] frame with the reason:
/// request-response reports a failed read without the peer's id (only a
/// debug log), so the node could not otherwise tell who sent it.
#[derive(Clone)]
struct GuardedCodec(FrameCodec);

fn unreadable(reason: String) -> Frame {
    Frame::new(UNREADABLE, "", reason.into_bytes())
}

impl request_response::Codec for GuardedCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Frame;
    type Response = Frame;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        p: &libp2p::StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Frame> {
        match self.0.read_request(p, io).await {
            Ok(f) if f.kind == UNREADABLE => {
                Ok(unreadable(format!("frame kind {UNREADABLE} is not used")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(unreadable(e.to_string())),
            other => other,
        }
    }

    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        p: &libp2p::StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Frame> {
        self.0.read_response(p, io).await
    }

    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        p: &libp2p::StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> std::io::Result<()> {
        self.0.write_request(p, io, req).await
    }

    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        p: &libp2p::StreamProtocol,
        io: &mut T,
        res: Frame,
    ) -> std::io::Result<()> {
        self.0.write_response(p, io, res).await
    }
}

/// Largest sync frame: a whole incident of 100,000 entries fits.
pub const MAX_SYNC_FRAME: usize = 64 << 20;
/// Largest join frame (it carries the whole signed history).
pub const MAX_JOIN_FRAME: usize = 128 << 20;
/// How long a request may take before it fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent streams per connection and protocol: one hostile peer cannot
/// open more.
const MAX_STREAMS: usize = 16;
/// Inbound requests one peer may make per second before being refused.
const MAX_REQUESTS_PER_SEC: u32 = 1000;

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
    /// Listen on every interface, TCP and QUIC, on ports the OS picks.
    pub fn default_listen() -> Vec<Multiaddr> {
        vec![
            "/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr"),
            "/ip4/0.0.0.0/udp/0/quic-v1"
                .parse()
                .expect("valid multiaddr"),
        ]
    }
}

/// Which protocol a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `/dontpanic/sync/1`
    Sync,
    /// `/dontpanic/join/1`
    Join,
}

/// How a peer came to be known.
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
    /// A connection to `peer` opened (the first one).
    Connected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to `peer` closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer sent a request; answer it with [`NodeHandle::respond`].
    Request {
        /// Which protocol.
        proto: Proto,
        /// Who sent it (authenticated by noise).
        peer: PeerId,
        /// The request.
        frame: Frame,
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
    Request(
        Proto,
        PeerId,
        Frame,
        oneshot::Sender<Result<Frame, NetError>>,
    ),
    Respond(u64, Frame),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Addresses(oneshot::Sender<Vec<Multiaddr>>),
    AddAddress(PeerId, Multiaddr, FoundBy),
    DialPeer(PeerId),
    UseRelay(Multiaddr),
    Disconnect(PeerId),
    Shutdown(oneshot::Sender<()>),
}

/// A handle on the running node; cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::UnboundedSender<Command>,
    peer_id: PeerId,
}

impl NodeHandle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    fn send(&self, c: Command) -> Result<(), NetError> {
        self.tx.send(c).map_err(|_| NetError::Stopped)
    }

    /// Dials an address; resolves once connected (or failed).
    pub async fn dial(&self, addr: Multiaddr, how: FoundBy) -> Result<PeerId, NetError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Dial(addr, how, tx))?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Sends a request and waits for the answer.
    pub async fn request(
        &self,
        proto: Proto,
        peer: PeerId,
        frame: Frame,
    ) -> Result<Frame, NetError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Request(proto, peer, frame, tx))?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Answers a request received as [`NodeEvent::Request`].
    pub fn respond(&self, token: u64, frame: Frame) {
        let _ = self.send(Command::Respond(token, frame));
    }

    /// What is known of each peer.
    pub async fn peers(&self) -> Vec<PeerInfo> {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Peers(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Addresses others can dial, each ending in `/p2p/<our id>`.
    pub async fn addresses(&self) -> Vec<Multiaddr> {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Addresses(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Tells the node where a peer may be reached.
    pub fn add_address(&self, peer: PeerId, addr: Multiaddr, how: FoundBy) {
        let _ = self.send(Command::AddAddress(peer, addr, how));
    }

    /// Dials a known peer by id (its addresses are remembered) unless it is
    /// connected or was tried in the last few seconds.
    pub fn dial_peer(&self, peer: PeerId) {
        let _ = self.send(Command::DialPeer(peer));
    }

    /// Keeps a reservation on one more relay (from an invite, say).
    pub fn use_relay(&self, relay: Multiaddr) {
        let _ = self.send(Command::UseRelay(relay));
    }

    /// Closes every connection to a peer that is not trusted.
    pub fn disconnect(&self, peer: PeerId) {
        let _ = self.send(Command::Disconnect(peer));
    }

    /// Stops the swarm task.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Shutdown(tx)).is_ok() {
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
    sync: request_response::Behaviour<GuardedCodec>,
    join: request_response::Behaviour<GuardedCodec>,
}

/// Starts the node on the current tokio runtime.
pub async fn start(
    config: NodeConfig,
) -> Result<(NodeHandle, mpsc::UnboundedReceiver<NodeEvent>), NetError> {
    let mut seed = config.seed;
    let keypair = identity::Keypair::ed25519_from_bytes(&mut seed)
        .map_err(|e| NetError::Setup(e.to_string()))?;
    let peer_id = keypair.public().to_peer_id();
    let mdns_on = config.mdns;
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
            let rr = |proto, max| {
                request_response::Behaviour::with_codec(
                    GuardedCodec(FrameCodec { max }),
                    [(proto, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(REQUEST_TIMEOUT)
                        .with_max_concurrent_streams(MAX_STREAMS),
                )
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
                ping: ping::Behaviour::new(
                    ping::Config::new().with_interval(Duration::from_secs(5)),
                ),
                mdns: mdns.into(),
                sync: rr(SYNC_PROTOCOL, MAX_SYNC_FRAME),
                join: rr(JOIN_PROTOCOL, MAX_JOIN_FRAME),
            })
        })
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Setup(format!("cannot listen on {addr}: {e}")))?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let task = SwarmTask {
        swarm,
        events: events_tx,
        pending: HashMap::new(),
        dials: HashMap::new(),
        dial_how: HashMap::new(),
        inbound: HashMap::new(),
        next_token: 0,
        peers: HashMap::new(),
        rate: HashMap::new(),
        relays: Vec::new(),
        conns: HashMap::new(),
        last_dial: HashMap::new(),
        known: HashMap::new(),
    };
    let mut task = task;
    for r in config.relays {
        task.add_relay(r);
    }
    tokio::spawn(task.run(rx));
    Ok((NodeHandle { tx, peer_id }, events_rx))
}

struct SwarmTask {
    swarm: Swarm<Behaviour>,
    events: mpsc::UnboundedSender<NodeEvent>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Frame, NetError>>>,
    dials: HashMap<libp2p::swarm::ConnectionId, oneshot::Sender<Result<PeerId, NetError>>>,
    dial_how: HashMap<libp2p::swarm::ConnectionId, FoundBy>,
    inbound: HashMap<u64, (Proto, ResponseChannel<Frame>)>,
    next_token: u64,
    peers: HashMap<PeerId, PeerInfo>,
    rate: HashMap<PeerId, (Instant, u32)>,
    /// Each relay and the circuit listener on it, while one is up.
    relays: Vec<(Multiaddr, Option<ListenerId>)>,
    /// Open connections per peer: address and whether relayed.
    conns: HashMap<PeerId, HashMap<ConnectionId, (Multiaddr, bool)>>,
    last_dial: HashMap<PeerId, Instant>,
    /// Every address a peer was seen at or announced.
    known: HashMap<PeerId, Vec<Multiaddr>>,
}

/// How often lost relay reservations are retried.
const RELAY_RETRY: Duration = Duration::from_secs(3);
/// Least time between two dials of the same peer by id.
const REDIAL_AFTER: Duration = Duration::from_secs(3);

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

impl SwarmTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut relay_tick = tokio::time::interval(RELAY_RETRY);
        loop {
            tokio::select! {
                _ = relay_tick.tick() => self.keep_reservations(),
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

    fn command(&mut self, c: Command) {
        match c {
            Command::Dial(addr, how, reply) => {
                let peer = addr.iter().find_map(|p| match p {
                    Protocol::P2p(id) => Some(id),
                    _ => None,
                });
                if let Some(peer) = peer {
                    if self.swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(peer));
                        return;
                    }
                    let found = if is_relayed(&addr) {
                        FoundBy::Relay
                    } else {
                        how
                    };
                    let info = self.peer(peer, found);
                    info.address = Some(addr.clone());
                }
                let opts = match peer {
                    Some(p) => DialOpts::peer_id(p).addresses(vec![addr.clone()]).build(),
                    None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
                };
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, reply);
                        self.dial_how.insert(id, how);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial(format!("{addr}: {e}"))));
                    }
                }
            }
            Command::Request(proto, peer, frame, reply) => {
                // request-response forgets an address as soon as one dial to
                // it fails, so a join retried once our relay is connected
                // would find nothing left to dial: offer what we remember.
                let addrs = if self.swarm.is_connected(&peer) {
                    Vec::new()
                } else {
                    self.dialable(peer)
                };
                let b = self.swarm.behaviour_mut();
                let id = match proto {
                    Proto::Sync => b.sync.send_request_with_addresses(&peer, frame, addrs),
                    Proto::Join => b.join.send_request_with_addresses(&peer, frame, addrs),
                };
                self.pending.insert(id, reply);
            }
            Command::Respond(token, frame) => {
                if let Some((proto, channel)) = self.inbound.remove(&token) {
                    let b = self.swarm.behaviour_mut();
                    let _ = match proto {
                        Proto::Sync => b.sync.send_response(channel, frame),
                        Proto::Join => b.join.send_response(channel, frame),
                    };
                }
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
                    .filter(|a| {
                        !a.iter()
                            .any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified()))
                    })
                    .cloned()
                    .collect();
                out.sort_by_key(|a| (is_relayed(a), a.to_string()));
                out.dedup();
                let out = out
                    .into_iter()
                    .map(|a| {
                        if a.iter().any(|p| matches!(p, Protocol::P2p(_))) {
                            a
                        } else {
                            a.with(Protocol::P2p(me))
                        }
                    })
                    .collect();
                let _ = reply.send(out);
            }
            Command::AddAddress(peer, addr, how) => {
                self.swarm.add_peer_address(peer, addr.clone());
                self.remember(peer, addr.clone());
                let info = self.peer(peer, how);
                if info.address.is_none() {
                    info.address = Some(addr);
                }
            }
            Command::DialPeer(peer) => {
                let recent = self
                    .last_dial
                    .get(&peer)
                    .is_some_and(|t| t.elapsed() < REDIAL_AFTER);
                if self.swarm.is_connected(&peer) || recent || peer == *self.swarm.local_peer_id() {
                    return;
                }
                let addrs = self.dialable(peer);
                if addrs.is_empty() {
                    return;
                }
                self.last_dial.insert(peer, Instant::now());
                if let Err(e) = self
                    .swarm
                    .dial(DialOpts::peer_id(peer).addresses(addrs).build())
                {
                    tracing::debug!("redial of {peer}: {e}");
                }
            }
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

    fn remember(&mut self, peer: PeerId, addr: Multiaddr) {
        let list = self.known.entry(peer).or_default();
        if !list.contains(&addr) && list.len() < 32 {
            list.push(addr);
        }
    }

    /// Addresses worth dialing for a peer: direct ones, and one circuit per
    /// relay we are connected to. Several circuits through one relay at once
    /// cancel each other in the relay client.
    fn dialable(&self, peer: PeerId) -> Vec<Multiaddr> {
        let mut out = Vec::new();
        let mut via = Vec::new();
        for a in self.known.get(&peer).into_iter().flatten() {
            if !is_relayed(a) {
                out.push(a.clone());
            } else if let Some(r) = relay_peer(a) {
                if self.swarm.is_connected(&r) && !via.contains(&r) {
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
        let direct = conns.and_then(|c| c.values().find(|(_, relayed)| !relayed).cloned());
        let any = conns.and_then(|c| c.values().next().cloned());
        if let Some(info) = self.peers.get_mut(&peer) {
            match direct.or(any) {
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

    fn request_event(&mut self, proto: Proto, event: request_response::Event<Frame, Frame>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if request.kind == UNREADABLE {
                    let _ = self.events.send(NodeEvent::BadInput {
                        peer,
                        reason: String::from_utf8_lossy(&request.body).into_owned(),
                    });
                    return; // dropping the channel refuses the request
                }
                if !self.rate_ok(peer) {
                    let _ = self.events.send(NodeEvent::BadInput {
                        peer,
                        reason: "too many requests per second".into(),
                    });
                    return; // dropping the channel refuses the request
                }
                let token = self.next_token;
                self.next_token += 1;
                self.inbound.insert(token, (proto, channel));
                let _ = self.events.send(NodeEvent::Request {
                    proto,
                    peer,
                    frame: request,
                    token,
                });
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request(format!("to {peer}: {error}"))));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(e) = &error {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        let _ = self.events.send(NodeEvent::BadInput {
                            peer,
                            reason: e.to_string(),
                        });
                    }
                }
                tracing::debug!("inbound {proto:?} request from {peer} failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let _ = self.events.send(NodeEvent::Listening { address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                num_established,
                ..
            } => {
                let (addr, how) = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => (
                        address.clone(),
                        self.dial_how
                            .remove(&connection_id)
                            .unwrap_or(FoundBy::Manual),
                    ),
                    ConnectedPoint::Listener { send_back_addr, .. } => {
                        (send_back_addr.clone(), FoundBy::Inbound)
                    }
                };
                // On the listening side the remote address of a relayed
                // connection does not show the circuit; the endpoint knows.
                let relayed = endpoint.is_relayed() || is_relayed(&addr);
                self.peer(peer_id, if relayed { FoundBy::Relay } else { how });
                self.conns
                    .entry(peer_id)
                    .or_default()
                    .insert(connection_id, (addr, relayed));
                // A direct connection (e.g. after hole punching) wins over a relayed one.
                self.refresh_route(peer_id);
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if num_established.get() == 1 {
                    let _ = self.events.send(NodeEvent::Connected { peer: peer_id });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(c) = self.conns.get_mut(&peer_id) {
                    c.remove(&connection_id);
                }
                self.refresh_route(peer_id);
                if num_established == 0 {
                    let _ = self.events.send(NodeEvent::Disconnected { peer: peer_id });
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
                tracing::debug!("dial of {peer_id:?} failed: {error}");
                self.dial_how.remove(&connection_id);
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let who = peer_id
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "peer".into());
                    let _ = reply.send(Err(NetError::Dial(format!("{who}: {error}"))));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    if peer != *self.swarm.local_peer_id() {
                        by_peer.entry(peer).or_default().push(addr);
                    }
                }
                for (peer, addrs) in by_peer {
                    for a in &addrs {
                        self.swarm.add_peer_address(peer, a.clone());
                        self.remember(peer, a.clone());
                    }
                    let info = self.peer(peer, FoundBy::Mdns);
                    if info.address.is_none() {
                        info.address = addrs.first().cloned();
                    }
                    if !self.swarm.is_connected(&peer) {
                        let opts = DialOpts::peer_id(peer).addresses(addrs).build();
                        self.dial_how.insert(opts.connection_id(), FoundBy::Mdns);
                        let _ = self.swarm.dial(opts);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                if let Some(info) = self.peers.get_mut(&peer) {
                    info.rtt = Some(rtt);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // A relay tells us our observed address; peers learn where we listen.
                for a in info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, a.clone());
                    self.remember(peer_id, a);
                }
                if self
                    .relays
                    .iter()
                    .any(|(r, _)| relay_peer(r) == Some(peer_id))
                {
                    self.swarm.add_external_address(info.observed_addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.request_event(Proto::Sync, e),
            SwarmEvent::Behaviour(BehaviourEvent::Join(e)) => self.request_event(Proto::Join, e),
            _ => {}
        }
    }
}

/// The peer id at the end of a relay address.
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
