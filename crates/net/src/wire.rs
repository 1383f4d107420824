//! The typed messages of dontpanic's two request-response protocols, v2,
//! and their CBOR codec.
//!
//! Every request and every response is one CBOR item (RFC 8949), serde's
//! externally tagged form of the types below, written whole on its own
//! libp2p stream; the writer then closes its side (libp2p request-response
//! with the CBOR codec of `libp2p-request-response`). A message whose CBOR
//! encoding is over [`PART_BYTES`] travels in [`Envelope::Part`]s, so no
//! stream ever carries more than [`MAX_ENVELOPE`] bytes (yamux
//! implementations differ above 1 MiB). docs/protocol.md is the reference.
//!
//! The byte fields (`automerge`, hashes, keys, signatures, proofs) are CBOR
//! byte strings; this crate checks their lengths where it converts them, and
//! leaves what they mean to the layers above.

use std::collections::BTreeMap;
use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::budget::InboundBudget;
pub use crate::parts::assemble;

/// Protocol id of incident sync.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/dontpanic/sync/2");
/// Protocol id of joining by invite.
pub const JOIN_PROTOCOL: StreamProtocol = StreamProtocol::new("/dontpanic/join/2");

/// Largest CBOR encoding of a message sent whole; a larger one is cut into
/// parts of this size.
pub const PART_BYTES: usize = 512 << 10;
/// Largest envelope (request or response) read from a stream: a part plus
/// its framing, well under yamux's 1 MiB.
pub const MAX_ENVELOPE: usize = PART_BYTES + (4 << 10);
/// Largest sync message (request or response), whole or reassembled.
pub const MAX_SYNC_MESSAGE: usize = 64 << 20;
/// Largest join request; never sent in parts.
pub const MAX_JOIN_REQUEST: usize = 4 << 10;
/// Largest join answer, reassembled: the whole signed history.
pub const MAX_JOIN_ANSWER: usize = 128 << 20;

/// What travels on a stream: a whole message, a part of a large one, or
/// the call for the next part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope<T> {
    /// A whole message.
    Whole(T),
    /// One part of a message whose CBOR encoding is over [`PART_BYTES`].
    Part(Part),
    /// As a response: part `index` of the request's transfer is wanted
    /// next. As a request: send part `index` of a response's transfer.
    Next {
        /// The transfer.
        transfer: u64,
        /// The part wanted (from 1).
        index: u32,
    },
}

/// Part `index` of `count` of one message's CBOR encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Chosen at random by the sender of the message; names it among the
    /// sender's transfers to this peer.
    pub transfer: u64,
    /// From 0.
    pub index: u32,
    /// Parts in all, at least 2.
    pub count: u32,
    /// The bytes, at most [`PART_BYTES`]; every part but the last is full.
    pub bytes: ByteBuf,
}

/// A change signature: `signer` signed `hash` (see docs/protocol.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSignature {
    /// The Automerge change hash, 32 bytes.
    pub hash: ByteBuf,
    /// The ed25519 public key, 32 bytes.
    pub signer: ByteBuf,
    /// The ed25519 signature, 64 bytes.
    pub signature: ByteBuf,
}

/// An Automerge sync message with the signatures that cover the changes it
/// carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedSync {
    /// The encoded Automerge sync message.
    pub automerge: ByteBuf,
    /// Signatures covering its changes.
    pub signatures: Vec<WireSignature>,
}

/// Members' addresses: hex public key → multiaddrs, each ending in that
/// key's `/p2p/<peer id>`.
pub type MemberAddresses = BTreeMap<String, Vec<String>>;

/// A request of `/dontpanic/sync/2`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    /// The sender's next sync message of `incident`.
    Sync {
        /// The incident id.
        incident: String,
        /// The message.
        message: SignedSync,
    },
    /// What the sender knows of where `incident`'s members are.
    Addresses {
        /// The incident id.
        incident: String,
        /// The addresses.
        members: MemberAddresses,
    },
}

