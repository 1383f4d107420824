//! One request-response protocol as the swarm task drives it: typed
//! requests and answers, large ones cut into parts and put back together
//! (docs/protocol.md, "Messages in parts"), unreadable ones named by their
//! sender.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{Multiaddr, PeerId};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::oneshot;

use crate::budget::InboundBudget;
use crate::parts::{split, Assembly, Serving, TRANSFERS_PER_PEER, TRANSFER_IDLE};
use crate::wire::{from_cbor, to_cbor, CborCodec, Envelope, Inbound, Part};
use crate::NetError;

/// The libp2p behaviour of one protocol.
pub(crate) type Behaviour<Req, Resp> = request_response::Behaviour<CborCodec<Req, Resp>>;

/// Where the answer to an inbound request goes.
type AnswerTo<Resp> = (PeerId, ResponseChannel<Inbound<Envelope<Resp>>>);

/// What an inbound exchange gives the layer above.
pub(crate) enum Up<Req> {
    /// A whole request; answer it with [`Exchanges::answer`].
    Request {
        peer: PeerId,
        request: Req,
        token: u64,
    },
    /// The peer sent something unreadable or broke the rules of parts.
    BadInput { peer: PeerId, reason: String },
}

/// One request of ours, until its answer is whole.
struct Outbound<Resp> {
    peer: PeerId,
    reply: oneshot::Sender<Result<Resp, NetError>>,
    /// Parts of our request not sent yet.
    rest: VecDeque<Part>,
    /// The answer, arriving in parts.
    answer: Option<Assembly>,
}

/// The state of one protocol's exchanges, in and out.
pub(crate) struct Exchanges<Req, Resp> {
    name: &'static str,
    max_request: usize,
    max_response: usize,
    budget: InboundBudget,
    outbound: HashMap<OutboundRequestId, Outbound<Resp>>,
    inbound: HashMap<u64, AnswerTo<Resp>>,
    assembling: HashMap<(PeerId, u64), Assembly>,
    serving: HashMap<(PeerId, u64), Serving>,
    _req: std::marker::PhantomData<fn() -> Req>,
}

impl<Req, Resp> Exchanges<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
{
    /// `name` is the protocol's, for messages; the limits are of a whole
    /// (or reassembled) request and answer.
    pub(crate) fn new(
        name: &'static str,
        max_request: usize,
        max_response: usize,
        budget: InboundBudget,
    ) -> Self {
        Exchanges {
            name,
            max_request,
            max_response,
            budget,
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            assembling: HashMap::new(),
            serving: HashMap::new(),
            _req: std::marker::PhantomData,
        }
    }

    /// Sends `request` to `peer` (dialing `addrs` if not connected).
    pub(crate) fn request(
        &mut self,
        b: &mut Behaviour<Req, Resp>,
        peer: PeerId,
        request: Req,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<Resp, NetError>>,
    ) {
        let bytes = to_cbor(&request);
        if bytes.len() > self.max_request {
            let _ = reply.send(Err(NetError::Request(format!(
                "a {} request of {} bytes exceeds the limit of {}",
                self.name,
                bytes.len(),
                self.max_request
            ))));
            return;
        }
        let (first, rest) = match split(&bytes, rand::random()) {
            None => (Envelope::Whole(request), VecDeque::new()),
            Some(parts) => {
                let mut rest: VecDeque<Part> = parts.into();
                let first = rest.pop_front().expect("at least two parts");
                (Envelope::Part(first), rest)
            }
        };
        let id = b.send_request_with_addresses(&peer, Inbound::Read(first), addrs);
        self.outbound.insert(
            id,
            Outbound {
                peer,
                reply,
                rest,
                answer: None,
            },
        );
    }

