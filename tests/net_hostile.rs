//! A hostile peer against a real `dontpanic` node ("alice").
//!
//! Mallory joins honestly with an invite, so her key is on the roster, then
//! quits; the test process starts a raw libp2p node with her device key
//! (`dontpanic_net::node::start`), dials alice and sends hand-made
//! `/dontpanic/sync/2` requests.
//!
//! Behaviour documented here (and asserted): alice answers a message that
//! fails verification with `Rejected { reason }`, prints
//! a `rejected` event, lists the peer in `peers` with state `rejected` and a
//! `problem`, and closes the connection about half a second later. From then
//! on the peer is blocked for the rest of alice's session: its requests get
//! `Denied { "not trusted" }` even when they are valid, or fail because
//! the connection is closed. Each attack therefore uses a fresh member.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use automerge::sync::{ChunkList, Message, MessageVersion};
use automerge::ChangeHash;
use dontpanic_identity::{ChangeSignature, SecretKey};
use dontpanic_net::wire::{SyncRequest, SyncResponse};
use dontpanic_net::{Multiaddr, NetError, PeerId};
use dontpanic_notebook::incident::{Edit, Editor, Incident};
use dontpanic_notebook::sync::SignedSyncMessage;
use dontpanic_notebook::Notebook;
use support::raw::{answer_of, empty_message, raw_node, raw_swarm, send_raw, send_sync};
use support::{device_seed, wait_until, Node, EVENT_TIMEOUT};

/// What the hostile peer sends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Attack {
    /// A well-formed change signed correctly, by the member: the control
    /// that shows the crafted messages are otherwise acceptable.
    Honest,
    /// A change signed (validly) by a key that is not on the roster.
    NonMemberSigner,
    /// A change naming the member as signer, with a signature that is not
    /// over its hash.
    ForgedSignature,
    /// A change with no signature at all (the signature sent is for another
    /// change).
    Unsigned,
    /// Automerge's whole-document path: a saved document holding every
    /// known change plus one signed by a non-member.
    WholeDocumentNonMember,
    /// The whole-document path with the member's own, correctly signed
    /// change (the carrier of a compressed bomb).
    WholeDocument,
    /// A change that names another member (alice) as its Automerge author
    /// but is signed, validly, by the sender.
    AuthorMismatch,
    /// The honest message cut in half.
    Truncated,
    /// A well-formed envelope around bytes that are no Automerge message.
    Garbage,
}

/// Alice and what the attacks need from her.
struct Target {
    node: Node,
    key: [u8; 32],
    incident: String,
    invite: String,
    addr: Multiaddr,
    peer: PeerId,
}

fn target(dir: &Path) -> Target {
    let mut node = Node::loopback(&dir.join("alice"), "alice", &[]);
    let incident = node.ok("new \"do not touch\" --sev 1")["id"]
        .as_str()
        .unwrap()
        .to_string();
    node.ok("hypo \"somebody is poking at us\"");
    let invite = node.invite();
    let key = device_seed(&dir.join("alice"));
    let key = SecretKey::from_bytes(&key).public().to_bytes();
    let addr: Multiaddr = node.address().parse().unwrap();
    let peer = dontpanic_net::node::relay_peer(&addr).unwrap();
    Target {
        node,
        key,
        incident,
        invite,
        addr,
        peer,
    }
}