/// A response of `/dontpanic/sync/2`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The message was verified and stored; the answer, if there is
    /// anything to say.
    Sync {
        /// The answer.
        message: Option<SignedSync>,
    },
    /// Not a member, or an incident this node does not hold.
    Denied {
        /// Empty, or `not trusted` for a rejected peer.
        reason: String,
    },
    /// The message failed verification; its sender is now rejected.
    Rejected {
        /// What was wrong.
        reason: String,
    },
    /// The receiver could not store it, for a reason of its own (a full
    /// disk); nobody is blamed.
    Retry {
        /// What went wrong.
        reason: String,
    },
    /// The answer to [`SyncRequest::Addresses`]: the receiver's view.
    Addresses {
        /// The addresses.
        members: MemberAddresses,
    },
}

/// The invite's terms as sent by a joiner; see [`JoinRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTerms {
    /// Unix ms after which the invite admits nobody.
    pub expires_ms: u64,
    /// Whether the invite admits one key only.
    pub once: bool,
    /// The invite's nonce, 16 bytes.
    pub nonce: ByteBuf,
    /// The inviter's peer id, as bytes.
    pub inviter: ByteBuf,
}

/// The one request of `/dontpanic/join/2`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The incident to join.
    pub incident: String,
    /// HMAC proof of the invite key, 32 bytes (docs/protocol.md).
    pub proof: ByteBuf,
    /// The invite's terms, from which the member derives the invite key.
    pub terms: WireTerms,
    /// The name the joiner asks for.
    pub name: String,
}

/// A history of signed changes: every change, and signatures covering them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHistory {
    /// Automerge change bytes, in causal order.
    pub changes: Vec<ByteBuf>,
    /// Signatures covering them.
    pub signatures: Vec<WireSignature>,
}

/// A response of `/dontpanic/join/2`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinResponse {
    /// Admitted: the member's proof and the whole history.
    Admitted {
        /// HMAC proof of the member, 32 bytes.
        proof: ByteBuf,
        /// The incident, with the joiner on its roster.
        history: SignedHistory,
    },
    /// Not admitted, and why (`wrong invite` unless the proof was right).
    Denied {
        /// Why.
        reason: String,
    },
}

/// An inbound message as the codec read it: typed, or unreadable with the
/// reason, so the node can say which peer sent it (request-response itself
/// reports a failed read only to its debug log).
#[derive(Clone, Debug)]
pub enum Inbound<T> {
    /// Read and decoded.
    Read(T),
    /// Not CBOR of the expected type, or over the limit.
    Unreadable(String),
}

/// CBOR encoding of `value`.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot fail but for allocation.
    cbor4ii::serde::to_vec(Vec::new(), value).expect("CBOR encoding into memory")
}

/// Decodes one CBOR item of type `T`, naming what was wrong.
pub fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| format!("not a valid message: {e}"))
}

