//! The notebook as an actor: one thread owns the [`Notebook`] and, through
//! it, every disk access; everyone else holds a [`NotebookHandle`].
//!
//! Requests are typed, each with a oneshot reply, over a bounded channel;
//! what others need to read often and cheaply (the incident at the prompt,
//! every roster) is published on a `watch` channel after each request that
//! may change it. So the swarm task and the sync driver never wait on an
//! fsync or a signature check, and the REPL never waits on the network.
//!
//! Remote edits are also told as they are taken in, on a broadcast channel
//! ([`NotebookHandle::remote_events`]): [`RemoteEvent::Shown`] as soon as a
//! received change has passed verification and the schema, before this
//! node's own journal append (the sender already holds it durably), and
//! [`RemoteEvent::NotStored`] if that append then fails.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use automerge::ChangeHash;
use dontpanic_identity::{PublicKey, SignedRuns};
use dontpanic_incident::similar::Resemblance;
use dontpanic_incident::{Applied, Edit, IncidentView, Severity};
use dontpanic_store::{AddressBook, Blocked, Config};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::sync::SignedSyncMessage;
use crate::{now_ms, IncidentSummary, LogEntry, Notebook, NotebookError, RemoteEdit, SingleUse};

/// Target of the trace events that time each request (queued, served,
/// returned to its caller) and the stages of a received sync message; off
/// unless a subscriber asks for it (`examples/bench_sync.rs` does, to break
/// the live path down; so does `RUST_LOG=dontpanic_notebook::timing=trace`).
pub const TIMING: &str = "dontpanic_notebook::timing";

/// A short name of a hex key in timing events (its first 8 characters).
fn label(key: &str) -> &str {
    key.get(..8).unwrap_or(key)
}

/// Rejected peers remembered; the oldest is forgotten beyond this.
const BLOCKED_KEPT: usize = 1024;
/// Requests waiting for the notebook thread; senders wait when it is full.
const QUEUE: usize = 256;
/// Remote events kept for a subscriber that has not read them yet; one that
/// falls further behind is told how many it missed (`Lagged`).
const REMOTE_EVENTS: usize = 1024;
/// Incidents with at least this many journal records are folded into a
/// snapshot at shutdown, so the next start opens fast. Tests may lower it
/// with `DONTPANIC_COMPACT_AT_EXIT` (see docs/architecture.md) to get
/// snapshots and segments from a few edits.
const COMPACT_AT_EXIT: usize = 1_000;

/// How often the notebook thread re-checks the segments' checksums (the
/// background scrub). Tests may shorten it with `DONTPANIC_SCRUB_SECS`.
const SCRUB_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

fn scrub_every() -> std::time::Duration {
    std::env::var("DONTPANIC_SCRUB_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(SCRUB_EVERY)
}

fn compact_at_exit() -> usize {
    std::env::var("DONTPANIC_COMPACT_AT_EXIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(COMPACT_AT_EXIT)
}

/// A roster member, as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Hex public key.
    pub key: String,
    /// Roster name.
    pub name: String,
}

/// The incident at the prompt, as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    /// Full id.
    pub id: String,
    /// Status word.
    pub status: String,
    /// Title.
    pub title: String,
    /// Where it stands (severity, roles, fixes, updates), for the nudges
    /// and the prompt's `update due`.
    pub standing: dontpanic_incident::Standing,
}

/// What the prompt completes, from the notebook.
#[derive(Clone, Debug, Default)]
pub struct Completions {
    /// Stored incident ids.
    pub incidents: Vec<String>,
    /// The items of the incident at the prompt.
    pub items: Vec<dontpanic_incident::Completion>,
    /// Its conflicting fields (for `resolve`).
    pub conflicts: Vec<String>,
}

/// What the notebook publishes after every request that may change it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// The incident at the prompt.
    pub current: Option<Current>,
    /// Every loaded incident's roster, by incident id.
    pub rosters: BTreeMap<String, Vec<Member>>,
    /// Incidents waiting for damaged changes from members, and how many
    /// (their only local copy was damaged; later changes wait for them).
    pub waiting: BTreeMap<String, usize>,
    /// What the background scrub found wrong in an incident's segments.
    pub scrub: BTreeMap<String, Vec<String>>,
}

impl Published {
    /// Whether `key` is on the roster of incident `id`.
    pub fn is_member(&self, id: &str, key: &str) -> bool {
        self.rosters
            .get(id)
            .is_some_and(|r| r.iter().any(|m| m.key == key))
    }

