//! A hostile client: a raw libp2p node holding a member's (or a
//! stranger's) key that sends hand-made `/dontpanic/sync/2` requests,
//! typed or as raw bytes.

use std::time::Duration;

use dontpanic_net::wire::{SignedSync, SyncRequest, SyncResponse, WireSignature};
use dontpanic_net::{FoundBy, Multiaddr, NetError, NodeConfig, NodeHandle, PeerId};
use dontpanic_notebook::sync::SignedSyncMessage;
use serde_bytes::ByteBuf;

/// A raw node with the given key, connected to `addr`; it answers every
/// request it gets with `Denied`, so the node under test learns nothing
/// from it.
pub async fn raw_node(seed: [u8; 32], addr: &Multiaddr) -> NodeHandle {
    let (node, mut events) = dontpanic_net::node::start(NodeConfig {
        seed,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        relays: vec![],
        agent: "mallory/0".into(),
    })
    .await
    .unwrap();
    let answer = node.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let dontpanic_net::NodeEvent::Sync { token, .. } = e {
                let reason = String::new();
                answer.answer_sync(token, SyncResponse::Denied { reason });
            }
        }
    });
    node.dial(addr.clone(), FoundBy::Manual).await.unwrap();
    node
}

/// An empty sync message (nothing known, nothing sent), in the notebook's
/// encoding.
pub fn empty_message() -> Vec<u8> {
    use automerge::sync::{ChunkList, Message, MessageVersion};
    SignedSyncMessage {
        message: Message {
            heads: vec![],
            need: vec![],
            have: vec![],
            changes: ChunkList::empty(),
            flags: None,
            version: MessageVersion::V1,
        }
        .encode(),
        signatures: vec![],
    }
    .encode()
}

/// A bare swarm over TCP with one request-response behaviour of `codec`
/// on `/dontpanic/sync/2` (outbound only), holding `seed`'s key or a new one.
pub fn raw_swarm<C>(
    codec: C,
    seed: Option<[u8; 32]>,
    timeout: Duration,
    streams: usize,
) -> libp2p::Swarm<libp2p::request_response::Behaviour<C>>
where
    C: libp2p::request_response::Codec<Protocol = libp2p::StreamProtocol> + Clone + Send + 'static,
{
    use libp2p::request_response::{self, ProtocolSupport};
    let key = match seed {
        Some(mut s) => libp2p::identity::Keypair::ed25519_from_bytes(&mut s).unwrap(),
        None => libp2p::identity::Keypair::generate_ed25519(),
    };
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                codec,
                [(
                    dontpanic_net::wire::SYNC_PROTOCOL,
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default()
                    .with_request_timeout(timeout)
                    .with_max_concurrent_streams(streams),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build()
}

/// The notebook's message (its in-process encoding) as it goes on the wire.
pub fn wire_message(encoded: &[u8]) -> SignedSync {
    let m = SignedSyncMessage::decode(encoded).expect("a message the test made");
    SignedSync {
        automerge: ByteBuf::from(m.message),
        signatures: m
            .signatures
            .iter()
            .map(|s| WireSignature {
                hash: ByteBuf::from(s.hash.as_ref().to_vec()),
                signer: ByteBuf::from(s.signer.to_bytes().to_vec()),
                signature: ByteBuf::from(s.signature.to_bytes().to_vec()),
            })
            .collect(),
    }
}

/// Sends one sync message of `incident` (the notebook's encoding) to
/// `peer` as the holder of `seed`.
pub async fn send_sync(
    seed: [u8; 32],
    addr: &Multiaddr,
    peer: PeerId,
    incident: &str,
    encoded: &[u8],
) -> Result<SyncResponse, NetError> {
    let node = raw_node(seed, addr).await;
    let request = SyncRequest::Sync {
        incident: incident.to_string(),
        message: wire_message(encoded),
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), node.sync(peer, request))
        .await
        .unwrap_or_else(|_| Err(NetError::Request("no answer in 30 s".into())));
    node.shutdown().await;
    answer
}

/// The kind of an answer and what it says, for assertions.
pub fn answer_of(r: &SyncResponse) -> (&'static str, String) {
    match r {
        SyncResponse::Sync { message } => (
            "sync",
            message
                .as_ref()
                .map_or(String::new(), |m| format!("{} bytes", m.automerge.len())),
        ),
        SyncResponse::Denied { reason } => ("denied", reason.clone()),
        SyncResponse::Rejected { reason } => ("rejected", reason.clone()),
        SyncResponse::Retry { reason } => ("retry", reason.clone()),
        SyncResponse::Addresses { .. } => ("addresses", String::new()),
    }
}

/// A request-response codec that writes whatever bytes it is given as one
/// request and reads the answer's bytes back.
#[derive(Clone, Default)]
pub struct RawBytes;

impl libp2p::request_response::Codec for RawBytes {
    type Protocol = libp2p::StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::other("this client takes no requests"))
    }

    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        use futures::AsyncReadExt;
        let mut out = Vec::new();
        io.read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> std::io::Result<()> {
        use futures::AsyncWriteExt;
        io.write_all(&bytes).await?;
        io.close().await
    }

    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends `bytes` as one `/dontpanic/sync/2` request from a swarm holding
/// `seed`; the answer's bytes, or why there was none.
pub async fn send_raw(
    seed: [u8; 32],
    addr: &Multiaddr,
    peer: PeerId,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, String> {
    use futures::StreamExt;
    use libp2p::request_response;
    use libp2p::swarm::SwarmEvent;
    let mut swarm = raw_swarm(RawBytes, Some(seed), Duration::from_secs(30), 16);
    swarm.dial(addr.clone()).unwrap();
    let mut bytes = Some(bytes);
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => {
                if let Some(b) = bytes.take() {
                    swarm.behaviour_mut().send_request(&peer, b);
                }
            }
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            }) => return Ok(response),
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                return Err(error.to_string())
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
            _ => {}
        }
    }
}
