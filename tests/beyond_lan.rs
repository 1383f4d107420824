//! Beyond the LAN: namespaces `a`, `b` and `r`, where `a` and `b` each reach
//! only `r` (no route between them, so no mDNS and no direct dial). The relay
//! runs in `r`; `b` joins `a`'s incident with the invite alone; edits flow
//! both ways; the relay is killed and restarted and edits made during the
//! outage converge.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use support::{can_use_netns, eventually, sh, sh_quiet, Node};

struct Topology {
    a: String,
    b: String,
    r: String,
}

impl Topology {
    fn new() -> Topology {
        let tag = format!("dr{}", std::process::id() % 100_000);
        let t = Topology {
            a: format!("{tag}a"),
            b: format!("{tag}b"),
            r: format!("{tag}r"),
        };
        t.teardown();
        for ns in [&t.a, &t.b, &t.r] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        for (ns, side, net) in [(&t.a, "a", "10.88.1"), (&t.b, "b", "10.88.2")] {
            let (inner, outer) = (format!("{tag}{side}0"), format!("{tag}{side}1"));
            sh(&[
                "ip", "link", "add", &inner, "netns", ns, "type", "veth", "peer", "name", &outer,
                "netns", &t.r,
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{net}.2/24"),
                "dev",
                &inner,
            ]);
            sh(&[
                "ip",
                "-n",
                &t.r,
                "addr",
                "add",
                &format!("{net}.1/24"),
                "dev",
                &outer,
            ]);
            sh(&["ip", "-n", ns, "link", "set", &inner, "up"]);
            sh(&["ip", "-n", &t.r, "link", "set", &outer, "up"]);
        }
        // r must not route between a and b.
        sh(&[
            "ip",
            "netns",
            "exec",
            &t.r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=0",
        ]);
        t
    }

    fn teardown(&self) {
        for ns in [&self.a, &self.b, &self.r] {
            sh_quiet(&["ip", "netns", "del", ns]);
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// A relay process and the lines it prints.
struct Relay {
    child: Child,
    lines: Receiver<String>,
}

impl Relay {
    fn start(ns: &str, dir: &std::path::Path) -> Relay {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                support::bin(),
                "relay",
                "--data-dir",
                dir.to_str().unwrap(),
            ])
            .args(["--listen", "/ip4/0.0.0.0/tcp/4001"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start relay");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Relay { child, lines }
    }

    /// The relay's address on `net` (e.g. "10.88.1"), once it listens there.
    fn address_on(&self, net: &str) -> String {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("relay prints its addresses");
            if let Some(a) = l.strip_prefix("listening ") {
                if a.starts_with(&format!("/ip4/{net}.")) {
                    return a.to_string();
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn in_ns(ns: &str, dir: &std::path::Path, name: &str, extra: &[&str]) -> Node {
    let mut args = vec!["--no-mdns"];
    args.extend_from_slice(extra);
    Node::start(&["ip", "netns", "exec", ns], dir, name, &args)
}

fn converged(a: &mut Node, b: &mut Node) -> bool {
    a.texts() == b.texts()
}

#[test]
fn members_on_two_networks_share_an_incident_through_a_relay() {
    if !can_use_netns("beyond_lan") {
        return;
    }
    let net = Topology::new();
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = Relay::start(&net.r, &relay_dir);
    let relay_a = relay.address_on("10.88.1");
    let relay_b = relay.address_on("10.88.2");

    let mut a = in_ns(
        &net.a,
        &tmp.path().join("a"),
        "alice",
        &["--relay", &relay_a],
    );
    a.ok("new \"region split\" --sev 2");
    eventually("alice holds a reservation", Duration::from_secs(20), || {
        a.ok("whoami")["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_str().unwrap().contains("/p2p-circuit"))
    });
    // Keep only what bob cannot reach directly: alice's own address and her
    // circuit through the relay's a-side address. The join must go through
    // the relay connection bob already has (same relay peer id).
    let full: dontpanic_net::Invite = a.ok("invite")["invite"].as_str().unwrap().parse().unwrap();
    let addresses: Vec<_> = full
        .addresses
        .iter()
        .filter(|x| x.to_string().starts_with("/ip4/10.88.1."))
        .cloned()
        .collect();
    assert!(
        addresses
            .iter()
            .any(|x| x.to_string().contains("/p2p-circuit")),
        "{addresses:?}"
    );
    let invite = dontpanic_net::Invite { addresses, ..full }.to_string();

    let mut b = in_ns(
        &net.b,
        &tmp.path().join("b"),
        "bob",
        &["--relay", &relay_b, "join", &invite],
    );
    let joined = b.next_reply("join");
    assert_eq!(joined["ok"], true, "{joined}");
    a.ok("hypo \"the inter-region link flaps\"");
    b.ok("note \"bob sees timeouts from eu\"");
    eventually(
        "edits flow both ways through the relay",
        Duration::from_secs(30),
        || converged(&mut a, &mut b),
    );
    let peers = a.ok("peers");
    assert!(
        peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "bob" && p["state"] == "connected" && p["route"] == "relayed"),
        "{peers}"
    );

    // The relay dies; both keep working; it comes back with the same identity.
    drop(relay);
    a.ok("note \"alice during the relay outage\"");
    b.ok("note \"bob during the relay outage\"");
    std::thread::sleep(Duration::from_secs(1));
    let relay = Relay::start(&net.r, &relay_dir);
    assert_eq!(
        relay.address_on("10.88.1"),
        relay_a,
        "same key, same address"
    );
    eventually(
        "edits made during the outage converge",
        Duration::from_secs(60),
        || converged(&mut a, &mut b),
    );
    assert!(a
        .texts()
        .iter()
        .any(|t| t.contains("bob during the relay outage")));
    drop((a, b, relay));
}
