use super::*;
use dontpanic_incident::Edit;

fn notebook(dir: &Path) -> Notebook {
    Notebook::open(dir, Some("alice")).unwrap()
}

fn note(nb: &mut Notebook, text: &str) {
    nb.edit(Edit::AddNote { text: text.into() }).unwrap();
}

#[test]
fn snapshot_then_journal_reopen_with_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    let id = nb
        .create("snap", Severity::Sev2)
        .unwrap()
        .id
        .unwrap()
        .to_string();
    (0..20).for_each(|i| note(&mut nb, &format!("before {i}")));
    nb.compact_if(1).unwrap();
    assert_eq!(nb.current().unwrap().journal.records(), 0);
    nb.compact_if(1).unwrap(); // nothing new: no empty segment is made
    (0..5).for_each(|i| note(&mut nb, &format!("after {i}")));
    drop(nb);
    let mut nb = notebook(tmp.path());
    assert!(nb.open_incident(&id).unwrap().is_empty());
    let view = nb.incident().unwrap().view().unwrap();
    assert_eq!(view.timeline.len(), 26);
    assert!(nb.log().unwrap().iter().all(|e| e.verified));
    // Sync still has every signature.
    assert_eq!(nb.signed_changes(&id).unwrap().len(), 26);
}

#[test]
fn tampered_snapshot_is_refused_named_and_kept_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    let id = nb
        .create("snap", Severity::Sev2)
        .unwrap()
        .id
        .unwrap()
        .to_string();
    (0..10).for_each(|i| note(&mut nb, &format!("n{i}")));
    nb.compact_if(1).unwrap();
    drop(nb);
    let path = tmp.path().join("incidents").join(&id).join("snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let mut nb = notebook(tmp.path());
    let warnings = nb.open_incident(&id).unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("snapshot") && w.contains("kept aside")),
        "{warnings:?}"
    );
    let aside: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("snapshot.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), bytes, "kept whole");
    assert_eq!(
        nb.incident().unwrap().view().unwrap().timeline.len(),
        11,
        "rebuilt from the segments"
    );
}

#[test]
fn accept_refuses_non_members_and_applies_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    nb.create("x", Severity::Sev3).unwrap();
    let stranger = dontpanic_identity::SecretKey::generate();
    let mut doc = nb
        .incident()
        .unwrap()
        .doc()
        .fork()
        .with_actor(automerge::ActorId::random());
    doc.set_author(Some(automerge::Author::from(
        stranger.public().to_bytes().to_vec(),
    )));
    let mut tx = doc.transaction();
    automerge::transaction::Transactable::put(&mut tx, automerge::ROOT, "title", "pwned").unwrap();
    tx.commit();
    let change = doc.get_last_local_change().unwrap();
    let id = nb.current_id().unwrap().to_string();
    let before = nb.signed_changes(&id).unwrap().len();
    let err = nb
        .accept(&id, vec![SignedChange::sign(&stranger, change)].into())
        .unwrap_err();
    assert!(err.to_string().contains("not a member"), "{err}");
    assert_eq!(nb.signed_changes(&id).unwrap().len(), before);
    assert_eq!(nb.incident().unwrap().view().unwrap().title, "x");
}

#[test]
fn a_bad_signature_sealed_into_a_snapshot_is_found_after_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    let id = nb
        .create("snap", Severity::Sev2)
        .unwrap()
        .id
        .unwrap()
        .to_string();
    (0..5).for_each(|i| note(&mut nb, &format!("n{i}")));
    let key = nb.device().key.clone();
    let open = nb.held.get_mut(&id).unwrap();
    // The head's signature is the one that vouches for the whole run.
    let head = open.incident.doc().get_heads()[0];
    let mut sigs: Vec<ChangeSignature> = open.signatures.values().copied().collect();
    let other = sigs.iter().find(|s| s.hash != head).unwrap().signature;
    sigs.iter_mut().find(|s| s.hash == head).unwrap().signature = other;
    let snap = dontpanic_store::Snapshot {
        doc: open.incident.doc().save(),
        signatures: sigs,
        heads: open.incident.doc().get_heads(),
    };
    nb.data
        .compact(&id, &key, &snap, &mut open.journal)
        .unwrap();
    drop(nb);
    let mut nb = notebook(tmp.path());
    nb.open_incident(&id).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while nb.current().unwrap().bad_signatures() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(nb.current().unwrap().bad_signatures(), 1);
    assert!(nb.log().unwrap().iter().any(|e| !e.verified));
}

