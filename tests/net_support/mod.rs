//! Harness of the network tests (`tests/net_*.rs`): real `dontpanic`
//! processes driven over their `--json` script interface, and throwaway
//! network namespaces for the LAN tests.
//!
//! A [`Node`] owns one child process. A reader thread splits its stdout into
//! replies (lines without an `event` field, one per command) and events
//! (unsolicited lines with an `event` field). [`Node::cmd`] sends one line and
//! waits for the next reply; [`Node::wait_event`] waits for an event;
//! [`wait_for`] polls anything until it holds. Dropping a node kills it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one command may take to answer (`join` may search for 15 s).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(45);
/// How long peers get to converge; polls end as soon as they have.
pub const CONVERGE: Duration = Duration::from_secs(20);
/// How long to wait for an unsolicited event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dontpanic")
}

/// Loopback only, explicit dials only.
pub const LOOPBACK: &[&str] = &["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];

/// One running `dontpanic --json` process.
pub struct Node {
    /// Display name (also `--name`).
    pub name: String,
    /// Data directory.
    pub dir: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<Value>,
    events: Receiver<Value>,
    seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Node {
    /// Starts `[prefix...] dontpanic --data-dir DIR --name NAME --json [extra...]`.
    /// `prefix` is e.g. `ip netns exec ns`; `extra` holds flags and an
    /// optional subcommand (`join <invite>`).
    pub fn spawn(prefix: &[String], dir: &Path, name: &str, extra: &[&str]) -> Node {
        let mut argv: Vec<String> = prefix.to_vec();
        argv.push(bin().to_string());
        argv.extend(
            [
                "--data-dir",
                dir.to_str().expect("utf-8 path"),
                "--name",
                name,
                "--json",
            ]
            .map(String::from),
        );
        argv.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (reply_tx, replies) = channel();
        let (event_tx, events) = channel();
        let who = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v: Value = match serde_json::from_str(&line) {
                    Ok(v) => v,
                    Err(e) => {
                        // Every stdout line must be JSON under --json; make
                        // a stray one visible as a failed reply.
                        let bad = serde_json::json!({
                            "ok": false,
                            "error": format!("{who}: stdout line is not JSON ({e}): {line}"),
                        });
                        let _ = reply_tx.send(bad);
                        continue;
                    }
                };
                let _ = if v.get("event").is_some() {
                    event_tx.send(v)
                } else {
                    reply_tx.send(v)
                };
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Node {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            stdin: child.stdin.take(),
            child,
            replies,
            events,
            seen: Vec::new(),
            stderr: log,
        }
    }

    /// A node on 127.0.0.1 with mDNS off.
    pub fn loopback(dir: &Path, name: &str) -> Node {
        Node::spawn(&[], dir, name, LOOPBACK)
    }

    /// `dontpanic join <invite>` on loopback; waits for the join's reply,
    /// which must be a success, and returns the node at its prompt.
    pub fn loopback_join(dir: &Path, name: &str, invite: &str) -> Node {
        let mut args = LOOPBACK.to_vec();
        args.extend(["join", invite]);
        let mut n = Node::spawn(&[], dir, name, &args);
        let v = n.reply("join (subcommand)");
        assert_eq!(v["ok"], true, "{name}: join failed: {v}\n{}", n.stderr());
        n
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The next reply, whatever command it answers.
    pub fn reply(&mut self, what: &str) -> Value {
        match self.replies.recv_timeout(REPLY_TIMEOUT) {
            Ok(v) => v,
            Err(e) => panic!(
                "{}: no reply to `{what}` within {REPLY_TIMEOUT:?} ({e:?}); stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// Sends one command line and returns its reply (success or not).
    pub fn cmd(&mut self, line: &str) -> Value {
        assert!(
            !line.trim().is_empty() && !line.contains('\n'),
            "one non-empty line per command"
        );
        let stdin = self.stdin.as_mut().expect("the node is running");
        writeln!(stdin, "{line}").expect("write to the node");
        stdin.flush().expect("flush to the node");
        self.reply(line)
    }

    /// Sends a command that must succeed.
    pub fn ok(&mut self, line: &str) -> Value {
        let v = self.cmd(line);
        assert_eq!(
            v["ok"],
            true,
            "{}: `{line}` failed: {v}\nstderr:\n{}",
            self.name,
            self.stderr()
        );
        v
    }

    /// Takes events that arrived into the history.
    fn pump(&mut self) {
        self.seen.extend(self.events.try_iter());
    }

    /// Every event seen so far.
    pub fn events(&mut self) -> Vec<Value> {
        self.pump();
        self.seen.clone()
    }

    /// Forgets the events seen so far.
    pub fn clear_events(&mut self) {
        self.pump();
        self.seen.clear();
    }

    /// Waits for an event (seen before or arriving within `timeout`) that
    /// matches `pred`.
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.pump();
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: no {what} event within {timeout:?}; events: {:?}\nstderr:\n{}",
                    self.name,
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// `timeline --all`: (total, entry texts in timeline order).
    pub fn timeline(&mut self) -> (u64, Vec<String>) {
        let v = self.ok("timeline --all");
        let texts = v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["text"].as_str().expect("text").to_string())
            .collect();
        (v["total"].as_u64().expect("total"), texts)
    }

    /// `timeline --all` total.
    pub fn total(&mut self) -> u64 {
        self.timeline().0
    }

    /// The number of stored changes (`log`).
    pub fn log_len(&mut self) -> usize {
        self.ok("log")["changes"].as_array().expect("changes").len()
    }

    /// The Markdown report.
    pub fn report(&mut self) -> String {
        self.ok("report")["text"]
            .as_str()
            .expect("text")
            .to_string()
    }

    /// The `brief` text.
    pub fn brief(&mut self) -> String {
        self.ok("brief")["text"].as_str().expect("text").to_string()
    }

    /// The `conflicts` rows.
    pub fn conflicts(&mut self) -> Vec<Value> {
        self.ok("conflicts")["conflicts"]
            .as_array()
            .expect("conflicts")
            .clone()
    }

    /// The `peers` rows.
    pub fn peers(&mut self) -> Vec<Value> {
        self.ok("peers")["peers"].as_array().expect("peers").clone()
    }

    /// The row of `peers` for a peer id, if listed.
    pub fn peer_row(&mut self, peer_id: &str) -> Option<Value> {
        self.peers().into_iter().find(|r| r["peer_id"] == peer_id)
    }

    /// This node's libp2p peer id.
    pub fn peer_id(&mut self) -> String {
        self.ok("whoami")["peer_id"]
            .as_str()
            .expect("peer_id")
            .to_string()
    }

    /// The first dialable address (ends in `/p2p/<id>`).
    pub fn address(&mut self) -> String {
        let v = self.ok("whoami");
        let a = v["addresses"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no address: {v}", self.name))
            .to_string();
        assert!(a.contains("/p2p/"), "{a}");
        a
    }

    /// A fresh invite to the open incident.
    pub fn invite(&mut self) -> String {
        self.ok("invite")["invite"]
            .as_str()
            .expect("invite")
            .to_string()
    }

    /// Sends `quit` and waits for the process to exit; returns its status.
    pub fn quit(mut self) -> ExitStatus {
        let v = self.cmd("quit");
        assert_eq!(v["ok"], true, "{}: quit: {v}", self.name);
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: did not exit within 20 s of `quit`; stderr:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 100 ms until it returns `Ok`, or panics after
/// `timeout` with what it last said.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(()) => return,
            Err(e) => e,
        };
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls a condition until it holds.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    wait_for(what, timeout, || {
        if cond() {
            Ok(())
        } else {
            Err("condition false".into())
        }
    })
}

/// Converged: every node holds every `expected` text in its timeline, all
/// show the same timeline (total and order) and the same report.
pub fn converged(nodes: &mut [&mut Node], expected: &[&str]) -> Result<(), String> {
    let mut first: Option<(String, u64, Vec<String>, String)> = None;
    for n in nodes.iter_mut() {
        let (total, texts) = n.timeline();
        for e in expected {
            if !texts.iter().any(|t| t.contains(e)) {
                return Err(format!("{} lacks {e:?} (total {total})", n.name));
            }
        }
        let report = n.report();
        match &first {
            None => first = Some((n.name.clone(), total, texts, report)),
            Some((name, t0, texts0, report0)) => {
                if (total, &texts) != (*t0, texts0) {
                    return Err(format!(
                        "timelines differ: {name} {t0} {texts0:?} vs {} {total} {texts:?}",
                        n.name
                    ));
                }
                if report != *report0 {
                    return Err(format!("reports of {name} and {} differ", n.name));
                }
            }
        }
    }
    Ok(())
}

/// Waits until [`converged`] holds.
pub fn converge(what: &str, nodes: &mut [&mut Node], expected: &[&str]) {
    wait_for(what, CONVERGE, || converged(nodes, expected));
}

/// The 32-byte ed25519 seed in `DIR/device.key` (64 hex digits).
pub fn device_seed(dir: &Path) -> [u8; 32] {
    let text = std::fs::read_to_string(dir.join("device.key")).expect("device.key");
    let hex = text.trim();
    assert_eq!(hex.len(), 64, "device.key holds 64 hex digits");
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    seed
}

// ---------------------------------------------------------------------------
// Network namespaces

/// Runs a command that must succeed.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether namespace tests can run here. Prints why not and returns false,
/// except under `CI=true`, where it panics: CI must run them.
pub fn netns_available(test: &str) -> bool {
    let why = if effective_uid() != Some(0) {
        Some("not running as root".to_string())
    } else {
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "`ip netns list` fails: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("`ip` cannot run ({e}); install iproute2")),
        }
    };
    match why {
        None => true,
        Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: namespace test cannot run under CI=true: {why}")
        }
        Some(why) => {
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

/// A private LAN: a bridge in its own namespace and `n` host namespaces,
/// each linked to the bridge by a veth pair and addressed 10.213.0.<i+1>/24.
/// Nothing touches the host's own network. Everything is removed on drop,
/// also when the test panics.
pub struct Lan {
    /// The bridge's namespace.
    pub bridge_ns: String,
    /// The hosts' namespaces, in order.
    pub hosts: Vec<String>,
    tag: String,
}

impl Lan {
    /// Creates the namespaces and links.
    pub fn new(n: usize) -> Lan {
        let tag = format!("dp{}", std::process::id());
        let lan = Lan {
            bridge_ns: format!("{tag}b"),
            hosts: (1..=n).map(|i| format!("{tag}n{i}")).collect(),
            tag,
        };
        lan.remove();
        run(&["ip", "netns", "add", &lan.bridge_ns]);
        let b = lan.bridge_ns.as_str();
        run(&["ip", "-n", b, "link", "set", "lo", "up"]);
        run(&["ip", "-n", b, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", b, "link", "set", "br0", "up"]);
        for (i, ns) in lan.hosts.iter().enumerate() {
            let (inner, outer) = (lan.veth(i), format!("{}p{i}", lan.tag));
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run(&[
                "ip", "-n", b, "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                "netns", ns,
            ]);
            run(&["ip", "-n", b, "link", "set", &outer, "master", "br0"]);
            run(&["ip", "-n", b, "link", "set", &outer, "up"]);
            let addr = format!("{}/24", lan.ip(i));
            run(&["ip", "-n", ns, "addr", "add", &addr, "dev", &inner]);
            run(&["ip", "-n", ns, "link", "set", &inner, "up"]);
        }
        lan
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("10.213.0.{}", i + 1)
    }

    /// The name of host `i`'s interface (inside its namespace).
    pub fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }

    /// The command prefix that runs a program in host `i`'s namespace.
    pub fn exec(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec", &self.hosts[i]]
            .map(String::from)
            .to_vec()
    }

    /// Brings host `i`'s link down (`false`) or up (`true`).
    pub fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        run(&[
            "ip",
            "-n",
            &self.hosts[i],
            "link",
            "set",
            &self.veth(i),
            state,
        ]);
    }

    fn remove(&self) {
        for ns in self.hosts.iter().chain([&self.bridge_ns]) {
            run_quiet(&["ip", "netns", "del", ns]);
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}
