//! Sync benchmark: real dontpanic nodes (notebook with fsync, libp2p swarm
//! over TCP on 127.0.0.1, replicator) run in one process so one clock times
//! both ends, against a baseline of bare Automerge sync between two
//! processes over plain TCP, measured in the same run. Each row is printed
//! beside its baseline and its target (issue 12): edit to visible on 2, 10
//! and 50 nodes, reconnect after 10,000 offline changes each side. Also:
//! where the live time goes (each stage of the path from the writer's edit
//! to the reader's notice, from the notebook's timing events, see
//! `dontpanic_notebook::actor::TIMING`; the same paths with data on tmpfs;
//! notebook-to-notebook sync with no network), latency through a relay
//! (`dontpanic relay`'s server) and its memory per circuit, and the room
//! holding together: a member restarted while the others edit, a link that
//! goes dead without a word (through a forwarder in this example), and the
//! re-sync after it heals.
//!
//! `cargo run --release --example bench_sync` runs everything; parts:
//! `-- --only live,reconnect,room,why,relay` (any of them) and
//! `-- --nodes 2,10,50` (the live sizes; alone it means `--only live`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ReadDoc, ROOT};
use dontpanic_identity::{verify_all, SignedChange};
use dontpanic_incident::{Edit, Severity};
use dontpanic_net::{NodeConfig, NodeHandle};
use dontpanic_notebook::actor::RemoteEvent;
use dontpanic_notebook::sync::{changes_in, SignedSyncMessage};
use dontpanic_notebook::{Notebook, NotebookHandle};
use dontpanic_sync::{Notice, Replicator};

/// How long the benchmark's invites admit joiners.
const HOUR: Duration = Duration::from_secs(3600);
/// Warm-up edits before any latency is recorded.
const WARMUP: usize = 10;
/// Pause between two latency probes: paced edits, not a flood.
const PACE: Duration = Duration::from_millis(3);
/// Edit to visible, 2 nodes: p99 within this many times the bare baseline's.
const TWO_NODE_RATIO: f64 = 2.0;
/// Edit to visible on all peers, p99 (ms), by mesh size.
const MESH_TARGET_MS: [(usize, f64); 2] = [(10, 5.0), (50, 50.0)];
/// Reconnect after 10,000 offline changes each side: within these many
/// times the baseline's time and bytes.
const RECONNECT_TIME_RATIO: f64 = 1.3;
const RECONNECT_BYTES_RATIO: f64 = 3.0;
/// "A restarted node is back in sync with its members within 2 s"; "a
/// healed link re-syncs within 2 s".
const RESYNC_TARGET: Duration = Duration::from_secs(2);
/// "A dead link is noticed within 10 s".
const DEAD_LINK_TARGET: Duration = Duration::from_secs(10);

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

/// Percentile `p` (0..=1) of `v`, nearest rank.
fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// "p50 / p99 / max" in ms.
fn dist(v: &[f64]) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} ms",
        pct(v, 0.5),
        pct(v, 0.99),
        pct(v, 1.0)
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

// ------------------------------------------------------------------ timing

/// The notebooks' timing events (`dontpanic_notebook::actor::TIMING`),
/// collected while a latency run records, and the breakdown made of them.
mod timing {
    use super::*;
    use tracing::field::{Field, Visit};

    /// One event, stamped when it was emitted.
    #[derive(Clone, Debug)]
    pub struct Ev {
        pub at: Instant,
        pub thread: ThreadId,
        /// What happened: served, returned, stored, verified, ….
        pub what: String,
        pub node: String,
        pub req: String,
        pub peer: String,
        pub queued_us: u64,
        pub served_us: u64,
        pub edits: u64,
    }

    static RECORDING: AtomicBool = AtomicBool::new(false);
    static EVENTS: Mutex<Vec<Ev>> = Mutex::new(Vec::new());

    /// Starts recording afresh.
    pub fn start() {
        EVENTS.lock().unwrap().clear();
        RECORDING.store(true, Ordering::SeqCst);
    }

    pub fn stop() {
        RECORDING.store(false, Ordering::SeqCst);
    }

    pub fn take() -> Vec<Ev> {
        std::mem::take(&mut *EVENTS.lock().unwrap())
    }

    struct Fields(Ev);

