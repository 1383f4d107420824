//! Drives real `dontpanic` processes over their JSON script interface.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_dontpanic")
}

/// Runs a whole script through a fresh process; returns (stdout JSON lines, stderr, exit code).
pub fn script(dir: &Path, name: &str, lines: &[&str]) -> (Vec<Value>, String, i32) {
    let mut child = Command::new(bin())
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--name",
            name,
            "--json",
            "--offline",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dontpanic");
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
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

/// A running node: commands in, one reply each out; events on the side.
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    replies: Receiver<Value>,
    events: Receiver<Value>,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// How long a reply may take.
pub const REPLY: Duration = Duration::from_secs(30);

impl Node {
    /// Starts `dontpanic --json` with extra arguments (e.g. `--listen`,
    /// `--no-mdns`, `join <invite>`), optionally under a prefix command such
    /// as `ip netns exec ns`.
    pub fn start(prefix: &[&str], dir: &Path, name: &str, extra: &[&str]) -> Node {
        let (program, mut args): (String, Vec<String>) = match prefix.split_first() {
            Some((p, rest)) => (
                p.to_string(),
                rest.iter()
                    .map(|s| s.to_string())
                    .chain([bin().to_string()])
                    .collect(),
            ),
            None => (bin().to_string(), Vec::new()),
        };
        args.extend(
            [
                "--data-dir",
                dir.to_str().unwrap(),
                "--name",
                name,
                "--json",
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dontpanic");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (rtx, replies) = channel();
        let (etx, events) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let _ = if v.get("event").is_some() {
                    etx.send(v)
                } else {
                    rtx.send(v)
                };
            }
        });
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err2 = err.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                err2.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Node {
            name: name.into(),
            dir: dir.to_path_buf(),
            stdin: child.stdin.take(),
            child,
            replies,
            events,
            stderr: err,
        }
    }

    /// Loopback node with explicit dials only.
    pub fn local(dir: &Path, name: &str, extra: &[&str]) -> Node {
        let mut args = vec!["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
        args.extend_from_slice(extra);
        Node::start(&[], dir, name, &args)
    }

    /// A loopback node started with `dontpanic join <invite>`; waits for the
    /// join to complete.
    pub fn join(dir: &Path, name: &str, invite: &str) -> Node {
        let mut n = Node::local(dir, name, &["join", invite]);
        let v = n.next_reply("join");
        assert_eq!(v["ok"], true, "{name}: join failed: {v}");
        n
    }

    /// The next reply, whatever produced it.
    pub fn next_reply(&mut self, what: &str) -> Value {
        match self.replies.recv_timeout(REPLY) {
            Ok(v) => v,
            Err(e) => panic!(
                "{}: no reply to `{what}` ({e:?}); stderr:\n{}",
                self.name,
                self.stderr.lock().unwrap()
            ),
        }
    }

    /// Sends one command and waits for its reply.
    pub fn cmd(&mut self, line: &str) -> Value {
        let stdin = self.stdin.as_mut().expect("node is running");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        match self.replies.recv_timeout(REPLY) {
            Ok(v) => v,
            Err(e) => panic!(
                "{}: no reply to `{line}` ({e:?}); stderr:\n{}",
                self.name,
                self.stderr.lock().unwrap()
            ),
        }
    }

    /// Writes a line without waiting for the reply.
    pub fn send_raw(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().expect("node is running");
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// Replies that arrived and were not yet taken.
    pub fn drain_replies(&mut self) -> Vec<Value> {
        self.replies.try_iter().collect()
    }

    /// Sends a command that must succeed.
    pub fn ok(&mut self, line: &str) -> Value {
        let v = self.cmd(line);
        assert_eq!(v["ok"], true, "{}: `{line}` failed: {v}", self.name);
        v
    }

    /// The number of timeline entries.
    pub fn total(&mut self) -> u64 {
        self.ok("timeline --last 0")["total"].as_u64().unwrap()
    }

    /// Timeline texts, sorted (concurrent entries may sit in any order).
    pub fn texts(&mut self) -> Vec<String> {
        let v = self.ok("timeline --all");
        let mut t: Vec<String> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["text"].as_str().unwrap().to_string())
            .collect();
        t.sort();
        t
    }

    /// Waits for an event matching `pred`.
    pub fn event(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: no {what} event within {timeout:?}; stderr:\n{}",
                        self.name,
                        self.stderr.lock().unwrap()
                    )
                }
            }
        }
    }

    /// The node's first address ending in /p2p/<id>.
    pub fn address(&mut self) -> String {
        let v = self.ok("whoami");
        v["addresses"][0].as_str().expect("an address").to_string()
    }

    /// Asks the node to quit and waits for it to exit.
    pub fn quit(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "quit");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL, no goodbye; returns the replies printed before death.
    pub fn kill(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
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
        self.shutdown();
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Whether namespace tests can run; prints why not, and panics instead of
/// skipping under CI=true.
pub fn can_use_netns(test: &str) -> bool {
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    let why = if unsafe_geteuid() != 0 {
        Some("not running as root".to_string())
    } else {
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "`ip netns` fails: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("`ip` is not installed ({e}); install iproute2")),
        }
    };
    match why {
        None => true,
        Some(why) if ci => panic!("{test}: cannot run under CI=true: {why}"),
        Some(why) => {
            eprintln!("skipping {test}: {why}");
            false
        }
    }
}

fn unsafe_geteuid() -> u32 {
    // The effective uid from /proc avoids a libc dependency just for this.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|u| u.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

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
