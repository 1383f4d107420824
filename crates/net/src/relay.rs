//! A circuit relay v2 server for responders beyond the LAN. It forwards
//! noise-encrypted streams between peers and holds no incident data.

use std::num::NonZeroU32;
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, identity, noise, ping, relay, tcp, yamux, Multiaddr, PeerId};
use tokio::sync::mpsc;

use crate::NetError;

/// Limits sized for incident sync: a whole 100,000-entry incident fits in one
/// circuit, while one peer cannot take the relay for itself.
pub fn limits() -> relay::Config {
    relay::Config {
        max_reservations: 256,
        max_reservations_per_peer: 4,
        reservation_duration: Duration::from_secs(60 * 60),
        max_circuits: 128,
        max_circuits_per_peer: 8,
        max_circuit_duration: Duration::from_secs(60 * 60),
        max_circuit_bytes: 256 << 20,
        ..Default::default()
    }
    .reservation_rate_per_peer(
        NonZeroU32::new(30).expect("nonzero"),
        Duration::from_secs(60),
    )
    .circuit_src_per_peer(
        NonZeroU32::new(60).expect("nonzero"),
        Duration::from_secs(60),
    )
    .reservation_rate_per_ip(
        NonZeroU32::new(120).expect("nonzero"),
        Duration::from_secs(60),
    )
    .circuit_src_per_ip(
        NonZeroU32::new(240).expect("nonzero"),
        Duration::from_secs(60),
    )
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// What the relay reports as it runs.
#[derive(Debug, Clone)]
pub enum RelayEvent {
    /// Listening on an address (ending in `/p2p/<relay id>`).
    Listening(Multiaddr),
    /// A peer took or renewed a reservation.
    Reservation(PeerId),
    /// A circuit opened between two peers.
    CircuitOpened(PeerId, PeerId),
    /// A circuit closed.
    CircuitClosed(PeerId, PeerId),
}

/// Runs a relay until the returned receiver is dropped and the task ends
/// with the runtime. Returns the relay's peer id and its event stream.
pub async fn serve(
    seed: [u8; 32],
    listen: Vec<Multiaddr>,
) -> Result<(PeerId, mpsc::UnboundedReceiver<RelayEvent>), NetError> {
    let mut seed = seed;
    let keypair = identity::Keypair::ed25519_from_bytes(&mut seed)
        .map_err(|e| NetError::Setup(e.to_string()))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_quic()
        .with_behaviour(|key| Behaviour {
            relay: relay::Behaviour::new(key.public().to_peer_id(), limits()),
            identify: identify::Behaviour::new(
                identify::Config::new("/dontpanic/id/1".into(), key.public())
                    .with_agent_version(format!("dontpanic-relay/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
        })
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    for a in &listen {
        swarm
            .listen_on(a.clone())
            .map_err(|e| NetError::Setup(format!("cannot listen on {a}: {e}")))?;
    }
    let id = *swarm.local_peer_id();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let event = swarm.select_next_some().await;
            let out = match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    // A relay runs on a reachable machine: its listen addresses
                    // are its external addresses, and the relay protocol is only
                    // offered once it has one.
                    swarm.add_external_address(address.clone());
                    Some(RelayEvent::Listening(address.with(Protocol::P2p(id))))
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                    info,
                    ..
                })) => {
                    // Peers tell us the address they see us at: confirm it so
                    // reservations advertise a reachable address.
                    swarm.add_external_address(info.observed_addr);
                    None
                }
                SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => match e {
                    relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                        Some(RelayEvent::Reservation(src_peer_id))
                    }
                    relay::Event::CircuitReqAccepted {
                        src_peer_id,
                        dst_peer_id,
                    } => Some(RelayEvent::CircuitOpened(src_peer_id, dst_peer_id)),
                    relay::Event::CircuitClosed {
                        src_peer_id,
                        dst_peer_id,
                        ..
                    } => Some(RelayEvent::CircuitClosed(src_peer_id, dst_peer_id)),
                    _ => None,
                },
                _ => None,
            };
            if let Some(e) = out {
                if tx.send(e).is_err() && tx.is_closed() {
                    // Nobody listens; keep relaying anyway.
                }
            }
        }
    });
    Ok((id, rx))
}
