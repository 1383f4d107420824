//! The one frame format of dontpanic's request-response protocols, and its
//! size-capped codec.
//!
//! ```text
//! u32 BE length | kind u8 | incident id: u8 len + utf8 | body
//! ```

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// Protocol name of incident sync.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/dontpanic/sync/1");
/// Protocol name of joining by invite.
pub const JOIN_PROTOCOL: StreamProtocol = StreamProtocol::new("/dontpanic/join/1");

/// One request or response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is; meaning depends on the protocol.
    pub kind: u8,
    /// The incident it concerns.
    pub incident: String,
    /// Opaque content (a signed sync message, a join proof, ...).
    pub body: Vec<u8>,
}

impl Frame {
    /// A frame.
    pub fn new(kind: u8, incident: &str, body: Vec<u8>) -> Frame {
        Frame {
            kind,
            incident: incident.to_string(),
            body,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let inc = self.incident.as_bytes();
        let len = 2 + inc.len().min(255) + self.body.len();
        let mut out = Vec::with_capacity(4 + len);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.push(self.kind);
        out.push(inc.len().min(255) as u8);
        out.extend_from_slice(&inc[..inc.len().min(255)]);
        out.extend_from_slice(&self.body);
        out
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Memory set aside up front for a frame; the rest grows with the bytes that
/// actually arrive, so an announced length costs nothing until it is sent.
const FIRST_ALLOCATION: usize = 64 << 10;

/// Reads one frame, refusing anything over `max` bytes before reading it.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Frame> {
    read_frame_within(io, max, None).await
}

/// Bytes all inbound frames being read may hold together. A frame takes
/// its share as its bytes arrive (never its announced length, so a stalled
/// stream holds only what it sent, at most twice over while its buffer
/// doubles); a frame that would go over waits for nobody: it is refused
/// (not the sender's fault, so not `InvalidData`).
#[derive(Clone, Debug)]
pub struct InboundBudget {
    left: Arc<AtomicUsize>,
}

impl InboundBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> InboundBudget {
        InboundBudget {
            left: Arc::new(AtomicUsize::new(bytes)),
        }
    }

    /// Bytes not reserved now.
    pub fn left(&self) -> usize {
        self.left.load(Ordering::Relaxed)
    }

    fn reserve(&self, bytes: usize) -> Option<Reserved> {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                l.checked_sub(bytes)
            })
            .ok()
            .map(|_| Reserved {
                budget: self.clone(),
                bytes,
            })
    }
}

/// A share of the [`InboundBudget`], given back when dropped.
struct Reserved {
    budget: InboundBudget,
    bytes: usize,
}

impl Reserved {
    /// Takes `more` bytes of the budget too, if they are free now.
    fn grow(&mut self, more: usize) -> bool {
        let taken = self
            .budget
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| l.checked_sub(more))
            .is_ok();
        if taken {
            self.bytes += more;
        }
        taken
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.budget.left.fetch_add(self.bytes, Ordering::AcqRel);
    }
}

async fn read_frame_within<T: AsyncRead + Unpin>(
    io: &mut T,
    max: usize,
    budget: Option<&InboundBudget>,
) -> io::Result<Frame> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(invalid(format!(
            "frame of {len} bytes exceeds the limit of {max}"
        )));
    }
    if len < 2 {
        return Err(invalid(format!("frame of {len} bytes is too short")));
    }
    let mut reserved = budget.and_then(|b| b.reserve(0));
    let mut buf: Vec<u8> = Vec::new();
    while buf.len() < len {
        // Grow by doubling (from FIRST_ALLOCATION), so copying stays linear
        // and what is held is at most twice what arrived.
        let filled = buf.len();
        let chunk = (len - filled).min(filled.max(FIRST_ALLOCATION));
        if let (Some(r), Some(b)) = (reserved.as_mut(), budget) {
            if !r.grow(chunk) {
                return Err(io::Error::other(format!(
                    "a frame of {len} bytes does not fit in what inbound streams may hold now ({} bytes left)",
                    b.left()
                )));
            }
        }
        buf.reserve_exact(chunk);
        buf.resize(filled + chunk, 0);
        let mut got = filled;
        while got < buf.len() {
            let n = io.read(&mut buf[got..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("frame cut short: {got} of {len} bytes"),
                ));
            }
            got += n;
        }
    }
    drop(reserved);
    let kind = buf[0];
    let n = buf[1] as usize;
    if 2 + n > len {
        return Err(invalid("incident id runs past the frame"));
    }
    let incident = String::from_utf8(buf[2..2 + n].to_vec())
        .map_err(|_| invalid("incident id is not utf-8"))?;
    buf.drain(..2 + n);
    Ok(Frame {
        kind,
        incident,
        body: buf,
    })
}