    impl Visit for Fields {
        fn record_str(&mut self, f: &Field, v: &str) {
            match f.name() {
                "node" => self.0.node = v.to_string(),
                "req" => self.0.req = v.to_string(),
                "peer" => self.0.peer = v.to_string(),
                _ => {}
            }
        }
        fn record_u64(&mut self, f: &Field, v: u64) {
            match f.name() {
                "queued_us" => self.0.queued_us = v,
                "served_us" => self.0.served_us = v,
                "edits" => self.0.edits = v,
                _ => {}
            }
        }
        fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
            if f.name() == "message" {
                self.0.what = format!("{v:?}");
            }
        }
    }

    /// The layer that collects them.
    pub struct Collect;

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Collect {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if !RECORDING.load(Ordering::Relaxed) {
                return;
            }
            let mut f = Fields(Ev {
                at: Instant::now(),
                thread: std::thread::current().id(),
                what: String::new(),
                node: String::new(),
                req: String::new(),
                peer: String::new(),
                queued_us: 0,
                served_us: 0,
                edits: 0,
            });
            event.record(&mut f);
            let mut all = EVENTS.lock().unwrap();
            f.0.at = Instant::now();
            all.push(f.0);
        }
    }

    /// The stages of the live path, in order, as printed; "… of which"
    /// rows split the row above them (from timing points inside the
    /// notebook that are not kept in the tree: without them they are
    /// left out of the table).
    pub const STAGES: [&str; 20] = [
        "writer: edit request queued (behind other requests)",
        "writer: the edit (rules, sign, journal append + fdatasync)",
        "… of which rules (apply the edit to the document)",
        "… of which sign",
        "… of which journal append + fdatasync",
        "writer: edit answered → sync message for this reader asked (kick, driver, dialogue task)",
        "writer: that request queued on the writer's notebook thread (behind the other peers' and other requests)",
        "writer: generate the sync message",
        "network hop: message generated → reader's receive_sync queued (driver, request-response, yamux, noise, TCP, the reader's driver)",
        "reader: receive_sync queued on the reader's notebook thread",
        "reader: decode to verified (extract, signatures, fork, validate)",
        "… of which decode + extract changes",
        "… of which verify signatures",
        "… of which fork the document for validation",
        "… of which validate (check_batch on the fork)",
        "reader: verified to stored (journal append + fdatasync, apply, sync state)",
        "… of which journal append + fdatasync",
        "… of which apply + sync state (Automerge receive_sync_message)",
        "reader: answer (its next sync message)",
        "reader: answered → remote_edit notice (driver, notice channel)",
    ];

    /// Per stage, the values (ms) over every (edit, reader) pair explained,
    /// and what could not be.
    pub struct Breakdown {
        pub stages: Vec<Vec<f64>>,
        pub total: Vec<f64>,
        /// Pairs whose change came from another reader, not the writer.
        pub relayed: usize,
        /// Pairs whose change came in the writer's answer to a message of
        /// the reader's (its "generate" stage is then the whole answer).
        pub in_answer: usize,
        /// Pairs whose events were not found.
        pub unexplained: usize,
        /// Per edit: notebook requests served on all nodes, by kind, and
        /// the time they took (ms).
        pub per_edit: Vec<(String, f64, f64)>,
        /// Per edit: busy time of all notebook threads, and of the writer's (ms).
        pub busy_all: f64,
        pub busy_writer: f64,
    }

    fn ms_between(a: Instant, b: Instant) -> f64 {
        b.saturating_duration_since(a).as_secs_f64() * 1e3
    }

    /// Breaks each (edit, reader) latency of `probes` down from `evs`.
    pub fn breakdown(probes: &[Probe], evs: &[Ev]) -> Breakdown {
        // The notebook thread of each node, from its `served` events.
        let threads: HashMap<ThreadId, String> = evs
            .iter()
            .filter(|e| e.what == "served")
            .map(|e| (e.thread, e.node.clone()))
            .collect();
        // Stage events name no node: theirs is their thread's.
        let evs: Vec<Ev> = evs
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if e.node.is_empty() {
                    e.node = threads.get(&e.thread).cloned().unwrap_or_default();
                }
                e
            })
            .collect();
        fn node_of(e: &Ev) -> &str {
            e.node.as_str()
        }
        let us = |n: u64| Duration::from_micros(n);
        let mut out = Breakdown {
            stages: vec![Vec::new(); STAGES.len()],
            total: Vec::new(),
            relayed: 0,
            in_answer: 0,
            unexplained: 0,
            per_edit: Vec::new(),
            busy_all: 0.0,
            busy_writer: 0.0,
        };
        let mut kinds: HashMap<String, (usize, Duration)> = HashMap::new();
        let (mut busy_all, mut busy_writer) = (Duration::ZERO, Duration::ZERO);
        for (k, p) in probes.iter().enumerate() {
            let end = probes.get(k + 1).map(|q| q.t0);
            let win: Vec<&Ev> = evs
                .iter()
                .filter(|e| e.at >= p.t0 && end.is_none_or(|t| e.at < t))
                .collect();
            for e in win.iter().filter(|e| e.what == "served") {
                let k = kinds.entry(e.req.clone()).or_default();
                k.0 += 1;
                k.1 += us(e.served_us);
                busy_all += us(e.served_us);
                if e.node == p.writer {
                    busy_writer += us(e.served_us);
                }
            }
            let on = |node: &str, what: &str, from: Instant, to: Instant| -> Option<&Ev> {
                win.iter()
                    .copied()
                    .find(|e| e.what == what && e.at >= from && e.at <= to && node_of(e) == node)
            };
            let last_on = |node: &str, what: &str, from: Instant, to: Instant| -> Option<&Ev> {
                win.iter()
                    .copied()
                    .rev()
                    .find(|e| e.what == what && e.at >= from && e.at <= to && node_of(e) == node)
            };
            let Some(edit) = win
                .iter()
                .find(|e| e.what == "served" && e.req == "edit" && e.node == p.writer)
            else {
                out.unexplained += p.seen.len();
                continue;
            };
            let edit_start = edit.at - us(edit.served_us);
            let ruled = on(&p.writer, "ruled", edit_start, edit.at).map(|e| e.at);
            let signed = on(&p.writer, "signed", edit_start, edit.at).map(|e| e.at);
            let appended = on(&p.writer, "appended", edit_start, edit.at).map(|e| e.at);
            for (reader, vis) in &p.seen {
                let Some(ver) = win
                    .iter()
                    .find(|e| e.what == "verified" && e.edits > 0 && node_of(e) == reader)
                else {
                    out.unexplained += 1;
                    continue;
                };
                let Some(srv) = win.iter().find(|e| {
                    e.what == "served"
                        && e.req == "receive_sync"
                        && e.node == *reader
                        && e.at >= ver.at
                }) else {
                    out.unexplained += 1;
                    continue;
                };
                let r_start = srv.at - us(srv.served_us);
                let r_enq = r_start - us(srv.queued_us);
                let src = srv.peer.clone();
                // The message that carried the change: the source's last
                // sync message for this reader, or its answer to one of the
                // reader's own (a dialogue the reader had started).
                let Some(gen) = win.iter().rev().find(|e| {
                    e.what == "served"
                        && (e.req == "sync_message" || e.req == "receive_sync")
                        && e.node == src
                        && e.peer == *reader
                        && e.at <= r_enq
                }) else {
                    out.unexplained += 1;
                    continue;
                };
                if src != p.writer {
                    out.relayed += 1;
                    continue;
                }
                if gen.req == "receive_sync" {
                    out.in_answer += 1;
                }
                let g_start = gen.at - us(gen.served_us);
                let g_enq = g_start - us(gen.queued_us);
                let ext = last_on(reader, "extracted", r_start, ver.at).map(|e| e.at);
                let sigs = last_on(reader, "sigs_ok", r_start, ver.at).map(|e| e.at);
                let fork = last_on(reader, "forked", r_start, ver.at).map(|e| e.at);
                let r_app = on(reader, "appended", ver.at, srv.at).map(|e| e.at);
                let stored = on(reader, "stored", ver.at, srv.at).map(|e| e.at);
                let span = |a: Option<Instant>, b: Option<Instant>| Some(ms_between(a?, b?));
                let vals: [Option<f64>; 20] = [
                    Some(us(edit.queued_us).as_secs_f64() * 1e3),
                    Some(us(edit.served_us).as_secs_f64() * 1e3),
                    span(Some(edit_start), ruled),
                    span(ruled, signed),
                    span(signed, appended),
                    Some(ms_between(edit.at, g_enq)),
                    Some(us(gen.queued_us).as_secs_f64() * 1e3),
                    Some(us(gen.served_us).as_secs_f64() * 1e3),
                    Some(ms_between(gen.at, r_enq)),
                    Some(us(srv.queued_us).as_secs_f64() * 1e3),
                    Some(ms_between(r_start, ver.at)),
                    span(Some(r_start), ext),
                    span(ext, sigs),
                    span(sigs, fork),
                    span(fork, Some(ver.at)),
                    span(Some(ver.at), stored),
                    span(Some(ver.at), r_app),
                    span(r_app, stored),
                    span(stored, Some(srv.at)),
                    Some(ms_between(srv.at, *vis)),
                ];
                for (i, v) in vals.iter().enumerate() {
                    if let Some(v) = v {
                        out.stages[i].push(*v);
                    }
                }
                out.total.push(ms_between(p.t0, *vis));
            }
        }
        let n = probes.len().max(1) as f64;
        let mut kinds: Vec<(String, f64, f64)> = kinds
            .into_iter()
            .map(|(k, (c, t))| (k, c as f64 / n, t.as_secs_f64() * 1e3 / n))
            .collect();
        kinds.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap());
        out.per_edit = kinds;
        out.busy_all = busy_all.as_secs_f64() * 1e3 / n;
        out.busy_writer = busy_writer.as_secs_f64() * 1e3 / n;
        out
    }
}

// ---------------------------------------------------------------- dontpanic

struct Peer {
    nb: NotebookHandle,
    node: NodeHandle,
    r: Replicator,
    /// Notices, each stamped the moment it left the replicator.
    notices: Receiver<(Instant, Notice)>,
    dir: tempfile::TempDir,
    seed: [u8; 32],
    /// This node in the notebook's timing events.
    label: String,
    /// Summaries of the remote edits its notebook showed
    /// (`RemoteEvent::Shown`, before its own append), each stamped.
    shown: Receiver<(Instant, String)>,
}

/// Stamps each remote edit the notebook shows, on a thread of its own.
fn stamped_shown(nb: &NotebookHandle) -> Receiver<(Instant, String)> {
    use tokio::sync::broadcast::error::RecvError;
    let mut events = nb.remote_events();
    let (tx, out) = std::sync::mpsc::channel();
    std::thread::spawn(move || loop {
        match events.blocking_recv() {
            Ok(RemoteEvent::Shown { edits, .. }) => {
                let at = Instant::now();
                for e in edits {
                    if tx.send((at, e.summary)).is_err() {
                        return;
                    }
                }
            }
            Ok(RemoteEvent::NotStored { .. }) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    });
    out
}

/// Stamps each notice as it arrives, on a thread of its own: a reader
/// waited on after another is still timed when its notice came.
fn stamped(notices: Receiver<Notice>) -> Receiver<(Instant, Notice)> {
    let (tx, out) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for n in notices {
            if tx.send((Instant::now(), n)).is_err() {
                return;
            }
        }
    });
    out
}