/// A member who joined honestly and left; returns its data dir and key.
fn member(t: &mut Target, dir: &Path, name: &str) -> (std::path::PathBuf, SecretKey) {
    let d = dir.join(name);
    let n = Node::loopback_join(&d, name, &t.invite);
    assert!(n.quit().success());
    let key = SecretKey::from_bytes(&device_seed(&d));
    (d, key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signed sync message carrying one new note written on top of the
/// member's copy of the incident, signed as `attack` says.
fn crafted(member_dir: &Path, member: &SecretKey, attack: Attack, text: &str) -> Vec<u8> {
    crafted_as(member_dir, member, attack, text, None)
}

/// [`crafted`], with the timeline entry (and, for
/// [`Attack::AuthorMismatch`], the Automerge author) naming `claim` (key,
/// name) instead of the signer.
fn crafted_as(
    member_dir: &Path,
    member: &SecretKey,
    attack: Attack,
    text: &str,
    claim: Option<(&[u8; 32], &str)>,
) -> Vec<u8> {
    let mut nb = Notebook::open(member_dir, None).unwrap();
    let current = nb.data().config().unwrap().current.unwrap();
    nb.open_incident(&current).unwrap();
    let stranger = SecretKey::generate();
    let signer = match attack {
        Attack::NonMemberSigner | Attack::WholeDocumentNonMember => &stranger,
        _ => member,
    };
    let mut incident = Incident::from_doc(nb.incident().unwrap().doc().fork()).unwrap();
    let (key, name) = match claim {
        Some((k, n)) => (*k, n.to_string()),
        None => (signer.public().to_bytes(), "mallory".to_string()),
    };
    // The Automerge author field names the signer, except in the attack
    // on it; the timeline entry names whoever is claimed.
    incident.set_author(&if attack == Attack::AuthorMismatch {
        key
    } else {
        signer.public().to_bytes()
    });
    let editor = Editor {
        key: hex(&key),
        name,
    };
    let applied = incident
        .apply(
            Edit::AddNote { text: text.into() },
            &editor,
            dontpanic_notebook::now_ms(),
        )
        .unwrap();
    let change = applied.change;
    let hash = change.hash();
    let signature = match attack {
        Attack::ForgedSignature => {
            // Her own valid signature, over some other hash.
            let mut s = ChangeSignature::sign(member, ChangeHash([7; 32]));
            s.hash = hash;
            s
        }
        Attack::Unsigned => ChangeSignature::sign(member, ChangeHash([7; 32])),
        _ => ChangeSignature::sign(signer, hash),
    };
    let chunks = if matches!(
        attack,
        Attack::WholeDocumentNonMember | Attack::WholeDocument
    ) {
        incident.doc().save()
    } else {
        change.raw_bytes().to_vec()
    };
    let mut message = Message {
        heads: vec![hash],
        need: vec![],
        have: vec![],
        changes: ChunkList::from(chunks),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode();
    if attack == Attack::Garbage {
        message = b"\x42 this is not an automerge sync message at all".to_vec();
    }
    if attack == Attack::Truncated {
        message.truncate(message.len() / 2);
    }
    SignedSyncMessage {
        message,
        signatures: vec![signature],
    }
    .encode()
}

/// Sends one sync message (the notebook's encoding) as the holder of `seed`.
fn send(
    rt: &tokio::runtime::Runtime,
    t: &Target,
    seed: [u8; 32],
    body: Vec<u8>,
) -> Result<SyncResponse, NetError> {
    rt.block_on(send_sync(seed, &t.addr, t.peer, &t.incident, &body))
}

fn peer_of(key: &SecretKey) -> String {
    dontpanic_net::node::key_peer(&key.public().to_bytes())
        .unwrap()
        .to_string()
}

/// What alice holds, to compare before and after.
fn state(alice: &mut Node) -> (u64, usize, String) {
    (alice.total(), alice.log_len(), alice.report())
}

/// Each attack is refused whole: REJECTED (or a failed request), nothing
/// applied or stored, a `rejected` event, the peer marked in `peers`; and a
/// blocked peer stays blocked even when it then sends a valid message.
#[test]
fn forged_foreign_and_garbled_changes_are_refused_and_the_peer_marked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = target(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (i, attack) in [
        Attack::NonMemberSigner,
        Attack::ForgedSignature,
        Attack::Unsigned,
        Attack::WholeDocumentNonMember,
        Attack::AuthorMismatch,
        Attack::Truncated,
        Attack::Garbage,
    ]
    .into_iter()
    .enumerate()
    {
        let (dir, key) = member(&mut t, tmp.path(), &format!("mallory{i}"));
        let me = peer_of(&key);
        let text = format!("pwned by {attack:?}");
        let body = crafted_as(&dir, &key, attack, &text, Some((&t.key, "alice")));
        let before = state(&mut t.node);
        match send(&rt, &t, key.to_bytes(), body) {
            Ok(f) => {
                let (kind, why) = answer_of(&f);
                assert_eq!(kind, "rejected", "{attack:?}: answer {f:?}");
                assert!(!why.is_empty(), "{attack:?}: Rejected says why");
            }
            // Also acceptable: the request failed (connection closed).
            Err(e) => eprintln!("{attack:?}: request failed: {e}"),
        }
        let ev = t
            .node
            .wait_event(&format!("rejected ({attack:?})"), EVENT_TIMEOUT, |e| {
                e["event"] == "rejected" && e["peer"] == me.as_str()
            });
        assert!(
            ev["reason"].as_str().is_some_and(|r| r.len() > 10),
            "{attack:?}: {ev}"
        );
        eprintln!("{attack:?}: {}", ev["reason"]);
        let after = state(&mut t.node);
        assert_eq!(after.0, before.0, "{attack:?}: timeline total changed");
        assert_eq!(after.1, before.1, "{attack:?}: a change was stored");
        assert_eq!(after.2, before.2, "{attack:?}: the report changed");
        assert!(!after.2.contains("pwned"));
        let row = t
            .node
            .peer_row(&me)
            .unwrap_or_else(|| panic!("{attack:?}: peer missing from `peers`"));
        assert_eq!(row["state"], "rejected", "{attack:?}: {row}");
        assert!(
            row["problem"].as_str().is_some_and(|p| !p.is_empty()),
            "{attack:?}: {row}"
        );

        if i == 0 {
            // Once rejected, always refused in this session: even an
            // honest, correctly signed change from the same peer.
            let honest = crafted(&dir, &key, Attack::Honest, "honest after all");
            match send(&rt, &t, key.to_bytes(), honest) {
                Ok(f) => assert_eq!(answer_of(&f).0, "denied", "blocked peer: {f:?}"),
                Err(e) => eprintln!("blocked peer: request failed: {e}"),
            }
            assert_eq!(state(&mut t.node), after, "nothing from a blocked peer");
            assert_eq!(t.node.peer_row(&me).unwrap()["state"], "rejected");
        }
    }
    // Alice is still fine with honest members.
    let mut bob = Node::loopback_join(&tmp.path().join("bob"), "bob", &t.invite);
    bob.ok("note \"bob is honest\"");
    support::converge(
        "alice and bob",
        &mut [&mut t.node, &mut bob],
        &["bob is honest"],
    );
}

/// The control: the same crafted path with an honest signature is accepted,
/// so the refusals above are due to the signatures, not the crafting.
#[test]
fn a_correctly_signed_change_from_a_member_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = target(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir, key) = member(&mut t, tmp.path(), "mallory");
    let before = state(&mut t.node);
    let body = crafted(&dir, &key, Attack::Honest, "mallory was here, honestly");
    let f = send(&rt, &t, key.to_bytes(), body).expect("an answer");
    assert_eq!(answer_of(&f).0, "sync", "{f:?}");
    t.node.wait_event("remote_edit", EVENT_TIMEOUT, |e| {
        e["event"] == "remote_edit" && e["author"] == "mallory"
    });
    let (total, log, report) = state(&mut t.node);
    assert_eq!(total, before.0 + 1);
    assert_eq!(log, before.1 + 1);
    assert!(report.contains("mallory was here, honestly"));
    assert!(t.node.events().iter().all(|e| e["event"] != "rejected"));
}

/// A stranger (never invited) is told nothing: DENIED with an empty body,
/// whatever it asks, its changes are not applied, and it cannot join
/// without the invite's secret.
#[test]
fn a_stranger_learns_nothing_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = target(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A member's copy to write on, but a stranger's key on the wire.
    let (dir, key) = member(&mut t, tmp.path(), "insider");
    let before = state(&mut t.node);
    let stranger = SecretKey::generate();
    let f = send(&rt, &t, stranger.to_bytes(), empty_message()).expect("an answer");
    assert_eq!(answer_of(&f), ("denied", String::new()), "{f:?}");
    // Even carrying a change validly signed by a member.
    let body = crafted(&dir, &key, Attack::Honest, "smuggled by a stranger");
    let f = send(&rt, &t, stranger.to_bytes(), body).expect("an answer");
    assert_eq!(answer_of(&f), ("denied", String::new()), "{f:?}");
    // Nor does asking about another incident id reveal anything.
    let f = rt
        .block_on(async {
            let node = raw_node(stranger.to_bytes(), &t.addr).await;
            let empty = support::raw::wire_message(&empty_message());
            let request = SyncRequest::Sync {
                incident: "nosuchid".into(),
                message: empty,
            };
            node.sync(t.peer, request).await
        })
        .expect("an answer");
    assert_eq!(answer_of(&f), ("denied", String::new()), "{f:?}");
    // Nor can it join without the invite's secret.
    let f = rt
        .block_on(async {
            let node = raw_node(stranger.to_bytes(), &t.addr).await;
            let request = dontpanic_net::wire::JoinRequest {
                incident: t.incident.clone(),
                proof: serde_bytes::ByteBuf::from(vec![0x5a; 32]),
                terms: dontpanic_net::wire::WireTerms {
                    expires_ms: u64::MAX,
                    once: false,
                    nonce: serde_bytes::ByteBuf::from(vec![1; 16]),
                    inviter: serde_bytes::ByteBuf::from(t.peer.to_bytes()),
                },
                name: "eve".into(),
            };
            node.join(t.peer, request).await
        })
        .expect("an answer");
    assert_eq!(
        f,
        dontpanic_net::wire::JoinResponse::Denied {
            reason: "wrong invite".into()
        }
    );
    assert_eq!(state(&mut t.node), before);
    assert!(
        t.node
            .events()
            .iter()
            .all(|e| e["event"] != "member_joined" || e["name"] != "eve"),
        "eve was admitted"
    );
}

/// What is not a message of the protocol is refused before anything is
/// applied, and alice names its sender: a stream over the 1 MiB envelope
/// cap, and bytes that are not CBOR of the protocol's types.
#[test]
fn oversized_or_unreadable_requests_are_refused_and_the_peer_marked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = target(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (name, bytes, why) in [
        (
            "flooder",
            vec![0u8; dontpanic_net::wire::MAX_ENVELOPE + 1],
            "more than",
        ),
        (
            "garbler",
            b"\xa1\x65Whole\x63not a sync request".to_vec(),
            "unreadable sync request",
        ),
    ] {
        let (_dir, key) = member(&mut t, tmp.path(), name);
        let me = peer_of(&key);
        let before = state(&mut t.node);
        let started = Instant::now();
        let answer = rt.block_on(send_raw(key.to_bytes(), &t.addr, t.peer, bytes));
        eprintln!("{name}: {answer:?} after {:?}", started.elapsed());
        // The stream is closed unanswered: an error, or nothing read.
        assert!(
            answer.as_ref().map_or(true, |b| b.is_empty()),
            "{name}: no answer: {answer:?}"
        );
        assert_eq!(state(&mut t.node), before);
        let ev = t
            .node
            .wait_event(&format!("rejected ({name})"), EVENT_TIMEOUT, |e| {
                e["event"] == "rejected" && e["peer"] == me.as_str()
            });
        assert!(
            ev["reason"].as_str().unwrap_or("").contains(why),
            "{name}: {ev}"
        );
        wait_until("peer marked rejected", EVENT_TIMEOUT, || {
            t.node
                .peer_row(&me)
                .is_some_and(|r| r["state"] == "rejected" && r["problem"].is_string())
        });
    }
}

/// A member may write only as herself: a change correctly signed by mallory
/// whose timeline entry names alice (key and name) must not end up in
/// alice's timeline and report as written by alice.
///
/// A timeline entry naming alice but signed by mallory is refused: entries
/// must name the key that signed them (`dontpanic_incident::claimed_authors`).
#[test]
fn a_member_cannot_write_in_another_members_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = target(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir, key) = member(&mut t, tmp.path(), "mallory");
    let text = "alice says: drop the prod database";
    let body = crafted_as(&dir, &key, Attack::Honest, text, Some((&t.key, "alice")));
    let answer = send(&rt, &t, key.to_bytes(), body);
    // Either refused outright, or accepted and shown as mallory's.
    if let Ok(f) = &answer {
        if answer_of(f).0 == "sync" {
            t.node.wait_event("remote_edit", EVENT_TIMEOUT, |e| {
                e["event"] == "remote_edit" && e["author"] == "mallory"
            });
        }
    }
    let v = t.node.ok("timeline --all");
    let alice_key = hex(&t.key);
    for e in v["entries"].as_array().unwrap() {
        if e["text"].as_str().unwrap().contains(text) {
            assert!(
                e["by"] != alice_key.as_str() && e["name"] != "alice",
                "mallory's change is shown as alice's: {e}"
            );
        }
    }
    assert!(
        !t.node.report().contains(&format!("alice — note: {text}")),
        "the report credits alice with mallory's note"
    );
}

/// What a member gone rogue writes by hand against the schema.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rogue {
    /// One change summarised `note: typo` that deletes every hypothesis
    /// and every timeline entry.
    Erase,
    /// Deletes alice (the creator) from the roster.
    RosterDelete,
    /// Renames alice's roster entry, so her work reads as someone else's.
    Rename,
    /// Adds an extra key to the roster inside an ordinary note.
    SmuggledKey,
    /// A note signed by the member whose timeline entry says "alice".
    NameSpoof,
    /// A valid change reusing alice's (actor, seq): Automerge refuses it,
    /// and it must be refused before the journal, or alice cannot open the
    /// incident after a restart.
    DuplicateSeq,
}

