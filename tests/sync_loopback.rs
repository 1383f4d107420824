//! Real nodes (separate processes) on loopback with explicit dials: join by
//! invite, live convergence, offline edits merged on restart, conflicts.

mod support;

use std::time::Duration;

use support::{same_texts, wait_for, wait_until, Node};

const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn three_nodes_join_edit_restart_and_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::loopback(&tmp.path().join("a"), "alice", &[]);
    a.ok("new \"payments down\" --sev 1");
    let inv = a.invite();
    let mut b = Node::loopback_join(&tmp.path().join("b"), "bob", &inv);
    let mut c = Node::loopback_join(&tmp.path().join("c"), "carol", &inv);
    // The join reply comes first; then each member edits.
    a.ok("hypo \"card processor timeout\"");
    b.ok("hypo \"expired TLS certificate\"");
    c.ok("symptom \"checkout spinner never ends\" --impact \"no payments\"");
    b.ok("note \"bob looking at cert expiry\"");
    wait_for("three nodes converge", CONVERGE, || {
        same_texts(&mut [&mut a, &mut b, &mut c])
    });
    let ra = a.report();
    assert_eq!(ra, b.report());
    assert_eq!(ra, c.report());
    assert!(ra.contains("expired TLS certificate") && ra.contains("no payments"));
    // Live edits are announced on the others as they arrive.
    a.ok("note \"alice paged the processor\"");
    b.wait_event("remote_edit", CONVERGE, |e| {
        e["event"] == "remote_edit" && e["summary"].as_str().unwrap().contains("alice paged")
    });

    // Carol leaves; the others carry on.
    let c_dir = c.dir.clone();
    c.quit();
    a.ok("hypo \"rate limit at the processor\"");
    b.ok("note \"cert is valid until 2027\"");
    // Carol comes back, edits before she reconnects, then dials alice.
    let a_addr = a.address();
    let mut c = Node::loopback(&c_dir, "carol", &[]);
    c.ok("note \"carol offline: processor status page is green\"");
    c.ok("hypo \"DNS for the processor\"");
    c.ok(&format!("connect {a_addr}"));
    wait_for("restart converges", CONVERGE, || {
        same_texts(&mut [&mut a, &mut b, &mut c])
    });
    let texts = a.texts();
    assert!(
        texts.iter().any(|t| t.contains("carol offline")),
        "{texts:?}"
    );
    assert!(c
        .texts()
        .iter()
        .any(|t| t.contains("cert is valid until 2027")));
    let ra = a.report();
    assert_eq!(ra, b.report());
    assert_eq!(ra, c.report());
}

#[test]
fn concurrent_edits_of_one_field_are_conflicts_until_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::loopback(&tmp.path().join("a"), "alice", &[]);
    a.ok("new \"api latency\"");
    let inv = a.invite();
    let b_dir = tmp.path().join("b");
    let mut b = Node::loopback_join(&b_dir, "bob", &inv);
    wait_for("join settles", CONVERGE, || {
        same_texts(&mut [&mut a, &mut b])
    });
    b.quit();
    // Both retitle while apart.
    a.ok("title \"API latency in eu-west\"");
    let mut b = Node::loopback(&b_dir, "bob", &[]);
    b.ok("title \"API latency from the CDN\"");
    let a_addr = a.address();
    b.ok(&format!("connect {a_addr}"));
    wait_until("both see the conflict", CONVERGE, || {
        [&mut a, &mut b]
            .iter_mut()
            .all(|n| n.conflicts().len() == 1)
    });
    for n in [&mut a, &mut b] {
        let c = n.conflicts();
        let conflict = &c[0];
        assert_eq!(conflict["field"], "title");
        let mut values: Vec<(String, String)> = conflict["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["value"].as_str().unwrap().into(),
                    v["author"].as_str().unwrap().into(),
                )
            })
            .collect();
        values.sort();
        assert_eq!(
            values,
            vec![
                ("API latency from the CDN".to_string(), "bob".to_string()),
                ("API latency in eu-west".to_string(), "alice".to_string())
            ]
        );
        assert!(n.brief().contains("conflicting edit"));
    }
    b.ok("resolve title \"API latency in eu-west\"");
    wait_until("resolution reaches alice", CONVERGE, || {
        a.conflicts().is_empty()
    });
    let brief = a.brief();
    assert!(
        brief.contains("API latency in eu-west") && !brief.contains("conflicting edit"),
        "{brief}"
    );
}

#[test]
fn peers_lists_members_with_route_and_rtt() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::loopback(&tmp.path().join("a"), "alice", &[]);
    a.ok("new \"peers table\"");
    let inv = a.invite();
    let mut b = Node::loopback_join(&tmp.path().join("b"), "bob", &inv);
    b.ok("note hello");
    wait_until("alice sees bob connected with an rtt", CONVERGE, || {
        a.peers().iter().any(|r| {
            r["name"] == "bob"
                && r["state"] == "connected"
                && r["route"] == "direct"
                && !r["rtt_ms"].is_null()
                && !r["last_sync_secs"].is_null()
        })
    });
}