fn tempdir(root: Option<&Path>) -> tempfile::TempDir {
    match root {
        Some(r) => tempfile::tempdir_in(r).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// A node on a new port of 127.0.0.1; with `listen` false it listens
/// nowhere (it can dial, but nobody can dial it: a laptop behind NAT).
fn start_node(
    rt: &tokio::runtime::Runtime,
    seed: [u8; 32],
    relays: Vec<dontpanic_net::Multiaddr>,
    listen: bool,
) -> (
    NodeHandle,
    tokio::sync::mpsc::Receiver<dontpanic_net::NodeEvent>,
) {
    rt.block_on(dontpanic_net::node::start(NodeConfig {
        seed,
        listen: if listen {
            vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]
        } else {
            Vec::new()
        },
        mdns: false,
        relays,
        agent: "bench".into(),
    }))
    .unwrap()
}

/// A node with its own data directory (under `root`, or the system temp dir).
fn peer(
    rt: &tokio::runtime::Runtime,
    root: Option<&Path>,
    name: &str,
    relays: Vec<dontpanic_net::Multiaddr>,
) -> Peer {
    let dir = tempdir(root);
    let nb = Notebook::open(dir.path(), Some(name)).unwrap();
    attach(rt, nb, dir, relays, true)
}

/// Starts the notebook's actor, a node and a replicator for `nb` (opened
/// from `dir`), as `dontpanic` does at start-up.
fn attach(
    rt: &tokio::runtime::Runtime,
    nb: Notebook,
    dir: tempfile::TempDir,
    relays: Vec<dontpanic_net::Multiaddr>,
    listen: bool,
) -> Peer {
    let seed = nb.device().key.to_bytes();
    let nb = NotebookHandle::spawn(nb);
    let (node, events) = start_node(rt, seed, relays, listen);
    let (r, notices) = Replicator::start(nb.clone(), node.clone(), events, rt.handle().clone());
    let label = nb.device().key.to_string()[..8].to_string();
    let shown = stamped_shown(&nb);
    Peer {
        nb,
        node,
        r,
        notices: stamped(notices),
        dir,
        seed,
        label,
        shown,
    }
}

/// Stops `p` as its process would on exit: the node, then the notebook
/// (which saves and releases the data directory). Keeps the directory.
fn stop(rt: &tokio::runtime::Runtime, p: Peer) -> tempfile::TempDir {
    rt.block_on(p.node.shutdown());
    p.nb.blocking(p.nb.shutdown()).unwrap();
    p.dir
}

/// A new start on `dir`, with no `connect`: the notebook opened again, a
/// node on a new port, a replicator. Returns the peer and when the open
/// that succeeded began (the old notebook thread lets go of the lock just
/// after its shutdown has answered, so the first try may find it held).
fn restart(rt: &tokio::runtime::Runtime, dir: tempfile::TempDir) -> (Peer, Instant) {
    let first = Instant::now();
    loop {
        let t0 = Instant::now();
        match Notebook::open(dir.path(), None) {
            Ok(nb) => return (attach(rt, nb, dir, vec![], true), t0),
            Err(e) => {
                assert!(first.elapsed() < Duration::from_secs(5), "reopen: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn drain(p: &Peer) {
    while p.notices.try_recv().is_ok() {}
    while p.shown.try_recv().is_ok() {}
}

/// When `p`'s notebook showed the edit containing `marker` (it was shown
/// by the time its notice came, so this never waits long).
fn shown_at(p: &Peer, marker: &str) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Ok((t, summary)) = p
        .shown
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        if summary.contains(marker) {
            return Some(t);
        }
    }
    None
}

/// The moment a notice with this `event` and containing `marker` is read
/// on `p`.
fn wait_notice(p: &Peer, event: &str, marker: &str, limit: Duration) -> Option<(Instant, Notice)> {
    let deadline = Instant::now() + limit;
    while let Ok(n) = p
        .notices
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        if n.1.json["event"] == event && n.1.text.contains(marker) {
            return Some(n);
        }
    }
    None
}

/// The moment a `remote_edit` notice containing `marker` is read on `p`.
fn wait_visible(p: &Peer, marker: &str, limit: Duration) -> Option<Instant> {
    wait_notice(p, "remote_edit", marker, limit).map(|(t, _)| t)
}

fn note(p: &Peer, text: &str) {
    let done =
        p.nb.blocking(p.nb.edit(Edit::AddNote { text: text.into() }))
            .unwrap();
    p.r.local_edit(&done.incident);
}

fn create(p: &Peer, title: &str) -> String {
    let done =
        p.nb.blocking(p.nb.create(title.into(), Severity::Sev2))
            .unwrap();
    p.r.incident_opened();
    done.incident
}

/// How a mesh came up.
struct MeshUp {
    peers: Vec<Peer>,
    /// Set-up time (joins, dials, settling).
    took: Duration,
    /// Joins that needed another try, and members that never joined.
    join_retries: usize,
    not_joined: usize,
    /// Dials that failed.
    dial_failures: usize,
    /// Connected pairs (counted from both ends, halved) of n·(n−1)/2.
    pairs: usize,
    /// Members with node 0's heads when settling ended.
    in_sync: usize,
    /// Whether every member had the same heads within the limit.
    settled: bool,
}

/// `n` members of one incident: node 0 creates it, the others join, each
/// with an invite of a member already in, then every pair is dialed (a
/// full mesh). Settling (the same heads everywhere) may take up to `limit`;
/// what came up is reported.
fn mesh(rt: &tokio::runtime::Runtime, n: usize, root: Option<&Path>, limit: Duration) -> MeshUp {
    let began = Instant::now();
    let mut peers: Vec<Peer> = (0..n)
        .map(|i| peer(rt, root, &format!("p{i}"), vec![]))
        .collect();
    create(&peers[0], "bench");
    let (mut join_retries, mut not_joined) = (0, 0);
    let mut joined = vec![false; n];
    joined[0] = true;
    // Member i is invited by member (i − 1) / 2, one already in: no one
    // member admits everybody (a real invite each time).
    let mut failed_in_a_row = 0;
    for i in 1..n {
        if failed_in_a_row == 2 {
            // The mesh stops growing here: measure what came up.
            eprintln!("mesh of {n}: two joins failed in a row; p{i}.. are not tried");
            not_joined += n - i;
            break;
        }
        let by = (1..=i)
            .map(|k| (i - k) / 2)
            .find(|j| joined[*j])
            .unwrap_or(0);
        let invite = peers[by].r.invite(HOUR, false).unwrap().to_string();
        let t = Instant::now();
        match peers[i].r.join(&invite) {
            Ok(_) => joined[i] = true,
            Err(e) => {
                join_retries += 1;
                eprintln!("mesh of {n}: p{i} (invited by p{by}) join failed, retried: {e}");
                match peers[i].r.join(&invite) {
                    Ok(_) => joined[i] = true,
                    Err(e) => {
                        eprintln!("mesh of {n}: p{i} did not join: {e}");
                        not_joined += 1;
                    }
                }
            }
        }
        failed_in_a_row = if joined[i] { 0 } else { failed_in_a_row + 1 };
        if n > 10 {
            // The new roster reaches every member before the next joins:
            // joins made during that storm wait behind it, and fail past
            // the join's 15 s patience.
            let id = peers[0].nb.published().current.unwrap().id;
            let quiet = Instant::now();
            while quiet.elapsed() < Duration::from_secs(30) {
                let heads: Vec<_> = (0..=i)
                    .filter(|k| joined[*k])
                    .map(|k| heads_of(&peers[k].nb, &id))
                    .collect();
                if heads.windows(2).all(|w| w[0] == w[1]) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!(
                "mesh of {n}: p{i} {} in {:.0} ms, members in sync {:.0} ms later",
                if joined[i] { "joined" } else { "failed" },
                ms(quiet - t),
                ms(quiet.elapsed())
            );
        }
    }
    // Members that never joined are left out (and said).
    let mut kept = Vec::new();
    for (i, p) in peers.drain(..).enumerate() {
        if joined[i] {
            kept.push(p);
        } else {
            stop(rt, p);
        }
    }
    let peers = kept;
    let addrs: Vec<dontpanic_net::Multiaddr> = peers
        .iter()
        .map(|p| rt.block_on(p.node.addresses())[0].clone())
        .collect();
    // Every pair dialed, all at once (most are connected already: a joiner
    // meshes with the members it hears of).
    let dials: Vec<_> = peers
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            addrs[i + 1..].iter().map(move |a| {
                let node = p.node.clone();
                let a = a.clone();
                async move {
                    tokio::time::timeout(
                        Duration::from_secs(15),
                        node.dial(a, dontpanic_net::FoundBy::Manual),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok())
                }
            })
        })
        .collect();
    let t = Instant::now();
    let dialed = rt.block_on(futures::future::join_all(dials));
    let dial_failures = dialed.iter().filter(|ok| !**ok).count();
    if n > 10 {
        eprintln!(
            "mesh of {n}: {} dials in {:.0} ms, {dial_failures} failed",
            dialed.len(),
            ms(t.elapsed())
        );
    }
    // Membership spreads and every pair syncs at least once.
    let id = peers[0].nb.published().current.unwrap().id;
    let heads = |p: &Peer| heads_of(&p.nb, &id);
    let settle = Instant::now();
    let mut settled = true;
    while peers.iter().any(|p| heads(p) != heads(&peers[0]))
        || settle.elapsed() < Duration::from_secs(1)
    {
        if settle.elapsed() > limit {
            settled = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    peers.iter().for_each(drain);
    let h0 = heads(&peers[0]);
    let in_sync = peers.iter().filter(|p| heads(p) == h0).count();
    let links: usize = peers
        .iter()
        .map(|p| {
            p.r.peers()
                .iter()
                .filter(|r| r.state == "connected")
                .count()
        })
        .sum();
    MeshUp {
        took: began.elapsed(),
        join_retries,
        not_joined,
        dial_failures,
        pairs: links / 2,
        in_sync,
        settled,
        peers,
    }
}

/// One edit of a latency run: when it began, who wrote it, and when each
/// other node showed it (by label).
struct Probe {
    t0: Instant,
    writer: String,
    seen: Vec<(String, Instant)>,
}

/// Latencies of one run, in ms.
struct Lat {
    /// Edit to visible, per (edit, peer).
    each: Vec<f64>,
    /// Edit to visible on every other peer, per edit.
    all: Vec<f64>,
    /// Edit to shown by the peer's notebook (before its append), per (edit, peer).
    shown: Vec<f64>,
    /// The writer's own `Notebook::edit` (rules, signature, fdatasync).
    writer: Vec<f64>,
    /// Sync bytes sent by all nodes together, per edit.
    bytes_per_edit: f64,
    /// (edit, peer) pairs not visible within the limit.
    missing: usize,
    /// The measured edits, for the breakdown.
    probes: Vec<Probe>,
}

/// `edits` notes, written in turn by each node, `PACE` apart; each is timed
/// from just before `Notebook::edit` on the writer to the `remote_edit`
/// notice on each other node (waited for up to `limit`). The notebooks'
/// timing events are recorded meanwhile.
fn latency(peers: &[Peer], edits: usize, limit: Duration) -> Lat {
    let mut lat = Lat {
        each: Vec::new(),
        all: Vec::new(),
        shown: Vec::new(),
        writer: Vec::new(),
        bytes_per_edit: 0.0,
        missing: 0,
        probes: Vec::new(),
    };
    let sent = || peers.iter().map(|p| p.r.traffic().sent).sum::<u64>();
    let mut before = 0;
    for k in 0..edits + WARMUP {
        if k == WARMUP {
            std::thread::sleep(Duration::from_millis(200));
            before = sent();
            timing::start();
        }
        let w = &peers[k % peers.len()];
        let marker = format!("m{k}x");
        let t0 = Instant::now();
        note(w, &format!("latency probe {marker}"));
        let wrote = t0.elapsed();
        let mut worst: f64 = 0.0;
        let mut each = Vec::new();
        let mut seen = Vec::new();
        let mut shown = Vec::new();
        let mut missing = 0;
        for p in peers.iter().filter(|p| !std::ptr::eq(*p, w)) {
            match wait_visible(p, &marker, limit) {
                Some(t) => {
                    let v = ms(t - t0);
                    worst = worst.max(v);
                    each.push(v);
                    seen.push((p.label.clone(), t));
                    if let Some(s) = shown_at(p, &marker) {
                        shown.push(ms(s - t0));
                    }
                }
                None => missing += 1,
            }
        }
        if k >= WARMUP {
            lat.writer.push(ms(wrote));
            lat.each.extend(each);
            lat.shown.extend(shown);
            if missing == 0 {
                lat.all.push(worst);
            }
            lat.missing += missing;
            lat.probes.push(Probe {
                t0,
                writer: w.label.clone(),
                seen,
            });
        }
        std::thread::sleep(PACE);
    }
    std::thread::sleep(Duration::from_millis(200));
    timing::stop();
    lat.bytes_per_edit = (sent() - before) as f64 / edits as f64;
    lat
}

fn heads_of(nb: &NotebookHandle, id: &str) -> Vec<automerge::ChangeHash> {
    nb.blocking(nb.heads(id.to_string())).unwrap()
}

/// Waits (polling every millisecond, up to `limit`) until all `peers` have
/// the same heads of incident `id`.
fn converge(peers: &[&Peer], id: &str, limit: Duration) {
    let t = Instant::now();
    while peers[1..]
        .iter()
        .any(|p| heads_of(&p.nb, id) != heads_of(&peers[0].nb, id))
    {
        assert!(t.elapsed() < limit, "no convergence within {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sum of raw change bytes `have` holds that `lack` does not.
fn missing_bytes(have: &[u8], lack: &[u8]) -> u64 {
    let doc = Automerge::load(have).unwrap();
    let lack_doc = Automerge::load(lack).unwrap();
    doc.get_changes(&[])
        .iter()
        .filter(|c| lack_doc.get_change_by_hash(&c.hash()).is_none())
        .map(|c| c.raw_bytes().len() as u64)
        .sum()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// One offline-reconnect case, for dontpanic and the baseline.
struct Offline {
    n: usize,
    took: Duration,
    /// Sync bytes a → b and b → a (frame bodies, `Replicator::traffic`).
    a_to_b: u64,
    b_to_a: u64,
    /// Raw bytes of the changes b lacked (a's) and a lacked (b's).
    b_lacked: u64,
    a_lacked: u64,
    /// The same two notebooks, synced in this process with no network.
    local: LocalSync,
    /// Bare Automerge over TCP with the same two documents.
    base_took: Duration,
    base_a_to_b: u64,
    base_b_to_a: u64,
}

/// Two members apart make `n` notes each, then b's node comes back and
/// dials a: time until both notebooks have the same heads.
fn offline(rt: &tokio::runtime::Runtime, base: &mut Baseline, n: usize) -> Offline {
    let a = peer(rt, None, "a", vec![]);
    let b = peer(rt, None, "b", vec![]);
    let id = create(&a, "offline");
    b.r.join(&a.r.invite(HOUR, false).unwrap().to_string())
        .unwrap();
    converge(&[&a, &b], &id, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(b.node.shutdown());
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..n {
        for (p, who) in [(&a, "a"), (&b, "b")] {
            p.nb.blocking(p.nb.edit(Edit::AddNote {
                text: format!("{who} offline {i}"),
            }))
            .unwrap();
        }
    }
    let (doc_a, doc_b) = (
        a.nb.blocking(a.nb.export()).unwrap().1,
        b.nb.blocking(b.nb.export()).unwrap().1,
    );
    let (b_lacked, a_lacked) = (missing_bytes(&doc_a, &doc_b), missing_bytes(&doc_b, &doc_a));
    // Copies of both data directories, for the no-network measurement.
    let copies = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_dir(a.dir.path(), copies.0.path());
    copy_dir(b.dir.path(), copies.1.path());

    // b comes back: a new node for the same notebook.
    let (node, events) = start_node(rt, b.seed, vec![], true);
    let (b2, _rx) = Replicator::start(b.nb.clone(), node, events, rt.handle().clone());
    let a_before = a.r.traffic();
    let a_addr = rt.block_on(a.node.addresses())[0].to_string();
    let t0 = Instant::now();
    b2.connect(&a_addr).unwrap();
    converge(&[&a, &b], &id, Duration::from_secs(60));
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(300)); // trailing acknowledgements
    let a_after = a.r.traffic();
    rt.block_on(b2.node().shutdown());
    stop_all(rt, vec![a, b]);

    let local = local_sync(copies.0.path(), copies.1.path(), &id);

    let (base_took, base_a_to_b, base_b_to_a) = base.converge(&doc_a, &doc_b);
    Offline {
        n,
        took,
        a_to_b: a_after.sent - a_before.sent,
        b_to_a: a_after.received - a_before.received,
        b_lacked,
        a_lacked,
        local,
        base_took,
        base_a_to_b,
        base_b_to_a,
    }
}

// ------------------------------------------------- the room holds together

/// Restart to converged, per round (ms).
struct Restarts {
    took: Vec<f64>,
    /// Bare Automerge syncing the same two documents (the member's before
    /// it stopped, the others' after their notes) over its open socket.
    base: Vec<f64>,
}

/// Four members in a full mesh. Each round the last one stops, the three
/// others make `notes` notes each, and it starts again on its data
/// directory (a new port, no `connect`: it finds the members through its
/// address book): time from the start of its open to the others' heads.
fn restarts(
    rt: &tokio::runtime::Runtime,
    base: &mut Baseline,
    rounds: usize,
    notes: usize,
) -> Restarts {
    let mut peers = mesh(rt, 4, None, Duration::from_secs(30)).peers;
    let id = peers[0].nb.published().current.unwrap().id;
    let mut out = Restarts {
        took: Vec::new(),
        base: Vec::new(),
    };
    for round in 0..rounds {
        // The mesh has converged: what the stopped member holds.
        let stale = peers[0].nb.blocking(peers[0].nb.export()).unwrap().1;
        let dir = stop(rt, peers.pop().unwrap());
        for i in 0..notes {
            for p in &peers {
                note(p, &format!("restart round {round} note {i}"));
            }
        }
        let refs: Vec<&Peer> = peers.iter().collect();
        converge(&refs, &id, Duration::from_secs(30));
        let (back, t0) = restart(rt, dir);
        converge(&[&peers[0], &back], &id, Duration::from_secs(30));
        out.took.push(ms(t0.elapsed()));
        let fresh = peers[0].nb.blocking(peers[0].nb.export()).unwrap().1;
        out.base.push(ms(base.converge(&fresh, &stale).0));
        peers.push(back);
        peers.iter().for_each(drain);
    }
    stop_all(rt, peers);
    out
}

/// A TCP forwarder on 127.0.0.1 to port `to`. While `hole` is set it reads
/// and drops what comes, both ways, and keeps the sockets open: a network
/// that drops without a word. (Its accepting thread lives until the end
/// of the run.)
struct Forwarder {
    port: u16,
    hole: Arc<AtomicBool>,
}

impl Forwarder {
    fn start(to: u16) -> Forwarder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hole = Arc::new(AtomicBool::new(false));
        let h = hole.clone();
        std::thread::spawn(move || {
            for down in l.incoming().flatten() {
                let Ok(up) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let _ = (down.set_nodelay(true), up.set_nodelay(true));
                let back = (down.try_clone().unwrap(), up.try_clone().unwrap());
                for (from, into) in [(down, back.1), (up, back.0)] {
                    let h = h.clone();
                    std::thread::spawn(move || pump(from, into, &h));
                }
            }
        });
        Forwarder { port, hole }
    }
}

/// Copies `from` into `into` until `from` ends; passes the end on unless
/// in the hole.
fn pump(mut from: TcpStream, mut into: TcpStream, hole: &AtomicBool) {
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if !hole.load(Ordering::Relaxed) && into.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if !hole.load(Ordering::Relaxed) {
        let _ = into.shutdown(Shutdown::Write);
    }
}

/// Dead links and their healing, per round (ms).
#[derive(Default)]
struct DeadLinks {
    /// Blackhole to a's `peer_disconnected` notice for b.
    noticed: Vec<f64>,
    /// Blackhole lifted (at the notice) to the same heads on a and b.
    healed: Vec<f64>,
    /// Bare Automerge syncing the same two documents over its open socket.
    base: Vec<f64>,
    /// Rounds whose connection went through the forwarder (it should be
    /// all), and rounds whose connection after healing did.
    through_forwarder: usize,
    healed_through_forwarder: usize,
    /// What the notice said, first round.
    reason: String,
}

/// The TCP port of `/ip4/…/tcp/<port>/…`.
fn port_of(addr: &str) -> Option<u16> {
    addr.split('/').nth(4)?.parse().ok()
}

/// b's route as a's node sees it.
fn route(a: &Peer, b: &Peer) -> String {
    a.r.peers()
        .into_iter()
        .find(|r| r.peer == b.node.peer_id())
        .map(|r| r.address)
        .unwrap_or_default()
}

/// Per round, a fresh pair: b makes an incident; a, which listens nowhere
/// (so only a can dial), joins with b's invite pointing at a forwarder, so
/// their one connection goes through it. The forwarder is blackholed and
/// both make `notes` notes; time until a says b is disconnected. At that
/// notice the blackhole is lifted: time until both have the same heads.
fn dead_links(
    rt: &tokio::runtime::Runtime,
    base: &mut Baseline,
    rounds: usize,
    notes: usize,
) -> DeadLinks {
    let mut out = DeadLinks::default();
    for round in 0..rounds {
        let b = peer(rt, None, "b", vec![]);
        let dir = tempdir(None);
        let nb = Notebook::open(dir.path(), Some("a")).unwrap();
        let a = attach(rt, nb, dir, vec![], false);
        let id = create(&b, "dead link");
        let b_addr = rt.block_on(b.node.addresses())[0].to_string();
        let port = port_of(&b_addr).unwrap();
        let fwd = Forwarder::start(port);
        let via = format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", fwd.port, b.node.peer_id());
        let mut invite = b.r.invite(HOUR, false).unwrap();
        invite.addresses = vec![via.parse().unwrap()];
        a.r.join(&invite.to_string()).unwrap();
        converge(&[&a, &b], &id, Duration::from_secs(10));
        // Identify, the address exchange and a few pings go by.
        std::thread::sleep(Duration::from_millis(1500));
        out.through_forwarder += usize::from(port_of(&route(&a, &b)) == Some(fwd.port));
        drain(&a);
        drain(&b);

        fwd.hole.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        for i in 0..notes {
            note(&a, &format!("a alone, round {round} note {i}"));
            note(&b, &format!("b alone, round {round} note {i}"));
        }
        let doc_a = a.nb.blocking(a.nb.export()).unwrap().1;
        let doc_b = b.nb.blocking(b.nb.export()).unwrap().1;
        let (seen, notice) = wait_notice(&a, "peer_disconnected", "", Duration::from_secs(60))
            .expect("a notices the dead link");
        out.noticed.push(ms(seen - t0));
        if round == 0 {
            out.reason = notice.text;
        }

        fwd.hole.store(false, Ordering::Relaxed);
        let healed = Instant::now();
        converge(&[&a, &b], &id, Duration::from_secs(60));
        out.healed.push(ms(healed.elapsed()));
        out.healed_through_forwarder += usize::from(port_of(&route(&a, &b)) == Some(fwd.port));
        out.base.push(ms(base.converge(&doc_a, &doc_b).0));
        stop_all(rt, vec![a, b]);
    }
    out
}

fn stop_all(rt: &tokio::runtime::Runtime, peers: Vec<Peer>) {
    for p in peers {
        stop(rt, p);
    }
}

// ------------------------------------------------ notebooks, no network

fn member_key(nb: &Notebook) -> String {
    nb.device().key.public().to_string()
}

/// Time spent in each notebook call of a sync between two notebooks in
/// this process (no network, one thread).
#[derive(Default)]
struct LocalSync {
    total: Duration,
    /// `sync_message_for`, both sides.
    generate: Duration,
    /// `receive_sync`, both sides.
    receive: Duration,
    /// Of `receive`: decoding the envelope and extracting the changes
    /// (`changes_in`), and verifying their signatures (`verify_all`),
    /// re-timed on the same messages afterwards.
    extract: Duration,
    verify: Duration,
    rounds: usize,
}

/// Runs the sync dialogue between notebooks `a` and `b` until neither has
/// anything to say.
fn local_dialogue(
    a: &mut Notebook,
    b: &mut Notebook,
    acc: &mut LocalSync,
    keep: &mut Vec<SignedSyncMessage>,
) {
    let (ka, kb) = (member_key(a), member_key(b));
    let id = a.current_id().unwrap().to_string();
    for _ in 0..64 {
        let t = Instant::now();
        let m = a.sync_message_for(&id, &kb).unwrap();
        acc.generate += t.elapsed();
        if let Some(m) = m.clone() {
            keep.push(m.clone());
            let t = Instant::now();
            b.receive_sync(&id, &ka, m).unwrap();
            acc.receive += t.elapsed();
        }
        let t = Instant::now();
        let r = b.sync_message_for(&id, &ka).unwrap();
        acc.generate += t.elapsed();
        if let Some(r) = r.clone() {
            keep.push(r.clone());
            let t = Instant::now();
            a.receive_sync(&id, &kb, r).unwrap();
            acc.receive += t.elapsed();
        }
        acc.rounds += 1;
        if m.is_none() && r.is_none() {
            return;
        }
    }
    panic!("local sync did not converge");
}

/// Decode + extract, then verify, of the changes in sync messages.
fn retime(messages: &[SignedSyncMessage], acc: &mut LocalSync) {
    for m in messages {
        let t = Instant::now();
        let signed = m;
        let msg = sync::Message::decode(&signed.message).unwrap();
        let changes = changes_in(&msg).unwrap();
        acc.extract += t.elapsed();
        let sigs: std::collections::HashMap<_, _> =
            signed.signatures.iter().map(|s| (s.hash, *s)).collect();
        let signed: Vec<SignedChange> = changes
            .into_iter()
            .filter_map(|c| {
                let s = sigs.get(&c.hash())?;
                Some(SignedChange::from_parts(c, s.signer, s.signature))
            })
            .collect();
        let t = Instant::now();
        assert!(verify_all(&signed).is_empty());
        acc.verify += t.elapsed();
    }
}

fn open_copy(dir: &Path, id: &str) -> Notebook {
    let mut nb = Notebook::open(dir, None).unwrap();
    nb.open_incident(id).unwrap();
    nb
}

fn local_sync(a: &Path, b: &Path, id: &str) -> LocalSync {
    let (mut a, mut b) = (open_copy(a, id), open_copy(b, id));
    let mut acc = LocalSync::default();
    let mut kept = Vec::new();
    let t = Instant::now();
    local_dialogue(&mut a, &mut b, &mut acc, &mut kept);
    acc.total = t.elapsed();
    assert_eq!(
        a.incident().unwrap().doc().get_heads(),
        b.incident().unwrap().doc().get_heads()
    );
    retime(&kept, &mut acc);
    acc
}

/// Per edit, with two notebooks in this process and no network: the
/// writer's edit, its `sync_message_for`, and the reader's `receive_sync`
/// of the message that carries the change (ms each).
fn local_latency(root: Option<&Path>, edits: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (da, db) = (tempdir(root), tempdir(root));
    let mut a = Notebook::open(da.path(), Some("a")).unwrap();
    let mut b = Notebook::open(db.path(), Some("b")).unwrap();
    a.create("local", Severity::Sev2).unwrap();
    a.edit(Edit::AddMember {
        key: member_key(&b),
        name: "b".into(),
    })
    .unwrap();
    let id = a.current_id().unwrap().to_string();
    b.adopt(a.signed_changes(&id).unwrap()).unwrap();
    let (ka, kb) = (member_key(&a), member_key(&b));
    let mut ignore = LocalSync::default();
    local_dialogue(&mut a, &mut b, &mut ignore, &mut Vec::new());
    let (mut edit, mut generate, mut receive) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..edits + WARMUP {
        let t = Instant::now();
        a.edit(Edit::AddNote {
            text: format!("local probe {k}"),
        })
        .unwrap();
        let e = t.elapsed();
        let t = Instant::now();
        let m = a.sync_message_for(&id, &kb).unwrap().expect("a message");
        let g = t.elapsed();
        let t = Instant::now();
        let seen = b.receive_sync(&id, &ka, m).unwrap();
        let r = t.elapsed();
        assert_eq!(seen.len(), 1, "the first message carries the change");
        local_dialogue(&mut a, &mut b, &mut ignore, &mut Vec::new());
        if k >= WARMUP {
            edit.push(ms(e));
            generate.push(ms(g));
            receive.push(ms(r));
        }
    }
    (edit, generate, receive)
}

// ------------------------------------------------------------------ baseline

fn send(s: &mut TcpStream, kind: u8, payload: &[u8]) {
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
    s.write_all(&buf).unwrap();
}

fn recv(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    let kind = buf.remove(0);
    Some((kind, buf))
}

fn base_note(doc: &mut Automerge, text: &str) {
    let mut tx = doc.transaction();
    let tl = match tx.get(ROOT, "timeline").unwrap() {
        Some((_, o)) => o,
        None => tx.put_object(ROOT, "timeline", ObjType::List).unwrap(),
    };
    let n = tx.length(&tl);
    tx.insert(&tl, n, text).unwrap();
    tx.commit();
}

/// The baseline peer process. `S`: a sync message stamped with the wall
/// clock time its edit began; the peer applies it, answers with its own
/// sync message and how long after the stamp the change was applied.
/// `L`: replace the document by a saved one (fresh sync state). `Q`: quit.
fn baseline_peer(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut doc = Automerge::new();
    let mut state = sync::State::new();
    while let Some((kind, payload)) = recv(&mut s) {
        match kind {
            b'L' => {
                doc = Automerge::load(&payload).unwrap();
                state = sync::State::new();
                send(&mut s, b'K', &[]);
            }
            b'S' => {
                let t0 = u64::from_be_bytes(payload[..8].try_into().unwrap());
                if payload.len() > 8 {
                    let msg = sync::Message::decode(&payload[8..]).unwrap();
                    doc.receive_sync_message(&mut state, msg).unwrap();
                }
                let seen = now_ns().saturating_sub(t0);
                let mut out = seen.to_be_bytes().to_vec();
                if let Some(m) = doc.generate_sync_message(&mut state) {
                    out.extend(m.encode());
                }
                send(&mut s, b'S', &out);
            }
            _ => break,
        }
    }
}

struct Baseline {
    s: TcpStream,
    child: std::process::Child,
    doc: Automerge,
    state: sync::State,
    /// Sync message bytes sent to / received from the peer.
    sent: u64,
    received: u64,
}

impl Baseline {
    fn start() -> Baseline {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--baseline-peer", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        Baseline {
            s,
            child,
            doc: Automerge::new(),
            state: sync::State::new(),
            sent: 0,
            received: 0,
        }
    }

    /// Syncs until neither side has anything to say; returns the one-way
    /// time the peer reported for the first message (ns after `t0`).
    fn sync(&mut self, t0: u64) -> u64 {
        let mut first = None;
        for _ in 0..1000 {
            let msg = self
                .doc
                .generate_sync_message(&mut self.state)
                .map(|m| m.encode());
            let had = msg.is_some();
            let mut payload = t0.to_be_bytes().to_vec();
            payload.extend(msg.unwrap_or_default());
            self.sent += payload.len() as u64 - 8;
            send(&mut self.s, b'S', &payload);
            let (_, reply) = recv(&mut self.s).unwrap();
            first.get_or_insert(u64::from_be_bytes(reply[..8].try_into().unwrap()));
            self.received += reply.len() as u64 - 8;
            let reply_empty = reply.len() == 8;
            if !reply_empty {
                let m = sync::Message::decode(&reply[8..]).unwrap();
                self.doc.receive_sync_message(&mut self.state, m).unwrap();
            }
            if !had && reply_empty {
                break;
            }
        }
        first.unwrap_or(0)
    }

    /// Edit-to-visible on the peer for `edits` notes (ms).
    fn latency(&mut self, edits: usize) -> Vec<f64> {
        self.sync(now_ns());
        let mut out = Vec::new();
        for k in 0..edits + WARMUP {
            let t0 = now_ns();
            base_note(&mut self.doc, &format!("latency probe m{k}x"));
            let ns = self.sync(t0);
            if k >= WARMUP {
                out.push(ns as f64 / 1e6);
            }
            std::thread::sleep(PACE);
        }
        out
    }

    /// Loads `a` here and `b` in the peer, then syncs: (time, bytes a → b,
    /// bytes b → a).
    fn converge(&mut self, a: &[u8], b: &[u8]) -> (Duration, u64, u64) {
        send(&mut self.s, b'L', b);
        recv(&mut self.s).unwrap();
        self.doc = Automerge::load(a).unwrap();
        self.state = sync::State::new();
        let heads_b = Automerge::load(b).unwrap().get_heads();
        (self.sent, self.received) = (0, 0);
        let t = Instant::now();
        self.sync(now_ns());
        let took = t.elapsed();
        assert!(heads_b
            .iter()
            .all(|h| self.doc.get_change_by_hash(h).is_some()));
        (took, self.sent, self.received)
    }

    fn stop(mut self) {
        send(&mut self.s, b'Q', &[]);
        let _ = self.child.wait();
    }
}

// --------------------------------------------------------------------- relay

/// A relay server alone in this process, printing its address.
fn relay_child() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let key = dontpanic_identity::SecretKey::generate();
        let (_, mut events) = dontpanic_net::relay::serve(
            key.to_bytes(),
            vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        )
        .await
        .unwrap();
        while let Some(e) = events.recv().await {
            if let dontpanic_net::relay::RelayEvent::Listening(a) = e {
                println!("{a}");
            }
        }
    });
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Pairs of nodes that only know each other's circuit address through a
/// relay in its own process: latency on the first pair, and the relay's
/// memory before and after all pairs are connected.
fn relayed(rt: &tokio::runtime::Runtime, rows: &mut Vec<String>, direct: Option<&Lat>) {
    let mut relay = Command::new(std::env::current_exe().unwrap())
        .arg("--relay-child")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(relay.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let relay_addr: dontpanic_net::Multiaddr = line.trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_kb(relay.id());
    const PAIRS: usize = 5;
    let mut retries = 0;
    let mut pairs = Vec::new();
    for i in 0..PAIRS {
        let a = peer(rt, None, &format!("ra{i}"), vec![relay_addr.clone()]);
        let b = peer(rt, None, &format!("rb{i}"), vec![relay_addr.clone()]);
        create(&a, "relay bench");
        let circuit = loop {
            if let Some(c) = rt
                .block_on(a.node.addresses())
                .into_iter()
                .find(|x| x.to_string().contains("p2p-circuit"))
            {
                break c;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut inv = a.r.invite(HOUR, false).unwrap();
        inv.addresses = vec![circuit];
        // A join through a relay has failed now and then with this many
        // nodes in one process (see docs/benchmarks.md); count and retry.
        let mut tries = 1;
        while let Err(e) = b.r.join(&inv.to_string()) {
            assert!(tries < 3, "join through the relay failed 3 times: {e}");
            tries += 1;
        }
        retries += tries - 1;
        pairs.push((a, b));
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss_kb(relay.id());
    let (a, b) = pairs.remove(0);
    drain(&a);
    drain(&b);
    let is_relayed =
        a.r.peers()
            .iter()
            .any(|p| p.route == "relayed" && p.state == "connected");
    let lr = latency(&[a, b], 200, Duration::from_secs(10));
    let (direct, ratio) = match direct {
        Some(d) => (
            dist(&d.each),
            format!(
                "{:.1}× direct p99",
                pct(&lr.each, 0.99) / pct(&d.each, 0.99)
            ),
        ),
        None => ("(2 nodes not run)".into(), String::new()),
    };
    rows.push(format!(
        "| edit-to-visible through a relay (loopback), p50 / p99 / max | {} | direct: {direct} | {ratio} | connection relayed: {is_relayed} |",
        dist(&lr.each),
    ));
    rows.push(format!(
        "| relay memory per active circuit ({PAIRS} circuits, relay RSS {rss_before} → {rss_after} KiB; {retries} join(s) retried) | {} KiB | | | |",
        rss_after.saturating_sub(rss_before) / PAIRS as u64
    ));
    let _ = relay.kill();
    let _ = relay.wait();
}

// ---------------------------------------------------------------------- main

/// Which parts of the benchmark to run.
struct Parts {
    only: Vec<String>,
    /// Mesh sizes of the live rows.
    nodes: Vec<usize>,
}

const PARTS: [&str; 5] = ["live", "reconnect", "room", "why", "relay"];

impl Parts {
    fn parse(args: &[String]) -> Parts {
        let mut only: Option<Vec<String>> = None;
        let mut nodes: Option<Vec<usize>> = None;
        let mut it = args.iter().skip(1);
        while let Some(a) = it.next() {
            let list = |v: Option<&String>| -> Vec<String> {
                v.map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                    .unwrap_or_default()
            };
            match a.as_str() {
                "--only" => {
                    let l = list(it.next());
                    for p in &l {
                        assert!(
                            PARTS.contains(&p.as_str()),
                            "--only: `{p}` is none of {}",
                            PARTS.join(", ")
                        );
                    }
                    only = Some(l);
                }
                "--nodes" => {
                    nodes = Some(
                        list(it.next())
                            .iter()
                            .map(|n| {
                                n.parse()
                                    .ok()
                                    .filter(|n| *n >= 2)
                                    .unwrap_or_else(|| panic!("--nodes: `{n}` is not a number ≥ 2"))
                            })
                            .collect(),
                    )
                }
                other => panic!(
                    "unknown argument `{other}`; use --only {} and --nodes 2,10,50",
                    PARTS.join(",")
                ),
            }
        }
        let only = match (only, &nodes) {
            (Some(o), _) => o,
            (None, Some(_)) => vec!["live".into()],
            (None, None) => PARTS.iter().map(|p| p.to_string()).collect(),
        };
        Parts {
            only,
            nodes: nodes.unwrap_or_else(|| vec![2, 10, 50]),
        }
    }

    fn has(&self, part: &str) -> bool {
        self.only.iter().any(|p| p == part)
    }
}

/// Latency probes and settling limits by mesh size: fewer edits, more
/// patience as the mesh grows.
fn plan(n: usize) -> (usize, Duration, Duration) {
    match n {
        0..=2 => (300, Duration::from_secs(10), Duration::from_secs(30)),
        3..=10 => (100, Duration::from_secs(10), Duration::from_secs(30)),
        _ => (20, Duration::from_secs(30), Duration::from_secs(120)),
    }
}

/// "p50 / p99" of a stage, or a dash.
fn p50_99(v: &[f64]) -> String {
    if v.is_empty() {
        "–".into()
    } else {
        format!("{:.3} / {:.3}", pct(v, 0.5), pct(v, 0.99))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--baseline-peer") => return baseline_peer(args[2].parse().unwrap()),
        Some("--relay-child") => return relay_child(),
        _ => {}
    }
    let parts = Parts::parse(&args);
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let fmt = std::env::var_os("RUST_LOG").map(|_| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::EnvFilter::from_default_env())
        });
        let timed = timing::Collect.with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.target() == dontpanic_notebook::actor::TIMING
        }));
        tracing_subscriber::registry().with(fmt).with(timed).init();
    }
    let started = Instant::now();
    // Like `dontpanic` itself: a two-worker runtime (here shared by all
    // nodes of the process).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmpfs = Path::new("/dev/shm");
    let tmpfs = tmpfs.is_dir().then_some(tmpfs);
    let mut rows: Vec<String> = Vec::new();
    let mut why: Vec<String> = Vec::new();
    let mut base = Baseline::start();
    let bl = base.latency(300);
    let (b99, base_p50) = (pct(&bl, 0.99), pct(&bl, 0.5));

    // Edit to visible: 2, 10, 50 nodes.
    let mut live: Vec<(usize, Lat, timing::Breakdown)> = Vec::new();
    if parts.has("live") {
        for &n in &parts.nodes {
            let (edits, limit, settle) = plan(n);
            let up = mesh(&rt, n, None, settle);
            let m = up.peers.len();
            if n > 2 {
                rows.push(format!(
                    "| mesh of {n}: set up (joins, dials, settling) | {:.1} s; {} of {} pairs connected; {m}/{m} … {} with the same heads{}{} | | | full mesh: {} |",
                    up.took.as_secs_f64(),
                    up.pairs,
                    m * (m - 1) / 2,
                    up.in_sync,
                    if up.settled { "" } else { " (did not settle in the limit)" },
                    match (up.join_retries, up.not_joined, up.dial_failures) {
                        (0, 0, 0) => String::new(),
                        (r, j, d) => format!("; {r} join(s) retried, {j} never joined, {d} dial(s) failed"),
                    },
                    verdict(up.pairs == n * (n - 1) / 2 && up.settled),
                ));
            }
            let l = latency(&up.peers, edits, limit);
            let evs = timing::take();
            let bd = timing::breakdown(&l.probes, &evs);
            stop_all(&rt, up.peers);
            let missing = if l.missing > 0 {
                format!(
                    " ({} of {} (edit, peer) pairs not visible within {} s)",
                    l.missing,
                    edits * (m - 1),
                    limit.as_secs()
                )
            } else {
                String::new()
            };
            if n == 2 {
                let p99 = pct(&l.each, 0.99);
                rows.push(format!(
                    "| edit-to-visible, 2 nodes, p50 / p99 / max{missing} | {} | {} | {:.1}× (p99) | p99 ≤ {TWO_NODE_RATIO}× baseline ({:.2} ms): {} |",
                    dist(&l.each),
                    dist(&bl),
                    p99 / b99,
                    TWO_NODE_RATIO * b99,
                    verdict(p99 <= TWO_NODE_RATIO * b99)
                ));
            } else {
                let target = MESH_TARGET_MS.iter().find(|(k, _)| *k == n).map(|t| t.1);
                rows.push(format!(
                    "| edit-to-visible, {n} nodes, each peer, p50 / p99 / max{missing} | {} | | | |",
                    dist(&l.each),
                ));
                let all = if l.all.is_empty() {
                    vec![f64::NAN]
                } else {
                    l.all.clone()
                };
                let a99 = pct(&all, 0.99);
                rows.push(format!(
                    "| edit-to-visible, {n} nodes, on all {} peers (the slowest, per edit), p50 / p99 / max | {} | | {:.1}× baseline p99 | {} |",
                    m - 1,
                    dist(&all),
                    a99 / b99,
                    match target {
                        Some(t) => format!("p99 ≤ {t} ms: {}", verdict(a99 <= t)),
                        None => String::new(),
                    }
                ));
            }
            if !l.shown.is_empty() {
                rows.push(format!(
                    "| … {n} nodes, edit to shown by the reader's notebook (`RemoteEvent::Shown`, before its own append; not yet what the driver announces), each peer, p50 / p99 / max | {} | | {:.1}× baseline p99 | |",
                    dist(&l.shown),
                    pct(&l.shown, 0.99) / b99,
                ));
            }
            live.push((n, l, bd));
        }
    }

    // Offline reconnect, dontpanic and baseline on the same documents.
    let mut offs = Vec::new();
    if parts.has("reconnect") {
        for n in [1_000usize, 10_000] {
            let o = offline(&rt, &mut base, n);
            let time_ratio = o.took.as_secs_f64() / o.base_took.as_secs_f64();
            let bytes_ratio = (o.a_to_b + o.b_to_a) as f64 / (o.base_a_to_b + o.base_b_to_a) as f64;
            let (t_target, b_target) = if n == 10_000 {
                (
                    format!(
                        "≤ {RECONNECT_TIME_RATIO}× baseline time: {}",
                        verdict(time_ratio <= RECONNECT_TIME_RATIO)
                    ),
                    format!(
                        "≤ {RECONNECT_BYTES_RATIO}× baseline bytes: {}",
                        verdict(bytes_ratio <= RECONNECT_BYTES_RATIO)
                    ),
                )
            } else {
                (String::new(), String::new())
            };
            rows.push(format!(
                "| reconnect after {n} offline notes on each side: time until same heads | {:.0} ms | {:.0} ms | {time_ratio:.2}× | {t_target} |",
                ms(o.took),
                ms(o.base_took),
            ));
            rows.push(format!(
                "| … bytes a → b / b → a (missing changes: {:.2} / {:.2} MiB raw) | {:.2} / {:.2} MiB ({:.2}× / {:.2}× the missing) | {:.2} / {:.2} MiB | {bytes_ratio:.1}× | {b_target} |",
                mib(o.b_lacked),
                mib(o.a_lacked),
                mib(o.a_to_b),
                mib(o.b_to_a),
                o.a_to_b as f64 / o.b_lacked as f64,
                o.b_to_a as f64 / o.a_lacked as f64,
                mib(o.base_a_to_b),
                mib(o.base_b_to_a),
            ));
            offs.push(o);
        }
    }

    // The room holds together: restarts, dead links, healing.
    if parts.has("room") {
        room(&rt, &mut base, &mut rows);
    }
    base.stop();

    // Where the time goes.
    let lat_of = |n: usize| live.iter().find(|(k, _, _)| *k == n).map(|(_, l, _)| l);
    if parts.has("why") {
        let (le, lg, lr) = local_latency(None, 300);
        if let Some(l2) = lat_of(2) {
            why.push(format!(
                "| 2 nodes: the writer's `Notebook::edit` (rules, sign, fdatasync), in the run above | {} | | | |",
                dist(&l2.writer)
            ));
        }
        why.push(format!(
            "| no network, two notebooks in one thread: writer's edit / its `sync_message_for` / reader's `receive_sync` (verify, fdatasync, apply), p50 | {:.2} / {:.2} / {:.2} ms | baseline edit-to-visible p50: {base_p50:.2} ms | | |",
            pct(&le, 0.5),
            pct(&lg, 0.5),
            pct(&lr, 0.5)
        ));
        let sum: Vec<f64> = (0..le.len()).map(|i| le[i] + lg[i] + lr[i]).collect();
        why.push(format!(
            "| no network: the three together (the notebook's floor), p50 / p99 / max | {} | | | |",
            dist(&sum)
        ));
        if let Some(tmpfs) = tmpfs {
            let (te, tg, tr) = local_latency(Some(tmpfs), 300);
            let tsum: Vec<f64> = (0..te.len()).map(|i| te[i] + tg[i] + tr[i]).collect();
            why.push(format!(
                "| no network, data on tmpfs (fdatasync ≈ free): the three together, p50 / p99 / max | {} | | | |",
                dist(&tsum)
            ));
            for n in [2, 10] {
                let (edits, limit, settle) = plan(n);
                let up = mesh(&rt, n, Some(tmpfs), settle);
                let t = latency(&up.peers, edits, limit);
                timing::take();
                stop_all(&rt, up.peers);
                why.push(format!(
                    "| {n} nodes, data on tmpfs, edit-to-visible each peer p50 / p99 / max | {} | {} | {:.1}× (p99) | |",
                    dist(&t.each),
                    if n == 2 { dist(&bl) } else { String::new() },
                    pct(&t.each, 0.99) / b99
                ));
            }
        }
        if let (Some(l2), Some(l10)) = (lat_of(2), lat_of(10)) {
            why.push(format!(
                "| sync bytes sent by all nodes per edit: 2 nodes / 10 nodes | {:.0} B / {:.0} B ({:.1}× of 9 × the 2-node figure) | | | |",
                l2.bytes_per_edit,
                l10.bytes_per_edit,
                l10.bytes_per_edit / (9.0 * l2.bytes_per_edit)
            ));
        }
        for o in &offs {
            let l = &o.local;
            why.push(format!(
                "| reconnect {}: the same two notebooks synced with no network ({} rounds): total / `sync_message_for` / `receive_sync` (of which extract changes / verify signatures) | {:.0} / {:.0} / {:.0} ({:.0} / {:.0}) ms | | | |",
                o.n,
                l.rounds,
                ms(l.total),
                ms(l.generate),
                ms(l.receive),
                ms(l.extract),
                ms(l.verify),
            ));
        }
    }

    if parts.has("relay") {
        relayed(&rt, &mut rows, lat_of(2));
    }

    println!(
        "sync benchmark (loopback, {} cores, {:.0} s; parts: {}; nodes: {:?})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        started.elapsed().as_secs_f64(),
        parts.only.join(","),
        parts.nodes,
    );
    println!();
    println!("| measure | dontpanic | bare Automerge over TCP (2 processes) | ratio | target |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    if !live.is_empty() {
        print_breakdown(&live);
    }
    if !why.is_empty() {
        println!();
        println!("Where the time goes:");
        println!();
        println!("| measure | dontpanic | baseline | ratio | |");
        println!("|---|---|---|---|---|");
        for r in why {
            println!("{r}");
        }
    }
}

/// The live path stage by stage, one column per mesh size (ms, p50 / p99
/// over the (edit, reader) pairs whose change came straight from the writer).
fn print_breakdown(live: &[(usize, Lat, timing::Breakdown)]) {
    println!();
    println!("Edit to visible, stage by stage (ms, p50 / p99 over (edit, reader) pairs; from the notebooks' timing events):");
    println!();
    let head: Vec<String> = live.iter().map(|(n, _, _)| format!("{n} nodes")).collect();
    println!("| stage | {} |", head.join(" | "));
    println!("|---|{}", "---|".repeat(live.len()));
    for (i, stage) in timing::STAGES.iter().enumerate() {
        if live.iter().all(|(_, _, b)| b.stages[i].is_empty()) {
            continue;
        }
        let cells: Vec<String> = live.iter().map(|(_, _, b)| p50_99(&b.stages[i])).collect();
        println!("| {stage} | {} |", cells.join(" | "));
    }
    let cells: Vec<String> = live.iter().map(|(_, _, b)| p50_99(&b.total)).collect();
    println!(
        "| edit to visible, the same pairs | {} |",
        cells.join(" | ")
    );
    let cells: Vec<String> = live
        .iter()
        .map(|(_, _, b)| {
            format!(
                "{:.3}",
                b.stages
                    .iter()
                    .zip(timing::STAGES)
                    .filter(|(v, name)| !v.is_empty() && !name.starts_with('…'))
                    .map(|(v, _)| pct(v, 0.5))
                    .sum::<f64>()
            )
        })
        .collect();
    println!("| sum of the stage medians | {} |", cells.join(" | "));
    let cells: Vec<String> = live
        .iter()
        .map(|(_, l, b)| {
            format!(
                "{} explained ({} of them in the writer's answer to the reader), {} came through another reader, {} not found (of {})",
                b.total.len(),
                b.in_answer,
                b.relayed,
                b.unexplained,
                l.each.len()
            )
        })
        .collect();
    println!("| (edit, reader) pairs | {} |", cells.join(" | "));
    let cells: Vec<String> = live
        .iter()
        .map(|(_, _, b)| {
            b.per_edit
                .iter()
                .map(|(k, c, t)| format!("{k} {c:.1} ({t:.1} ms)"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    println!(
        "| notebook requests served per edit, all nodes | {} |",
        cells.join(" | ")
    );
    let cells: Vec<String> = live
        .iter()
        .map(|(_, _, b)| format!("{:.2} / {:.2}", b.busy_all, b.busy_writer))
        .collect();
    println!(
        "| notebook threads busy per edit: all nodes / the writer's (ms) | {} |",
        cells.join(" | ")
    );
}

/// Restarts, dead links and healing rows.
fn room(rt: &tokio::runtime::Runtime, base: &mut Baseline, rows: &mut Vec<String>) {
    const RESTARTS: usize = 10;
    const RESTART_NOTES: usize = 100;
    let rs = restarts(rt, base, RESTARTS, RESTART_NOTES);
    let worst = pct(&rs.took, 1.0);
    rows.push(format!(
        "| restart to converged, 1 of 4 members stopped while the 3 others made {RESTART_NOTES} notes each, new port, no `connect` ({RESTARTS} rounds), p50 / max | {:.0} / {:.0} ms | {:.1} / {:.1} ms (sync of the same two documents) | {:.0}× (p50) | ≤ {} s: {} |",
        pct(&rs.took, 0.5),
        worst,
        pct(&rs.base, 0.5),
        pct(&rs.base, 1.0),
        pct(&rs.took, 0.5) / pct(&rs.base, 0.5),
        RESYNC_TARGET.as_secs(),
        verdict(worst <= ms(RESYNC_TARGET))
    ));
    const DEAD: usize = 5;
    const DEAD_NOTES: usize = 50;
    let dl = dead_links(rt, base, DEAD, DEAD_NOTES);
    let worst = pct(&dl.noticed, 1.0);
    rows.push(format!(
        "| dead link (forwarder blackholed, sockets left open) to the `peer_disconnected` notice ({DEAD} rounds; {}/{DEAD} links went through the forwarder; said: \"{}\"), p50 / max | {:.0} / {:.0} ms | (a plain TCP socket notices nothing) | | ≤ {} s: {} |",
        dl.through_forwarder,
        dl.reason,
        pct(&dl.noticed, 0.5),
        worst,
        DEAD_LINK_TARGET.as_secs(),
        verdict(worst <= ms(DEAD_LINK_TARGET))
    ));
    let worst = pct(&dl.healed, 1.0);
    rows.push(format!(
        "| heal to converged: blackhole lifted at that notice, {DEAD_NOTES} notes made on each side meanwhile ({}/{DEAD} reconnected through the forwarder, the others to b's own address), p50 / max | {:.0} / {:.0} ms | {:.1} / {:.1} ms (sync of the same two documents) | {:.0}× (p50) | ≤ {} s: {} |",
        dl.healed_through_forwarder,
        pct(&dl.healed, 0.5),
        worst,
        pct(&dl.base, 0.5),
        pct(&dl.base, 1.0),
        pct(&dl.healed, 0.5) / pct(&dl.base, 0.5),
        RESYNC_TARGET.as_secs(),
        verdict(worst <= ms(RESYNC_TARGET))
    ));
}
