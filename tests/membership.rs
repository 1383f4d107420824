//! Membership taken back: `remove`, invite expiry and single use, with real
//! processes on loopback.

mod support;

use std::time::Duration;

use support::Node;

const WAIT: Duration = Duration::from_secs(20);

/// Starts `dontpanic join <invite>`, which must fail; returns its error.
fn join_refused(dir: &std::path::Path, name: &str, invite: &str) -> String {
    let n = Node::loopback(dir, name, &["join", invite]);
    support::wait_until("the join to fail", Duration::from_secs(30), || {
        n.stderr().contains("join failed")
    });
    let e = n.stderr();
    let _ = n.kill();
    e
}

#[test]
fn a_removed_member_is_refused_and_old_invites_stop_working() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Node::loopback(&tmp.path().join("alice"), "alice", &[]);
    alice.ok("new \"db down\" --sev 2");
    let old = alice.invite();
    let mut bob = Node::loopback_join(&tmp.path().join("bob"), "bob", &old);
    let mut carol = Node::loopback_join(&tmp.path().join("carol"), "carol", &old);
    bob.ok("note \"bob before\"");
    support::converge(
        "all three",
        &mut [&mut alice, &mut bob, &mut carol],
        &["bob before"],
    );

    alice.ok("remove bob \"laptop stolen\"");
    alice.wait_event("member_removed", WAIT, |e| e["event"] == "member_removed");
    support::wait_until("carol sees the removal", WAIT, || {
        carol.report().contains("removed by alice: laptop stolen")
    });
    assert!(alice.report().contains("removed bob"), "timeline entry");

    // Bob's later edits reach nobody.
    bob.ok("note \"bob after\"");
    std::thread::sleep(Duration::from_secs(5));
    for n in [&mut alice, &mut carol] {
        assert!(
            !n.texts().iter().any(|t| t.contains("bob after")),
            "{}",
            n.name
        );
    }
    // Nor can he come back in.
    let e = join_refused(&tmp.path().join("bob2"), "dave", &old);
    assert!(e.contains("wrong invite"), "{e}");
    let fresh = alice.invite();
    let mut erin = Node::loopback_join(&tmp.path().join("erin"), "erin", &fresh);
    erin.ok("note \"erin is in\"");
    support::converge(
        "alice, carol, erin",
        &mut [&mut alice, &mut carol, &mut erin],
        &["erin is in"],
    );
}

#[test]
fn an_expired_invite_is_refused_naming_the_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Node::loopback(&tmp.path().join("alice"), "alice", &[]);
    alice.ok("new \"db down\" --sev 2");
    let short = alice.ok("invite --expires 1s")["invite"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let e = join_refused(&tmp.path().join("bob"), "bob", &short);
    assert!(e.contains("expired at") && e.contains("UTC"), "{e}");
    let bad = alice.cmd("invite --expires soon");
    assert_eq!(bad["ok"], false, "{bad}");
}

#[test]
fn a_single_use_invite_admits_one_joiner() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Node::loopback(&tmp.path().join("alice"), "alice", &[]);
    alice.ok("new \"db down\" --sev 2");
    let once = alice.ok("invite --once")["invite"]
        .as_str()
        .unwrap()
        .to_string();
    let _bob = Node::loopback_join(&tmp.path().join("bob"), "bob", &once);
    let e = join_refused(&tmp.path().join("carol"), "carol", &once);
    assert!(e.contains("already used"), "{e}");
    // Used stays used across a restart of the member who made it, back on
    // the address the invite names.
    let address = alice.address();
    let listen = address.split("/p2p/").next().unwrap().to_string();
    alice.quit();
    let _alice = Node::spawn(
        &[],
        &tmp.path().join("alice"),
        "alice",
        &["--listen", &listen, "--no-mdns"],
    );
    let e = join_refused(&tmp.path().join("dave"), "dave", &once);
    assert!(e.contains("already used"), "after a restart: {e}");
}
