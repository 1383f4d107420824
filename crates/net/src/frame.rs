//! The one frame format of dontpanic's request-response protocols, and its
//! size-capped codec.
//!
//! ```text
//! u32 BE length | kind u8 | incident id: u8 len + utf8 | body
//! ```

use std::io;

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

/// Reads one frame, refusing anything over `max` bytes before reading it.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Frame> {
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
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
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

/// Request-response codec over [`Frame`]s with a size cap.
#[derive(Clone)]
pub struct FrameCodec {
    /// Largest frame accepted, in bytes.
    pub max: usize,
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
        read_frame(io, self.max).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Frame> {
        read_frame(io, self.max).await
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
}