/// The request-response codec of both protocols: CBOR envelopes, each
/// read up to [`MAX_ENVELOPE`] bytes, the bytes of every inbound request
/// being read counted against one shared [`InboundBudget`].
pub struct CborCodec<Req, Resp> {
    budget: InboundBudget,
    _types: std::marker::PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for CborCodec<Req, Resp> {
    fn clone(&self) -> Self {
        CborCodec {
            budget: self.budget.clone(),
            _types: std::marker::PhantomData,
        }
    }
}

impl<Req, Resp> CborCodec<Req, Resp> {
    /// A codec sharing `budget` with every other inbound reader.
    pub fn new(budget: InboundBudget) -> Self {
        CborCodec {
            budget,
            _types: std::marker::PhantomData,
        }
    }
}

/// Reads a stream to its end, at most `max` bytes, the bytes held taken
/// from `budget` as they arrive (if any).
async fn read_to_end<T: AsyncRead + Unpin>(
    io: &mut T,
    max: usize,
    budget: Option<&InboundBudget>,
) -> io::Result<Result<Vec<u8>, String>> {
    let mut reserved = budget.and_then(|b| b.reserve(0));
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Ok(buf));
        }
        if buf.len() + n > max {
            return Ok(Err(format!("message of more than {max} bytes")));
        }
        if let (Some(r), Some(b)) = (reserved.as_mut(), budget) {
            if !r.grow(n) {
                return Err(io::Error::other(format!(
                    "what inbound streams may hold is used up ({} bytes left)",
                    b.left()
                )));
            }
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn read_inbound<T: AsyncRead + Unpin, M: DeserializeOwned>(
    io: &mut T,
    budget: Option<&InboundBudget>,
) -> io::Result<Inbound<Envelope<M>>> {
    Ok(match read_to_end(io, MAX_ENVELOPE, budget).await? {
        Ok(bytes) => match from_cbor(&bytes) {
            Ok(m) => Inbound::Read(m),
            Err(e) => Inbound::Unreadable(e),
        },
        Err(e) => Inbound::Unreadable(e),
    })
}

async fn write_inbound<T: AsyncWrite + Unpin, M: Serialize>(
    io: &mut T,
    m: Inbound<Envelope<M>>,
) -> io::Result<()> {
    match m {
        Inbound::Read(m) => {
            io.write_all(&to_cbor(&m)).await?;
            io.close().await
        }
        Inbound::Unreadable(e) => Err(io::Error::other(format!("not sent: {e}"))),
    }
}

impl<Req, Resp> libp2p::request_response::Codec for CborCodec<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Inbound<Envelope<Req>>;
    type Response = Inbound<Envelope<Resp>>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Self::Request> {
        read_inbound(io, Some(&self.budget)).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Self::Response> {
        read_inbound(io, None).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Self::Request,
    ) -> io::Result<()> {
        write_inbound(io, req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Self::Response,
    ) -> io::Result<()> {
        write_inbound(io, res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_named_unreadable() {
        futures::executor::block_on(async {
            let m: Envelope<SyncRequest> = Envelope::Whole(SyncRequest::Sync {
                incident: "i3k".into(),
                message: SignedSync {
                    automerge: ByteBuf::from(vec![0x42, 1, 2]),
                    signatures: vec![],
                },
            });
            let bytes = to_cbor(&m);
            match read_inbound::<_, SyncRequest>(&mut &bytes[..], None)
                .await
                .unwrap()
            {
                Inbound::Read(back) => assert_eq!(back, m),
                Inbound::Unreadable(e) => panic!("{e}"),
            }
            let garbage = [0xffu8, 0x00, 0x13];
            match read_inbound::<_, SyncRequest>(&mut &garbage[..], None)
                .await
                .unwrap()
            {
                Inbound::Unreadable(e) => assert!(e.contains("not a valid message"), "{e}"),
                Inbound::Read(_) => panic!("garbage read"),
            }
            let big = vec![0u8; MAX_ENVELOPE + 1];
            match read_inbound::<_, SyncRequest>(&mut &big[..], None)
                .await
                .unwrap()
            {
                Inbound::Unreadable(e) => assert!(e.contains("more than"), "{e}"),
                Inbound::Read(_) => panic!("oversize read"),
            }
        });
    }

    #[test]
    fn byte_fields_are_cbor_byte_strings() {
        // An independent client relies on this: major type 2, not an array.
        let s = WireSignature {
            hash: ByteBuf::from(vec![7; 32]),
            signer: ByteBuf::from(vec![8; 32]),
            signature: ByteBuf::from(vec![9; 64]),
        };
        let bytes = to_cbor(&s);
        assert!(bytes.windows(2).any(|w| w == [0x58, 32]), "{bytes:02x?}");
        assert!(bytes.len() < 32 + 32 + 64 + 40, "{} bytes", bytes.len());
    }

    #[test]
    fn inbound_requests_take_from_the_budget_and_give_it_back() {
        futures::executor::block_on(async {
            let budget = InboundBudget::new(100);
            let bytes = [0u8; 200];
            let err = read_to_end(&mut &bytes[..], 1000, Some(&budget))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("used up"), "{err}");
            assert_eq!(budget.left(), 100);
        });
    }
}