    /// An answer to one of our requests (or to one of its parts).
    pub(crate) fn response(
        &mut self,
        b: &mut Behaviour<Req, Resp>,
        id: OutboundRequestId,
        response: Inbound<Envelope<Resp>>,
    ) {
        let Some(mut o) = self.outbound.remove(&id) else {
            return;
        };
        let peer = o.peer;
        let fail = |o: Outbound<Resp>, why: String| {
            let _ = o.reply.send(Err(NetError::Request(format!(
                "{} answer from {peer}: {why}",
                self.name
            ))));
        };
        let envelope = match response {
            Inbound::Read(e) => e,
            Inbound::Unreadable(e) => return fail(o, format!("unreadable: {e}")),
        };
        match envelope {
            Envelope::Whole(answer) if o.rest.is_empty() && o.answer.is_none() => {
                let _ = o.reply.send(Ok(answer));
            }
            Envelope::Whole(_) => fail(o, "answered before the request was whole".into()),
            Envelope::Next { transfer, index } => match o.rest.front() {
                Some(p) if p.transfer == transfer && p.index == index => {
                    let part = o.rest.pop_front().expect("just seen");
                    let id = b.send_request(&peer, Inbound::Read(Envelope::Part(part)));
                    self.outbound.insert(id, o);
                }
                _ => fail(
                    o,
                    format!("asked for part {index} of {transfer:016x}, not the next one of ours"),
                ),
            },
            Envelope::Part(part) if o.rest.is_empty() => {
                let transfer = part.transfer;
                let step = match o.answer.as_mut() {
                    None => Assembly::start(part, self.max_response, None).map(|r| {
                        r.map(|a| {
                            o.answer = Some(a);
                            None
                        })
                    }),
                    Some(a) => a.add(part, self.max_response),
                };
                match step {
                    Err(e) | Ok(Err(e)) => fail(o, e),
                    Ok(Ok(Some(bytes))) => {
                        let _ = o.reply.send(from_cbor(&bytes).map_err(|e| {
                            NetError::Request(format!("{} answer from {peer}: {e}", self.name))
                        }));
                    }
                    Ok(Ok(None)) => {
                        let index = o.answer.as_ref().map_or(1, |a| a.next());
                        let id = b
                            .send_request(&peer, Inbound::Read(Envelope::Next { transfer, index }));
                        self.outbound.insert(id, o);
                    }
                }
            }
            Envelope::Part(_) => fail(o, "answered in parts before the request was whole".into()),
        }
    }

    /// One of our requests failed (link down, timeout, refused).
    pub(crate) fn failed(&mut self, id: OutboundRequestId, error: String) {
        if let Some(o) = self.outbound.remove(&id) {
            let _ = o.reply.send(Err(NetError::Request(format!(
                "{} request to {}: {error}",
                self.name, o.peer
            ))));
        }
    }