#[test]
fn a_member_cannot_write_in_another_members_name() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    nb.create("x", Severity::Sev3).unwrap();
    let mallory = dontpanic_identity::SecretKey::generate();
    let own = dontpanic_incident::Editor {
        key: mallory.public().to_string(),
        name: "mallory".into(),
    };
    nb.edit(Edit::AddMember {
        key: own.key.clone(),
        name: own.name.clone(),
    })
    .unwrap();
    let alice = nb.editor();
    let note_by = |nb: &Notebook, editor: &dontpanic_incident::Editor| {
        let doc = nb.incident().unwrap().doc().fork();
        let mut forged = dontpanic_incident::Incident::from_doc(doc).unwrap();
        forged.set_author(&mallory.public().to_bytes());
        let edit = Edit::AddNote {
            text: "drop the prod database".into(),
        };
        SignedChange::sign(&mallory, forged.apply(edit, editor, 1).unwrap().change)
    };
    let visible = |nb: &Notebook| {
        let view = nb.incident().unwrap().view().unwrap();
        view.timeline
            .iter()
            .any(|e| e.text.contains("prod database"))
    };
    let id = nb.current_id().unwrap().to_string();
    let err = nb
        .accept(&id, vec![note_by(&nb, &alice)].into())
        .unwrap_err();
    assert!(err.to_string().contains("in the name of"), "{err}");
    assert!(!visible(&nb));
    // The same note in her own name is accepted: the rule, not the content, refused it.
    nb.accept(&id, vec![note_by(&nb, &own)].into()).unwrap();
    assert!(visible(&nb));
}

/// Runs the sync dialogue between two notebooks until neither has anything
/// to say; returns the rounds it took.
fn converge(a: &mut Notebook, b: &mut Notebook, id: &str) -> usize {
    let ka = a.device().key.public().to_string();
    let kb = b.device().key.public().to_string();
    for round in 1..=20 {
        let m = a.sync_message_for(id, &kb).unwrap();
        if let Some(m) = m.clone() {
            b.receive_sync(id, &ka, m).unwrap();
        }
        let r = b.sync_message_for(id, &ka).unwrap();
        if let Some(r) = r.clone() {
            a.receive_sync(id, &kb, r).unwrap();
        }
        if m.is_none() && r.is_none() {
            return round;
        }
    }
    panic!("no convergence in 20 rounds");
}

#[test]
fn changes_lost_on_the_way_are_sent_again_after_the_receiver_resets() {
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = notebook(ta.path());
    let mut b = Notebook::open(tb.path(), Some("bob")).unwrap();
    a.create("lost", Severity::Sev2).unwrap();
    let id = a.current_id().unwrap().to_string();
    a.edit(Edit::AddMember {
        key: b.device().key.public().to_string(),
        name: "bob".into(),
    })
    .unwrap();
    b.adopt(a.signed_changes(&id).unwrap()).unwrap();
    converge(&mut a, &mut b, &id);
    note(&mut a, "written while bob's disk was full");
    // a sends the change; b cannot store it (the message is lost to it) and
    // starts its side of the dialogue afresh, as the replicator does.
    let kb = b.device().key.public().to_string();
    let lost = a.sync_message_for(&id, &kb).unwrap();
    assert!(lost.is_some());
    b.peer_gone(&a.device().key.public().to_string()).unwrap();
    converge(&mut a, &mut b, &id);
    let seen = b.incident().unwrap().view().unwrap();
    assert!(
        seen.timeline
            .iter()
            .any(|e| e.text.contains("disk was full")),
        "the lost change was sent again"
    );
}