    /// The roster name of `key` in any loaded incident (the one at the
    /// prompt first).
    pub fn name_of(&self, key: &str) -> Option<String> {
        let current = self.current.as_ref().map(|c| c.id.as_str());
        current
            .and_then(|c| self.rosters.get(c))
            .into_iter()
            .chain(self.rosters.values())
            .flatten()
            .find(|m| m.key == key)
            .map(|m| m.name.clone())
    }

    /// Ids of the incidents `key` is a member of.
    pub fn incidents_of(&self, key: &str) -> Vec<String> {
        self.rosters
            .iter()
            .filter(|(_, r)| r.iter().any(|m| m.key == key))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// This device, known without asking the notebook thread.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Display name.
    pub name: String,
    /// Public key.
    pub key: PublicKey,
    /// The data directory.
    pub data_dir: PathBuf,
}

/// A local edit, done.
#[derive(Debug)]
pub struct EditDone {
    /// What the rules and the document made of it.
    pub applied: Applied,
    /// The created item's short id, if one was created.
    pub short: Option<String>,
    /// The incident it was made in.
    pub incident: String,
}

/// Remote edits as the notebook takes them in.
#[derive(Clone, Debug)]
pub enum RemoteEvent {
    /// Received changes that passed every check (signatures, membership,
    /// schema), told before this node journals them: show them now, their
    /// sender already holds them durably. Told once per change stored, and
    /// again if a change not stored the first time comes back.
    Shown {
        /// The incident they belong to.
        incident: String,
        /// What they are.
        edits: Vec<RemoteEdit>,
    },
    /// Edits told as [`RemoteEvent::Shown`] that could not be stored here
    /// (a full disk): they are not in this notebook. The sender was
    /// answered with a local fault (not blamed) and sends them again.
    NotStored {
        /// The incident they belong to.
        incident: String,
        /// What they were.
        edits: Vec<RemoteEdit>,
        /// Why the append failed.
        error: String,
    },
}

/// What a sync message from a peer brought.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// The accepted remote edits (already told, before they were stored,
    /// as [`RemoteEvent::Shown`]).
    pub edits: Vec<RemoteEdit>,
    /// Conflicting fields that appeared with them.
    pub new_conflicts: Vec<String>,
    /// The answer to send back, when asked for and there is one.
    pub answer: Option<SignedSyncMessage>,
}

type Reply<T> = oneshot::Sender<Result<T, NotebookError>>;

/// One typed request to the notebook thread.
enum Request {
    Create(String, Severity, Reply<EditDone>),
    Open(String, Reply<(Vec<String>, IncidentView)>),
    Edit(Edit, Reply<EditDone>),
    Incidents(Reply<Vec<IncidentSummary>>),
    View(Reply<(IncidentView, usize)>),
    Similar(Reply<Vec<Resemblance>>),
    Export(Reply<(String, Vec<u8>)>),
    Heads(String, Reply<Vec<ChangeHash>>),
    ActorNames(Reply<Vec<(String, String)>>),
    Log(Reply<Vec<LogEntry>>),
    Completions(Reply<Completions>),
    Config(Reply<Config>),
    SaveConfig(Config, Reply<()>),
    SyncMessage(String, String, Reply<Option<SignedSyncMessage>>),
    ReceiveSync {
        incident: String,
        peer: String,
        message: SignedSyncMessage,
        answer: bool,
        reply: Reply<Received>,
    },
    PeerGone(String),
    JoinSecret(String, Reply<Vec<u8>>),
    Admit(String, String, String, Option<SingleUse>, Reply<SignedRuns>),
    Adopt(SignedRuns, Reply<String>),
    AddressBook(Reply<AddressBook>),
    Learn(String, Vec<String>),
    Blocked(Reply<Blocked>),
    Block(String, String),
    Unblock(String, Reply<()>),
    Doctor(Reply<crate::Report>),
    Scrub,
    Shutdown(Reply<()>),
}

impl Request {
    /// What the request is, in timing events.
    fn name(&self) -> &'static str {
        match self {
            Request::Edit(..) => "edit",
            Request::SyncMessage(..) => "sync_message",
            Request::ReceiveSync { .. } => "receive_sync",
            Request::Heads(..) => "heads",
            Request::Admit(..) => "admit",
            _ => "other",
        }
    }

    /// The peer it is about, if any (hex key).
    fn peer(&self) -> &str {
        match self {
            Request::SyncMessage(_, peer, _) | Request::ReceiveSync { peer, .. } => peer,
            _ => "",
        }
    }
}

