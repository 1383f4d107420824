//! LAN discovery with real mDNS: three nodes in network namespaces joined by
//! a bridge (all created here, all removed on drop), no address given
//! anywhere; then a partition of one node, healed.

mod support;

use std::time::Duration;

use support::{can_use_netns, eventually, sh, sh_quiet, Node};

/// The namespaces and links of one test; removed on drop even on panic.
struct Lan {
    bridge_ns: String,
    nodes: Vec<String>,
}

impl Lan {
    fn new(n: usize) -> Lan {
        let tag = format!("dp{}", std::process::id() % 100_000);
        let lan = Lan {
            bridge_ns: format!("{tag}br"),
            nodes: (1..=n).map(|i| format!("{tag}n{i}")).collect(),
        };
        lan.teardown();
        sh(&["ip", "netns", "add", &lan.bridge_ns]);
        sh(&[
            "ip",
            "-n",
            &lan.bridge_ns,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
        ]);
        sh(&["ip", "-n", &lan.bridge_ns, "link", "set", "br0", "up"]);
        for (i, ns) in lan.nodes.iter().enumerate() {
            let (inner, outer) = (format!("{tag}v{i}a"), format!("{tag}v{i}b"));
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sh(&[
                "ip",
                "link",
                "add",
                &inner,
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                "name",
                &outer,
                "netns",
                &lan.bridge_ns,
            ]);
            sh(&[
                "ip",
                "-n",
                &lan.bridge_ns,
                "link",
                "set",
                &outer,
                "master",
                "br0",
            ]);
            sh(&["ip", "-n", &lan.bridge_ns, "link", "set", &outer, "up"]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.87.0.{}/24", i + 1),
                "dev",
                &inner,
            ]);
            sh(&["ip", "-n", ns, "link", "set", &inner, "up"]);
            sh(&["ip", "-n", ns, "link", "set", &inner, "multicast", "on"]);
        }
        lan
    }

    fn veth(&self, i: usize) -> String {
        format!("{}v{i}a", &self.bridge_ns[..self.bridge_ns.len() - 2])
    }

    fn exec(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.nodes[i].clone(),
        ]
    }

    fn teardown(&self) {
        for ns in self.nodes.iter().chain([&self.bridge_ns]) {
            sh_quiet(&["ip", "netns", "del", ns]);
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn start(lan: &Lan, i: usize, dir: &std::path::Path, name: &str, extra: &[&str]) -> Node {
    let prefix = lan.exec(i);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    Node::start(&prefix, dir, name, extra)
}

fn converged(nodes: &mut [Node]) -> bool {
    let first = nodes[0].texts();
    nodes[1..].iter_mut().all(|n| n.texts() == first)
}

#[test]
fn nodes_find_each_other_by_mdns_and_heal_after_a_partition() {
    if !can_use_netns("lan_mdns") {
        return;
    }
    let lan = Lan::new(3);
    let tmp = tempfile::tempdir().unwrap();
    let mut a = start(&lan, 0, &tmp.path().join("a"), "alice", &[]);
    a.ok("new \"LAN outage drill\"");
    // An invite with no address at all: the joiners must find alice by mDNS.
    let full: dontpanic_net::Invite = a.ok("invite")["invite"].as_str().unwrap().parse().unwrap();
    let bare = dontpanic_net::Invite {
        addresses: vec![],
        ..full
    }
    .to_string();
    let mut b = start(&lan, 1, &tmp.path().join("b"), "bob", &["join", &bare]);
    assert_eq!(b.next_reply("join")["ok"], true);
    let mut c = start(&lan, 2, &tmp.path().join("c"), "carol", &["join", &bare]);
    assert_eq!(c.next_reply("join")["ok"], true);
    a.ok("hypo \"switch loop\"");
    b.ok("hypo \"DHCP exhausted\"");
    c.ok("note \"carol on the console\"");
    let mut nodes = vec![a, b, c];
    eventually("mDNS peers converge", Duration::from_secs(40), || {
        converged(&mut nodes)
    });
    eventually(
        "bob and carol are connected directly, found by mDNS",
        Duration::from_secs(30),
        || {
            let p = nodes[1].ok("peers");
            p["peers"].as_array().unwrap().iter().any(|r| {
                r["name"] == "carol" && r["state"] == "connected" && r["found_by"] == "mdns"
            })
        },
    );

    // Partition carol, edit on both sides, heal.
    let veth = lan.veth(2);
    sh(&["ip", "-n", &lan.nodes[2], "link", "set", &veth, "down"]);
    nodes[0].ok("note \"alice during the partition\"");
    nodes[2].ok("note \"carol during the partition\"");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !nodes[0].texts().iter().any(|t| t.contains("carol during")),
        "the partition must hold"
    );
    sh(&["ip", "-n", &lan.nodes[2], "link", "set", &veth, "up"]);
    eventually("the partition heals", Duration::from_secs(60), || {
        converged(&mut nodes)
    });
    assert!(nodes[1]
        .texts()
        .iter()
        .any(|t| t.contains("carol during the partition")));
    drop(nodes);
    drop(lan);
}
