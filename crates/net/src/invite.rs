//! The invite: one pasteable string that lets a newcomer join an incident.
//!
//! `dpinv2` followed by lower-case base32 (no padding) of:
//!
//! ```text
//! version u8 (=2) | incident id: u8 len + utf8 | invite key: 32 bytes
//! | expires: u64 BE (unix ms) | flags u8 (bit 0: single use) | nonce: 16 bytes
//! | inviter peer id: u8 len + bytes | addresses: u8 count, each u16 len + multiaddr bytes
//! | checksum: first 4 bytes of sha256(everything before)
//! ```
//!
//! The invite key is derived by the inviter from the incident's join secret
//! and the invite's terms (expiry, flags, nonce, inviter); the admitting
//! member derives it again from what the joiner says the terms are, so a
//! joiner who changes the expiry holds the wrong key (see `dontpanic-sync`).
//!
//! The checksum turns a mistyped or truncated invite into a clear error
//! instead of a dial that hangs.

use std::fmt;
use std::str::FromStr;

use libp2p::{Multiaddr, PeerId};
use sha2::{Digest, Sha256};

/// The prefix every invite starts with.
pub const PREFIX: &str = "dpinv";
const VERSION: u8 = 2;
const BASE32: data_encoding::Encoding = data_encoding::BASE32_NOPAD;

/// Why an invite could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// Not starting with `dpinv`.
    #[error("not a dontpanic invite: it should start with `{PREFIX}{VERSION}`")]
    Kind,
    /// A version this build does not know.
    #[error("invite version {0} is not supported by this dontpanic (it reads version {VERSION}; ask for a new invite)")]
    Version(String),
    /// Not base32.
    #[error("invite is not valid base32 (a character was mistyped?): {0}")]
    Encoding(String),
    /// Checksum mismatch.
    #[error("invite checksum does not match: it was mistyped or cut short; copy it again")]
    Checksum,
    /// Well encoded but the content is wrong.
    #[error("invite content is malformed: {0}")]
    Content(String),
}

/// A capability to join one incident, and where to find a member.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// The incident id.
    pub incident: String,
    /// The invite key: derived from the incident's join secret and this
    /// invite's terms; proves the right to join.
    pub secret: [u8; 32],
    /// When the invite stops admitting anyone (unix ms, the inviter's
    /// clock; checked by the admitting member's clock).
    pub expires_ms: u64,
    /// Admits one joiner only (and only through its inviter).
    pub once: bool,
    /// Names this invite (single use is remembered by it).
    pub nonce: [u8; 16],
    /// The inviting member's peer id.
    pub inviter: PeerId,
    /// Addresses where the inviter was listening (direct and relayed).
    pub addresses: Vec<Multiaddr>,
}

/// The secret is a capability: it never reaches a log through `{:?}`.
impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("incident", &self.incident)
            .field("secret", &"(redacted)")
            .field("expires_ms", &self.expires_ms)
            .field("once", &self.once)
            .field("inviter", &self.inviter)
            .field("addresses", &self.addresses)
            .finish()
    }
}

