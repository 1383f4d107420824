//! One table per area: each row is a change made by an honest command or a
//! hostile hand-written transaction, and the rule it must break (or none).

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{Automerge, Change, ObjType, ReadDoc, ScalarValue, Value, ROOT};

use super::*;
use crate::{Edit, Editor, Incident, ItemId, Severity, TimelineEntry, Verdict};

use crate::fixtures::{alice, bob};

const CAROL: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// The document every row is checked against, and the ids in it.
struct Base {
    incident: Incident,
    /// Alice's hypothesis, with a test of hers on it.
    h_alice: ItemId,
    /// Bob's hypothesis.
    h_bob: ItemId,
    test: ItemId,
    symptom: ItemId,
}

fn base() -> Base {
    let (mut i, _) = Incident::create("DNS down", Severity::Sev2, &alice(), 0).unwrap();
    let add = |i: &mut Incident, e: Edit, who: &Editor| i.apply(e, who, 1).unwrap().id;
    add(
        &mut i,
        Edit::AddMember {
            key: bob().key,
            name: "bob".into(),
        },
        &alice(),
    );
    let symptom = add(
        &mut i,
        Edit::AddSymptom {
            text: "timeouts".into(),
            place: None,
            frequency: None,
            impact: None,
            since: None,
        },
        &alice(),
    )
    .unwrap();
    let h_alice = add(
        &mut i,
        Edit::AddHypothesis {
            text: "resolver".into(),
        },
        &alice(),
    )
    .unwrap();
    let h_bob = add(
        &mut i,
        Edit::AddHypothesis {
            text: "firewall".into(),
        },
        &bob(),
    )
    .unwrap();
    let test = add(
        &mut i,
        Edit::AddTest {
            hypothesis: h_alice.to_string(),
            action: "dig".into(),
            rules_out_if: "answers".into(),
        },
        &alice(),
    )
    .unwrap();
    add(
        &mut i,
        Edit::AddNote {
            text: "alice's note".into(),
        },
        &alice(),
    );
    Base {
        incident: i,
        h_alice,
        h_bob,
        test,
        symptom,
    }
}

fn fork(doc: &Automerge) -> Incident {
    Incident::from_doc(doc.fork()).unwrap()
}

/// What an honest command makes.
fn honest(doc: &Automerge, who: &Editor, edit: Edit) -> Change {
    fork(doc).apply(edit, who, 2).unwrap().change
}

/// A timeline entry as `append_timeline` writes it.
fn entry(tx: &mut Transaction<'_>, by: &str, name: &str, kind: &str, item: Option<&str>) {
    let timeline = match tx.get(ROOT, "timeline").unwrap() {
        Some((_, t)) => t,
        None => panic!("no timeline"),
    };
    let json = serde_json::to_string(&TimelineEntry {
        at: 2,
        by: by.into(),
        name: name.into(),
        kind: kind.into(),
        item: item.map(str::to_string),
        text: format!("{kind}: typo"),
    })
    .unwrap();
    let len = tx.length(&timeline);
    tx.insert(&timeline, len, json).unwrap();
}

