//! A hostile peer against a real node: a change signed by a non-member, a
//! forged signature, a truncated message, and a stranger asking for the
//! document. Each is refused, nothing is applied, and the peer is marked.

mod support;

use std::time::Duration;

use automerge::{ActorId, ChangeHash};
use dontpanic_identity::{ChangeSignature, SecretKey};
use dontpanic_notebook::sync::SignedSyncMessage;
use dontpanic_notebook::Notebook;
use support::raw::{answer_of, send_raw, send_sync};
use support::Node;

/// What the hostile peer sends.
#[derive(Clone, Copy, Debug)]
enum Attack {
    /// Not an attack: the control that shows a correct change gets in.
    Honest,
    NonMemberSigner,
    ForgedSignature,
    Truncated,
}

fn seed_of(dir: &std::path::Path) -> [u8; 32] {
    dontpanic_store::read_key(&dir.join("device.key"))
        .unwrap()
        .unwrap()
        .to_bytes()
}

/// A sync message carrying one new change, signed as `attack` says.
fn crafted(member_dir: &std::path::Path, member: &SecretKey, attack: Attack) -> Vec<u8> {
    let mut nb = Notebook::open(member_dir, None).unwrap();
    let current = nb.data().config().unwrap().current.unwrap();
    nb.open_incident(&current).unwrap();
    // A change the commands could have made for this member (a new title),
    // so only the signature tells the cases apart.
    let doc = nb
        .incident()
        .unwrap()
        .doc()
        .fork()
        .with_actor(ActorId::random());
    let mut incident = dontpanic_incident::Incident::from_doc(doc).unwrap();
    incident.set_author(&member.public().to_bytes());
    let editor = nb.editor();
    let change = incident
        .apply(
            dontpanic_incident::Edit::SetTitle("pwned".into()),
            &editor,
            dontpanic_notebook::now_ms(),
        )
        .unwrap()
        .change;
    let signature = match attack {
        Attack::Honest => ChangeSignature::sign(member, change.hash()),
        Attack::NonMemberSigner => ChangeSignature::sign(&SecretKey::generate(), change.hash()),
        Attack::ForgedSignature | Attack::Truncated => {
            let mut s = ChangeSignature::sign(member, ChangeHash([7; 32]));
            s.hash = change.hash();
            s
        }
    };
    let body = support::one_change_message(&change, signature);
    if let Attack::Truncated = attack {
        let mut m = SignedSyncMessage::decode(&body).unwrap();
        m.message.truncate(m.message.len() / 2);
        return m.encode();
    }
    body
}