/// Alice's notebook with bob admitted; returns bob's key and editor.
fn with_bob(nb: &mut Notebook) -> (dontpanic_identity::SecretKey, dontpanic_incident::Editor) {
    nb.create("x", Severity::Sev3).unwrap();
    let bob = dontpanic_identity::SecretKey::generate();
    let editor = dontpanic_incident::Editor {
        key: bob.public().to_string(),
        name: "bob".into(),
    };
    nb.edit(Edit::AddMember {
        key: editor.key.clone(),
        name: "bob".into(),
    })
    .unwrap();
    (bob, editor)
}

fn journal_bytes(dir: &Path, id: &str) -> Vec<u8> {
    std::fs::read(dir.join("incidents").join(id).join("journal")).unwrap()
}

/// A validly signed change that reuses alice's (actor, seq) is refused
/// before the journal is touched: the journal is byte for byte the same,
/// and the incident still opens after a restart.
#[test]
fn a_duplicate_seq_is_refused_before_the_journal_and_the_incident_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    let (bob, bob_editor) = with_bob(&mut nb);
    let id = nb.current_id().unwrap().to_string();
    let admitted = nb.incident().unwrap().doc().get_heads();
    note(&mut nb, "alice's third change");
    let doc = nb.incident().unwrap().doc();
    let last = doc.get_last_local_change().unwrap();
    // Bob writes on the state before alice's note, under alice's actor: his
    // change gets the seq her note already has.
    let mut forged =
        dontpanic_incident::Incident::from_doc(doc.fork_at(&admitted).unwrap()).unwrap();
    forged.set_author(&bob.public().to_bytes());
    forged.doc_mut().set_actor(last.actor_id().clone());
    let change = forged
        .apply(Edit::AddNote { text: "dup".into() }, &bob_editor, 2)
        .unwrap()
        .change;
    assert_eq!(
        (change.actor_id(), change.seq()),
        (last.actor_id(), last.seq())
    );
    let before = journal_bytes(tmp.path(), &id);
    let err = nb
        .accept(&id, vec![SignedChange::sign(&bob, change)].into())
        .unwrap_err();
    assert!(err.blames_sender(), "{err}");
    // Refused by the actor binding: alice's actor is bound to her key.
    assert!(err.to_string().contains("bound to key"), "{err}");
    assert_eq!(
        journal_bytes(tmp.path(), &id),
        before,
        "the journal changed"
    );
    drop(nb);
    let mut nb = notebook(tmp.path());
    let warnings = nb.open_incident(&id).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let view = nb.incident().unwrap().view().unwrap();
    assert!(view
        .timeline
        .iter()
        .any(|e| e.text.contains("alice's third")));
    assert!(!view.timeline.iter().any(|e| e.text.contains("dup")));
}