/// What a hostile member writes by hand.
fn hostile(doc: &Automerge, f: impl FnOnce(&mut Transaction<'_>)) -> Change {
    let mut doc = doc.fork();
    doc.transact_with::<_, _, automerge::AutomergeError, _>(
        |_| CommitOptions::default().with_message("note: typo".to_string()),
        |tx| {
            f(tx);
            Ok(())
        },
    )
    .unwrap();
    doc.get_last_local_change().unwrap()
}

fn obj(tx: &Transaction<'_>, path: &[&str]) -> automerge::ObjId {
    let mut o = ROOT;
    for p in path {
        o = match tx.get(&o, *p).unwrap() {
            Some((Value::Object(_), id)) => id,
            other => panic!("{p}: {other:?}"),
        };
    }
    o
}

/// A note by bob, as the hostile rows' cover.
fn bob_note(tx: &mut Transaction<'_>) {
    entry(tx, &bob().key, "bob", "note", None);
}

fn check(rows: Vec<(&str, &Automerge, Change, Editor, Option<Rule>)>) {
    let mut failures = Vec::new();
    for (name, doc, change, signer, want) in rows {
        let got = validate(doc, &change, &signer.key);
        let ok = match (&got, want) {
            (Ok(()), None) => true,
            (Err(v), Some(rule)) => v.rule == rule && v.to_string().contains(rule.name()),
            _ => false,
        };
        if !ok {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_command_passes_for_its_signer() {
    let b = base();
    let d = b.incident.doc();
    let (ha, hb, t) = (
        b.h_alice.to_string(),
        b.h_bob.to_string(),
        b.test.to_string(),
    );
    let mut bobby = bob();
    bobby.name = "bobby (device name)".into();
    let (_, created) = Incident::create("new", Severity::Sev1, &alice(), 0).unwrap();
    let empty = Automerge::new();
    check(vec![
        ("create", &empty, created.change, alice(), None),
        (
            "note",
            d,
            honest(d, &bob(), Edit::AddNote { text: "n".into() }),
            bob(),
            None,
        ),
        (
            "note under a device name",
            d,
            honest(d, &bobby, Edit::AddNote { text: "n".into() }),
            bob(),
            None,
        ),
        (
            "symptom",
            d,
            honest(
                d,
                &bob(),
                Edit::AddSymptom {
                    text: "s".into(),
                    place: Some("eu".into()),
                    frequency: Some("1/s".into()),
                    impact: Some("all".into()),
                    since: None,
                },
            ),
            bob(),
            None,
        ),
        (
            "hypothesis",
            d,
            honest(d, &bob(), Edit::AddHypothesis { text: "h".into() }),
            bob(),
            None,
        ),
        (
            "test of another's hypothesis",
            d,
            honest(
                d,
                &bob(),
                Edit::AddTest {
                    hypothesis: ha.clone(),
                    action: "a".into(),
                    rules_out_if: "r".into(),
                },
            ),
            bob(),
            None,
        ),
        (
            "result ruling out another's hypothesis",
            d,
            honest(
                d,
                &bob(),
                Edit::AddResult {
                    test: t.clone(),
                    observation: "o".into(),
                    verdict: Verdict::RulesOut,
                },
            ),
            bob(),
            None,
        ),
        (
            "inconclusive result",
            d,
            honest(
                d,
                &bob(),
                Edit::AddResult {
                    test: t.clone(),
                    observation: "o".into(),
                    verdict: Verdict::Inconclusive,
                },
            ),
            bob(),
            None,
        ),
        (
            "confirm by test",
            d,
            honest(
                d,
                &bob(),
                Edit::Confirm {
                    hypothesis: ha.clone(),
                    evidence: t.clone(),
                },
            ),
            bob(),
            None,
        ),
        (
            "confirm by evidence",
            d,
            honest(
                d,
                &alice(),
                Edit::Confirm {
                    hypothesis: hb.clone(),
                    evidence: "pcap shows it".into(),
                },
            ),
            alice(),
            None,
        ),
        (
            "fix without cause",
            d,
            honest(
                d,
                &bob(),
                Edit::AddFix {
                    text: "f".into(),
                    unconfirmed_because: Some("bleeding".into()),
                },
            ),
            bob(),
            None,
        ),
        (
            "follow-up",
            d,
            honest(
                d,
                &bob(),
                Edit::AddFollowUp {
                    text: "f".into(),
                    owner: None,
                    due: None,
                },
            ),
            bob(),
            None,
        ),
        (
            "status",
            d,
            honest(
                d,
                &bob(),
                Edit::SetStatus {
                    status: crate::Status::Identified,
                    because: None,
                },
            ),
            bob(),
            None,
        ),
        (
            "role",
            d,
            honest(
                d,
                &bob(),
                Edit::SetRole {
                    role: crate::Role::Scribe,
                    name: "bob".into(),
                },
            ),
            bob(),
            None,
        ),
        (
            "title",
            d,
            honest(d, &bob(), Edit::SetTitle("t".into())),
            bob(),
            None,
        ),
        (
            "severity",
            d,
            honest(d, &bob(), Edit::SetSeverity(Severity::Sev1)),
            bob(),
            None,
        ),
        (
            "admit a member",
            d,
            honest(
                d,
                &bob(),
                Edit::AddMember {
                    key: CAROL.into(),
                    name: "carol".into(),
                },
            ),
            bob(),
            None,
        ),
        (
            "admit a taken name: numbered",
            d,
            honest(
                d,
                &bob(),
                Edit::AddMember {
                    key: CAROL.into(),
                    name: "Alice".into(),
                },
            ),
            bob(),
            None,
        ),
    ]);
}

#[test]
fn reopening_and_resolving_a_real_conflict_pass() {
    let b = base();
    // Concurrently: bob rules alice's hypothesis out, alice confirms it.
    let mut one = fork(b.incident.doc());
    let mut two = fork(b.incident.doc());
    one.apply(
        Edit::AddResult {
            test: b.test.to_string(),
            observation: "answers".into(),
            verdict: Verdict::RulesOut,
        },
        &bob(),
        3,
    )
    .unwrap();
    two.apply(
        Edit::Confirm {
            hypothesis: b.h_alice.to_string(),
            evidence: "logs".into(),
        },
        &alice(),
        3,
    )
    .unwrap();
    let mut merged = fork(one.doc());
    merged.doc_mut().merge(&mut two.doc().fork()).unwrap();
    let field = format!("hypotheses/{}/status", b.h_alice);
    assert!(merged.conflicts().iter().any(|c| c.field == field));
    let d = merged.doc();
    let resolve = honest(
        d,
        &alice(),
        Edit::Resolve {
            field: field.clone(),
            value: "confirmed".into(),
        },
    );
    let mut resolved = fork(b.incident.doc());
    resolved
        .apply(
            Edit::SetStatus {
                status: crate::Status::Resolved,
                because: Some("it went away".into()),
            },
            &alice(),
            4,
        )
        .unwrap();
    let r = resolved.doc();
    check(vec![
        ("resolve a real conflict", d, resolve, alice(), None),
        (
            "reopen",
            r,
            honest(
                r,
                &bob(),
                Edit::Reopen {
                    reason: "back".into(),
                },
            ),
            bob(),
            None,
        ),
    ]);
}

#[test]
fn nobody_erases_or_rewrites_anothers_work() {
    let b = base();
    let d = b.incident.doc();
    let (ha, hb, s) = (
        b.h_alice.to_string(),
        b.h_bob.to_string(),
        b.symptom.to_string(),
    );
    check(vec![
        (
            "erase: delete another's hypothesis",
            d,
            hostile(d, |tx| {
                let hs = obj(tx, &["hypotheses"]);
                tx.delete(&hs, ha.as_str()).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::NoDeletion),
        ),
        (
            "erase: delete every timeline entry",
            d,
            hostile(d, |tx| {
                let tl = obj(tx, &["timeline"]);
                for _ in 0..tx.length(&tl) {
                    tx.delete(&tl, 0).unwrap();
                }
                bob_note(tx);
            }),
            bob(),
            Some(Rule::NoDeletion),
        ),
        (
            "erase: delete one's own hypothesis too",
            d,
            hostile(d, |tx| {
                let hs = obj(tx, &["hypotheses"]);
                tx.delete(&hs, hb.as_str()).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::NoDeletion),
        ),
        (
            "erase: delete a field",
            d,
            hostile(d, |tx| {
                let h = obj(tx, &["symptoms", s.as_str()]);
                tx.delete(&h, "text").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::NoDeletion),
        ),
        (
            "erase: overwrite a timeline entry",
            d,
            hostile(d, |tx| {
                let tl = obj(tx, &["timeline"]);
                tx.put(&tl, 1, "{}").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Timeline),
        ),
        (
            "erase: a fresh empty timeline",
            d,
            hostile(d, |tx| {
                tx.put_object(ROOT, "timeline", ObjType::List).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Containers),
        ),
        (
            "erase: a fresh empty collection",
            d,
            hostile(d, |tx| {
                tx.put_object(ROOT, "hypotheses", ObjType::Map).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Containers),
        ),
        (
            "erase: replace another's item",
            d,
            hostile(d, |tx| {
                let hs = obj(tx, &["hypotheses"]);
                let h = tx.put_object(&hs, ha.as_str(), ObjType::Map).unwrap();
                tx.put(&h, "text", "nothing").unwrap();
                tx.put(&h, "by", bob().key.as_str()).unwrap();
                entry(tx, &bob().key, "bob", "hypothesis", Some(&ha));
            }),
            bob(),
            Some(Rule::ItemOnce),
        ),
        (
            "rewrite another's hypothesis text",
            d,
            hostile(d, |tx| {
                let h = obj(tx, &["hypotheses", ha.as_str()]);
                tx.put(&h, "text", "something else").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::ItemEdit),
        ),
        (
            "rule out without a result",
            d,
            hostile(d, |tx| {
                let h = obj(tx, &["hypotheses", ha.as_str()]);
                tx.put(&h, "status", "ruled-out").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::ItemEdit),
        ),
        (
            "confirm under `resolve` with no conflict",
            d,
            hostile(d, |tx| {
                let h = obj(tx, &["hypotheses", ha.as_str()]);
                tx.put(&h, "status", "confirmed").unwrap();
                entry(tx, &bob().key, "bob", "resolve", None);
            }),
            bob(),
            Some(Rule::ItemEdit),
        ),
        (
            "two timeline entries in one change",
            d,
            hostile(d, |tx| {
                bob_note(tx);
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "no timeline entry",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "title", "quiet").unwrap();
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "title under a note",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "title", "quiet").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "unknown root key",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "pwned", "yes").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::RootKey),
        ),
        (
            "bad severity",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "severity", "sev0").unwrap();
                entry(tx, &bob().key, "bob", "severity", None);
            }),
            bob(),
            Some(Rule::RootKey),
        ),
        (
            "new incident id",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "id", "i0000000").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Containers),
        ),
        (
            "a test id in hypotheses",
            d,
            hostile(d, |tx| {
                let hs = obj(tx, &["hypotheses"]);
                let h = tx.put_object(&hs, "t1234567", ObjType::Map).unwrap();
                tx.put(&h, "by", bob().key.as_str()).unwrap();
                entry(tx, &bob().key, "bob", "hypothesis", Some("t1234567"));
            }),
            bob(),
            Some(Rule::ItemOnce),
        ),
        (
            "an item field of no command",
            d,
            hostile(d, |tx| {
                let hs = obj(tx, &["hypotheses"]);
                let h = tx.put_object(&hs, "h1234567", ObjType::Map).unwrap();
                tx.put(&h, "by", bob().key.as_str()).unwrap();
                tx.put(&h, "owner", "x").unwrap();
                entry(tx, &bob().key, "bob", "hypothesis", Some("h1234567"));
            }),
            bob(),
            Some(Rule::ItemOnce),
        ),
        (
            "an item in another's name",
            d,
            hostile(d, |tx| {
                let hs = obj(tx, &["hypotheses"]);
                let h = tx.put_object(&hs, "h1234567", ObjType::Map).unwrap();
                tx.put(&h, "by", alice().key.as_str()).unwrap();
                entry(tx, &bob().key, "bob", "hypothesis", Some("h1234567"));
            }),
            bob(),
            Some(Rule::Author),
        ),
        (
            "an item with no author",
            d,
            hostile(d, |tx| {
                let hs = obj(tx, &["hypotheses"]);
                let h = tx.put_object(&hs, "h1234567", ObjType::Map).unwrap();
                tx.put(&h, "text", "x").unwrap();
                entry(tx, &bob().key, "bob", "hypothesis", Some("h1234567"));
            }),
            bob(),
            Some(Rule::Author),
        ),
        (
            "an object nested in an item",
            d,
            hostile(d, |tx| {
                let h = obj(tx, &["hypotheses", hb.as_str()]);
                tx.put_object(&h, "extra", ObjType::Map).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::ItemEdit),
        ),
        (
            "a counter",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "title", ScalarValue::counter(1)).unwrap();
                tx.increment(ROOT, "title", 1).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::RootKey),
        ),
    ]);
}

#[test]
fn the_roster_is_written_once_and_names_come_from_it() {
    let b = base();
    let d = b.incident.doc();
    let a = alice().key;
    check(vec![
        (
            "delete the creator",
            d,
            hostile(d, |tx| {
                let r = obj(tx, &["roster"]);
                tx.delete(&r, a.as_str()).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::NoDeletion),
        ),
        (
            "rename a member",
            d,
            hostile(d, |tx| {
                let e = obj(tx, &["roster", a.as_str()]);
                tx.put(&e, "name", "bob").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::RosterOnce),
        ),
        (
            "rename oneself",
            d,
            hostile(d, |tx| {
                let e = obj(tx, &["roster", bob().key.as_str()]);
                tx.put(&e, "name", "admin").unwrap();
                entry(tx, &bob().key, "bob", "note", None);
            }),
            bob(),
            Some(Rule::RosterOnce),
        ),
        (
            "replace a member's entry",
            d,
            hostile(d, |tx| {
                let r = obj(tx, &["roster"]);
                let e = tx.put_object(&r, a.as_str(), ObjType::Map).unwrap();
                tx.put(&e, "name", "mallory").unwrap();
                entry(tx, &bob().key, "bob", "member", None);
            }),
            bob(),
            Some(Rule::RosterOnce),
        ),
        (
            "smuggle a key under a note",
            d,
            hostile(d, |tx| {
                let r = obj(tx, &["roster"]);
                let e = tx.put_object(&r, CAROL, ObjType::Map).unwrap();
                tx.put(&e, "name", "carol").unwrap();
                tx.put(&e, "added_by", bob().key.as_str()).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "two keys in one admission",
            d,
            hostile(d, |tx| {
                let r = obj(tx, &["roster"]);
                for (k, n) in [(CAROL.to_string(), "carol"), ("dd".repeat(32), "dave")] {
                    let e = tx.put_object(&r, k.as_str(), ObjType::Map).unwrap();
                    tx.put(&e, "name", n).unwrap();
                }
                entry(tx, &bob().key, "bob", "member", None);
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "a second member named alice",
            d,
            hostile(d, |tx| {
                let r = obj(tx, &["roster"]);
                let e = tx.put_object(&r, CAROL, ObjType::Map).unwrap();
                tx.put(&e, "name", " Alice").unwrap();
                entry(tx, &bob().key, "bob", "member", None);
            }),
            bob(),
            Some(Rule::UniqueName),
        ),
        (
            "a roster key that is no key",
            d,
            hostile(d, |tx| {
                let r = obj(tx, &["roster"]);
                let e = tx.put_object(&r, "héhé", ObjType::Map).unwrap();
                tx.put(&e, "name", "x").unwrap();
                entry(tx, &bob().key, "bob", "member", None);
            }),
            bob(),
            Some(Rule::RosterOnce),
        ),
        (
            "an entry signed by bob naming alice",
            d,
            hostile(d, |tx| {
                entry(tx, &bob().key, "alice", "note", None);
            }),
            bob(),
            Some(Rule::Name),
        ),
        (
            "an entry in alice's key",
            d,
            hostile(d, |tx| {
                entry(tx, &alice().key, "alice", "note", None);
            }),
            bob(),
            Some(Rule::Author),
        ),
        (
            "a multi-byte name",
            d,
            hostile(d, |tx| {
                entry(tx, &bob().key, "ééééééééééééééééééééééééé", "note", None);
            }),
            bob(),
            Some(Rule::Name),
        ),
    ]);
}

#[test]
fn honest_commands_keep_names_unique_and_from_the_roster() {
    let mut b = base();
    let applied = b
        .incident
        .apply(
            Edit::AddMember {
                key: CAROL.into(),
                name: "Alice".into(),
            },
            &bob(),
            5,
        )
        .unwrap();
    assert!(
        applied.summary.starts_with("Alice-2 joined"),
        "{}",
        applied.summary
    );
    assert_eq!(b.incident.roster_name(CAROL).as_deref(), Some("Alice-2"));
    let err = b
        .incident
        .apply(
            Edit::AddMember {
                key: CAROL.into(),
                name: "carol".into(),
            },
            &bob(),
            6,
        )
        .unwrap_err();
    assert!(matches!(err, crate::RuleError::AlreadyMember(_)), "{err}");
    // Carol's device calls her "alice"; her entries say the roster's name.
    let carol = Editor {
        key: CAROL.into(),
        name: "alice".into(),
    };
    b.incident
        .apply(Edit::AddNote { text: "hi".into() }, &carol, 7)
        .unwrap();
    let v = b.incident.view().unwrap();
    assert_eq!(v.timeline.last().unwrap().name, "Alice-2");
}

#[test]
fn resolving_a_root_title_conflict_passes() {
    let b = base();
    let mut one = fork(b.incident.doc());
    let mut two = fork(b.incident.doc());
    one.apply(Edit::SetTitle("eu-west".into()), &alice(), 3)
        .unwrap();
    two.apply(Edit::SetTitle("cdn".into()), &bob(), 3).unwrap();
    let mut merged = fork(one.doc());
    merged.doc_mut().merge(&mut two.doc().fork()).unwrap();
    assert!(merged.conflicts().iter().any(|c| c.field == "title"));
    let d = merged.doc();
    // Settling on the value that shows (the winner) is encoded by Automerge
    // as a delete of the other value; settling on the other, as a put.
    let mut deletes = 0;
    for value in ["eu-west", "cdn"] {
        let resolve = honest(
            d,
            &bob(),
            Edit::Resolve {
                field: "title".into(),
                value: value.into(),
            },
        );
        deletes += resolve
            .decode()
            .operations
            .iter()
            .filter(|op| op.action == automerge::legacy::OpType::Delete)
            .count();
        check(vec![("resolve a title conflict", d, resolve, bob(), None)]);
    }
    assert_eq!(deletes, 1, "one of the two settles by a delete");
    // A delete that leaves no value standing is still an erasure.
    let mut erase = fork(d);
    let mut tx = erase.doc_mut().transaction();
    automerge::transaction::Transactable::delete(&mut tx, automerge::ROOT, "title").unwrap();
    tx.commit();
    let erased = erase.doc_mut().get_last_local_change().unwrap();
    assert!(crate::validate::validate(d, &erased, &bob().key).is_err());
}

/// A lesson as `Write::Lesson` writes it, appended to `lessons` (made here
/// when `make`).
fn lesson(tx: &mut Transaction<'_>, make: bool, by: &str, text: &str) {
    let list = if make {
        tx.put_object(ROOT, "lessons", ObjType::List).unwrap()
    } else {
        obj(tx, &["lessons"])
    };
    let json = serde_json::to_string(&crate::Lesson {
        at: 2,
        by: by.into(),
        text: text.into(),
    })
    .unwrap();
    let len = tx.length(&list);
    tx.insert(&list, len, json).unwrap();
}

/// A follow-up by bob with `fields` besides its text.
fn bob_followup(tx: &mut Transaction<'_>, fields: &[(&str, &str)]) {
    let col = obj(tx, &["followups"]);
    let a = tx.put_object(&col, "a1234567", ObjType::Map).unwrap();
    tx.put(&a, "text", "alert on 5xx").unwrap();
    for (k, v) in fields {
        tx.put(&a, *k, *v).unwrap();
    }
    tx.put(&a, "by", bob().key.as_str()).unwrap();
    tx.put(&a, "at", 2).unwrap();
    entry(tx, &bob().key, "bob", "followup", Some("a1234567"));
}

#[test]
fn impact_start_owners_summary_and_lessons_follow_the_schema() {
    let b = base();
    let d = b.incident.doc();
    // A document where alice already wrote the first lesson.
    let mut with_lesson = fork(d);
    with_lesson
        .apply(
            Edit::AddLesson {
                text: "alert on symptoms".into(),
            },
            &alice(),
            2,
        )
        .unwrap();
    let l = with_lesson.doc();
    let s = b.symptom.to_string();
    let mut with_followup = fork(d);
    with_followup
        .apply(
            Edit::AddFollowUp {
                text: "alert".into(),
                owner: None,
                due: None,
            },
            &alice(),
            2,
        )
        .unwrap();
    let f = with_followup.doc();
    let followup = |owner: Option<&str>, due: Option<&str>| Edit::AddFollowUp {
        text: "alert on 5xx".into(),
        owner: owner.map(str::to_string),
        due: due.map(str::to_string),
    };
    check(vec![
        (
            "symptom with an impact start",
            d,
            honest(
                d,
                &bob(),
                Edit::AddSymptom {
                    text: "s".into(),
                    place: None,
                    frequency: None,
                    impact: None,
                    since: Some("1970-01-01T00:00:00Z".into()),
                },
            ),
            bob(),
            None,
        ),
        (
            "follow-up with owner and due date",
            d,
            honest(d, &bob(), followup(Some("alice"), Some("2026-12-15"))),
            bob(),
            None,
        ),
        (
            "summary",
            d,
            honest(d, &bob(), Edit::SetSummary("what happened".into())),
            bob(),
            None,
        ),
        (
            "first lesson",
            d,
            honest(
                d,
                &bob(),
                Edit::AddLesson {
                    text: "page earlier".into(),
                },
            ),
            bob(),
            None,
        ),
        (
            "a lesson after another's",
            l,
            honest(
                l,
                &bob(),
                Edit::AddLesson {
                    text: "page earlier".into(),
                },
            ),
            bob(),
            None,
        ),
        (
            "since as text",
            d,
            hostile(d, |tx| {
                let col = obj(tx, &["symptoms"]);
                let x = tx.put_object(&col, "s1234567", ObjType::Map).unwrap();
                tx.put(&x, "text", "t").unwrap();
                tx.put(&x, "since", "02:41").unwrap();
                tx.put(&x, "by", bob().key.as_str()).unwrap();
                entry(tx, &bob().key, "bob", "symptom", Some("s1234567"));
            }),
            bob(),
            Some(Rule::ItemOnce),
        ),
        (
            "since moved later on another's symptom",
            d,
            hostile(d, |tx| {
                let x = obj(tx, &["symptoms", s.as_str()]);
                tx.put(&x, "since", 5).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::ItemEdit),
        ),
        (
            "since on a hypothesis",
            d,
            hostile(d, |tx| {
                let col = obj(tx, &["hypotheses"]);
                let x = tx.put_object(&col, "h1234567", ObjType::Map).unwrap();
                tx.put(&x, "text", "t").unwrap();
                tx.put(&x, "since", 1).unwrap();
                tx.put(&x, "by", bob().key.as_str()).unwrap();
                entry(tx, &bob().key, "bob", "hypothesis", Some("h1234567"));
            }),
            bob(),
            Some(Rule::ItemOnce),
        ),
        (
            "owner who is not on the roster",
            d,
            hostile(d, |tx| bob_followup(tx, &[("owner", "mallory")])),
            bob(),
            Some(Rule::Owner),
        ),
        (
            "owner on the roster, by hand",
            d,
            hostile(d, |tx| {
                bob_followup(tx, &[("owner", "alice"), ("due", "2026-12-15")])
            }),
            bob(),
            None,
        ),
        (
            "due that is not a date",
            d,
            hostile(d, |tx| bob_followup(tx, &[("due", "tomorrow")])),
            bob(),
            Some(Rule::ItemOnce),
        ),
        (
            "owner reassigned on an existing follow-up",
            f,
            hostile(f, |tx| {
                let col = obj(tx, &["followups"]);
                let id = tx.keys(&col).next().unwrap();
                let a = obj(tx, &["followups", id.as_str()]);
                tx.put(&a, "owner", "bob").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::ItemEdit),
        ),
        (
            "empty summary",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "summary", " ").unwrap();
                entry(tx, &bob().key, "bob", "summary", None);
            }),
            bob(),
            Some(Rule::RootKey),
        ),
        (
            "summary as a number",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "summary", 7).unwrap();
                entry(tx, &bob().key, "bob", "summary", None);
            }),
            bob(),
            Some(Rule::RootKey),
        ),
        (
            "summary under a note",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "summary", "nothing happened").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "lesson in another's name",
            d,
            hostile(d, |tx| {
                lesson(tx, true, &alice().key, "blame alice");
                entry(tx, &bob().key, "bob", "lesson", None);
            }),
            bob(),
            Some(Rule::Author),
        ),
        (
            "lesson under a note",
            d,
            hostile(d, |tx| {
                lesson(tx, true, &bob().key, "quiet");
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "two lessons in one change",
            d,
            hostile(d, |tx| {
                lesson(tx, true, &bob().key, "one");
                lesson(tx, false, &bob().key, "two");
                entry(tx, &bob().key, "bob", "lesson", None);
            }),
            bob(),
            Some(Rule::Lesson),
        ),
        (
            "an empty lesson",
            d,
            hostile(d, |tx| {
                lesson(tx, true, &bob().key, " ");
                entry(tx, &bob().key, "bob", "lesson", None);
            }),
            bob(),
            Some(Rule::Lesson),
        ),
        (
            "lessons replaced by a fresh list",
            l,
            hostile(l, |tx| {
                lesson(tx, true, &bob().key, "mine only");
                entry(tx, &bob().key, "bob", "lesson", None);
            }),
            bob(),
            Some(Rule::Lesson),
        ),
        (
            "another's lesson rewritten",
            l,
            hostile(l, |tx| {
                let list = obj(tx, &["lessons"]);
                tx.put(&list, 0, "{}").unwrap();
                entry(tx, &bob().key, "bob", "lesson", None);
            }),
            bob(),
            Some(Rule::Lesson),
        ),
        (
            "another's lesson deleted",
            l,
            hostile(l, |tx| {
                let list = obj(tx, &["lessons"]);
                tx.delete(&list, 0).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::NoDeletion),
        ),
    ]);
}

#[test]
fn resolving_a_summary_conflict_passes() {
    let b = base();
    let mut one = fork(b.incident.doc());
    let mut two = fork(b.incident.doc());
    one.apply(Edit::SetSummary("DNS broke".into()), &alice(), 3)
        .unwrap();
    two.apply(Edit::SetSummary("a deploy broke".into()), &bob(), 3)
        .unwrap();
    let mut merged = fork(one.doc());
    merged.doc_mut().merge(&mut two.doc().fork()).unwrap();
    assert!(merged.conflicts().iter().any(|c| c.field == "summary"));
    let d = merged.doc();
    for value in ["DNS broke", "a deploy broke"] {
        let resolve = honest(
            d,
            &bob(),
            Edit::Resolve {
                field: "summary".into(),
                value: value.into(),
            },
        );
        check(vec![(
            "resolve a summary conflict",
            d,
            resolve,
            bob(),
            None,
        )]);
    }
}

#[test]
fn stakeholder_updates_are_written_once_by_their_author() {
    let b = base();
    let d = b.incident.doc();
    let mut with = fork(d);
    let posted = with
        .apply(
            Edit::PostUpdate {
                text: "all hands".into(),
            },
            &alice(),
            2,
        )
        .unwrap()
        .id
        .unwrap()
        .to_string();
    let u = with.doc();
    let fresh_id = ItemId::random(Kind::Update).to_string();
    let forged_update = |tx: &mut Transaction<'_>, by: &str, field: &str| {
        let ups = obj(tx, &["updates"]);
        let up = tx
            .put_object(&ups, fresh_id.as_str(), ObjType::Map)
            .unwrap();
        tx.put(&up, field, "we are fine").unwrap();
        tx.put(&up, "by", by).unwrap();
        tx.put(&up, "at", 2).unwrap();
    };
    check(vec![
        (
            "the first update makes the map",
            d,
            honest(d, &bob(), Edit::PostUpdate { text: "u".into() }),
            bob(),
            None,
        ),
        (
            "a second update",
            u,
            honest(u, &bob(), Edit::PostUpdate { text: "u2".into() }),
            bob(),
            None,
        ),
        (
            "interval set",
            d,
            honest(d, &bob(), Edit::SetUpdateInterval { every_s: Some(900) }),
            bob(),
            None,
        ),
        (
            "interval off",
            d,
            honest(d, &bob(), Edit::SetUpdateInterval { every_s: None }),
            bob(),
            None,
        ),
        (
            "rewrite a posted update",
            u,
            hostile(u, |tx| {
                let up = obj(tx, &["updates", posted.as_str()]);
                tx.put(&up, "text", "nothing happened").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::ItemEdit),
        ),
        (
            "delete a posted update",
            u,
            hostile(u, |tx| {
                let ups = obj(tx, &["updates"]);
                tx.delete(&ups, posted.as_str()).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::NoDeletion),
        ),
        (
            "replace the updates map",
            u,
            hostile(u, |tx| {
                tx.put_object(ROOT, "updates", ObjType::Map).unwrap();
                entry(tx, &bob().key, "bob", "update", None);
            }),
            bob(),
            Some(Rule::ItemOnce),
        ),
        (
            "an update in another's name",
            u,
            hostile(u, |tx| {
                forged_update(tx, &alice().key, "text");
                entry(tx, &bob().key, "bob", "update", Some(&fresh_id));
            }),
            bob(),
            Some(Rule::Author),
        ),
        (
            "an update with a field no update has",
            u,
            hostile(u, |tx| {
                forged_update(tx, &bob().key, "status");
                entry(tx, &bob().key, "bob", "update", Some(&fresh_id));
            }),
            bob(),
            Some(Rule::ItemOnce),
        ),
        (
            "an update hidden in a note",
            u,
            hostile(u, |tx| {
                forged_update(tx, &bob().key, "text");
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "an update entry without an update",
            u,
            hostile(u, |tx| entry(tx, &bob().key, "bob", "update", None)),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "the interval as text",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "update_every", "15m").unwrap();
                entry(tx, &bob().key, "bob", "interval", None);
            }),
            bob(),
            Some(Rule::RootKey),
        ),
        (
            "a negative interval",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "update_every", -5).unwrap();
                entry(tx, &bob().key, "bob", "interval", None);
            }),
            bob(),
            Some(Rule::RootKey),
        ),
        (
            "an interval of a year",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "update_every", 366 * 86_400).unwrap();
                entry(tx, &bob().key, "bob", "interval", None);
            }),
            bob(),
            Some(Rule::RootKey),
        ),
        (
            "the interval set by a note",
            d,
            hostile(d, |tx| {
                tx.put(ROOT, "update_every", 60).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "an interval entry that sets nothing",
            d,
            hostile(d, |tx| entry(tx, &bob().key, "bob", "interval", None)),
            bob(),
            Some(Rule::Shape),
        ),
    ]);
}

fn a_run(output: &str) -> crate::evidence::Record {
    crate::evidence::Record {
        source: crate::evidence::Source::Run {
            command: "dig example.com".into(),
            ended: crate::evidence::Ended::Exit(3),
            stopped: None,
            timeout_ms: 120_000,
            duration_ms: 250,
        },
        output: output.into(),
        cut_bytes: 0,
        redactions: 1,
    }
}

/// Writes evidence `id` on `of` by hand, with `fields` (str or int), making
/// the `evidence` map if the document has none, and bob's entry for it.
fn forged_evidence(tx: &mut Transaction<'_>, id: &str, by: &str, fields: &[(&str, ScalarValue)]) {
    let col = match tx.get(ROOT, "evidence").unwrap() {
        Some((_, c)) => c,
        None => tx.put_object(ROOT, "evidence", ObjType::Map).unwrap(),
    };
    let e = tx.put_object(&col, id, ObjType::Map).unwrap();
    for (k, v) in fields {
        tx.put(&e, *k, v.clone()).unwrap();
    }
    tx.put(&e, "by", by).unwrap();
    tx.put(&e, "at", 2).unwrap();
    entry(tx, &bob().key, "bob", "evidence", Some(id));
}

/// The fields of an honest run of `of`.
fn run_fields(of: &str) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("of", of.into()),
        ("kind", "run".into()),
        ("command", "dig".into()),
        ("exit", ScalarValue::Int(0)),
        ("timeout_ms", ScalarValue::Int(1000)),
        ("duration_ms", ScalarValue::Int(5)),
        ("output", "ok".into()),
        ("cut_bytes", ScalarValue::Int(0)),
        ("redactions", ScalarValue::Int(0)),
    ]
}

#[test]
fn evidence_is_added_by_its_signer_to_an_item_and_never_changed() {
    let b = base();
    let d = b.incident.doc();
    let t = b.test.to_string();
    // A document that already holds one evidence (alice's, on the test).
    let mut with = fork(d);
    let first = with
        .apply(
            Edit::AddEvidence {
                of: t.clone(),
                record: a_run("first"),
            },
            &alice(),
            3,
        )
        .unwrap()
        .id
        .unwrap()
        .to_string();
    let w = with.doc();
    let file = crate::evidence::Record {
        source: crate::evidence::Source::File {
            name: "notes.txt".into(),
            bytes: 2,
        },
        output: "hi".into(),
        cut_bytes: 0,
        redactions: 0,
    };
    let new_id = ItemId::random(Kind::Evidence).to_string();
    let with_fields = |f: Vec<(&'static str, ScalarValue)>, doc: &Automerge| {
        let id = new_id.clone();
        hostile(doc, move |tx| forged_evidence(tx, &id, &bob().key, &f))
    };
    let mut both = run_fields(&t);
    both.push(("signal", ScalarValue::Int(9)));
    let mut file_with_exit = run_fields(&t);
    file_with_exit.retain(|(k, _)| !["command", "timeout_ms", "duration_ms"].contains(k));
    file_with_exit[1].1 = "file".into();
    file_with_exit.push(("file", "x".into()));
    file_with_exit.push(("bytes", ScalarValue::Int(1)));
    let retyped = |k: &str, v: ScalarValue| {
        let mut f = run_fields(&t);
        f.iter_mut()
            .filter(|(n, _)| *n == k)
            .for_each(|f| f.1 = v.clone());
        f
    };
    let without = |k: &str| {
        let mut f = run_fields(&t);
        f.retain(|(n, _)| *n != k);
        f
    };
    let huge = "x".repeat(crate::evidence::MAX_TEXT_BYTES + 1);
    check(vec![
        (
            "the first evidence makes the map",
            d,
            honest(
                d,
                &bob(),
                Edit::AddEvidence {
                    of: t.clone(),
                    record: a_run("out"),
                },
            ),
            bob(),
            None,
        ),
        (
            "a file on another's hypothesis, the map already there",
            w,
            honest(
                w,
                &bob(),
                Edit::AddEvidence {
                    of: b.h_alice.to_string(),
                    record: file.clone(),
                },
            ),
            bob(),
            None,
        ),
        (
            "by hand, whole",
            d,
            with_fields(run_fields(&t), d),
            bob(),
            None,
        ),
        (
            "in another's name",
            d,
            hostile(d, |tx| {
                forged_evidence(tx, &new_id, &alice().key, &run_fields(&t))
            }),
            bob(),
            Some(Rule::Author),
        ),
        (
            "on an item that does not exist",
            d,
            with_fields(run_fields(&ItemId::random(Kind::Test).to_string()), d),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "on an evidence",
            w,
            with_fields(run_fields(&first), w),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "exit as a string",
            d,
            with_fields(retyped("exit", "0".into()), d),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "output as a number",
            d,
            with_fields(retyped("output", ScalarValue::Int(1)), d),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "a field no evidence has",
            d,
            with_fields(
                {
                    let mut f = run_fields(&t);
                    f.push(("verdict", "rules-out".into()));
                    f
                },
                d,
            ),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "no output",
            d,
            with_fields(without("output"), d),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "no redaction count",
            d,
            with_fields(without("redactions"), d),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "a run that neither exited nor was signalled",
            d,
            with_fields(without("exit"), d),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "a run that both exited and was signalled",
            d,
            with_fields(both, d),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "a file with an exit status",
            d,
            with_fields(file_with_exit, d),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "an unknown kind",
            d,
            with_fields(retyped("kind", "screenshot".into()), d),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "stopped for no known reason",
            d,
            with_fields(
                {
                    let mut f = run_fields(&t);
                    f.push(("stopped", "boredom".into()));
                    f
                },
                d,
            ),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "output over the cap",
            d,
            with_fields(retyped("output", huge.as_str().into()), d),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "edit the output of another's evidence",
            w,
            hostile(w, |tx| {
                let e = obj(tx, &["evidence", first.as_str()]);
                tx.put(&e, "output", "nothing to see").unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::ItemEdit),
        ),
        (
            "replace another's evidence",
            w,
            with_fields_at(w, &first, run_fields(&t)),
            bob(),
            Some(Rule::ItemOnce),
        ),
        (
            "delete an evidence",
            w,
            hostile(w, |tx| {
                let col = obj(tx, &["evidence"]);
                tx.delete(&col, first.as_str()).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::NoDeletion),
        ),
        (
            "replace the evidence map",
            w,
            hostile(w, |tx| {
                tx.put_object(ROOT, "evidence", ObjType::Map).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Evidence),
        ),
        (
            "make the evidence map in a note",
            d,
            hostile(d, |tx| {
                tx.put_object(ROOT, "evidence", ObjType::Map).unwrap();
                bob_note(tx);
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "evidence under a note's entry",
            d,
            hostile(d, |tx| {
                let col = tx.put_object(ROOT, "evidence", ObjType::Map).unwrap();
                let e = tx.put_object(&col, new_id.as_str(), ObjType::Map).unwrap();
                for (k, v) in run_fields(&t) {
                    tx.put(&e, k, v).unwrap();
                }
                tx.put(&e, "by", bob().key.as_str()).unwrap();
                entry(tx, &bob().key, "bob", "note", Some(&new_id));
            }),
            bob(),
            Some(Rule::Shape),
        ),
        (
            "a hypothesis id in the evidence map",
            d,
            hostile(d, |tx| {
                let col = tx.put_object(ROOT, "evidence", ObjType::Map).unwrap();
                let id = ItemId::random(Kind::Hypothesis).to_string();
                tx.put_object(&col, id.as_str(), ObjType::Map).unwrap();
                entry(tx, &bob().key, "bob", "evidence", Some(&id));
            }),
            bob(),
            Some(Rule::ItemOnce),
        ),
    ]);
}

/// Bob writes a whole evidence at `id` (which may already exist).
fn with_fields_at(doc: &Automerge, id: &str, f: Vec<(&'static str, ScalarValue)>) -> Change {
    hostile(doc, |tx| forged_evidence(tx, id, &bob().key, &f))
}

#[test]
fn roles_go_to_current_members_only() {
    let b = base();
    let d = b.incident.doc();
    let mut without_bob = fork(d);
    without_bob
        .apply(
            Edit::RemoveMember {
                member: "bob".into(),
                reason: "left the rota".into(),
            },
            &alice(),
            3,
        )
        .unwrap();
    let gone = without_bob.doc();
    let give = |doc: &Automerge, who: &Editor, name: &'static str| {
        let (key, own) = (who.key.clone(), who.name.clone());
        hostile(doc, move |tx| {
            let r = obj(tx, &["roles"]);
            tx.put(&r, "commander", name).unwrap();
            entry(tx, &key, &own, "role", None);
        })
    };
    check(vec![
        ("to a member", d, give(d, &bob(), "alice"), bob(), None),
        ("to oneself", d, give(d, &bob(), "bob"), bob(), None),
        (
            "honestly, by key prefix",
            d,
            honest(
                d,
                &bob(),
                Edit::SetRole {
                    role: crate::Role::Comms,
                    name: "aaaa".into(),
                },
            ),
            bob(),
            None,
        ),
        (
            "to a name not on the roster",
            d,
            give(d, &bob(), "mallory"),
            bob(),
            Some(Rule::RoleHolder),
        ),
        (
            "to a member's name spelt otherwise",
            d,
            give(d, &bob(), "ALICE "),
            bob(),
            Some(Rule::RoleHolder),
        ),
        (
            "to a removed member",
            gone,
            give(gone, &alice(), "bob"),
            alice(),
            Some(Rule::RoleHolder),
        ),
    ]);
}
