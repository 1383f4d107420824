//! Joining by invite: the mutual HMAC proof of the invite secret, asking a
//! member to admit us, and answering such a request.

use std::time::Duration;

use dontpanic_net::{Frame, Invite, Multiaddr, NodeHandle, PeerId, Proto};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::kind;

/// The terms an invite was made on, as the joiner states them in its join
/// request: the admitting member derives the invite key from them, so a
/// joiner that changes them (a later expiry) proves the wrong key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Terms {
    pub expires_ms: u64,
    pub once: bool,
    pub nonce: [u8; 16],
    pub inviter: PeerId,
}

impl Terms {
    pub(crate) fn of(inv: &Invite) -> Terms {
        Terms {
            expires_ms: inv.expires_ms,
            once: inv.once,
            nonce: inv.nonce,
            inviter: inv.inviter,
        }
    }

    /// `expires u64 | flags u8 | nonce 16 | inviter: u8 length + bytes`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = self.expires_ms.to_be_bytes().to_vec();
        out.push(u8::from(self.once));
        out.extend_from_slice(&self.nonce);
        let pid = self.inviter.to_bytes();
        out.push(pid.len() as u8);
        out.extend_from_slice(&pid);
        out
    }

    /// Reads the terms at the start of `b`; returns them and the rest.
    pub(crate) fn decode(b: &[u8]) -> Option<(Terms, &[u8])> {
        let expires_ms = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let once = match *b.get(8)? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let nonce: [u8; 16] = b.get(9..25)?.try_into().ok()?;
        let n = *b.get(25)? as usize;
        let inviter = PeerId::from_bytes(b.get(26..26 + n)?).ok()?;
        Some((
            Terms {
                expires_ms,
                once,
                nonce,
                inviter,
            },
            &b[26 + n..],
        ))
    }
}

/// The invite key: an HMAC of the incident's join secret over the invite's
/// terms. Only members (who hold the join secret) can make one, so the
/// terms inside an invite cannot be changed by whoever holds it; and a
/// removal writes a new join secret, so every earlier invite stops working.
pub(crate) fn invite_key(join_secret: &[u8], t: &Terms) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(join_secret).expect("hmac takes any key length");
    mac.update(b"dontpanic/invite/v2:");
    mac.update(&t.encode());
    mac.finalize().into_bytes().into()
}

/// The join proof: an HMAC of the invite key bound to both peer ids, so
/// it proves knowledge of the key without revealing it and cannot be
/// replayed by anyone else.
fn proof_mac(secret: &[u8], label: &[u8], a: &PeerId, b: &PeerId) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(b"dontpanic/join/v2:");
    mac.update(label);
    mac.update(&a.to_bytes());
    mac.update(&b.to_bytes());
    mac
}

/// The proof that `a` knows the secret, addressed to `b`.
pub(crate) fn proof(secret: &[u8], label: &[u8], a: &PeerId, b: &PeerId) -> [u8; 32] {
    proof_mac(secret, label, a, b)
        .finalize()
        .into_bytes()
        .into()
}

/// Constant-time check of a proof.
pub(crate) fn verify_proof(
    secret: &[u8],
    label: &[u8],
    a: &PeerId,
    b: &PeerId,
    got: &[u8],
) -> bool {
    proof_mac(secret, label, a, b).verify_slice(got).is_ok()
}

/// Now, by this machine's clock, in unix ms.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The relay part (`…/p2p/<relay>`) of every circuit address.
pub(crate) fn relays_in(addresses: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    for a in addresses {
        let protos: Vec<_> = a.iter().collect();
        if let Some(i) = protos
            .iter()
            .position(|p| matches!(p, dontpanic_net::Protocol::P2pCircuit))
        {
            let relay: Multiaddr = protos[..i].iter().cloned().collect();
            if !out.contains(&relay) {
                out.push(relay);
            }
        }
    }
    out
}

/// Asks one peer to admit us; returns the signed history it sent.
pub(crate) async fn ask_to_join(
    node: &NodeHandle,
    inv: &Invite,
    me: &PeerId,
    name: &str,
    peer: PeerId,
) -> Result<Vec<u8>, String> {
    let mut body = proof(&inv.secret, b"join", me, &peer).to_vec();
    body.extend_from_slice(&Terms::of(inv).encode());
    body.extend_from_slice(name.as_bytes());
    let frame = Frame::new(0, &inv.incident, body);
    match tokio::time::timeout(
        Duration::from_secs(30),
        node.request(Proto::Join, peer, frame),
    )
    .await
    {
        Ok(Ok(f)) if f.kind == kind::ADMITTED && f.body.len() >= 32 => {
            if verify_proof(&inv.secret, b"admit", &peer, me, &f.body[..32]) {
                Ok(f.body[32..].to_vec())
            } else {
                Err(format!("{peer}: its proof of membership is wrong"))
            }
        }
        Ok(Ok(f)) => Err(format!(
            "{peer}: refused ({})",
            String::from_utf8_lossy(&f.body)
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{peer}: no answer within 30 s")),
    }
}

/// The name a joiner asked for: printable, trimmed, at most 64 characters.
pub(crate) fn joiner_name(bytes: &[u8]) -> String {
    let name: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(64)
        .collect();
    if name.is_empty() {
        "anonymous".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_the_secret_the_label_and_both_peers() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let p = proof(b"secret", b"join", &a, &b);
        assert!(verify_proof(b"secret", b"join", &a, &b, &p));
        assert!(!verify_proof(b"other", b"join", &a, &b, &p));
        assert!(!verify_proof(b"secret", b"admit", &a, &b, &p));
        assert!(!verify_proof(b"secret", b"join", &b, &a, &p));
        assert!(!verify_proof(b"secret", b"join", &a, &b, &p[..31]));
    }

    #[test]
    fn the_invite_key_binds_every_term() {
        let t = Terms {
            expires_ms: 1_000,
            once: false,
            nonce: [1; 16],
            inviter: PeerId::random(),
        };
        let bytes = [t.encode(), b"carol".to_vec()].concat();
        let (back, rest) = Terms::decode(&bytes).unwrap();
        assert_eq!((back, rest), (t.clone(), &b"carol"[..]));
        let k = invite_key(b"secret", &t);
        let changed = [
            Terms {
                expires_ms: 2_000,
                ..t.clone()
            },
            Terms {
                once: true,
                ..t.clone()
            },
            Terms {
                nonce: [2; 16],
                ..t.clone()
            },
            Terms {
                inviter: PeerId::random(),
                ..t.clone()
            },
        ];
        for c in changed {
            assert_ne!(invite_key(b"secret", &c), k, "{c:?}");
        }
        assert_ne!(invite_key(b"rotated", &t), k);
    }

    #[test]
    fn joiner_names_are_printable_and_bounded() {
        assert_eq!(joiner_name(b"  carol \n"), "carol");
        assert_eq!(joiner_name(b"\x1b[31mred"), "[31mred");
        assert_eq!(joiner_name(b""), "anonymous");
        assert_eq!(joiner_name("é".repeat(100).as_bytes()).chars().count(), 64);
    }
}