/// A change that breaks the schema (here: deleting alice's hypothesis under
/// a note) is refused whole, naming the rule, and nothing reaches the disk;
/// bob's honest note after it is accepted.
#[test]
fn a_schema_violation_is_refused_before_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    let (bob, bob_editor) = with_bob(&mut nb);
    let id = nb.current_id().unwrap().to_string();
    let h = nb
        .edit(Edit::AddHypothesis {
            text: "resolver".into(),
        })
        .unwrap()
        .id
        .unwrap();
    let doc = nb.incident().unwrap().doc().fork();
    let mut erase = dontpanic_incident::Incident::from_doc(doc.fork()).unwrap();
    erase.set_author(&bob.public().to_bytes());
    {
        use automerge::transaction::Transactable;
        use automerge::ReadDoc;
        let d = erase.doc_mut();
        let mut tx = d.transaction();
        let (_, hs) = tx.get(automerge::ROOT, "hypotheses").unwrap().unwrap();
        tx.delete(&hs, h.as_str()).unwrap();
        tx.commit();
    }
    let deletion = erase.doc().get_last_local_change().unwrap();
    let cover = erase
        .apply(
            Edit::AddNote {
                text: "typo".into(),
            },
            &bob_editor,
            2,
        )
        .unwrap()
        .change;
    let before = journal_bytes(tmp.path(), &id);
    let batch = vec![
        SignedChange::sign(&bob, deletion),
        SignedChange::sign(&bob, cover),
    ];
    let err = nb.accept(&id, batch.into()).unwrap_err();
    assert!(err.to_string().contains("no-deletion"), "{err}");
    assert_eq!(journal_bytes(tmp.path(), &id), before);
    assert_eq!(
        nb.incident()
            .unwrap()
            .view()
            .unwrap()
            .items(dontpanic_incident::Kind::Hypothesis)
            .len(),
        1
    );
    let mut honest = dontpanic_incident::Incident::from_doc(doc).unwrap();
    honest.set_author(&bob.public().to_bytes());
    let ok = honest
        .apply(
            Edit::AddNote {
                text: "honest".into(),
            },
            &bob_editor,
            3,
        )
        .unwrap()
        .change;
    let edits = nb
        .accept(&id, vec![SignedChange::sign(&bob, ok)].into())
        .unwrap();
    assert_eq!(edits[0].author, "bob");
    assert_ne!(journal_bytes(tmp.path(), &id), before);
}

/// `check_claimed_authors` cuts peer-supplied text by characters: a
/// multi-byte claimed author is refused, not a panic.
#[test]
fn a_multi_byte_claimed_author_is_refused_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    let (bob, _) = with_bob(&mut nb);
    let id = nb.current_id().unwrap().to_string();
    let mut forged =
        dontpanic_incident::Incident::from_doc(nb.incident().unwrap().doc().fork()).unwrap();
    forged.set_author(&bob.public().to_bytes());
    let spoof = dontpanic_incident::Editor {
        key: format!("a{}", "é".repeat(20)),
        name: "bob".into(),
    };
    let change = forged
        .apply(Edit::AddNote { text: "x".into() }, &spoof, 2)
        .unwrap()
        .change;
    let err = nb
        .accept(&id, vec![SignedChange::sign(&bob, change)].into())
        .unwrap_err();
    assert!(err.to_string().contains("in the name of"), "{err}");
}

/// Long batches are checked change by change but applied in runs: a
/// joiner's whole history (notes around a roster change) is taken whole,
/// and one bad note deep inside a run of good ones still refuses the batch
/// and leaves the journal untouched.
#[test]
fn long_batches_are_checked_whole_and_refused_whole() {
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = notebook(ta.path());
    let mut b = Notebook::open(tb.path(), Some("bob")).unwrap();
    a.create("long", Severity::Sev2).unwrap();
    let id = a.current_id().unwrap().to_string();
    (0..300).for_each(|i| note(&mut a, &format!("before {i}")));
    a.edit(Edit::AddMember {
        key: b.device().key.public().to_string(),
        name: "bob".into(),
    })
    .unwrap();
    (0..300).for_each(|i| note(&mut a, &format!("after {i}")));
    b.adopt(a.signed_changes(&id).unwrap()).unwrap();
    assert_eq!(b.incident().unwrap().view().unwrap().timeline.len(), 602);

    // a writes 200 more; the 101st, signed by a, names bob in its entry.
    let mut batch = Vec::new();
    let editor = a.editor();
    let key = a.device().key.clone();
    let me = editor.key.clone();
    for i in 0..200 {
        let inc = &mut a.held.get_mut(&id).unwrap().incident;
        let change = if i == 100 {
            use automerge::transaction::Transactable;
            let doc = inc.doc_mut();
            let tl = match doc.get(automerge::ROOT, "timeline").unwrap() {
                Some((_, tl)) => tl,
                None => unreachable!("the incident has a timeline"),
            };
            let entry = serde_json::json!({
                "at": 1, "by": me, "name": "bob", "kind": "note", "item": null,
                "text": "note: spoofed",
            });
            let mut tx = doc.transaction();
            let len = tx.length(&tl);
            tx.insert(&tl, len, entry.to_string()).unwrap();
            tx.commit_with(
                automerge::transaction::CommitOptions::default()
                    .with_message("note: spoofed".to_string()),
            );
            doc.get_last_local_change().unwrap()
        } else {
            inc.apply(
                Edit::AddNote {
                    text: format!("late {i}"),
                },
                &editor,
                1,
            )
            .unwrap()
            .change
        };
        batch.push(SignedChange::sign(&key, change));
    }
    let journal = b.held(&id).unwrap().journal.path().to_path_buf();
    let before = std::fs::read(&journal).unwrap();
    let err = b.accept(&id, batch.into()).unwrap_err();
    assert!(err.to_string().contains("schema rule"), "{err}");
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        before,
        "nothing journaled"
    );
    assert_eq!(b.incident().unwrap().view().unwrap().timeline.len(), 602);
}

