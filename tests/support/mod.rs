//! The harness of the workspace-level integration tests: real `dontpanic`
//! processes driven over their `--json` script interface, and throwaway
//! network namespaces for the tests that need a network of their own.
//!
//! A [`Node`] owns one child process. A reader thread splits its stdout into
//! replies (lines without an `event` field, one per command) and events
//! (unsolicited lines with an `event` field); another keeps its stderr.
//! [`Node::cmd`] sends one line and waits for the next reply;
//! [`Node::wait_event`] waits for an event; [`wait_for`] polls anything until
//! it holds. Dropping a node kills it. [`script`] runs a whole script through
//! a fresh offline process.
//!
//! A [`Lan`] is a set of network namespaces, linked by veth pairs to a hub
//! namespace (a bridge, or a router that does not forward), removed on drop.
//! [`can_use_netns`] says whether such tests can run here.
#![allow(dead_code)]

use std::borrow::BorrowMut;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod raw;

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

/// `[prefix...] dontpanic --data-dir DIR --name NAME --json [extra...]`,
/// all three standard streams piped.
fn command(prefix: &[&str], dir: &Path, name: &str, extra: &[&str]) -> Command {
    let dir = dir.to_str().expect("utf-8 path");
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.extend([bin(), "--data-dir", dir, "--name", name, "--json"]);
    argv.extend(extra);
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Feeds `lines` to a fresh `--offline` process (with `--json` or not) and
/// waits for it to end.
fn run_script(dir: &Path, name: &str, json: bool, lines: &[&str]) -> std::process::Output {
    let mut c = command(&[], dir, name, &["--offline"]);
    if !json {
        let d = dir.to_str().expect("utf-8 path");
        c = Command::new(bin());
        c.args(["--data-dir", d, "--name", name, "--offline"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let mut child = c.spawn().expect("start dontpanic");
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        for l in lines {
            writeln!(stdin, "{l}").expect("write to dontpanic");
        }
    }
    child.wait_with_output().expect("wait for dontpanic")
}

/// Runs a whole script through a fresh `--offline` process; returns (stdout
/// JSON lines, stderr, exit code).
pub fn script(dir: &Path, name: &str, lines: &[&str]) -> (Vec<Value>, String, i32) {
    let out = run_script(dir, name, true, lines);
    let replies = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    (
        replies,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Runs a whole script through a fresh `--offline` process without
/// `--json`, as a person piping commands sees it; returns (stdout, stderr,
/// exit code).
pub fn script_text(dir: &Path, name: &str, lines: &[&str]) -> (String, String, i32) {
    let out = run_script(dir, name, false, lines);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

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
    /// `prefix` is e.g. `ip netns exec ns` (see [`Lan::spawn`]); `extra`
    /// holds flags and an optional subcommand (`join <invite>`).
    pub fn spawn(prefix: &[&str], dir: &Path, name: &str, extra: &[&str]) -> Node {
        let mut child = command(prefix, dir, name, extra)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({prefix:?} {extra:?}): {e}"));
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

    /// A node with no network at all (`--offline`).
    pub fn offline(dir: &Path, name: &str) -> Node {
        Node::spawn(&[], dir, name, &["--offline"])
    }

    /// A node on 127.0.0.1 with mDNS off, plus `extra` arguments.
    pub fn loopback(dir: &Path, name: &str, extra: &[&str]) -> Node {
        let mut args = LOOPBACK.to_vec();
        args.extend_from_slice(extra);
        Node::spawn(&[], dir, name, &args)
    }

    /// `dontpanic join <invite>` on loopback; waits for the join's reply,
    /// which must be a success, and returns the node at its prompt.
    pub fn loopback_join(dir: &Path, name: &str, invite: &str) -> Node {
        let mut n = Node::loopback(dir, name, &["join", invite]);
        n.joined();
        n
    }

    /// Takes the reply of a `join` subcommand given at start; it must be a
    /// success.
    pub fn joined(&mut self) -> Value {
        let v = self.reply("join (subcommand)");
        assert_eq!(
            v["ok"],
            true,
            "{}: join failed: {v}\nstderr:\n{}",
            self.name,
            self.stderr()
        );
        v
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

    /// Writes one line without waiting for its reply.
    pub fn send_raw(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().expect("the node is running");
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// Sends one command line and returns its reply (success or not).
    pub fn cmd(&mut self, line: &str) -> Value {
        assert!(
            !line.trim().is_empty() && !line.contains('\n'),
            "one non-empty line per command"
        );
        self.send_raw(line)
            .unwrap_or_else(|e| panic!("{}: cannot write `{line}`: {e}", self.name));
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

    /// Replies that arrived and were not yet taken.
    pub fn drain_replies(&mut self) -> Vec<Value> {
        self.replies.try_iter().collect()
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

    /// Timeline texts, sorted (concurrent entries may sit in any order).
    pub fn texts(&mut self) -> Vec<String> {
        let mut t = self.timeline().1;
        t.sort();
        t
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
        self.text_of("report")
    }

    /// The `brief` text.
    pub fn brief(&mut self) -> String {
        self.text_of("brief")
    }

    fn text_of(&mut self, command: &str) -> String {
        self.ok(command)["text"].as_str().expect("text").to_string()
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

    /// SIGKILL, no goodbye; waits until the process is gone and returns the
    /// replies it printed before it died.
    pub fn kill(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
        // Let the reader thread pass on the last lines.
        std::thread::sleep(Duration::from_millis(50));
        self.drain_replies()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// Whether the nodes show the same timeline texts (in any order).
pub fn same_texts<N: BorrowMut<Node>>(nodes: &mut [N]) -> Result<(), String> {
    let (first, rest) = nodes.split_first_mut().expect("a node");
    let first = first.borrow_mut();
    let texts = first.texts();
    for n in rest {
        let n = n.borrow_mut();
        let other = n.texts();
        if other != texts {
            return Err(format!("{} {texts:?} vs {} {other:?}", first.name, n.name));
        }
    }
    Ok(())
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
// Commands and network namespaces

/// Runs a command that must succeed.
pub fn sh(args: &[&str]) {
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

/// Runs a command, ignoring failure (for cleanup).
pub fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

fn effective_uid() -> Option<u32> {
    // From /proc, which spares a libc dependency for this alone.
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether namespace tests can run here (root and a working `ip netns`).
/// Prints why not and returns false, except under `CI=true`, where it
/// panics: CI must run them.
pub fn can_use_netns(test: &str) -> bool {
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

/// Offsets of a journal's records (after its 8-byte header): record =
/// magic 4 | payload length u32 LE | crc 4 | payload.
pub fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 8;
    while at + 12 <= bytes.len() {
        out.push(at);
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 12 + len;
    }
    out
}

/// A signed sync message carrying one change and its signature, as a
/// member's node would send it.
pub fn one_change_message(
    change: &automerge::Change,
    signature: dontpanic_identity::ChangeSignature,
) -> Vec<u8> {
    use automerge::sync::{ChunkList, Message, MessageVersion};
    dontpanic_notebook::sync::SignedSyncMessage {
        message: Message {
            heads: vec![change.hash()],
            need: vec![],
            have: vec![],
            changes: ChunkList::from(change.raw_bytes().to_vec()),
            flags: None,
            version: MessageVersion::V1,
        }
        .encode(),
        signatures: vec![signature],
    }
    .encode()
}

/// Whether this test may mount a small tmpfs (root). Prints why not and
/// returns false, except under `CI=true`, where it panics.
pub fn can_mount(test: &str) -> bool {
    if effective_uid() == Some(0) {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root to mount a tmpfs, and CI=true");
    }
    eprintln!("skipping {test}: not running as root (mounts a small tmpfs)");
    false
}

/// A small tmpfs mounted at a path for one test; unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts `size` (e.g. `2m`) at `at`, creating the directory.
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            at.to_str().unwrap(),
        ]);
        Tmpfs(at.to_path_buf())
    }

    /// Fills it up; returns the filler's path (delete it to give space back).
    pub fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        sh_quiet(&[
            "dd",
            "if=/dev/zero",
            &format!("of={}", filler.display()),
            "bs=4k",
        ]);
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        sh_quiet(&["umount", "-l", self.0.to_str().unwrap()]);
    }
}

/// Lans made by this process so far (tests of one binary run in parallel).
static LANS: AtomicUsize = AtomicUsize::new(0);

/// How the hosts of a [`Lan`] reach each other.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// One /24 (10.213.0.0) on a bridge in the hub: everybody reaches
    /// everybody, multicast (mDNS) included.
    Bridged,
    /// Host `i` alone on 10.214.<i+1>.0/24 with the hub at .1; the hub does
    /// not forward, so hosts reach only the hub.
    Routed,
}

/// Throwaway network namespaces: `n` hosts, each linked by a veth pair to a
/// hub namespace. Nothing touches the host's own network. Everything is
/// removed on drop, also when the test panics.
pub struct Lan {
    /// The hub's namespace (the bridge, or the router).
    pub hub: String,
    /// The hosts' namespaces, in order.
    pub hosts: Vec<String>,
    /// How the hosts are linked.
    pub shape: Shape,
    tag: String,
}

impl Lan {
    /// `n` hosts on one bridged LAN ([`Shape::Bridged`]).
    pub fn new(n: usize) -> Lan {
        Lan::build(n, Shape::Bridged)
    }

    /// `n` hosts that reach only the hub ([`Shape::Routed`]).
    pub fn routed(n: usize) -> Lan {
        Lan::build(n, Shape::Routed)
    }

    fn build(n: usize, shape: Shape) -> Lan {
        // Interface names stay within 15 characters: dp<pid>x<k>v<i>.
        let tag = format!(
            "dp{}x{}",
            std::process::id(),
            LANS.fetch_add(1, Ordering::SeqCst)
        );
        let lan = Lan {
            hub: format!("{tag}h"),
            hosts: (0..n).map(|i| format!("{tag}n{i}")).collect(),
            shape,
            tag,
        };
        lan.remove();
        let hub = lan.hub.as_str();
        sh(&["ip", "netns", "add", hub]);
        sh(&["ip", "-n", hub, "link", "set", "lo", "up"]);
        match shape {
            Shape::Bridged => {
                sh(&["ip", "-n", hub, "link", "add", "br0", "type", "bridge"]);
                sh(&["ip", "-n", hub, "link", "set", "br0", "up"]);
            }
            Shape::Routed => sh(&[
                "ip",
                "netns",
                "exec",
                hub,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=0",
            ]),
        }
        for (i, ns) in lan.hosts.iter().enumerate() {
            let (inner, outer) = (lan.veth(i), format!("{}p{i}", lan.tag));
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sh(&[
                "ip", "-n", hub, "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                "netns", ns,
            ]);
            match shape {
                Shape::Bridged => sh(&["ip", "-n", hub, "link", "set", &outer, "master", "br0"]),
                Shape::Routed => {
                    let addr = format!("{}/24", lan.hub_ip(i));
                    sh(&["ip", "-n", hub, "addr", "add", &addr, "dev", &outer]);
                }
            }
            sh(&["ip", "-n", hub, "link", "set", &outer, "up"]);
            let addr = format!("{}/24", lan.ip(i));
            sh(&["ip", "-n", ns, "addr", "add", &addr, "dev", &inner]);
            sh(&["ip", "-n", ns, "link", "set", &inner, "multicast", "on"]);
            sh(&["ip", "-n", ns, "link", "set", &inner, "up"]);
        }
        lan
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        match self.shape {
            Shape::Bridged => format!("10.213.0.{}", i + 1),
            Shape::Routed => format!("10.214.{}.2", i + 1),
        }
    }

    /// The hub's address on host `i`'s link ([`Shape::Routed`] only).
    pub fn hub_ip(&self, i: usize) -> String {
        assert_eq!(self.shape, Shape::Routed, "a bridge has no address");
        format!("10.214.{}.1", i + 1)
    }

    /// The name of host `i`'s interface (inside its namespace).
    pub fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }

    /// `/ip4/<host i's address>/tcp/0`: a listen address with a new port
    /// each time.
    pub fn listen(&self, i: usize) -> String {
        format!("/ip4/{}/tcp/0", self.ip(i))
    }

    /// The command prefix that runs a program in host `i`'s namespace.
    pub fn exec(&self, i: usize) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.hosts[i]]
    }

    /// Starts a node in host `i`'s namespace.
    pub fn spawn(&self, i: usize, dir: &Path, name: &str, extra: &[&str]) -> Node {
        Node::spawn(&self.exec(i), dir, name, extra)
    }

    /// Whether host `from` opens a TCP connection to `ip:port` within 1 s
    /// (bash's /dev/tcp: no ping or netcat needed).
    pub fn connects(&self, from: usize, ip: &str, port: &str) -> bool {
        let probe = format!("exec 3<>/dev/tcp/{ip}/{port}");
        let mut argv = self.exec(from);
        argv.extend(["timeout", "1", "bash", "-c", &probe]);
        Command::new(argv[0])
            .args(&argv[1..])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Brings host `i`'s link down (`false`) or up (`true`).
    pub fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        sh(&[
            "ip",
            "-n",
            &self.hosts[i],
            "link",
            "set",
            &self.veth(i),
            state,
        ]);
    }

    /// Splits a [`Shape::Bridged`] LAN in two, like the uplink between two
    /// switches dying: the hosts in `apart` move (while still connected) to
    /// a second bridge joined to the first by a veth "uplink", then that
    /// link goes down. Packets across are dropped silently, multicast
    /// included; each side still reaches itself. [`Lan::heal`] brings the
    /// uplink back.
    pub fn partition(&self, apart: &[usize]) {
        assert_eq!(self.shape, Shape::Bridged, "only a bridge can be split");
        let hub = self.hub.as_str();
        let exists = Command::new("ip")
            .args(["-n", hub, "link", "show", "br1"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            sh(&["ip", "-n", hub, "link", "add", "br1", "type", "bridge"]);
            sh(&["ip", "-n", hub, "link", "set", "br1", "up"]);
            sh(&[
                "ip", "-n", hub, "link", "add", "up0", "type", "veth", "peer", "name", "up1",
            ]);
            sh(&["ip", "-n", hub, "link", "set", "up0", "master", "br0"]);
            sh(&["ip", "-n", hub, "link", "set", "up1", "master", "br1"]);
            sh(&["ip", "-n", hub, "link", "set", "up1", "up"]);
        }
        sh(&["ip", "-n", hub, "link", "set", "up0", "up"]);
        for i in 0..self.hosts.len() {
            let port = format!("{}p{i}", self.tag);
            let bridge = if apart.contains(&i) { "br1" } else { "br0" };
            sh(&["ip", "-n", hub, "link", "set", &port, "master", bridge]);
        }
        sh(&["ip", "-n", hub, "link", "set", "up0", "down"]);
    }

    /// Ends a [`Lan::partition`]: the uplink comes back up.
    pub fn heal(&self) {
        sh(&["ip", "-n", &self.hub, "link", "set", "up0", "up"]);
    }

    fn remove(&self) {
        for ns in self.hosts.iter().chain([&self.hub]) {
            sh_quiet(&["ip", "netns", "del", ns]);
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}