/// Writes one frame.
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, frame: &Frame) -> io::Result<()> {
    io.write_all(&frame.encode()).await?;
    io.close().await
}

/// Request-response codec over [`Frame`]s with size caps, and one budget
/// for every inbound request being read.
#[derive(Clone)]
pub struct FrameCodec {
    /// Largest request accepted, in bytes.
    pub max_request: usize,
    /// Largest response accepted, in bytes.
    pub max_response: usize,
    /// Shared by every inbound request of every protocol.
    pub budget: InboundBudget,
}

impl libp2p::request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Frame;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Frame> {
        read_frame_within(io, self.max_request, Some(&self.budget)).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Frame> {
        read_frame(io, self.max_response).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()> {
        write_frame(io, &req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Frame,
    ) -> io::Result<()> {
        write_frame(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversize_or_truncated_frames_fail() {
        futures::executor::block_on(async {
            let f = Frame::new(3, "ip57fstq", vec![1, 2, 3]);
            let bytes = f.encode();
            assert_eq!(read_frame(&mut &bytes[..], 1024).await.unwrap(), f);
            let err = read_frame(&mut &bytes[..], 4).await.unwrap_err();
            assert!(err.to_string().contains("exceeds the limit"), "{err}");
            let err = read_frame(&mut &bytes[..bytes.len() - 1], 1024)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            let mut lying = bytes.clone();
            lying[5] = 200;
            assert!(read_frame(&mut &lying[..], 1024).await.is_err());
        });
    }

    #[test]
    fn an_announced_length_costs_nothing_until_the_bytes_arrive() {
        futures::executor::block_on(async {
            // 1 GiB announced, 10 bytes sent: the read fails cut short
            // without having allocated the announced size.
            let mut lie = (1u32 << 30).to_be_bytes().to_vec();
            lie.extend_from_slice(&[0u8; 10]);
            let err = read_frame(&mut &lie[..], usize::MAX).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            assert!(err.to_string().contains("10 of 1073741824"), "{err}");
        });
    }

    /// Sends `bytes`, then nothing, forever: a stalled stream.
    struct Stalled(Vec<u8>);

    impl AsyncRead for Stalled {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            out: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            if self.0.is_empty() {
                return std::task::Poll::Pending;
            }
            let n = out.len().min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            std::task::Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn a_stalled_stream_holds_only_what_it_sent() {
        futures::executor::block_on(async {
            let budget = InboundBudget::new(256 << 20);
            let mut sent = (60u32 << 20).to_be_bytes().to_vec();
            sent.extend_from_slice(&[0u8; 1000]);
            // Sixteen streams each announce 60 MiB and send 1,000 bytes.
            let mut streams: Vec<_> = (0..16).map(|_| Stalled(sent.clone())).collect();
            let mut reads: Vec<_> = streams
                .iter_mut()
                .map(|s| Box::pin(read_frame_within(s, 64 << 20, Some(&budget))))
                .collect();
            for r in &mut reads {
                assert!(futures::poll!(r.as_mut()).is_pending());
            }
            let held = (256 << 20) - budget.left();
            assert!(held <= 16 * FIRST_ALLOCATION, "{held} bytes held");
            // An honest frame still fits.
            let f = Frame::new(0, "i", vec![7; 1 << 20]).encode();
            let read = read_frame_within(&mut &f[..], 64 << 20, Some(&budget)).await;
            assert_eq!(read.unwrap().body.len(), 1 << 20);
            drop(reads);
            assert_eq!(budget.left(), 256 << 20, "all given back");
        });
    }

    #[test]
    fn inbound_frames_share_one_budget_and_give_it_back() {
        futures::executor::block_on(async {
            let budget = InboundBudget::new(100);
            let f = Frame::new(0, "i", vec![7; 60]).encode();
            let held = budget.reserve(50).unwrap();
            let err = read_frame_within(&mut &f[..], 1024, Some(&budget))
                .await
                .unwrap_err();
            assert_ne!(
                err.kind(),
                io::ErrorKind::InvalidData,
                "not the sender's fault"
            );
            assert!(err.to_string().contains("50 bytes left"), "{err}");
            drop(held);
            assert_eq!(budget.left(), 100);
            let read = read_frame_within(&mut &f[..], 1024, Some(&budget)).await;
            assert_eq!(read.unwrap().body.len(), 60);
            assert_eq!(budget.left(), 100, "given back after the read");
        });
    }
}