/// A responder's notebook admitted to alice's incident, holding it.
fn admitted(alice: &mut Notebook, dir: &Path, name: &str) -> Notebook {
    let mut nb = Notebook::open(dir, Some(name)).unwrap();
    alice
        .edit(Edit::AddMember {
            key: nb.device().key.public().to_string(),
            name: name.into(),
        })
        .unwrap();
    let id = alice.current_id().unwrap().to_string();
    nb.adopt(alice.signed_changes(&id).unwrap()).unwrap();
    nb
}

/// Everything `from` holds, offered to `to` as one sync would.
fn give(from: &Notebook, to: &mut Notebook, id: &str) {
    to.accept(id, from.signed_changes(id).unwrap()).unwrap();
}

fn shows(nb: &Notebook, text: &str) -> bool {
    let view = nb.incident().unwrap().view().unwrap();
    view.timeline.iter().any(|e| e.text.contains(text))
}

fn heads(nb: &Notebook) -> Vec<ChangeHash> {
    let mut h = nb.incident().unwrap().doc().get_heads();
    h.sort();
    h
}

/// A change a removed member wrote before it knew of its removal is kept
/// by every node, whichever reached it first; one written after it saw the
/// removal is refused by all. (The old rule, "kept only if the remover had
/// seen it", split honest nodes here: dave refused bob's note, and every
/// later note of carol's, which builds on it, waited at dave forever.)
#[test]
fn removal_decides_from_history_so_honest_nodes_never_split() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut alice = notebook(dirs[0].path());
    let (bob, bob_editor) = with_bob(&mut alice);
    let id = alice.current_id().unwrap().to_string();
    let mut carol = admitted(&mut alice, dirs[1].path(), "carol");
    let mut dave = admitted(&mut alice, dirs[2].path(), "dave");
    give(&alice, &mut carol, &id);

    // Bob's device: his copy of the document and his key.
    let mut bobs =
        dontpanic_incident::Incident::from_doc(alice.incident().unwrap().doc().fork()).unwrap();
    bobs.set_author(&bob.public().to_bytes());
    let bob_note = |doc: &mut dontpanic_incident::Incident, text: &str| {
        let edit = Edit::AddNote { text: text.into() };
        SignedChange::sign(&bob, doc.apply(edit, &bob_editor, 1).unwrap().change)
    };

    let before = bob_note(&mut bobs, "written before the removal");
    carol.accept(&id, vec![before].into()).unwrap();
    note(&mut carol, "built on bob's note");
    alice
        .edit(Edit::RemoveMember {
            member: "bob".into(),
            reason: "laptop stolen".into(),
        })
        .unwrap();
    give(&alice, &mut dave, &id); // dave holds the removal first...
    give(&carol, &mut dave, &id); // ...then gets bob's note through carol
    assert!(shows(&dave, "written before the removal"));
    assert!(
        shows(&dave, "built on bob's note"),
        "carol's note does not wait"
    );
    give(&dave, &mut carol, &id);
    give(&dave, &mut alice, &id);
    assert_eq!(heads(&alice), heads(&carol));
    assert_eq!(heads(&alice), heads(&dave));

    // Bob learns of his removal and writes on: refused everywhere, nobody blamed.
    bobs.doc_mut()
        .apply_changes(alice.incident().unwrap().doc().get_changes(&[]))
        .unwrap();
    let after = bob_note(&mut bobs, "written after I saw my removal");
    for nb in [&mut alice, &mut carol, &mut dave] {
        nb.accept(&id, vec![after.clone()].into()).unwrap();
        assert!(!shows(nb, "after I saw my removal"));
    }
    assert_eq!(heads(&alice), heads(&dave));
}