/// The signed sync message carrying one change the member wrote by hand on
/// her copy of the incident.
fn rogue_change(
    member_dir: &Path,
    member: &SecretKey,
    name: &str,
    alice_key: &str,
    attack: Rogue,
) -> Vec<u8> {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ReadDoc, ROOT};
    let mut nb = Notebook::open(member_dir, None).unwrap();
    let current = nb.data().config().unwrap().current.unwrap();
    nb.open_incident(&current).unwrap();
    let doc = nb.incident().unwrap().doc();
    let me = hex(&member.public().to_bytes());
    fn get(d: &impl ReadDoc, obj: &automerge::ObjId, key: &str) -> automerge::ObjId {
        d.get(obj, key).unwrap().unwrap().1
    }
    let change = if attack == Rogue::DuplicateSeq {
        // Alice's change admitting this member: write on the state before
        // it, under her actor, so this change gets the same seq.
        let admission = doc
            .get_changes(&[])
            .into_iter()
            .find(|c| {
                c.message()
                    .is_some_and(|m| m.starts_with(&format!("{name} joined")))
            })
            .expect("the admission");
        let mut forged = Incident::from_doc(doc.fork_at(admission.deps()).unwrap()).unwrap();
        forged.set_author(&member.public().to_bytes());
        forged.doc_mut().set_actor(admission.actor_id().clone());
        let editor = Editor {
            key: me.clone(),
            name: name.into(),
        };
        let c = forged
            .apply(
                Edit::AddNote {
                    text: "pwned by DuplicateSeq".into(),
                },
                &editor,
                1,
            )
            .unwrap()
            .change;
        assert_eq!(
            (c.actor_id(), c.seq()),
            (admission.actor_id(), admission.seq())
        );
        c
    } else {
        let mut d = doc.fork();
        d.set_author(Some(automerge::Author::from(
            member.public().to_bytes().to_vec(),
        )));
        let mut tx = d.transaction();
        let shown = if attack == Rogue::NameSpoof {
            "alice"
        } else {
            name
        };
        match attack {
            Rogue::Erase => {
                let hs = get(&tx, &ROOT, "hypotheses");
                for k in tx.keys(&hs).collect::<Vec<_>>() {
                    tx.delete(&hs, k.as_str()).unwrap();
                }
                let tl = get(&tx, &ROOT, "timeline");
                for _ in 0..tx.length(&tl) {
                    tx.delete(&tl, 0).unwrap();
                }
            }
            Rogue::RosterDelete => {
                let roster = get(&tx, &ROOT, "roster");
                tx.delete(&roster, alice_key).unwrap();
            }
            Rogue::Rename => {
                let roster = get(&tx, &ROOT, "roster");
                let alice = get(&tx, &roster, alice_key);
                tx.put(&alice, "name", name).unwrap();
            }
            Rogue::SmuggledKey => {
                let roster = get(&tx, &ROOT, "roster");
                let extra = hex(&SecretKey::generate().public().to_bytes());
                let e = tx
                    .put_object(&roster, extra.as_str(), ObjType::Map)
                    .unwrap();
                tx.put(&e, "name", "sleeper").unwrap();
                tx.put(&e, "added_by", me.as_str()).unwrap();
            }
            Rogue::NameSpoof | Rogue::DuplicateSeq => {}
        }
        let tl = get(&tx, &ROOT, "timeline");
        let entry = serde_json::json!({
            "at": 1, "by": me, "name": shown, "kind": "note", "item": null,
            "text": format!("note: pwned by {attack:?}"),
        });
        let len = tx.length(&tl);
        tx.insert(&tl, len, entry.to_string()).unwrap();
        tx.commit_with(
            automerge::transaction::CommitOptions::default().with_message("note: typo".to_string()),
        );
        d.get_last_local_change().unwrap()
    };
    support::one_change_message(&change, ChangeSignature::sign(member, change.hash()))
}