    /// A request from `peer`: whole, a part, or a call for a part of our
    /// answer. `token` is used if it completes a request.
    pub(crate) fn request_in(
        &mut self,
        b: &mut Behaviour<Req, Resp>,
        peer: PeerId,
        request: Inbound<Envelope<Req>>,
        channel: ResponseChannel<Inbound<Envelope<Resp>>>,
        token: u64,
    ) -> Option<Up<Req>> {
        let bad = |reason: String| Some(Up::BadInput { peer, reason });
        let envelope = match request {
            Inbound::Read(e) => e,
            Inbound::Unreadable(e) => return bad(format!("unreadable {} request: {e}", self.name)),
        };
        match envelope {
            Envelope::Whole(request) => {
                self.inbound.insert(token, (peer, channel));
                Some(Up::Request {
                    peer,
                    request,
                    token,
                })
            }
            Envelope::Part(part) => {
                let key = (peer, part.transfer);
                let step = if part.index == 0 {
                    if self.assembling.keys().filter(|k| k.0 == peer).count() >= TRANSFERS_PER_PEER
                    {
                        return bad(format!(
                            "more than {TRANSFERS_PER_PEER} {} requests in parts at once",
                            self.name
                        ));
                    }
                    match Assembly::start(part, self.max_request, Some(&self.budget)) {
                        Ok(Ok(a)) => {
                            self.assembling.insert(key, a);
                            Ok(Ok(None))
                        }
                        Ok(Err(local)) => Ok(Err(local)),
                        Err(e) => Err(e),
                    }
                } else {
                    match self.assembling.get_mut(&key) {
                        Some(a) => a.add(part, self.max_request),
                        None => Err(format!(
                            "part {} of a transfer {:016x} that is not under way",
                            part.index, part.transfer
                        )),
                    }
                };
                match step {
                    Err(e) => {
                        self.assembling.remove(&key);
                        bad(format!("{} request in parts: {e}", self.name))
                    }
                    Ok(Err(local)) => {
                        // Dropping the channel refuses it; nobody is blamed.
                        tracing::warn!(
                            "refused a {} request in parts from {peer}: {local}",
                            self.name
                        );
                        self.assembling.remove(&key);
                        None
                    }
                    Ok(Ok(None)) => {
                        let index = self.assembling.get(&key).map_or(1, |a| a.next());
                        let _ = b.send_response(
                            channel,
                            Inbound::Read(Envelope::Next {
                                transfer: key.1,
                                index,
                            }),
                        );
                        None
                    }
                    Ok(Ok(Some(bytes))) => {
                        self.assembling.remove(&key);
                        match from_cbor(&bytes) {
                            Ok(request) => {
                                self.inbound.insert(token, (peer, channel));
                                Some(Up::Request {
                                    peer,
                                    request,
                                    token,
                                })
                            }
                            Err(e) => {
                                bad(format!("unreadable {} request in parts: {e}", self.name))
                            }
                        }
                    }
                }
            }
            Envelope::Next { transfer, index } => {
                let key = (peer, transfer);
                let Some(s) = self.serving.get_mut(&key) else {
                    // Expired, or never ours: the stream is closed unanswered.
                    tracing::debug!(
                        "{peer} asked for part {index} of unknown answer {transfer:016x}"
                    );
                    return None;
                };
                let Some(part) = s.parts.get(index as usize).cloned() else {
                    self.serving.remove(&key);
                    return bad(format!(
                        "asked for part {index} of an answer in fewer parts"
                    ));
                };
                s.touched = Instant::now();
                if index as usize + 1 == s.parts.len() {
                    self.serving.remove(&key);
                }
                let _ = b.send_response(channel, Inbound::Read(Envelope::Part(part)));
                None
            }
        }
    }

    /// Answers the request `token`; a large answer is served in parts.
    pub(crate) fn answer(&mut self, b: &mut Behaviour<Req, Resp>, token: u64, answer: Resp) {
        let Some((peer, channel)) = self.inbound.remove(&token) else {
            return;
        };
        let bytes = to_cbor(&answer);
        if bytes.len() > self.max_response {
            tracing::warn!(
                "a {} answer of {} bytes to {peer} exceeds the limit of {}: not sent",
                self.name,
                bytes.len(),
                self.max_response
            );
            return;
        }
        let transfer: u64 = rand::random();
        let envelope = match split(&bytes, transfer) {
            None => Envelope::Whole(answer),
            Some(parts) => {
                let mine: Vec<(PeerId, u64)> = self
                    .serving
                    .keys()
                    .filter(|k| k.0 == peer)
                    .copied()
                    .collect();
                if mine.len() >= TRANSFERS_PER_PEER {
                    // The peer asked again before fetching: the oldest goes.
                    if let Some(old) = mine
                        .iter()
                        .min_by_key(|k| self.serving.get(k).map(|s| s.touched))
                    {
                        self.serving.remove(old);
                    }
                }
                let first = parts[0].clone();
                self.serving.insert(
                    (peer, transfer),
                    Serving {
                        parts,
                        touched: Instant::now(),
                    },
                );
                Envelope::Part(first)
            }
        };
        let _ = b.send_response(channel, Inbound::Read(envelope));
    }

    /// Forgets transfers left idle past their time.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.assembling.retain(|_, a| !a.idle(now));
        self.serving
            .retain(|_, s| now.duration_since(s.touched) <= TRANSFER_IDLE);
    }
}