/// Two members who remove each other while apart are both removed on
/// every node that gets both removals, in either order.
#[test]
fn concurrent_removals_both_stand_in_either_order() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut alice = notebook(dirs[0].path());
    alice.create("x", Severity::Sev2).unwrap();
    let id = alice.current_id().unwrap().to_string();
    let mut carol = admitted(&mut alice, dirs[1].path(), "carol");
    let mut dave = admitted(&mut alice, dirs[2].path(), "dave");
    let mut erin = admitted(&mut alice, dirs[3].path(), "erin");
    for nb in [&mut carol, &mut dave, &mut erin] {
        give(&alice, nb, &id);
    }
    let remove = |nb: &mut Notebook, member: &str| {
        nb.edit(Edit::RemoveMember {
            member: member.into(),
            reason: "apart".into(),
        })
        .unwrap();
    };
    remove(&mut alice, "dave");
    remove(&mut dave, "alice");
    give(&alice, &mut carol, &id);
    give(&dave, &mut carol, &id);
    give(&dave, &mut erin, &id);
    give(&alice, &mut erin, &id);
    let members = |nb: &Notebook| {
        let mut m = nb.incident().unwrap().member_keys();
        m.sort();
        m
    };
    assert_eq!(heads(&carol), heads(&erin));
    assert_eq!(members(&carol), members(&erin));
    let gone = [&alice, &dave].map(|nb| nb.device().key.public().to_string());
    assert!(
        members(&carol).iter().all(|k| !gone.contains(k)),
        "both removed"
    );
    assert_eq!(members(&carol).len(), 2, "carol and erin stay");
}

/// Bob's device writing on a copy of `nb`'s document: `n` notes, one
/// actor, each building on the last.
fn bob_chain(
    nb: &Notebook,
    bob: &dontpanic_identity::SecretKey,
    editor: &dontpanic_incident::Editor,
    n: usize,
) -> (dontpanic_incident::Incident, Vec<automerge::Change>) {
    let mut doc =
        dontpanic_incident::Incident::from_doc(nb.incident().unwrap().doc().fork()).unwrap();
    doc.set_author(&bob.public().to_bytes());
    let chain = (0..n)
        .map(|i| {
            let edit = Edit::AddNote {
                text: format!("bob {i}"),
            };
            doc.apply(edit, editor, 1).unwrap().change
        })
        .collect();
    (doc, chain)
}

fn covered_by(
    changes: Vec<automerge::Change>,
    key: &dontpanic_identity::SecretKey,
    signed: &automerge::Change,
) -> SignedRuns {
    SignedRuns {
        signatures: vec![ChangeSignature::sign(key, signed.hash())],
        changes,
    }
}

