//! Joining by invite: the mutual HMAC proof of the invite secret, asking a
//! member to admit us, and answering such a request.

use std::time::Duration;

use dontpanic_net::{Frame, Invite, Multiaddr, NodeHandle, PeerId, Proto};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::kind;

/// The join proof: an HMAC of the invite secret bound to both peer ids, so
/// it proves knowledge of the secret without revealing it and cannot be
/// replayed by anyone else.
fn proof_mac(secret: &[u8], label: &[u8], a: &PeerId, b: &PeerId) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(b"dontpanic/join/v1:");
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
    fn joiner_names_are_printable_and_bounded() {
        assert_eq!(joiner_name(b"  carol \n"), "carol");
        assert_eq!(joiner_name(b"\x1b[31mred"), "[31mred");
        assert_eq!(joiner_name(b""), "anonymous");
        assert_eq!(joiner_name("é".repeat(100).as_bytes()).chars().count(), 64);
    }
}
