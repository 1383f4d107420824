//! LAN discovery with real mDNS: three nodes in network namespaces joined by
//! a bridge (all created here, all removed on drop), no address given
//! anywhere; then a partition of one node, healed.

mod support;

use std::time::Duration;

use support::{can_use_netns, same_texts, wait_for, wait_until, Lan};

#[test]
fn nodes_find_each_other_by_mdns_and_heal_after_a_partition() {
    if !can_use_netns("lan_mdns") {
        return;
    }
    let lan = Lan::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let mut a = lan.spawn(0, &tmp.path().join("a"), "alice", &[]);
    a.ok("new \"LAN outage drill\"");
    // An invite with no address at all: the joiners must find alice by mDNS.
    let full: dontpanic_net::Invite = a.invite().parse().unwrap();
    let bare = dontpanic_net::Invite {
        addresses: vec![],
        ..full
    }
    .to_string();
    let mut b = lan.spawn(1, &tmp.path().join("b"), "bob", &["join", &bare]);
    b.joined();
    let mut c = lan.spawn(2, &tmp.path().join("c"), "carol", &["join", &bare]);
    c.joined();
    a.ok("hypo \"switch loop\"");
    b.ok("hypo \"DHCP exhausted\"");
    c.ok("note \"carol on the console\"");
    let mut nodes = vec![a, b, c];
    wait_for("mDNS peers converge", Duration::from_secs(40), || {
        same_texts(&mut nodes)
    });
    wait_until(
        "bob and carol are connected directly, found by mDNS",
        Duration::from_secs(30),
        || {
            nodes[1].peers().iter().any(|r| {
                r["name"] == "carol" && r["state"] == "connected" && r["found_by"] == "mdns"
            })
        },
    );

    // Partition carol, edit on both sides, heal.
    lan.link(2, false);
    nodes[0].ok("note \"alice during the partition\"");
    nodes[2].ok("note \"carol during the partition\"");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !nodes[0].texts().iter().any(|t| t.contains("carol during")),
        "the partition must hold"
    );
    lan.link(2, true);
    wait_for("the partition heals", Duration::from_secs(60), || {
        same_texts(&mut nodes)
    });
    assert!(nodes[1]
        .texts()
        .iter()
        .any(|t| t.contains("carol during the partition")));
    drop(nodes);
    drop(lan);
}