/// One signature over bob's latest change covers his whole chain; a change
/// forged to ride along with it (a new actor naming bob's key, reached by
/// no signed change) is refused, naming it, and nothing is stored.
#[test]
fn a_change_forged_into_a_covered_chain_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    let (bob, editor) = with_bob(&mut nb);
    let id = nb.current_id().unwrap().to_string();
    let (_, chain) = bob_chain(&nb, &bob, &editor, 5);
    let (_, forged) = bob_chain(&nb, &bob, &editor, 1);
    let forged = forged[0].clone();
    let mut batch = chain.clone();
    batch.insert(2, forged.clone());
    let before = journal_bytes(tmp.path(), &id);
    let err = nb
        .accept(&id, covered_by(batch, &bob, &chain[4]))
        .unwrap_err();
    assert!(
        err.to_string().contains(&forged.hash().to_string())
            && err.to_string().contains("covered by no signature"),
        "{err}"
    );
    assert_eq!(journal_bytes(tmp.path(), &id), before);
    // The genuine chain alone, with the same one signature, is taken.
    let edits = nb
        .accept(&id, covered_by(chain.clone(), &bob, &chain[4]))
        .unwrap();
    assert_eq!(edits.len(), 5);
}

/// A genuine middle change swapped for another of the same actor and seq
/// (different content) is not reached by the signed head: refused.
#[test]
fn a_middle_change_swapped_in_a_covered_chain_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    let (bob, editor) = with_bob(&mut nb);
    let id = nb.current_id().unwrap().to_string();
    let (mut doc, chain) = bob_chain(&nb, &bob, &editor, 5);
    // The same actor at the same seq, on the state after bob 1.
    let at = vec![chain[1].hash()];
    let mut fork =
        dontpanic_incident::Incident::from_doc(doc.doc_mut().fork_at(&at).unwrap()).unwrap();
    fork.doc_mut().set_actor(chain[2].actor_id().clone());
    let swapped = fork
        .apply(
            Edit::AddNote {
                text: "not what bob wrote".into(),
            },
            &editor,
            1,
        )
        .unwrap()
        .change;
    assert_eq!(
        (swapped.actor_id(), swapped.seq()),
        (chain[2].actor_id(), chain[2].seq())
    );
    assert_ne!(swapped.hash(), chain[2].hash());
    let mut batch = chain.clone();
    batch[2] = swapped.clone();
    let err = nb
        .accept(&id, covered_by(batch, &bob, &chain[4]))
        .unwrap_err();
    assert!(
        err.to_string().contains(&swapped.hash().to_string())
            && err.to_string().contains("covered by no signature"),
        "{err}"
    );
    assert!(!shows(&nb, "not what bob wrote"));
}

/// Mallory, a member, writes under bob's actor (bound to bob's key by its
/// first change) an entry in bob's name, and signs it herself: refused by
/// the actor binding, so bob's later signatures can never be made to vouch
/// for it, and nothing is written in his name.
#[test]
fn a_change_under_another_members_actor_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nb = notebook(tmp.path());
    let (bob, editor) = with_bob(&mut nb);
    let mallory = dontpanic_identity::SecretKey::generate();
    nb.edit(Edit::AddMember {
        key: mallory.public().to_string(),
        name: "mallory".into(),
    })
    .unwrap();
    let id = nb.current_id().unwrap().to_string();
    let (_, chain) = bob_chain(&nb, &bob, &editor, 1);
    nb.accept(&id, covered_by(chain.clone(), &bob, &chain[0]))
        .unwrap();
    let mut forged =
        dontpanic_incident::Incident::from_doc(nb.incident().unwrap().doc().fork()).unwrap();
    forged.doc_mut().set_actor(chain[0].actor_id().clone());
    let change = forged
        .apply(
            Edit::AddNote {
                text: "bob says: restart prod".into(),
            },
            &editor,
            2,
        )
        .unwrap()
        .change;
    assert_eq!(change.seq(), 2);
    let err = nb
        .accept(&id, covered_by(vec![change.clone()], &mallory, &change))
        .unwrap_err();
    assert!(err.to_string().contains("bound to key"), "{err}");
    assert!(!shows(&nb, "restart prod"));
}

