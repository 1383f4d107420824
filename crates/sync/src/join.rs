//! Joining by invite: the mutual HMAC proof of the invite secret, asking a
//! member to admit us, and answering such a request.

use std::time::Duration;

use dontpanic_net::wire::{JoinRequest, JoinResponse, SignedHistory, WireTerms};
use dontpanic_net::{Invite, Multiaddr, NodeHandle, PeerId};
use hmac::{Hmac, Mac};
use serde_bytes::ByteBuf;
use sha2::Sha256;

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

    /// The terms as a joiner sends them.
    pub(crate) fn to_wire(&self) -> WireTerms {
        WireTerms {
            expires_ms: self.expires_ms,
            once: self.once,
            nonce: ByteBuf::from(self.nonce.to_vec()),
            inviter: ByteBuf::from(self.inviter.to_bytes()),
        }
    }

    /// The terms a joiner sent, if well-formed.
    pub(crate) fn from_wire(w: &WireTerms) -> Option<Terms> {
        Some(Terms {
            expires_ms: w.expires_ms,
            once: w.once,
            nonce: w.nonce.as_slice().try_into().ok()?,
            inviter: PeerId::from_bytes(&w.inviter).ok()?,
        })
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
) -> Result<SignedHistory, String> {
    let request = JoinRequest {
        incident: inv.incident.clone(),
        proof: ByteBuf::from(proof(&inv.secret, b"join", me, &peer).to_vec()),
        terms: Terms::of(inv).to_wire(),
        name: name.to_string(),
    };
    match tokio::time::timeout(Duration::from_secs(30), node.join(peer, request)).await {
        Ok(Ok(JoinResponse::Admitted { proof, history })) => {
            if verify_proof(&inv.secret, b"admit", &peer, me, &proof) {
                Ok(history)
            } else {
                Err(format!("{peer}: its proof of membership is wrong"))
            }
        }
        Ok(Ok(JoinResponse::Denied { reason })) => Err(format!("{peer}: refused ({reason})")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{peer}: no answer within 30 s")),
    }
}

/// The name a joiner asked for: printable, trimmed, at most 64 characters.
pub(crate) fn joiner_name(asked: &str) -> String {
    let name: String = asked
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
        assert_eq!(Terms::from_wire(&t.to_wire()), Some(t.clone()));
        let mut short = t.to_wire();
        short.nonce.truncate(15);
        assert_eq!(Terms::from_wire(&short), None);
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
        assert_eq!(joiner_name("  carol \n"), "carol");
        assert_eq!(joiner_name("\x1b[31mred"), "[31mred");
        assert_eq!(joiner_name(""), "anonymous");
        assert_eq!(joiner_name(&"é".repeat(100)).chars().count(), 64);
    }
}