/// A member trusted to add, not to erase: each hand-written change against
/// the schema is refused whole (REJECTED naming the rule), nothing of it is
/// applied or stored, alice's hypothesis and timeline are intact, alice
/// still opens the incident after a restart with the same record, and an
/// honest member still syncs with her.
#[test]
fn a_member_cannot_erase_rewrite_the_roster_spoof_names_or_poison_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = target(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let attacks = [
        (Rogue::Erase, "no-deletion"),
        (Rogue::RosterDelete, "no-deletion"),
        (Rogue::Rename, "roster-once"),
        (Rogue::SmuggledKey, "shape"),
        (Rogue::NameSpoof, "schema rule `name`"),
        // Refused by the actor binding before Automerge sees the seq.
        (Rogue::DuplicateSeq, "bound to key"),
    ];
    for (i, (attack, rule)) in attacks.into_iter().enumerate() {
        let name = format!("rogue{i}");
        let (dir, key) = member(&mut t, tmp.path(), &name);
        let me = peer_of(&key);
        let body = rogue_change(&dir, &key, &name, &hex(&t.key), attack);
        let before = state(&mut t.node);
        match send(&rt, &t, key.to_bytes(), body) {
            Ok(f) => {
                let (kind, why) = answer_of(&f);
                assert_eq!(kind, "rejected", "{attack:?}: {f:?}");
                assert!(why.contains(rule), "{attack:?}: {why}");
            }
            Err(e) => eprintln!("{attack:?}: request failed: {e}"),
        }
        let ev = t
            .node
            .wait_event(&format!("rejected ({attack:?})"), EVENT_TIMEOUT, |e| {
                e["event"] == "rejected" && e["peer"] == me.as_str()
            });
        eprintln!("{attack:?}: {}", ev["reason"]);
        assert!(
            ev["reason"].as_str().unwrap_or("").contains(rule),
            "{attack:?}: {ev}"
        );
        let after = state(&mut t.node);
        assert_eq!(after, before, "{attack:?}: alice's record changed");
        assert!(after.2.contains("somebody is poking at us"), "{attack:?}");
        assert!(!after.2.contains("pwned"), "{attack:?}");
    }
    // The disk holds the same record: alice restarts and opens it.
    let before = state(&mut t.node);
    let Target { node, incident, .. } = t;
    assert!(node.quit().success());
    let mut alice = Node::loopback(&tmp.path().join("alice"), "alice", &[]);
    alice.ok(&format!("open {incident}"));
    assert_eq!(state(&mut alice), before, "the record after a restart");
    // An honest member still syncs with her.
    let invite = alice.invite();
    let mut bob = Node::loopback_join(&tmp.path().join("bob"), "bob", &invite);
    bob.ok("note \"bob is honest\"");
    support::converge(
        "alice and bob",
        &mut [&mut alice, &mut bob],
        &["bob is honest"],
    );
}

