//! The dontpanic network node: a libp2p swarm (TCP and QUIC, noise, yamux,
//! identify, ping, mDNS, circuit relay client, DCUtR) with two
//! request-response protocols of typed CBOR messages, `/dontpanic/sync/2`
//! and `/dontpanic/join/2`.
//!
//! # Brief overview
//!
//! * [`node::start`] spawns the swarm task, the only owner of the `Swarm`,
//!   and returns a [`NodeHandle`] (commands in) and a bounded stream of
//!   [`NodeEvent`]s (events out): connections and why they ended, addresses
//!   learned, failed redials, requests.
//! * [`wire`] holds the messages of both protocols and their codec; a
//!   message too large for one stream travels in parts ([`wire::Part`]),
//!   put back together by the node within a memory budget.
//! * [`Invite`] is the pasteable capability to join an incident.
//!
//! This crate moves typed messages between authenticated peers; their
//! payloads (Automerge messages, signatures, proofs) are bytes to it: it
//! knows nothing of incidents' content, Automerge or the REPL.
#![deny(missing_docs)]
// Strings here come from peers, files and the prompt: no byte-index slicing.
#![deny(clippy::string_slice)]

mod budget;
mod exchange;
mod invite;
pub mod node;
mod parts;
pub mod relay;
pub mod wire;

pub use budget::InboundBudget;
pub use invite::{Invite, InviteError};
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};
pub use node::{FoundBy, NodeConfig, NodeEvent, NodeHandle, PeerInfo, Proto};

/// Network errors; each names the peer or address concerned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    /// The node could not start.
    #[error("network setup failed: {0}")]
    Setup(String),
    /// A dial failed.
    #[error("cannot connect: {0}")]
    Dial(String),
    /// A request failed or timed out.
    #[error("request failed: {0}")]
    Request(String),
    /// The swarm task is gone.
    #[error("the network node has stopped")]
    Stopped,
}