#[test]
fn hostile_messages_are_rejected_whole_and_the_peer_marked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Node::loopback(&tmp.path().join("alice"), "alice", &[]);
    let incident = alice.ok("new \"do not touch\"")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let invite = alice.invite();
    let alice_addr: dontpanic_net::Multiaddr = alice.address().parse().unwrap();
    let alice_peer = dontpanic_net::node::relay_peer(&alice_addr).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    for (i, attack) in [
        Attack::NonMemberSigner,
        Attack::ForgedSignature,
        Attack::Truncated,
    ]
    .into_iter()
    .enumerate()
    {
        // A real member (joined with the invite), then its key is used by a raw node.
        let dir = tmp.path().join(format!("mallory{i}"));
        Node::loopback_join(&dir, &format!("mallory{i}"), &invite).quit();
        alice.clear_events();
        let before_total = alice.total();
        let before_log = alice.log_len();
        let seed = seed_of(&dir);
        let body = crafted(&dir, &SecretKey::from_bytes(&seed), attack);
        let answer = rt.block_on(send_sync(seed, &alice_addr, alice_peer, &incident, &body));
        match &answer {
            Ok(f) => assert_eq!(answer_of(f).0, "rejected", "{attack:?}: got {f:?}"),
            Err(e) => panic!("{attack:?}: no answer: {e}"),
        }
        let event = alice.wait_event("rejected", Duration::from_secs(10), |e| {
            e["event"] == "rejected"
        });
        assert!(event["reason"].as_str().unwrap().len() > 5, "{event}");
        assert_eq!(alice.total(), before_total, "{attack:?}: nothing applied");
        assert_eq!(alice.log_len(), before_log, "{attack:?}: nothing stored");
        assert!(!alice.ok("brief")["text"]
            .as_str()
            .unwrap()
            .contains("pwned"));
        let peers = alice.ok("peers");
        let me = dontpanic_net::node::key_peer(&SecretKey::from_bytes(&seed).public().to_bytes())
            .unwrap()
            .to_string();
        let row = peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peer_id"] == me.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(row["state"], "rejected", "{attack:?}: {peers}");
        assert!(row["problem"].as_str().is_some(), "{attack:?}: {row}");
    }

    // The control: a member's correctly signed change, the same way, gets in.
    let dir = tmp.path().join("honest");
    Node::loopback_join(&dir, "honest", &invite).quit();
    let before_log = alice.log_len();
    let seed = seed_of(&dir);
    let body = crafted(&dir, &SecretKey::from_bytes(&seed), Attack::Honest);
    let answer = rt.block_on(send_sync(seed, &alice_addr, alice_peer, &incident, &body));
    assert_eq!(
        answer_of(&answer.expect("an answer")).0,
        "sync",
        "a correct change is accepted"
    );
    assert_eq!(alice.log_len(), before_log + 1);
    assert!(alice.ok("brief")["text"]
        .as_str()
        .unwrap()
        .contains("pwned"));

    // A stream over the envelope cap is refused unread, and its sender marked.
    let dir = tmp.path().join("flooder");
    Node::loopback_join(&dir, "flooder", &invite).quit();
    alice.clear_events();
    let seed = seed_of(&dir);
    let before_log = alice.log_len();
    let huge = vec![0u8; dontpanic_net::wire::MAX_ENVELOPE + 1];
    let answer = rt.block_on(send_raw(seed, &alice_addr, alice_peer, huge));
    assert!(
        answer.as_ref().map_or(true, |b| b.is_empty()),
        "an oversized request gets no answer: {answer:?}"
    );
    let event = alice.wait_event("rejected", Duration::from_secs(20), |e| {
        e["event"] == "rejected"
    });
    assert!(
        event["reason"].as_str().unwrap().contains("more than"),
        "{event}"
    );
    assert_eq!(alice.log_len(), before_log);

    // A stranger (never invited) asking for the document learns nothing.
    let stranger = SecretKey::generate();
    let answer = rt.block_on(send_sync(
        stranger.to_bytes(),
        &alice_addr,
        alice_peer,
        &incident,
        &support::raw::empty_message(),
    ));
    let f = answer.expect("an answer");
    assert_eq!(
        answer_of(&f),
        ("denied", String::new()),
        "Denied with no content"
    );

    // Rejections outlive a restart, until `unblock`.
    let rejected = |alice: &mut Node| -> Vec<String> {
        alice.ok("peers")["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["state"] == "rejected")
            .map(|p| p["peer_id"].as_str().unwrap().to_string())
            .collect()
    };
    let before = rejected(&mut alice);
    assert_eq!(
        before.len(),
        4,
        "three attackers and the flooder: {before:?}"
    );
    let dir = alice.dir.clone();
    alice.quit();
    let mut alice = Node::loopback(&dir, "alice", &[]);
    let mut after = rejected(&mut alice);
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before, "still rejected after a restart");
    let freed = alice.ok(&format!("unblock {}", &before[0][..20]));
    assert_eq!(freed["peer"], before[0].as_str());
    assert!(!rejected(&mut alice).contains(&before[0]));
    let err = alice.cmd("unblock 12D3KooWnobody");
    assert_eq!(err["ok"], false);
    assert!(
        err["error"].as_str().unwrap().contains("no rejected peer"),
        "{err}"
    );
}