/// A live edit goes alone with its own signature, and is verified alone.
#[test]
fn a_live_single_change_is_signed_and_verified_alone() {
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = notebook(ta.path());
    a.create("live", Severity::Sev2).unwrap();
    let id = a.current_id().unwrap().to_string();
    let mut b = admitted(&mut a, tb.path(), "bob");
    converge(&mut a, &mut b, &id);
    note(&mut a, "one live note");
    let (ka, kb) = (
        a.device().key.public().to_string(),
        b.device().key.public().to_string(),
    );
    // The dialogue may need a round of heads first; the message with the
    // change carries exactly its signature.
    let mut carried = None;
    for _ in 0..4 {
        if let Some(m) = a.sync_message_for(&id, &kb).unwrap() {
            let msg = automerge::sync::Message::decode(&m.message).unwrap();
            let inside = sync::changes_in(&msg).unwrap();
            let signatures = m.signatures.clone();
            b.receive_sync(&id, &ka, m).unwrap();
            if !inside.is_empty() {
                carried = Some((inside, signatures));
                break;
            }
        }
        if let Some(r) = b.sync_message_for(&id, &ka).unwrap() {
            a.receive_sync(&id, &kb, r).unwrap();
        }
    }
    let (inside, sigs) = carried.expect("the note was sent");
    assert_eq!(inside.len(), 1);
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].hash, inside[0].hash());
    assert!(shows(&b, "one live note"));
}

/// A reconnect: thousands of offline changes by several actors (alice in
/// two sessions, bob) converge with one signature per actor per message,
/// and every change is stored covered (the journals reopen clean).
#[test]
fn a_reconnect_sized_batch_goes_with_one_signature_per_actor() {
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = notebook(ta.path());
    a.create("reconnect", Severity::Sev2).unwrap();
    let id = a.current_id().unwrap().to_string();
    let mut b = admitted(&mut a, tb.path(), "bob");
    converge(&mut a, &mut b, &id);
    (0..1500).for_each(|i| note(&mut a, &format!("alice offline {i}")));
    // A second session of alice: a new actor.
    drop(a);
    let mut a = notebook(ta.path());
    a.open_incident(&id).unwrap();
    (0..1500).for_each(|i| note(&mut a, &format!("alice again {i}")));
    (0..1500).for_each(|i| note(&mut b, &format!("bob offline {i}")));
    let (ka, kb) = (
        a.device().key.public().to_string(),
        b.device().key.public().to_string(),
    );
    let mut most = (0, 0);
    let mut step = |from: &mut Notebook, to: &mut Notebook, kfrom: &str, kto: &str| {
        let Some(m) = from.sync_message_for(&id, kto).unwrap() else {
            return false;
        };
        let msg = automerge::sync::Message::decode(&m.message).unwrap();
        let n = sync::changes_in(&msg).unwrap().len();
        if n > most.0 {
            most = (n, m.signatures.len());
        }
        to.receive_sync(&id, kfrom, m).unwrap();
        true
    };
    for _ in 0..20 {
        let sent = step(&mut a, &mut b, &ka, &kb);
        let answered = step(&mut b, &mut a, &kb, &ka);
        if !sent && !answered {
            break;
        }
    }
    assert!(most.0 >= 1500, "{most:?}");
    assert!(most.1 <= 3, "{} signatures for {} changes", most.1, most.0);
    assert_eq!(heads(&a), heads(&b));
    assert_eq!(b.incident().unwrap().view().unwrap().timeline.len(), 4502);
    drop(b);
    let mut b = Notebook::open(tb.path(), Some("bob")).unwrap();
    let warnings = b.open_incident(&id).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(b.incident().unwrap().view().unwrap().timeline.len(), 4502);
}
