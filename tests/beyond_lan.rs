//! Beyond the LAN: hosts `a` and `b` of a routed [`support::Lan`] each reach
//! only its hub `r` (no route between them, so no mDNS and no direct dial).
//! The relay runs in `r`; `b` joins `a`'s incident with the invite alone; edits flow
//! both ways; the relay is killed and restarted and edits made during the
//! outage converge.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use support::{can_use_netns, same_texts, wait_for, wait_until, Lan, Node};

/// A relay process and the lines it prints.
struct Relay {
    child: Child,
    lines: Receiver<String>,
}

impl Relay {
    fn start(ns: &str, dir: &Path) -> Relay {
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

    /// The relay's address on the link to host `host`, once it listens there.
    fn address_on(&self, lan: &Lan, host: usize) -> String {
        let net = format!("/ip4/{}", lan.hub_ip(host));
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("relay prints its addresses");
            if let Some(a) = l.strip_prefix("listening ") {
                if a.starts_with(&format!("{net}/")) {
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

/// A node in host `i`'s namespace, mDNS off.
fn in_ns(lan: &Lan, i: usize, dir: &Path, name: &str, extra: &[&str]) -> Node {
    let mut args = vec!["--no-mdns"];
    args.extend_from_slice(extra);
    lan.spawn(i, dir, name, &args)
}

#[test]
fn members_on_two_networks_share_an_incident_through_a_relay() {
    if !can_use_netns("beyond_lan") {
        return;
    }
    // a is host 0, b is host 1; the relay runs in the hub, which does not
    // forward between them.
    let net = Lan::routed(2);
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = Relay::start(&net.hub, &relay_dir);
    let relay_a = relay.address_on(&net, 0);
    let relay_b = relay.address_on(&net, 1);

    let mut a = in_ns(
        &net,
        0,
        &tmp.path().join("a"),
        "alice",
        &["--relay", &relay_a],
    );
    a.ok("new \"region split\" --sev 2");
    wait_until("alice holds a reservation", Duration::from_secs(20), || {
        a.ok("whoami")["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_str().unwrap().contains("/p2p-circuit"))
    });
    // Keep only what bob cannot reach directly: alice's own address and her
    // circuit through the relay's a-side address. The join must go through
    // the relay connection bob already has (same relay peer id).
    let full: dontpanic_net::Invite = a.invite().parse().unwrap();
    let a_side = [net.ip(0), net.hub_ip(0)].map(|ip| format!("/ip4/{ip}/"));
    let addresses: Vec<_> = full
        .addresses
        .iter()
        .filter(|x| a_side.iter().any(|p| x.to_string().starts_with(p)))
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
        &net,
        1,
        &tmp.path().join("b"),
        "bob",
        &["--relay", &relay_b, "join", &invite],
    );
    b.joined();
    a.ok("hypo \"the inter-region link flaps\"");
    b.ok("note \"bob sees timeouts from eu\"");
    wait_for(
        "edits flow both ways through the relay",
        Duration::from_secs(30),
        || same_texts(&mut [&mut a, &mut b]),
    );
    let peers = a.peers();
    assert!(
        peers
            .iter()
            .any(|p| p["name"] == "bob" && p["state"] == "connected" && p["route"] == "relayed"),
        "{peers:?}"
    );

    // The relay dies; both keep working; it comes back with the same identity.
    drop(relay);
    a.ok("note \"alice during the relay outage\"");
    b.ok("note \"bob during the relay outage\"");
    std::thread::sleep(Duration::from_secs(1));
    let relay = Relay::start(&net.hub, &relay_dir);
    assert_eq!(relay.address_on(&net, 0), relay_a, "same key, same address");
    wait_for(
        "edits made during the outage converge",
        Duration::from_secs(60),
        || same_texts(&mut [&mut a, &mut b]),
    );
    assert!(a
        .texts()
        .iter()
        .any(|t| t.contains("bob during the relay outage")));
    drop((a, b, relay));
}