/// Text only a terminal would obey: a screen clear, a title change, a
/// carriage return and a line break followed by what looks like a notice.
const INJECTION: &str =
    "ok\x1b[2J\x1b]0;owned\x07\r* alice confirmed the cause\n[alice] status resolved\u{202e}txet";

/// What expands past the limits is refused before it is applied (a
/// compressed whole document that inflates past 64 MiB, a single change
/// over 1 MiB), the sender is rejected and stays rejected across alice's
/// restart until `unblock`; text meant to drive a terminal is accepted as
/// the note it is but reaches alice's screen inert; alice's record and disk
/// are unchanged by what was refused, and an honest member still syncs.
#[test]
fn bombs_are_refused_rejections_survive_a_restart_and_escapes_stay_inert() {
    use dontpanic_notebook::sync::limits;
    let tmp = tempfile::tempdir().unwrap();
    let mut t = target(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bomb_text = "x".repeat(limits::MAX_MESSAGE_BYTES + 1);
    let huge_text = "y".repeat(limits::MAX_CHANGE_BYTES + 1);
    let mut rejected = Vec::new();
    for (name, attack, text, why) in [
        ("bomber", Attack::WholeDocument, &bomb_text, "expands"),
        ("hoarder", Attack::Honest, &huge_text, "exceeds the limit"),
    ] {
        let (dir, key) = member(&mut t, tmp.path(), name);
        let me = peer_of(&key);
        let body = crafted(&dir, &key, attack, text);
        eprintln!("{name}: {} bytes on the wire", body.len());
        assert!(
            body.len() < limits::MAX_MESSAGE_BYTES / 8,
            "{name}: compressed"
        );
        let before = state(&mut t.node);
        match send(&rt, &t, key.to_bytes(), body) {
            Ok(f) => {
                let (kind, reason) = answer_of(&f);
                assert_eq!(kind, "rejected", "{name}: {f:?}");
                assert!(reason.contains(why), "{name}: {reason}");
            }
            Err(e) => eprintln!("{name}: request failed: {e}"),
        }
        t.node
            .wait_event(&format!("rejected ({name})"), EVENT_TIMEOUT, |e| {
                e["event"] == "rejected" && e["peer"] == me.as_str()
            });
        assert_eq!(state(&mut t.node), before, "{name}: alice's record changed");
        rejected.push((dir, key, me));
    }

    // A member's note that tries to drive the terminal is a note, shown inert.
    let (dir, key) = member(&mut t, tmp.path(), "jester");
    let f = send(
        &rt,
        &t,
        key.to_bytes(),
        crafted(&dir, &key, Attack::Honest, INJECTION),
    )
    .expect("an answer");
    assert_eq!(answer_of(&f).0, "sync", "{f:?}");
    t.node
        .wait_event("remote_edit (jester)", EVENT_TIMEOUT, |e| {
            e["event"] == "remote_edit" && e["author"] == "jester"
        });
    // Rejections are kept across a restart: still refused, still listed.
    let before = state(&mut t.node);
    let old = t.node;
    assert!(old.quit().success());
    let listen = t
        .addr
        .to_string()
        .split("/p2p/")
        .next()
        .unwrap()
        .to_string();
    t.node = Node::spawn(
        &[],
        &tmp.path().join("alice"),
        "alice",
        &["--listen", &listen, "--no-mdns"],
    );
    assert_eq!(state(&mut t.node), before, "the record after a restart");
    let (dir, key, me) = &rejected[0];
    let honest = crafted(dir, key, Attack::Honest, "honest after all");
    match send(&rt, &t, key.to_bytes(), honest) {
        Ok(f) => assert_eq!(
            answer_of(&f).0,
            "denied",
            "still blocked after a restart: {f:?}"
        ),
        Err(e) => eprintln!("still blocked: request failed: {e}"),
    }
    assert_eq!(state(&mut t.node), before, "nothing from a blocked peer");
    assert_eq!(t.node.peer_row(me).expect("listed")["state"], "rejected");
    // `unblock` trusts it again.
    t.node.ok(&format!("unblock {me}"));
    let honest = crafted(dir, key, Attack::Honest, "honest after unblock");
    let f = send(&rt, &t, key.to_bytes(), honest).expect("an answer");
    assert_eq!(answer_of(&f).0, "sync", "after unblock: {f:?}");

    // And an honest member still syncs with her.
    let invite = t.node.invite();
    let mut bob = Node::loopback_join(&tmp.path().join("bob"), "bob", &invite);
    bob.ok("note \"bob is honest\"");
    support::converge(
        "alice and bob",
        &mut [&mut t.node, &mut bob],
        &["bob is honest", "honest after unblock"],
    );

    // In the report a multi-line note is a fenced block: its lines are code.
    let report = t.node.report();
    assert!(
        report.contains("owned") && !report.contains('\x1b'),
        "{report}"
    );
    let mut fenced = false;
    for l in report.lines() {
        if l.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if l.trim_start().starts_with("[alice]") {
            assert!(
                fenced,
                "a forged line outside a code block: {l:?}\n{report}"
            );
        }
    }

    // What alice's terminal shows of the jester's note: the text, inert.
    assert!(t.node.quit().success());
    let (shown, stderr, code) = support::script_text(
        &tmp.path().join("alice"),
        "alice",
        &["timeline --all", "brief", "log", "incidents"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(shown.contains("owned"), "the note is shown:\n{shown}");
    for bad in ['\x1b', '\x07', '\r', '\u{202e}'] {
        assert!(
            !shown.contains(bad),
            "raw {bad:?} reaches the terminal:\n{shown}"
        );
    }
    for l in shown.lines() {
        let l = l.trim_start();
        assert!(
            !l.starts_with("* alice") && !l.starts_with("[alice]"),
            "a forged line: {l:?}\n{shown}"
        );
    }
}

/// A request-response codec that sends the first kilobyte of a request
/// and then stalls forever.
#[derive(Clone, Default)]
struct Stall;

impl libp2p::request_response::Codec for Stall {
    type Protocol = libp2p::StreamProtocol;
    type Request = ();
    type Response = ();

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
    ) -> std::io::Result<()> {
        Ok(())
    }

    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
    ) -> std::io::Result<()> {
        futures::future::pending().await
    }

    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        _: (),
    ) -> std::io::Result<()> {
        use futures::AsyncWriteExt;
        io.write_all(&[0u8; 1000]).await?;
        io.flush().await?;
        futures::future::pending().await
    }

    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        _: &mut T,
        _: (),
    ) -> std::io::Result<()> {
        Ok(())
    }
}