/// The notebook's handle; cheap to clone, usable from async tasks (`.await`)
/// and, through [`NotebookHandle::blocking`], from plain threads.
#[derive(Clone)]
pub struct NotebookHandle {
    /// Requests, each with the moment it was sent (for timing).
    tx: mpsc::Sender<(Instant, Request)>,
    published: watch::Receiver<Published>,
    remote: broadcast::Sender<RemoteEvent>,
    device: Arc<DeviceInfo>,
}

impl NotebookHandle {
    /// Moves the notebook onto its own thread and returns its handle.
    pub fn spawn(notebook: Notebook) -> NotebookHandle {
        let device = Arc::new(DeviceInfo {
            name: notebook.device().name.clone(),
            key: notebook.device().key.public(),
            data_dir: notebook.data().path().to_path_buf(),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let (publish, published) = watch::channel(Published::default());
        let (remote, _) = broadcast::channel(REMOTE_EVENTS);
        let mut actor = Actor {
            label: label(&device.key.to_string()).to_string(),
            nb: notebook,
            publish,
            remote: remote.clone(),
            book: None,
        };
        actor.publish();
        std::thread::Builder::new()
            .name("notebook".into())
            .spawn(move || actor.run(rx))
            .expect("spawn the notebook thread");
        spawn_scrub_ticker(tx.downgrade(), scrub_every());
        NotebookHandle {
            tx,
            published,
            remote,
            device,
        }
    }

    /// This device.
    pub fn device(&self) -> &DeviceInfo {
        &self.device
    }

    /// The latest published state (cheap; never waits on the disk).
    pub fn published(&self) -> Published {
        self.published.borrow().clone()
    }

    /// A receiver that wakes when the published state changes.
    pub fn watch(&self) -> watch::Receiver<Published> {
        self.published.clone()
    }

    /// Remote edits as they are taken in, from now on: shown as soon as they
    /// are verified, and said when one shown could not be stored.
    pub fn remote_events(&self) -> broadcast::Receiver<RemoteEvent> {
        self.remote.subscribe()
    }

    /// Runs a request future to completion on a plain (non-async) thread.
    pub fn blocking<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        // The requests only wait on tokio channels, which need no runtime.
        futures::executor::block_on(f)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, NotebookError> {
        let (tx, rx) = oneshot::channel();
        let request = make(tx);
        let timed = tracing::enabled!(target: TIMING, tracing::Level::TRACE)
            .then(|| (request.name(), label(request.peer()).to_string()));
        self.tx
            .send((Instant::now(), request))
            .await
            .map_err(|_| NotebookError::Stopped)?;
        let result = rx.await.map_err(|_| NotebookError::Stopped)?;
        if let Some((req, peer)) = timed {
            let node = self.device.key.to_string();
            tracing::trace!(target: TIMING, node = label(&node), req, peer, "returned");
        }
        result
    }

    fn tell(&self, request: Request) {
        if let Err(e) = self.tx.try_send((Instant::now(), request)) {
            tracing::warn!("notebook queue: {e}; a request without reply was dropped");
        }
    }

    /// `new`: starts an incident and puts it at the prompt.
    pub async fn create(&self, title: String, sev: Severity) -> Result<EditDone, NotebookError> {
        self.ask(|r| Request::Create(title, sev, r)).await
    }

    /// `open`: puts a stored incident at the prompt; returns load warnings
    /// and its view.
    pub async fn open(&self, typed: String) -> Result<(Vec<String>, IncidentView), NotebookError> {
        self.ask(|r| Request::Open(typed, r)).await
    }

    /// A local edit of the incident at the prompt; durable when it returns.
    pub async fn edit(&self, edit: Edit) -> Result<EditDone, NotebookError> {
        self.ask(|r| Request::Edit(edit, r)).await
    }

    /// Every stored incident, summarised.
    pub async fn incidents(&self) -> Result<Vec<IncidentSummary>, NotebookError> {
        self.ask(Request::Incidents).await
    }

    /// The view of the incident at the prompt, and how many of its stored
    /// signatures failed re-verification.
    pub async fn view(&self) -> Result<(IncidentView, usize), NotebookError> {
        self.ask(Request::View).await
    }

    /// Past incidents on this device that resemble the one at the prompt,
    /// most alike first.
    pub async fn similar(&self) -> Result<Vec<Resemblance>, NotebookError> {
        self.ask(Request::Similar).await
    }

    /// The incident at the prompt as a saved Automerge document of its
    /// current state, without history or join secret: (id, bytes).
    pub async fn export(&self) -> Result<(String, Vec<u8>), NotebookError> {
        self.ask(Request::Export).await
    }

    /// The document heads of a loaded incident: equal heads, equal
    /// documents.
    pub async fn heads(&self, incident: String) -> Result<Vec<ChangeHash>, NotebookError> {
        self.ask(|r| Request::Heads(incident, r)).await
    }

    /// Automerge actor (hex) → roster name, for the incident at the prompt.
    pub async fn actor_names(&self) -> Result<Vec<(String, String)>, NotebookError> {
        self.ask(Request::ActorNames).await
    }

    /// Every change of the incident at the prompt, verified.
    pub async fn log(&self) -> Result<Vec<LogEntry>, NotebookError> {
        self.ask(Request::Log).await
    }

    /// What the prompt completes: incident ids, the items of the incident
    /// at the prompt, its conflicting fields.
    pub async fn completions(&self) -> Result<Completions, NotebookError> {
        self.ask(Request::Completions).await
    }

    /// The settings file.
    pub async fn config(&self) -> Result<Config, NotebookError> {
        self.ask(Request::Config).await
    }

    /// Saves the settings file.
    pub async fn save_config(&self, config: Config) -> Result<(), NotebookError> {
        self.ask(|r| Request::SaveConfig(config, r)).await
    }

    /// The next sync message of `incident` for `peer` (hex key).
    pub async fn sync_message_for(
        &self,
        incident: String,
        peer: String,
    ) -> Result<Option<SignedSyncMessage>, NotebookError> {
        self.ask(|r| Request::SyncMessage(incident, peer, r)).await
    }

    /// Verifies and applies a sync message from `peer`; with `answer`, also
    /// returns the next message for it.
    pub async fn receive_sync(
        &self,
        incident: String,
        peer: String,
        message: SignedSyncMessage,
        answer: bool,
    ) -> Result<Received, NotebookError> {
        self.ask(|reply| Request::ReceiveSync {
            incident,
            peer,
            message,
            answer,
            reply,
        })
        .await
    }

    /// A peer went away or a dialogue broke off: start afresh next time.
    pub fn peer_gone(&self, peer: String) {
        self.tell(Request::PeerGone(peer));
    }

    /// The join secret of a loaded incident.
    pub async fn join_secret(&self, incident: String) -> Result<Vec<u8>, NotebookError> {
        self.ask(|r| Request::JoinSecret(incident, r)).await
    }

    /// Adds `key` as `name` to the roster of `incident` (if not there yet)
    /// and returns the incident's whole signed history for it. A single-use
    /// invite is refused if it admitted another key before (here, across
    /// restarts), and recorded durably before anyone is admitted with it.
    pub async fn admit(
        &self,
        incident: String,
        key: String,
        name: String,
        once: Option<SingleUse>,
    ) -> Result<SignedRuns, NotebookError> {
        self.ask(|r| Request::Admit(incident, key, name, once, r))
            .await
    }

    /// Stores an incident received whole (joining), verified, and puts it
    /// at the prompt; returns its id.
    pub async fn adopt(&self, changes: SignedRuns) -> Result<String, NotebookError> {
        self.ask(|r| Request::Adopt(changes, r)).await
    }

    /// The address book.
    pub async fn address_book(&self) -> Result<AddressBook, NotebookError> {
        self.ask(Request::AddressBook).await
    }

    /// Records where a member (hex key) can be reached.
    pub fn learn_addresses(&self, key: String, addresses: Vec<String>) {
        self.tell(Request::Learn(key, addresses));
    }

    /// Peers rejected for hostile input, kept across restarts.
    pub async fn blocked(&self) -> Result<Blocked, NotebookError> {
        self.ask(Request::Blocked).await
    }

    /// Remembers that `peer` was rejected, and why.
    pub fn block(&self, peer: String, reason: String) {
        self.tell(Request::Block(peer, reason));
    }

    /// Forgets a rejection.
    pub async fn unblock(&self, peer: String) -> Result<(), NotebookError> {
        self.ask(|r| Request::Unblock(peer, r)).await
    }

    /// `doctor`: verifies every file, repairs what loading repairs, and
    /// names the changes that must come from members.
    pub async fn doctor(&self) -> Result<crate::Report, NotebookError> {
        self.ask(Request::Doctor).await
    }

    /// Saves sync states, writes snapshots of grown journals and stops the
    /// thread.
    pub async fn shutdown(&self) -> Result<(), NotebookError> {
        self.ask(Request::Shutdown).await
    }
}

/// Asks the notebook thread for a scrub every `every`, when its queue has
/// room (a busy notebook skips a round); ends when the notebook is gone.
fn spawn_scrub_ticker(tx: mpsc::WeakSender<(Instant, Request)>, every: std::time::Duration) {
    let spawned = std::thread::Builder::new()
        .name("notebook-scrub".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(tx) = tx.upgrade() else { return };
            if let Err(mpsc::error::TrySendError::Closed(_)) =
                tx.try_send((Instant::now(), Request::Scrub))
            {
                return;
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no background scrub: {e}");
    }
}

struct Actor {
    /// This device in timing events.
    label: String,
    nb: Notebook,
    publish: watch::Sender<Published>,
    /// Remote edits, told as they are taken in.
    remote: broadcast::Sender<RemoteEvent>,
    /// Loaded on first use.
    book: Option<AddressBook>,
}

impl Actor {
    fn run(mut self, mut rx: mpsc::Receiver<(Instant, Request)>) {
        // Incidents not at the prompt are loaded while no request waits, so
        // the prompt comes first and every incident is synced soon after.
        let mut to_load: Vec<String> = self
            .nb
            .data()
            .incidents()
            .unwrap_or_default()
            .into_iter()
            .filter(|id| self.nb.held(id).is_none())
            .collect();
        loop {
            let (queued_at, request) = match rx.try_recv() {
                Ok(r) => r,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if let Some(id) = to_load.pop() {
                        match self.nb.ensure_loaded(&id) {
                            Ok(warnings) => {
                                for w in warnings {
                                    tracing::warn!("incident {id}: {w}");
                                }
                                self.publish();
                            }
                            Err(e) => tracing::warn!("incident {id} is not synced: {e}"),
                        }
                        continue;
                    }
                    match rx.blocking_recv() {
                        Some(r) => r,
                        None => break,
                    }
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            };
            if let Request::Shutdown(reply) = request {
                let _ = reply.send(self.shutdown());
                return;
            }
            let start = Instant::now();
            let timed = tracing::enabled!(target: TIMING, tracing::Level::TRACE)
                .then(|| (request.name(), label(request.peer()).to_string()));
            self.serve(request);
            if let Some((req, peer)) = timed {
                tracing::trace!(
                    target: TIMING,
                    node = self.label.as_str(),
                    req,
                    peer,
                    queued_us = (start - queued_at).as_micros() as u64,
                    served_us = start.elapsed().as_micros() as u64,
                    "served"
                );
            }
        }
        if let Err(e) = self.shutdown() {
            tracing::error!("notebook shutdown: {e}");
        }
    }

    fn shutdown(&mut self) -> Result<(), NotebookError> {
        self.nb.save_sync_states()?;
        self.nb.compact_if(compact_at_exit())
    }

    /// Publishes what others read without asking, if it changed.
    fn publish(&mut self) {
        let current = self.nb.current().and_then(|o| {
            let inc = o.incident();
            Some(Current {
                id: inc.id().ok()?.to_string(),
                status: inc.status().to_string(),
                title: inc.title(),
                standing: inc.standing(),
            })
        });
        let rosters = self
            .nb
            .held_ids()
            .into_iter()
            .filter_map(|id| {
                let names = crate::roster_names(self.nb.held(&id)?.incident().doc());
                let mut members: Vec<Member> = names
                    .into_iter()
                    .map(|(key, name)| Member { key, name })
                    .collect();
                members.sort_by(|a, b| a.key.cmp(&b.key));
                Some((id, members))
            })
            .collect();
        let ids = self.nb.held_ids();
        let waiting = ids
            .iter()
            .map(|id| (id.clone(), self.nb.missing_changes(id).len()))
            .filter(|(_, n)| *n > 0)
            .collect();
        let scrub = ids
            .iter()
            .map(|id| (id.clone(), self.nb.scrub_findings(id).to_vec()))
            .filter(|(_, f)| !f.is_empty())
            .collect();
        let next = Published {
            current,
            rosters,
            waiting,
            scrub,
        };
        self.publish.send_if_modified(|p| {
            if *p == next {
                false
            } else {
                *p = next;
                true
            }
        });
    }

    fn book(&mut self) -> &mut AddressBook {
        let data = self.nb.data();
        self.book.get_or_insert_with(|| {
            let (book, warning) = data.address_book();
            if let Some(w) = warning {
                tracing::warn!("{w}");
            }
            book
        })
    }

    fn serve(&mut self, request: Request) {
        let nb = &mut self.nb;
        match request {
            Request::Create(title, sev, reply) => {
                let r = nb.create(&title, sev).and_then(|applied| {
                    let incident = nb.current_id()?.to_string();
                    Ok(EditDone {
                        applied,
                        short: None,
                        incident,
                    })
                });
                self.answer(reply, r);
            }
            Request::Open(typed, reply) => {
                let r = nb
                    .open_incident(&typed)
                    .and_then(|w| Ok((w, nb.incident()?.view()?)));
                self.answer(reply, r);
            }
            Request::Edit(edit, reply) => {
                let r = nb.edit(edit).and_then(|applied| {
                    let inc = nb.incident()?;
                    Ok(EditDone {
                        short: applied.id.as_ref().map(|id| inc.short(id)),
                        incident: inc.id()?.to_string(),
                        applied,
                    })
                });
                self.answer(reply, r);
            }
            Request::Incidents(reply) => {
                let r = nb.incidents();
                self.answer(reply, r);
            }
            Request::Similar(reply) => {
                let r = nb.similar();
                self.answer(reply, r);
            }
            Request::View(reply) => {
                let r = nb
                    .current()
                    .ok_or(NotebookError::NoIncident)
                    .and_then(|o| Ok((o.incident().view()?, o.bad_signatures())));
                self.answer(reply, r);
            }
            Request::Export(reply) => {
                let r = nb.incident().and_then(|i| {
                    Ok((
                        i.id()?.to_string(),
                        dontpanic_incident::export::without_secrets(i.doc()),
                    ))
                });
                self.answer(reply, r);
            }
            Request::Heads(incident, reply) => {
                let r = nb
                    .ensure_loaded(&incident)
                    .map(|_| nb.held(&incident).map(|o| o.incident().doc().get_heads()))
                    .and_then(|h| h.ok_or(NotebookError::UnknownIncident(incident)));
                self.answer(reply, r);
            }
            Request::ActorNames(reply) => {
                let r = nb.actor_names();
                self.answer(reply, r);
            }
            Request::Log(reply) => {
                let r = nb.log();
                self.answer(reply, r);
            }
            Request::Completions(reply) => {
                let found = nb.completions();
                self.answer(reply, Ok(found));
            }
            Request::Config(reply) => {
                let r = nb.data().config().map_err(Into::into);
                self.answer(reply, r);
            }
            Request::SaveConfig(config, reply) => {
                let r = nb.data().save_config(&config).map_err(Into::into);
                self.answer(reply, r);
            }
            Request::SyncMessage(incident, peer, reply) => {
                let r = nb
                    .ensure_loaded(&incident)
                    .and_then(|_| nb.sync_message_for(&incident, &peer));
                self.answer(reply, r);
            }
            Request::ReceiveSync {
                incident,
                peer,
                message,
                answer,
                reply,
            } => {
                let r = receive(
                    nb,
                    &self.remote,
                    &self.label,
                    &incident,
                    &peer,
                    message,
                    answer,
                );
                self.answer(reply, r);
            }
            Request::PeerGone(peer) => {
                if let Err(e) = nb.peer_gone(&peer) {
                    tracing::warn!("saving sync states: {e}");
                }
            }
            Request::JoinSecret(incident, reply) => {
                let r = nb.ensure_loaded(&incident).and_then(|_| {
                    nb.held(&incident)
                        .and_then(|o| o.incident().join_secret())
                        .filter(|s| !s.is_empty())
                        .ok_or(NotebookError::UnknownIncident(incident))
                });
                self.answer(reply, r);
            }
            Request::Admit(incident, key, name, once, reply) => {
                let r = admit(nb, &incident, key, name, once);
                self.answer(reply, r);
            }
            Request::Adopt(changes, reply) => {
                let r = nb.adopt(changes);
                self.answer(reply, r);
            }
            Request::AddressBook(reply) => {
                let book = self.book().clone();
                self.answer(reply, Ok(book));
            }
            Request::Learn(key, addresses) => {
                if self.book().learn(&key, &addresses, now_ms()) {
                    let book = self.book().clone();
                    if let Err(e) = self.nb.data().save_address_book(&book) {
                        tracing::warn!("address book not saved: {e}");
                    }
                }
            }
            Request::Blocked(reply) => {
                let (blocked, warning) = self.nb.data().blocked();
                if let Some(w) = warning {
                    tracing::warn!("{w}");
                }
                self.answer(reply, Ok(blocked));
            }
            Request::Block(peer, reason) => {
                let data = self.nb.data();
                let (mut blocked, _) = data.blocked();
                if blocked.len() >= BLOCKED_KEPT {
                    if let Some(oldest) = blocked
                        .iter()
                        .min_by_key(|(_, v)| v.0)
                        .map(|(k, _)| k.clone())
                    {
                        blocked.remove(&oldest);
                    }
                }
                blocked.insert(peer, (now_ms(), reason));
                if let Err(e) = data.save_blocked(&blocked) {
                    tracing::warn!("rejected peers not saved: {e}");
                }
            }
            Request::Unblock(peer, reply) => {
                let data = self.nb.data();
                let (mut blocked, _) = data.blocked();
                blocked.remove(&peer);
                let r = data.save_blocked(&blocked).map_err(Into::into);
                self.answer(reply, r);
            }
            Request::Doctor(reply) => {
                let r = nb.doctor();
                self.answer(reply, r);
            }
            Request::Scrub => {
                nb.scrub();
                self.publish();
            }
            Request::Shutdown(_) => unreachable!("handled by run"),
        }
        // Requests without a reply (addresses, a peer gone) change nothing
        // published; the others published before answering.
    }

    /// Publishes first, so whoever gets the answer also sees its effect.
    fn answer<T>(&mut self, reply: Reply<T>, result: Result<T, NotebookError>) {
        self.publish();
        let _ = reply.send(result);
    }
}

/// Takes in a sync message: its edits are told as soon as they are
/// verified, then stored; an edit told that could not be stored is said.
fn receive(
    nb: &mut Notebook,
    remote: &broadcast::Sender<RemoteEvent>,
    node: &str,
    incident: &str,
    peer: &str,
    message: SignedSyncMessage,
    answer: bool,
) -> Result<Received, NotebookError> {
    nb.ensure_loaded(incident)?;
    let before = conflict_fields(nb, incident);
    let heads = |nb: &Notebook| nb.held(incident).map(|o| o.incident().doc().get_heads());
    let heads_before = heads(nb);
    let mut shown: Option<Vec<RemoteEdit>> = None;
    let received = nb.receive_sync_shown(incident, peer, message, |edits| {
        tracing::trace!(target: TIMING, node, edits = edits.len(), "verified");
        // No subscriber is no error: nobody is watching.
        let _ = remote.send(RemoteEvent::Shown {
            incident: incident.to_string(),
            edits: edits.to_vec(),
        });
        shown = Some(edits.to_vec());
    });
    let edits = match received {
        Ok(edits) => edits,
        Err(e) => {
            // The document moves only once the append has succeeded: if it
            // has not moved, what was shown is not stored here.
            if let Some(edits) = shown {
                if heads(nb) == heads_before {
                    let _ = remote.send(RemoteEvent::NotStored {
                        incident: incident.to_string(),
                        edits,
                        error: e.to_string(),
                    });
                }
            }
            return Err(e);
        }
    };
    tracing::trace!(target: TIMING, edits = edits.len(), "stored");
    let new_conflicts = if edits.is_empty() {
        Vec::new()
    } else {
        conflict_fields(nb, incident)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect()
    };
    let answer = if answer {
        nb.sync_message_for(incident, peer)?
    } else {
        None
    };
    Ok(Received {
        edits,
        new_conflicts,
        answer,
    })
}

fn conflict_fields(nb: &Notebook, incident: &str) -> Vec<String> {
    nb.held(incident)
        .map(|o| {
            o.incident()
                .conflicts()
                .into_iter()
                .map(|c| c.field)
                .collect()
        })
        .unwrap_or_default()
}

fn admit(
    nb: &mut Notebook,
    incident: &str,
    key: String,
    name: String,
    once: Option<SingleUse>,
) -> Result<SignedRuns, NotebookError> {
    nb.ensure_loaded(incident)?;
    if nb
        .held(incident)
        .is_some_and(|o| dontpanic_incident::removed_keys(o.incident().doc()).contains(&key))
    {
        return Err(
            dontpanic_incident::RuleError::Removed(dontpanic_incident::fingerprint(&key)).into(),
        );
    }
    if let Some(once) = once {
        nb.use_invite(once, &key)?;
    }
    let on_roster = nb
        .held(incident)
        .is_some_and(|o| o.incident().member_keys().contains(&key));
    if !on_roster {
        nb.edit_in(incident, Edit::AddMember { key, name })?;
    }
    nb.signed_changes(incident)
}

/// Names by Automerge actor, for `conflicts`.
impl Notebook {
    fn actor_names(&self) -> Result<Vec<(String, String)>, NotebookError> {
        let open = self.current().ok_or(NotebookError::NoIncident)?;
        let view = open.incident().view()?;
        let mut out: HashMap<String, String> = HashMap::new();
        for meta in open.incident().doc().get_changes_meta(&[]) {
            let actor = meta.actor.to_hex_string();
            if out.contains_key(&actor) {
                continue;
            }
            // The key its first change names (bound at acceptance).
            if let Some(key) = crate::bound_key(open.incident().doc(), &meta.actor) {
                out.insert(actor, view.name_of(&key.to_string()));
            }
        }
        Ok(out.into_iter().collect())
    }

    fn completions(&self) -> Completions {
        let mut out = Completions {
            incidents: self.data().incidents().unwrap_or_default(),
            ..Completions::default()
        };
        if let Ok(inc) = self.incident() {
            out.items = inc.completions();
            out.conflicts = inc.conflicts().into_iter().map(|c| c.field).collect();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn spawn(dir: &std::path::Path) -> NotebookHandle {
        NotebookHandle::spawn(Notebook::open(dir, Some("alice")).unwrap())
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn requests_are_answered_and_the_state_is_published() {
        let tmp = tempfile::tempdir().unwrap();
        let h = spawn(tmp.path());
        assert!(h.published().current.is_none());
        let done = h
            .blocking(h.create("db down".into(), Severity::Sev1))
            .unwrap();
        let current = h.published().current.unwrap();
        assert_eq!(current.id, done.incident);
        assert_eq!(current.title, "db down");
        let me = h.device().key.to_string();
        assert!(h.published().is_member(&done.incident, &me));
        let note = h
            .blocking(h.edit(Edit::AddNote { text: "n1".into() }))
            .unwrap();
        assert_eq!(note.incident, done.incident);
        let (view, bad) = h.blocking(h.view()).unwrap();
        assert_eq!(bad, 0);
        assert!(view.timeline.iter().any(|e| e.text.contains("n1")));
        h.blocking(h.edit(Edit::SetStatus {
            status: "mitigated".parse().unwrap(),
            because: None,
        }))
        .unwrap();
        assert_eq!(h.published().current.unwrap().status, "mitigated");
        h.blocking(h.shutdown()).unwrap();
        let err = h.blocking(h.view()).unwrap_err();
        assert!(matches!(err, NotebookError::Stopped), "{err}");
    }

    #[test]
    fn every_stored_incident_is_loaded_and_published_after_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let h = spawn(tmp.path());
        let first = h.blocking(h.create("one".into(), Severity::Sev2)).unwrap();
        let second = h.blocking(h.create("two".into(), Severity::Sev2)).unwrap();
        h.blocking(h.shutdown()).unwrap();
        // The thread holds the lock until it has stopped.
        wait_until("the lock to be released", || {
            Notebook::open(tmp.path(), None).is_ok()
        });
        let h = spawn(tmp.path());
        wait_until("both incidents to be published", || {
            let p = h.published();
            p.rosters.contains_key(&first.incident) && p.rosters.contains_key(&second.incident)
        });
        // Only `open` puts one at the prompt.
        assert!(h.published().current.is_none());
        let (_, view) = h
            .blocking(h.open(first.incident.get(..6).expect("ascii id").into()))
            .unwrap();
        assert_eq!(view.title, "one");
        assert_eq!(h.published().current.unwrap().id, first.incident);
    }

    #[test]
    fn sync_of_an_incident_not_at_the_prompt_works_both_ways() {
        let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = spawn(ta.path());
        let b = NotebookHandle::spawn(Notebook::open(tb.path(), Some("bob")).unwrap());
        let x = a
            .blocking(a.create("x".into(), Severity::Sev2))
            .unwrap()
            .incident;
        let bob = b.device().key.to_string();
        let history = a
            .blocking(a.admit(x.clone(), bob.clone(), "bob".into(), None))
            .unwrap();
        assert_eq!(b.blocking(b.adopt(history)).unwrap(), x);
        // Both move on to another incident; x keeps syncing.
        a.blocking(a.create("y".into(), Severity::Sev3)).unwrap();
        b.blocking(b.create("z".into(), Severity::Sev3)).unwrap();
        let alice = a.device().key.to_string();
        // b writes into x through the notebook API as it would at the prompt.
        b.blocking(b.open(x.clone())).unwrap();
        b.blocking(b.edit(Edit::AddNote {
            text: "from bob".into(),
        }))
        .unwrap();
        b.blocking(b.open("z".into())).ok();
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 20, "sync did not converge");
            let from_b = b
                .blocking(b.sync_message_for(x.clone(), alice.clone()))
                .unwrap();
            let from_a = a
                .blocking(a.sync_message_for(x.clone(), bob.clone()))
                .unwrap();
            if from_a.is_none() && from_b.is_none() {
                break;
            }
            if let Some(m) = from_b {
                a.blocking(a.receive_sync(x.clone(), bob.clone(), m, false))
                    .unwrap();
            }
            if let Some(m) = from_a {
                b.blocking(b.receive_sync(x.clone(), alice.clone(), m, false))
                    .unwrap();
            }
        }
        a.blocking(a.open(x.clone())).unwrap();
        let (view, _) = a.blocking(a.view()).unwrap();
        assert!(view.timeline.iter().any(|e| e.text.contains("from bob")));
    }
}