impl Invite {
    fn payload(&self) -> Vec<u8> {
        let mut p = vec![VERSION];
        p.push(self.incident.len() as u8);
        p.extend_from_slice(self.incident.as_bytes());
        p.extend_from_slice(&self.secret);
        p.extend_from_slice(&self.expires_ms.to_be_bytes());
        p.push(u8::from(self.once));
        p.extend_from_slice(&self.nonce);
        let pid = self.inviter.to_bytes();
        p.push(pid.len() as u8);
        p.extend_from_slice(&pid);
        let addrs: Vec<&Multiaddr> = self.addresses.iter().take(16).collect();
        p.push(addrs.len() as u8);
        for a in addrs {
            let b = a.to_vec();
            p.extend_from_slice(&(b.len() as u16).to_be_bytes());
            p.extend_from_slice(&b);
        }
        let sum = Sha256::digest(&p);
        p.extend_from_slice(&sum[..4]);
        p
    }
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{VERSION}{}",
            BASE32.encode(&self.payload()).to_ascii_lowercase()
        )
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], InviteError> {
        if self.0.len() < n {
            return Err(InviteError::Content(format!("{what} is cut short")));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn byte(&mut self, what: &str) -> Result<u8, InviteError> {
        Ok(self.take(1, what)?[0])
    }
}

impl FromStr for Invite {
    type Err = InviteError;
    fn from_str(s: &str) -> Result<Self, InviteError> {
        let s = s.trim();
        let rest = s.strip_prefix(PREFIX).ok_or(InviteError::Kind)?;
        let version_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        // `find` returns a char boundary.
        let (version, body) = rest.split_at(version_end);
        if version != VERSION.to_string() {
            return Err(if version.is_empty() {
                InviteError::Kind
            } else {
                InviteError::Version(version.to_string())
            });
        }
        let body = body.to_ascii_uppercase();
        let bytes = BASE32.decode(body.as_bytes()).map_err(|e| match e.kind {
            // A length no encoder produces means the invite was cut short.
            data_encoding::DecodeKind::Length => InviteError::Checksum,
            _ => InviteError::Encoding(e.to_string()),
        })?;
        if bytes.len() < 5 {
            return Err(InviteError::Checksum);
        }
        let (payload, sum) = bytes.split_at(bytes.len() - 4);
        if Sha256::digest(payload)[..4] != *sum {
            return Err(InviteError::Checksum);
        }
        let mut r = Reader(payload);
        let v = r.byte("version")?;
        if v != VERSION {
            return Err(InviteError::Version(v.to_string()));
        }
        let n = r.byte("incident id")? as usize;
        let incident = String::from_utf8(r.take(n, "incident id")?.to_vec())
            .map_err(|_| InviteError::Content("incident id is not text".into()))?;
        let secret: [u8; 32] = r.take(32, "invite key")?.try_into().expect("32 bytes");
        let expires_ms = u64::from_be_bytes(r.take(8, "expiry")?.try_into().expect("8 bytes"));
        let flags = r.byte("flags")?;
        if flags > 1 {
            return Err(InviteError::Content(format!("unknown flags {flags:#04x}")));
        }
        let nonce: [u8; 16] = r.take(16, "nonce")?.try_into().expect("16 bytes");
        let n = r.byte("peer id")? as usize;
        let inviter = PeerId::from_bytes(r.take(n, "peer id")?)
            .map_err(|e| InviteError::Content(format!("peer id: {e}")))?;
        let count = r.byte("address count")?;
        let mut addresses = Vec::new();
        for i in 0..count {
            let len = u16::from_be_bytes(r.take(2, "address length")?.try_into().expect("2 bytes"));
            let a = Multiaddr::try_from(r.take(len as usize, "address")?.to_vec())
                .map_err(|e| InviteError::Content(format!("address {i}: {e}")))?;
            addresses.push(a);
        }
        if !r.0.is_empty() {
            return Err(InviteError::Content("trailing bytes".into()));
        }
        Ok(Invite {
            incident,
            secret,
            expires_ms,
            once: flags == 1,
            nonce,
            inviter,
            addresses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Invite {
        Invite {
            incident: "ip57fstq".into(),
            secret: [7; 32],
            expires_ms: 1_764_580_000_000,
            once: true,
            nonce: [3; 16],
            inviter: PeerId::random(),
            addresses: vec![
                "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
                "/ip4/10.0.0.2/udp/4001/quic-v1".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn invite_round_trips() {
        let inv = sample();
        let text = inv.to_string();
        assert!(text.starts_with("dpinv2"));
        assert_eq!(text.parse::<Invite>().unwrap(), inv);
        assert_eq!(
            text.to_uppercase()
                .replacen("DPINV2", "dpinv2", 1)
                .parse::<Invite>()
                .unwrap(),
            inv
        );
    }

    #[test]
    fn bad_invites_say_what_is_wrong() {
        let good = sample().to_string();
        let mut typo = good.clone().into_bytes();
        let i = typo.len() / 2;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        let cases: Vec<(String, InviteError)> = vec![
            ("hello".into(), InviteError::Kind),
            (
                good.replacen("dpinv2", "dpinv9", 1),
                InviteError::Version("9".into()),
            ),
            // A version-1 invite (before expiry) says so rather than failing
            // its checksum.
            (
                good.replacen("dpinv2", "dpinv1", 1),
                InviteError::Version("1".into()),
            ),
            (
                good.get(..good.len() - 7).expect("ascii").to_string(),
                InviteError::Checksum,
            ),
            (String::from_utf8(typo).unwrap(), InviteError::Checksum),
        ];
        for (text, want) in cases {
            let got = text.parse::<Invite>().unwrap_err();
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&want),
                "{text}: {got}"
            );
        }
        let mut bad_char = good.clone();
        bad_char.replace_range(10..11, "1");
        assert!(matches!(
            bad_char.parse::<Invite>(),
            Err(InviteError::Encoding(_))
        ));
    }
}