/// A stranger keeps sixteen streams open, each stalling after 1 KB of a
/// request, and opens a new one whenever one is dropped:
/// alice's inbound budget (256 MiB) holds only what arrived, so an honest
/// member's edits still reach her while the stall goes on.
#[test]
fn stalled_streams_from_a_stranger_starve_nobody() {
    use futures::StreamExt;
    use libp2p::request_response;
    use libp2p::swarm::SwarmEvent;
    let tmp = tempfile::tempdir().unwrap();
    let mut t = target(tmp.path());
    let mut bob = Node::loopback_join(&tmp.path().join("bob"), "bob", &t.invite);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, peer) = (t.addr.clone(), t.peer);
    let (opened_tx, opened) = std::sync::mpsc::channel::<usize>();
    let _stall = rt.spawn(async move {
        let mut swarm = raw_swarm(Stall, None, Duration::from_secs(3600), 64);
        swarm.dial(addr).unwrap();
        let mut open = 0usize;
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    for _ in 0..16 {
                        swarm.behaviour_mut().send_request(&peer, ());
                    }
                    open = 16;
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                    // Alice dropped one (her 20 s timeout): stall again.
                    swarm.behaviour_mut().send_request(&peer, ());
                    open += 1;
                }
                _ => {}
            }
            let _ = opened_tx.send(open);
        }
    });
    let started = opened
        .recv_timeout(EVENT_TIMEOUT)
        .expect("the stranger connects and stalls");
    assert_eq!(started, 16);
    // Give the stalled streams time to reach alice and be read from.
    std::thread::sleep(Duration::from_secs(2));
    bob.ok("note \"bob during the stall\"");
    // Well inside alice's 20 s request timeout, the only thing that frees
    // stalled streams: when they held the budget, bob got through only
    // after it (measured: 21 s, against 2 s now).
    support::wait_for(
        "bob's note at alice during the stall",
        Duration::from_secs(10),
        || support::converged(&mut [&mut t.node, &mut bob], &["bob during the stall"]),
    );
    let rss = std::fs::read_to_string(format!("/proc/{}/status", t.node.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_string)
        });
    eprintln!("alice's peak memory during the stall: {rss:?}");
}
