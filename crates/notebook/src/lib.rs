//! One responder's notebook: the incident model, signed with the device key
//! and journaled to disk.
//!
//! # Brief overview
//!
//! * [`Notebook`] owns the opened [`DataDir`], this device's key and the
//!   incident being worked on. [`Notebook::edit`] applies an [`Edit`],
//!   signs the resulting change and returns only after it is durable.
//! * [`Notebook::accept`] takes changes from elsewhere (a peer, a file): each
//!   must be covered by a valid signature of its actor's key, a roster
//!   member's (one signature per run of an actor's changes:
//!   [`dontpanic_identity::runs`]), before anything is applied or stored.
//! * [`sync`] wraps Automerge's sync protocol so that every message carries
//!   the signatures of the changes inside it.
//!
//! The notebook knows nothing of terminals or networks: it is driven by the
//! REPL and by the node, and returns plain values.
#![deny(missing_docs)]
// Strings here come from peers, files and the prompt: no byte-index slicing.
#![deny(clippy::string_slice)]

pub mod actor;
pub mod doctor;
pub mod sync;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use dontpanic_identity::{
    runs, ChangeSignature, IdentityError, PublicKey, SignedChange, SignedRuns,
};
pub use dontpanic_incident as incident;
use dontpanic_incident::{Applied, Edit, Editor, Incident, RuleError, Severity};
use dontpanic_store::{DataDir, Device, Journal, StoreError, Stored};

pub use actor::{Completions, NotebookHandle, Published};
pub use doctor::{Problem, Report};
pub use dontpanic_store::Damage;

/// Errors from the notebook; they name what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum NotebookError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A rule of the method was broken.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// No incident is open.
    #[error("no incident is open: start one with `new <title>` or `open <id>` (see `incidents`)")]
    NoIncident,
    /// No incident matches the id typed.
    #[error("no incident matches `{0}` (see `incidents`)")]
    UnknownIncident(String),
    /// Several incidents match the prefix typed.
    #[error("`{0}` matches several incidents: {1}")]
    AmbiguousIncident(String, String),
    /// The device has no key yet.
    #[error("this data directory has no device key yet; give --name to create one")]
    NoDevice,
    /// The device key is missing, unreadable or not the one that signed
    /// the history stored here: it is never replaced without a word.
    #[error("{path}: {problem}, but this data directory holds signed history ({incidents} incident(s)). The device key is never replaced silently: restore the original device.key (from a backup), or start a new identity on purpose with --new-identity (the old file is kept aside, the incidents stay readable here, and members must invite the new key before it can edit)")]
    IdentityMismatch {
        /// The key file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
        /// How many incidents hold history.
        incidents: usize,
    },
    /// A change from elsewhere failed verification; nothing was applied.
    #[error("rejected {count} change(s): {reason}")]
    Rejected {
        /// How many changes were in the rejected batch.
        count: usize,
        /// The first reason found.
        reason: String,
    },
    /// Automerge refused the changes.
    #[error("document error: {0}")]
    Document(String),
    /// A single-use invite came back with another key.
    #[error("this single-use invite was already used; ask a member for a new one")]
    InviteUsed,
    /// The notebook thread has stopped.
    #[error("the notebook has stopped")]
    Stopped,
}

impl NotebookError {
    /// Whether the error is the fault of whoever sent the changes (a
    /// verification or document failure), as opposed to a local fault (the
    /// disk, a missing incident) that must never be blamed on a peer.
    pub fn blames_sender(&self) -> bool {
        matches!(
            self,
            NotebookError::Rejected { .. } | NotebookError::Document(_)
        )
    }
}

/// What identifies a single-use invite at admission: its nonce, and its
/// expiry (after which the record of its use may be forgotten).
#[derive(Clone, Copy, Debug)]
pub struct SingleUse {
    /// The invite's random nonce.
    pub nonce: [u8; 16],
    /// When it expires, in ms since the epoch.
    pub expires_ms: u64,
}

/// A change with its verification, as `log` shows it.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// The change hash.
    pub hash: ChangeHash,
    /// The signer's key.
    pub signer: PublicKey,
    /// The signer's roster name, if a member.
    pub name: Option<String>,
    /// Commit time, seconds since the Unix epoch.
    pub time: i64,
    /// The change's summary.
    pub message: String,
    /// Whether the signature checks out.
    pub verified: bool,
}

/// A one-line summary of a stored incident.
#[derive(Clone, Debug)]
pub struct IncidentSummary {
    /// Full id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Severity label.
    pub severity: String,
    /// Status.
    pub status: String,
}

/// A remote change that was accepted, for display.
#[derive(Clone, Debug)]
pub struct RemoteEdit {
    /// Roster name of the signer (or a fingerprint).
    pub author: String,
    /// The change's summary line.
    pub summary: String,
}

/// The incident currently open, with its journal and signature table.
pub struct OpenIncident {
    incident: Incident,
    journal: Journal,
    /// The signatures held: at least, per actor, that of its latest change
    /// (which covers all its earlier ones); also those of the changes that
    /// arrived or were made signed since the last snapshot.
    signatures: HashMap<ChangeHash, ChangeSignature>,
    sync: sync::SyncStates,
    /// Snapshot signatures found bad by the background re-verification.
    bad_signatures: Arc<AtomicUsize>,
    /// Journal bytes from which a snapshot is due: the size of the last
    /// saved document (at least [`COMPACT_BYTES`]), so that the journal
    /// never holds more than one more document's worth on disk.
    compact_at_bytes: u64,
}

impl OpenIncident {
    /// Change signatures of the loaded snapshot that failed re-verification
    /// (counted on a background thread after open).
    pub fn bad_signatures(&self) -> usize {
        self.bad_signatures.load(Ordering::Relaxed)
    }

    /// The incident.
    pub fn incident(&self) -> &Incident {
        &self.incident
    }

    /// The signature of a stored change, if one is held for it (a change
    /// covered by a later one of its actor has none of its own).
    pub fn signature(&self, hash: &ChangeHash) -> Option<&ChangeSignature> {
        self.signatures.get(hash)
    }
}

/// One responder's notebook on one data directory.
pub struct Notebook {
    data: DataDir,
    device: Device,
    /// Every incident loaded so far, by id: all of them stay in sync, not
    /// only the one at the prompt.
    held: HashMap<String, OpenIncident>,
    /// The incident at the prompt.
    current: Option<String>,
    /// What opening the data directory did that the user must hear of.
    start_warnings: Vec<String>,
    /// What the last background scrub found, by incident (see
    /// [`Notebook::scrub`]).
    scrub_findings: HashMap<String, Vec<String>>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Notebook {
    /// Opens the data directory (taking its lock), creating the device key
    /// with `name` on first use. See [`Notebook::open_with`].
    pub fn open(dir: &Path, name: Option<&str>) -> Result<Notebook, NotebookError> {
        Self::open_with(dir, name, false)
    }

    /// Opens the data directory (taking its lock). The device key is
    /// created with `name` on first use only: when incidents are stored and
    /// `device.key` is missing, unreadable, or signed none of them (no seal,
    /// no record, no roster entry), opening is refused with
    /// [`NotebookError::IdentityMismatch`], unless `new_identity` asks for a
    /// new key on purpose (the old file is then kept aside, see
    /// [`Notebook::start_warnings`]).
    pub fn open_with(
        dir: &Path,
        name: Option<&str>,
        new_identity: bool,
    ) -> Result<Notebook, NotebookError> {
        let data = DataDir::open(dir)?;
        let history = data.incidents()?;
        let mut start_warnings = Vec::new();
        let refuse = |problem: String| NotebookError::IdentityMismatch {
            path: data.key_path(),
            problem,
            incidents: history.len(),
        };
        let device = if new_identity {
            let n = name
                .map(str::to_string)
                .or_else(|| data.device_name())
                .ok_or(NotebookError::NoDevice)?;
            let (device, aside) = data.replace_device(&n)?;
            start_warnings.push(format!(
                "started a new identity ({}) on purpose{}",
                device.key.public().fingerprint(),
                aside
                    .map(|a| format!("; the previous key file was kept as {}", a.display()))
                    .unwrap_or_default()
            ));
            device
        } else {
            let found = match data.device() {
                Ok(d) => d,
                Err(e @ StoreError::KeyPermissions { .. }) => return Err(e.into()),
                Err(e) if history.is_empty() => return Err(e.into()),
                Err(StoreError::Corrupt { reason, .. }) => return Err(refuse(reason)),
                Err(e) => return Err(refuse(format!("cannot be read ({e})"))),
            };
            match (found, name) {
                (None, _) if !history.is_empty() => return Err(refuse("missing".into())),
                (Some(mut d), Some(n)) if d.name != n => {
                    data.set_name(n)?;
                    d.name = n.to_string();
                    d
                }
                (Some(d), _) => d,
                (None, Some(n)) => data.create_device(n)?,
                (None, None) => return Err(NotebookError::NoDevice),
            }
        };
        if !new_identity && !history.is_empty() && !knows_key(&data, &history, &device.key.public())
        {
            return Err(refuse(format!(
                "holds key {}, which sealed, signed or is a member of none of the stored incidents (it was replaced?)",
                device.key.public().fingerprint()
            )));
        }
        Ok(Notebook {
            data,
            device,
            held: HashMap::new(),
            current: None,
            start_warnings,
            scrub_findings: HashMap::new(),
        })
    }

    /// What opening the data directory did that the user must hear of (a
    /// new identity started on purpose); taken once.
    pub fn start_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.start_warnings)
    }

    /// Whether `dir` already holds a device key.
    pub fn has_device(dir: &Path) -> bool {
        dir.join("device.key").exists()
    }

    /// The data directory.
    pub fn data(&self) -> &DataDir {
        &self.data
    }

    /// This device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Who edits from this device.
    pub fn editor(&self) -> Editor {
        Editor {
            key: self.device.key.public().to_string(),
            name: self.device.name.clone(),
        }
    }

    /// The incident at the prompt, if any.
    pub fn current(&self) -> Option<&OpenIncident> {
        self.current.as_ref().and_then(|id| self.held.get(id))
    }

    /// The id of the incident at the prompt.
    pub fn current_id(&self) -> Result<&str, NotebookError> {
        self.current.as_deref().ok_or(NotebookError::NoIncident)
    }

    /// The open incident's model.
    pub fn incident(&self) -> Result<&Incident, NotebookError> {
        self.current()
            .map(|o| &o.incident)
            .ok_or(NotebookError::NoIncident)
    }

    /// A loaded incident by full id.
    pub fn held(&self, id: &str) -> Option<&OpenIncident> {
        self.held.get(id)
    }

    /// Ids of every loaded incident.
    pub fn held_ids(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    fn held_mut(&mut self, id: &str) -> Result<&mut OpenIncident, NotebookError> {
        self.held
            .get_mut(id)
            .ok_or_else(|| NotebookError::UnknownIncident(id.to_string()))
    }

    /// Loads a stored incident (if not loaded yet) without putting it at
    /// the prompt; returns the damage found while loading.
    pub fn ensure_loaded(&mut self, id: &str) -> Result<Vec<String>, NotebookError> {
        if self.held.contains_key(id) {
            return Ok(Vec::new());
        }
        self.load(id)
    }

    /// Starts a new incident, stores it and opens it. The incident's
    /// directory appears only once its first record is durable.
    pub fn create(&mut self, title: &str, severity: Severity) -> Result<Applied, NotebookError> {
        let (incident, applied) = Incident::create(title, severity, &self.editor(), now_ms())?;
        let id = incident.id()?.to_string();
        let signed = SignedChange::sign(&self.device.key, applied.change.clone());
        let journal = self.data.create_incident(&id, &[Stored::signed(&signed)])?;
        let signatures = HashMap::from([(signed.hash(), signed.detached())]);
        self.hold(incident, journal, signatures, &id, Arc::default());
        self.make_current(&id)?;
        Ok(applied)
    }

    fn remember_current(&self, id: &str) -> Result<(), NotebookError> {
        let mut config = self.data.config()?;
        if config.current.as_deref() != Some(id) {
            config.current = Some(id.to_string());
            self.data.save_config(&config)?;
        }
        Ok(())
    }

    /// Resolves a typed incident id or unique prefix among stored incidents.
    pub fn resolve_incident(&self, typed: &str) -> Result<String, NotebookError> {
        let typed = typed.trim().to_ascii_lowercase();
        let ids = self.data.incidents()?;
        if ids.contains(&typed) {
            return Ok(typed);
        }
        let matches: Vec<&String> = ids.iter().filter(|i| i.starts_with(&typed)).collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(NotebookError::UnknownIncident(typed)),
            many => Err(NotebookError::AmbiguousIncident(
                typed,
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Puts a stored incident at the prompt, loading it if needed (every
    /// change verified); returns any damage found in its journal (already
    /// reported, kept aside, and repaired).
    pub fn open_incident(&mut self, typed: &str) -> Result<Vec<String>, NotebookError> {
        let id = self.resolve_incident(typed)?;
        let warnings = self.ensure_loaded(&id)?;
        self.make_current(&id)?;
        Ok(warnings)
    }

    /// Loads an incident from whatever of its files survive: the snapshot
    /// is a cache of the segments and the journal, so when it is missing,
    /// damaged, sealed by another key or older than the segments, the
    /// incident is rebuilt from snapshot ∪ segments ∪ journal and a fresh
    /// snapshot is written back; when the segments lack what the snapshot
    /// holds (one damaged or lost), a segment with the whole history is
    /// written. Every finding is returned as a warning naming its file.
    fn load(&mut self, id: &str) -> Result<Vec<String>, NotebookError> {
        let id = id.to_string();
        let sealer = self.device.key.public();
        // The snapshot's document loads (the longest step) on a second
        // thread while the journal and the segments are checked here: they
        // are separate files, and each step only moves its own aside.
        let data = &self.data;
        let (read, journal_opened, segments) = std::thread::scope(|s| {
            let snapshot = s.spawn(|| {
                data.read_snapshot(&id, &sealer)
                    .map(|o| o.map(|snap| (load_sealed(&snap.doc), snap)))
            });
            let journal = data.open_journal(&id);
            let segments = data.check_segments(&id);
            let read = snapshot.join().unwrap_or_else(|_| {
                Err(StoreError::Corrupt {
                    path: data.incident_dir(&id).join("snapshot"),
                    reason: "the snapshot could not be loaded (its reader panicked)".into(),
                })
            });
            (read, journal, segments)
        });
        let (journal, loaded) = journal_opened?;
        let segments = segments?;
        let mut warnings: Vec<String> = loaded.notes.clone();
        warnings.extend(loaded.damage.iter().map(|d| d.to_string()));
        if let Some(aside) = &loaded.kept_aside {
            warnings.push(format!(
                "the damaged journal was kept whole as {}; {} valid change(s) kept",
                aside.display(),
                loaded.changes.len()
            ));
        }
        warnings.extend(segments.warnings.iter().cloned());
        let snapshot_path = self.data.incident_dir(&id).join("snapshot");
        let mut doc = Automerge::new();
        let mut signatures: HashMap<ChangeHash, ChangeSignature> = HashMap::new();
        let bad = Arc::new(AtomicUsize::new(0));
        let mut snapshot_heads: Option<Vec<ChangeHash>> = None;
        let mut snapshot_bytes = 0u64;
        let rebuild: Option<String> = match read {
            Ok(Some((loaded, snap))) => match loaded {
                Ok(loaded_doc) => {
                    doc = loaded_doc;
                    snapshot_heads = Some(doc.get_heads());
                    snapshot_bytes = snap.doc.len() as u64;
                    verify_in_background(id.clone(), snap.signatures.clone(), bad.clone());
                    signatures.extend(snap.signatures.into_iter().map(|s| (s.hash, s)));
                    segments.newest.as_ref().and_then(|(seg, heads)| {
                        let lacking = heads.iter().filter(|h| !holds(&doc, h)).count();
                        (lacking > 0).then(|| {
                            format!(
                                "{}: older than {} ({lacking} of its heads are not in the snapshot)",
                                snapshot_path.display(),
                                seg.display()
                            )
                        })
                    })
                }
                Err(e) => Some(format!(
                    "{}: the document does not load ({e})",
                    snapshot_path.display()
                )),
            },
            Ok(None) if !segments.paths.is_empty() => {
                Some(format!("{}: missing", snapshot_path.display()))
            }
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        };
        if let Some(reason) = &rebuild {
            // The segments hold the whole history the snapshot stood for.
            let mut from = 0;
            for seg in self.data.read_segments(&id)? {
                match segment_doc(&seg, &sealer) {
                    Ok(mut part) => {
                        doc.merge(&mut part).map_err(|e| {
                            NotebookError::Document(format!("{}: {e}", seg.path.display()))
                        })?;
                        signatures.extend(seg.snap.signatures.iter().map(|s| (s.hash, *s)));
                        from += 1;
                    }
                    Err(e) => warnings.push(format!("{}: {e}; not used", seg.path.display())),
                }
            }
            warnings.push(format!(
                "{reason}; rebuilt from {from} segment(s) and {} change(s) in the journal",
                loaded.changes.len()
            ));
        }
        signatures.extend(
            loaded
                .changes
                .iter()
                .filter_map(|c| c.signature.map(|s| (s.hash, s))),
        );
        let in_journal: HashSet<ChangeHash> = loaded.changes.iter().map(|c| c.hash()).collect();
        doc.apply_changes(loaded.changes.into_iter().map(|c| c.change))
            .map_err(|e| NotebookError::Document(format!("{}: {e}", journal.path().display())))?;
        let missing = doc.get_missing_deps(&[]);
        if !missing.is_empty() {
            warnings.push(format!(
                "{}: waiting for {} damaged change(s) from members: later changes build on these missing earlier change(s) and wait (kept); a member that has them sends them",
                journal.path().display(),
                missing.len()
            ));
        }
        // Write back what was rebuilt, so the next start is clean: the
        // segment must hold at least what the snapshot holds, and the
        // snapshot at least what the newest segment holds.
        let segment_heads: Option<HashSet<ChangeHash>> = segments
            .newest
            .as_ref()
            .map(|(_, h)| h.iter().copied().collect());
        let snapshot_heads: Option<HashSet<ChangeHash>> =
            snapshot_heads.map(|h| h.into_iter().collect());
        let segments_short = match (&snapshot_heads, &segment_heads) {
            // The segment and the journal together must hold what the
            // snapshot holds: each snapshot head is a segment head or a
            // journal change (a snapshot rebuilt with the journal in it).
            (Some(snap), Some(seg)) => {
                segments.lost
                    || (rebuild.is_none()
                        && !snap
                            .iter()
                            .all(|h| seg.contains(h) || in_journal.contains(h)))
            }
            (Some(_), None) => true,
            _ => segments.lost,
        };
        let mut wrote_segment = false;
        let whole = (segments_short || rebuild.is_some()).then(|| dontpanic_store::Snapshot {
            doc: doc.save(),
            signatures: head_signatures(&doc, &signatures),
            heads: doc.get_heads(),
        });
        if segments_short && doc.stats().num_changes > 0 {
            let snap = whole.as_ref().expect("built when short");
            match self.data.write_segment(&id, &self.device.key, snap) {
                Ok(path) => {
                    wrote_segment = true;
                    let stale = match (&segments.newest, segments.lost) {
                        (Some((seg, _)), false) => format!(
                            "{}: older than {} (a stale copy)",
                            seg.display(),
                            snapshot_path.display()
                        ),
                        _ => "the segments lacked change(s) the snapshot holds".to_string(),
                    };
                    warnings.push(format!(
                        "{stale}; wrote {} with the whole history ({} changes)",
                        path.display(),
                        doc.stats().num_changes
                    ))
                }
                Err(e) => warnings.push(format!("could not write a whole-history segment: {e}")),
            }
        }
        if rebuild.is_some() || wrote_segment {
            let snap = whole.as_ref().expect("built when rebuilt");
            match self.data.write_snapshot(&id, &self.device.key, snap) {
                Ok(()) => warnings.push(format!(
                    "wrote a fresh snapshot {}",
                    snapshot_path.display()
                )),
                Err(e) => warnings.push(format!("could not write the rebuilt snapshot: {e}")),
            }
        }
        self.hold(Incident::from_doc(doc)?, journal, signatures, &id, bad);
        if let Some(open) = self.held.get_mut(&id) {
            open.compact_at_bytes = snapshot_bytes.max(COMPACT_BYTES);
        }
        Ok(warnings)
    }

    /// Keeps a loaded incident, its changes bound to this device.
    fn hold(
        &mut self,
        mut incident: Incident,
        journal: Journal,
        signatures: HashMap<ChangeHash, ChangeSignature>,
        id: &str,
        bad_signatures: Arc<AtomicUsize>,
    ) {
        incident.set_author(&self.device.key.public().to_bytes());
        self.held.insert(
            id.to_string(),
            OpenIncident {
                incident,
                journal,
                signatures,
                sync: sync::SyncStates::default(),
                bad_signatures,
                compact_at_bytes: COMPACT_BYTES,
            },
        );
    }

    /// Puts a loaded incident at the prompt and remembers it for next start.
    fn make_current(&mut self, id: &str) -> Result<(), NotebookError> {
        self.current = Some(id.to_string());
        self.remember_current(id)
    }

    /// Every stored incident, summarised. Incidents not loaded yet are
    /// loaded (and so checked and healed, see [`Notebook::ensure_loaded`]);
    /// one that cannot be says why in its title.
    pub fn incidents(&mut self) -> Result<Vec<IncidentSummary>, NotebookError> {
        let mut out = Vec::new();
        for id in self.data.incidents()? {
            match self.ensure_loaded(&id) {
                Ok(warnings) => {
                    for w in warnings {
                        tracing::warn!("incident {id}: {w}");
                    }
                }
                Err(e) => {
                    out.push(IncidentSummary {
                        id,
                        title: format!("(unreadable: {e})"),
                        severity: String::new(),
                        status: String::new(),
                    });
                    continue;
                }
            }
            if let Some(open) = self.held.get(&id) {
                out.push(summary_of(&open.incident, &id));
            }
        }
        Ok(out)
    }

    /// Past incidents on this device that resemble the one at the prompt,
    /// most alike first ([`dontpanic_incident::similar::rank`]): every
    /// stored incident but the open one, loaded if it was not yet (and so
    /// checked); one that cannot be loaded is left out and logged. Reads
    /// items only, never timelines, so 100 incidents stay quick.
    pub fn similar(
        &mut self,
    ) -> Result<Vec<dontpanic_incident::similar::Resemblance>, NotebookError> {
        let current = self.current_id()?.to_string();
        let open = self.incident()?.view_without_timeline()?;
        let mut past = Vec::new();
        for id in self.data.incidents()? {
            if id == current {
                continue;
            }
            if let Err(e) = self.ensure_loaded(&id) {
                tracing::warn!("incident {id} left out of `similar`: {e}");
                continue;
            }
            if let Some(held) = self.held.get(&id) {
                past.push(held.incident.view_without_timeline()?);
            }
        }
        Ok(dontpanic_incident::similar::rank(&open, &past))
    }

    /// Applies a local edit: rules, signature, journal, in that order. When
    /// this returns `Ok`, the edit is on disk.
    pub fn edit(&mut self, edit: Edit) -> Result<Applied, NotebookError> {
        let id = self.current_id()?.to_string();
        self.edit_in(&id, edit)
    }

    /// Applies a local edit to a loaded incident (not necessarily the one
    /// at the prompt: admitting a joiner, say).
    pub fn edit_in(&mut self, id: &str, edit: Edit) -> Result<Applied, NotebookError> {
        let editor = self.editor();
        let key = self.device.key.clone();
        let open = self.held_mut(id)?;
        let applied = open.incident.apply(edit, &editor, now_ms())?;
        let signed = SignedChange::sign(&key, applied.change.clone());
        match open.journal.append(&[Stored::signed(&signed)]) {
            Ok(()) => {
                open.signatures.insert(signed.hash(), signed.detached());
                self.compact_incident_if(id, COMPACT_EVERY)?;
                Ok(applied)
            }
            Err(e) => {
                // The change is in memory but not on disk: reload from the
                // journal so memory never runs ahead of what is durable.
                self.held.remove(id);
                if let Err(again) = self.load(id) {
                    tracing::error!("incident {id}: reload after a failed append: {again}");
                }
                Err(e.into())
            }
        }
    }

    /// Folds every loaded incident's journal into a sealed snapshot once it
    /// holds at least `records` changes, so the next open loads one document.
    pub fn compact_if(&mut self, records: usize) -> Result<(), NotebookError> {
        for id in self.held_ids() {
            self.compact_incident_if(&id, records)?;
        }
        Ok(())
    }

    fn compact_incident_if(&mut self, id: &str, records: usize) -> Result<(), NotebookError> {
        let Some(open) = self.held.get_mut(id) else {
            return Ok(());
        };
        if open.journal.records() < records.max(1) && open.journal.len() < open.compact_at_bytes {
            return Ok(());
        }
        let heads = head_signatures(open.incident.doc(), &open.signatures);
        let snap = dontpanic_store::Snapshot {
            doc: open.incident.doc().save(),
            signatures: heads.clone(),
            heads: open.incident.doc().get_heads(),
        };
        self.data
            .compact(id, &self.device.key, &snap, &mut open.journal)?;
        open.compact_at_bytes = (snap.doc.len() as u64).max(COMPACT_BYTES);
        // What the snapshot does not keep is not needed: the heads cover
        // every change.
        open.signatures = heads.into_iter().map(|s| (s.hash, s)).collect();
        Ok(())
    }

    /// Every change of the open incident with its signer and verification.
    pub fn log(&self) -> Result<Vec<LogEntry>, NotebookError> {
        let open = self.current().ok_or(NotebookError::NoIncident)?;
        let view = open.incident.view()?;
        let doc = open.incident.doc();
        // A change is vouched for by the signature of its actor's latest
        // change (held for every actor): checked once per actor here.
        let verified: HashSet<ActorId> = head_signatures(doc, &open.signatures)
            .into_iter()
            .filter(|s| s.verify().is_ok())
            .filter_map(|s| {
                let m = doc.get_change_meta_by_hash(&s.hash)?;
                (bound_key(doc, &m.actor) == Some(s.signer)).then(|| m.actor.into_owned())
            })
            .collect();
        let metas = doc.get_changes_meta(&[]);
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let signer = bound_key(doc, &m.actor)?;
                let key = signer.to_string();
                Some(LogEntry {
                    hash: m.hash,
                    signer,
                    name: view
                        .members
                        .iter()
                        .find(|x| x.key == key)
                        .map(|x| x.name.clone()),
                    time: m.timestamp,
                    message: m.message.map(|s| s.to_string()).unwrap_or_default(),
                    verified: verified.contains(&*m.actor),
                })
            })
            .collect())
    }

    /// Verifies changes from elsewhere and, only if all pass, applies and
    /// stores them. Changes already held are left out; every other one must
    /// be covered by a signature of the batch by its actor's key
    /// ([`runs::verify_runs`]), and that key must be a roster member's,
    /// where members added by other changes in the same batch count.
    pub fn accept(
        &mut self,
        id: &str,
        changes: SignedRuns,
    ) -> Result<Vec<RemoteEdit>, NotebookError> {
        self.accept_shown(id, changes, |_| {})
    }

    /// [`Notebook::accept`], calling `shown` with the edits once every
    /// check has passed and before they are journaled: a verified remote
    /// edit can be shown at once (its origin already holds it durably)
    /// while the append follows. Not called when nothing new passed.
    pub fn accept_shown(
        &mut self,
        id: &str,
        changes: SignedRuns,
        shown: impl FnOnce(&[RemoteEdit]),
    ) -> Result<Vec<RemoteEdit>, NotebookError> {
        let edits = self.accept_verified(id, changes, shown)?;
        self.compact_incident_if(id, COMPACT_EVERY)?;
        Ok(edits)
    }

    fn accept_verified(
        &mut self,
        id: &str,
        batch: SignedRuns,
        shown: impl FnOnce(&[RemoteEdit]),
    ) -> Result<Vec<RemoteEdit>, NotebookError> {
        let open = self.held_mut(id)?;
        let message_changes = batch.changes.len();
        let doc = open.incident.doc();
        let fresh: Vec<Change> = {
            let mut seen = HashSet::new();
            batch
                .changes
                .into_iter()
                .filter(|c| !holds(doc, &c.hash()) && seen.insert(c.hash()))
                .collect()
        };
        if fresh.is_empty() {
            return Ok(Vec::new());
        }
        let count = fresh.len();
        let reject = |reason: String| NotebookError::Rejected { count, reason };
        let (incoming, sigs) =
            verify_coverage(doc, fresh, &batch.signatures, message_changes).map_err(reject)?;
        check_claimed_authors(&incoming).map_err(reject)?;
        // Every change is checked against the schema and applied on a fork
        // first, in causal order: the journal sees only what passed, and an
        // Automerge-level failure (a duplicate seq, say) is found here.
        let (trial, accepted, waiting) =
            check_covered_batch(doc, incoming, &sigs).map_err(reject)?;
        if !waiting.is_empty() {
            tracing::warn!(
                "incident {id}: {} change(s) set aside until the changes they build on arrive",
                waiting.len()
            );
        }
        if accepted.is_empty() {
            return Ok(Vec::new());
        }
        let names = roster_entries(&trial);
        Self::apply_accepted(open, accepted, &sigs, &names, shown)
    }

    /// Shows, journals, then applies changes that passed every check on a
    /// fork: nothing rejected is ever written. Each actor's latest change
    /// of the batch goes with its signature, the others covered by it.
    fn apply_accepted(
        open: &mut OpenIncident,
        fresh: Vec<Incoming>,
        sigs: &HashMap<ChangeHash, ChangeSignature>,
        signer_names: &HashMap<String, String>,
        shown: impl FnOnce(&[RemoteEdit]),
    ) -> Result<Vec<RemoteEdit>, NotebookError> {
        let edits: Vec<RemoteEdit> = fresh
            .iter()
            .map(|c| RemoteEdit {
                author: signer_names
                    .get(&c.signer.to_string())
                    .cloned()
                    .unwrap_or_else(|| c.signer.fingerprint()),
                summary: c.change.message().unwrap_or_default().to_string(),
            })
            .collect();
        shown(&edits);
        let records: Vec<Stored> = fresh
            .iter()
            .map(|c| Stored {
                change: c.change.clone(),
                signature: sigs.get(&c.hash()).copied(),
            })
            .collect();
        open.journal.append(&records)?;
        open.incident
            .doc_mut()
            .apply_changes(fresh.iter().map(|c| c.change.clone()))
            .map_err(|e| NotebookError::Document(e.to_string()))?;
        open.signatures.extend(
            records
                .iter()
                .filter_map(|r| r.signature.map(|s| (s.hash, s))),
        );
        Ok(edits)
    }

    /// Records that a single-use invite admits `key`, or refuses it if it
    /// already admitted another key. Durable before it returns, so a
    /// restart of this node does not make the invite new again; records of
    /// expired invites are dropped as it writes.
    pub fn use_invite(&mut self, once: SingleUse, key: &str) -> Result<(), NotebookError> {
        let nonce = data_encoding::HEXLOWER.encode(&once.nonce);
        let (mut used, warning) = self.data.used_invites();
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        match used.get(&nonce) {
            Some((_, k)) if k == key => return Ok(()),
            Some(_) => return Err(NotebookError::InviteUsed),
            None => {}
        }
        let now = u64::try_from(now_ms()).unwrap_or(0);
        used.retain(|_, (expires, _)| *expires > now);
        used.insert(nonce, (once.expires_ms, key.to_string()));
        self.data.save_used_invites(&used)?;
        Ok(())
    }

    /// Stores an incident received whole from a peer (joining), after
    /// verifying every change (coverage by its actor's signature,
    /// membership, schema), and opens it.
    pub fn adopt(&mut self, changes: SignedRuns) -> Result<String, NotebookError> {
        let count = changes.len();
        let reject = |reason: String| NotebookError::Rejected { count, reason };
        let empty = Automerge::new();
        let total = changes.changes.len();
        let (incoming, sigs) =
            verify_coverage(&empty, changes.changes, &changes.signatures, total).map_err(reject)?;
        check_claimed_authors(&incoming).map_err(reject)?;
        let (doc, accepted, waiting) =
            check_covered_batch(&empty, incoming, &sigs).map_err(reject)?;
        if let Some(c) = waiting.first() {
            return Err(reject(format!(
                "the history is incomplete: change {} builds on changes that were not sent",
                c.hash()
            )));
        }
        let incident = Incident::from_doc(doc)?;
        let id = incident.id()?.to_string();
        let runs = SignedRuns {
            signatures: accepted
                .iter()
                .filter_map(|c| sigs.get(&c.hash()).copied())
                .collect(),
            changes: accepted.into_iter().map(|c| c.change).collect(),
        };
        if self.data.incidents()?.contains(&id) {
            // Joined again (a new invite, a second device): only what is new
            // goes to the journal, through the verified path.
            self.ensure_loaded(&id)?;
            self.accept(&id, runs)?;
        } else {
            let records: Vec<Stored> = runs
                .changes
                .into_iter()
                .map(|change| Stored {
                    signature: sigs.get(&change.hash()).copied(),
                    change,
                })
                .collect();
            let mut journal = self.data.create_journal(&id)?;
            if let Err(e) = journal.append(&records) {
                drop(journal);
                let _ = std::fs::remove_dir_all(self.data.incident_dir(&id));
                return Err(e.into());
            }
            drop(journal);
            self.load(&id)?;
            // A joined history is a whole document: kept at once as a
            // snapshot and its segment twin, so no damage to one journal
            // record can leave the rest of the history unverifiable.
            self.compact_incident_if(&id, 1)?;
        }
        self.make_current(&id)?;
        Ok(id)
    }

    /// All stored changes of a loaded incident with the signatures that
    /// cover them: per actor, that of its latest change.
    pub fn signed_changes(&self, id: &str) -> Result<SignedRuns, NotebookError> {
        let open = self
            .held
            .get(id)
            .ok_or_else(|| NotebookError::UnknownIncident(id.to_string()))?;
        let doc = open.incident.doc();
        Ok(SignedRuns {
            changes: doc.get_changes(&[]),
            signatures: head_signatures(doc, &open.signatures),
        })
    }
}

/// A change from elsewhere whose coverage was verified, with its actor's key.
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    change: Change,
    signer: PublicKey,
}

impl Incoming {
    fn hash(&self) -> ChangeHash {
        self.change.hash()
    }
}

/// Checks the coverage rule for `fresh` (changes not held by `doc`):
/// returns them with their keys, and the batch's signatures of them, each
/// verified.
fn verify_coverage(
    doc: &Automerge,
    fresh: Vec<Change>,
    signatures: &[ChangeSignature],
    message_changes: usize,
) -> Result<(Vec<Incoming>, HashMap<ChangeHash, ChangeSignature>), String> {
    let keys = runs::verify_runs(&fresh, signatures, message_changes, |a| bound_key(doc, a))
        .map_err(|e| e.to_string())?;
    let hashes: HashSet<ChangeHash> = fresh.iter().map(Change::hash).collect();
    let sigs = signatures
        .iter()
        .filter(|s| hashes.contains(&s.hash))
        .map(|s| (s.hash, *s))
        .collect();
    let incoming = fresh
        .into_iter()
        .zip(keys)
        .map(|(change, signer)| Incoming { change, signer })
        .collect();
    Ok((incoming, sigs))
}

/// [`check_batch`] on a fork of `base`, keeping only what stays covered: a
/// change set aside (its deps not here, its signer not a member yet) may be
/// the signed one that covered earlier changes of its actor; those, and
/// what builds on them, are set aside too, and the rest checked again.
/// Returns the trial document, the changes accepted (in the order applied,
/// each actor's latest signed) and those set aside.
fn check_covered_batch(
    base: &Automerge,
    batch: Vec<Incoming>,
    sigs: &HashMap<ChangeHash, ChangeSignature>,
) -> Result<(Automerge, Vec<Incoming>, Vec<Incoming>), String> {
    let mut set = batch;
    let mut aside = Vec::new();
    loop {
        let mut trial = base.fork();
        let (accepted, waiting) = check_batch(&mut trial, set)?;
        if waiting.is_empty() {
            return Ok((trial, accepted, aside));
        }
        aside.extend(waiting);
        let changes: Vec<Change> = accepted.iter().map(|c| c.change.clone()).collect();
        let signed: Vec<usize> = (0..changes.len())
            .filter(|i| sigs.contains_key(&changes[*i].hash()))
            .collect();
        let covered = runs::covered(&changes, &signed);
        if covered.iter().all(|c| *c) {
            return Ok((trial, accepted, aside));
        }
        let mut dropped: HashSet<ChangeHash> = HashSet::new();
        let mut kept = Vec::with_capacity(accepted.len());
        // In the order applied: a change comes after what it builds on.
        for (c, ok) in accepted.into_iter().zip(covered) {
            if !ok || c.change.deps().iter().any(|d| dropped.contains(d)) {
                dropped.insert(c.hash());
                aside.push(c);
            } else {
                kept.push(c);
            }
        }
        set = kept;
    }
}

/// Whether `doc` holds the change `hash` (by its metadata: no change is
/// rebuilt to answer).
pub(crate) fn holds(doc: &Automerge, hash: &ChangeHash) -> bool {
    doc.get_change_meta_by_hash(hash).is_some()
}

/// The key `doc` binds `actor` to: the author its first change names.
pub(crate) fn bound_key(doc: &Automerge, actor: &ActorId) -> Option<PublicKey> {
    PublicKey::from_bytes(doc.get_author_for_actor(actor)?.as_bytes()).ok()
}

/// Per actor of `doc`, the held signature of its latest change: the
/// signatures that cover the whole document.
pub(crate) fn head_signatures(
    doc: &Automerge,
    held: &HashMap<ChangeHash, ChangeSignature>,
) -> Vec<ChangeSignature> {
    let mut best: HashMap<ActorId, (u64, ChangeSignature)> = HashMap::new();
    for s in held.values() {
        if let Some(m) = doc.get_change_meta_by_hash(&s.hash) {
            let seq = m.seq;
            let e = best.entry(m.actor.into_owned()).or_insert((seq, *s));
            if seq > e.0 {
                *e = (seq, *s);
            }
        }
    }
    best.into_values().map(|(_, s)| s).collect()
}

/// The document of a segment: sealed by this device, loaded as our own
/// snapshot; sealed under an earlier identity, loaded with every hash
/// checked and every change verified by the coverage rule against the
/// signatures it holds.
fn segment_doc(seg: &dontpanic_store::Segment, me: &PublicKey) -> Result<Automerge, String> {
    if seg.sealer == *me {
        return load_sealed(&seg.snap.doc).map_err(|e| e.to_string());
    }
    let doc = Automerge::load(&seg.snap.doc).map_err(|e| e.to_string())?;
    let changes = doc.get_changes(&[]);
    runs::verify_runs(&changes, &seg.snap.signatures, changes.len(), |_| None)
        .map_err(|e| format!("sealed by another key and not covered by its signatures: {e}"))?;
    Ok(doc)
}

/// Loads our own sealed snapshot without Automerge re-hashing every change:
/// its checksum and our seal already vouch for its bytes.
fn load_sealed(bytes: &[u8]) -> Result<Automerge, automerge::AutomergeError> {
    Automerge::load_with_options(
        bytes,
        automerge::LoadOptions::new().verification_mode(automerge::VerificationMode::DontCheck),
    )
}

/// Entries name their author; it must be the key that signed them, so no
/// member can write in another member's name.
fn check_claimed_authors(changes: &[Incoming]) -> Result<(), String> {
    for c in changes {
        let signer = c.signer.to_string();
        let claims = dontpanic_incident::claimed_authors(&c.change);
        if let Some(claimed) = claims.into_iter().find(|k| *k != signer) {
            // Peer-supplied: cut by characters, never by bytes.
            return Err(format!(
                "change {} writes entries in the name of {} but is signed by {}",
                c.hash(),
                dontpanic_incident::fingerprint(&claimed),
                c.signer.fingerprint()
            ));
        }
    }
    Ok(())
}

/// Checks a batch change by change, in causal order, on `trial` (a fork of
/// the document, or an empty one when joining): each must be signed by a
/// member of the roster as it stands before it (members admitted earlier in
/// the batch count; the change that creates the incident is its creator's),
/// pass the incident's schema ([`dontpanic_incident::Validator`]) and apply.
/// Returns the changes that passed, in the order applied, and those that
/// build on changes not here yet (neither applied nor blamed). The first
/// failure rejects the whole batch.
fn check_batch(
    trial: &mut Automerge,
    batch: Vec<Incoming>,
) -> Result<(Vec<Incoming>, Vec<Incoming>), String> {
    let mut validator = dontpanic_incident::Validator::default();
    let mut accepted = Vec::with_capacity(batch.len());
    let mut refused = 0usize;
    let mut pending = batch;
    // Applying one change to Automerge costs time in proportion to the
    // document, so a batch applied change by change costs O(n²). A change
    // that only appends to the timeline can change nothing any later
    // change is checked against (the roster, items, removals, root keys),
    // so such changes are checked against the state before them and
    // applied together; anything else is checked and applied one by one,
    // after whatever was deferred.
    let mut deferred = Deferred::default();
    loop {
        let mut rest = Vec::new();
        let mut progressed = false;
        for c in pending {
            let ready = c
                .change
                .deps()
                .iter()
                .all(|d| deferred.hashes.contains(d) || holds(trial, d));
            if !ready {
                rest.push(c);
                continue;
            }
            let signer = c.signer.to_string();
            let appends_only = timeline_only(trial, &c.change)
                && !dontpanic_incident::removals(trial)
                    .iter()
                    .any(|r| r.key == signer);
            if !appends_only {
                deferred.flush(trial)?;
            }
            let creates = c.change.deps().is_empty() && trial.get_heads().is_empty();
            match membership(trial, &c, &signer) {
                _ if creates => {}
                Membership::Member => {}
                Membership::Stranger => {
                    rest.push(c);
                    continue;
                }
                Membership::Removed => {
                    // Written after its author saw its own removal: refused,
                    // nobody blamed — the sender may be the removed member
                    // itself, reached before the removal reached this node.
                    refused += 1;
                    continue;
                }
            }
            validator
                .check(trial, &c.change, &signer)
                .map_err(|v| format!("change {} by {}: {v}", c.hash(), c.signer.fingerprint()))?;
            if appends_only {
                deferred.hashes.insert(c.hash());
                deferred.changes.push(c.change.clone());
            } else {
                trial
                    .apply_changes([c.change.clone()])
                    .map_err(|e| format!("change {} does not apply: {e}", c.hash()))?;
            }
            accepted.push(c);
            progressed = true;
        }
        pending = rest;
        if !progressed || pending.is_empty() {
            break;
        }
    }
    deferred.flush(trial)?;
    if refused > 0 {
        tracing::warn!(
            "{refused} change(s) by removed members refused: written after their removal"
        );
    }
    let ready = |c: &&Incoming| c.change.deps().iter().all(|d| holds(trial, d));
    if let Some(c) = pending.iter().find(ready) {
        return Err(format!(
            "change {} is signed by {} who is not a member of this incident",
            c.hash(),
            c.signer.fingerprint()
        ));
    }
    Ok((accepted, pending))
}

/// Where the signer of a change stands, for that change.
#[derive(Debug, PartialEq, Eq)]
enum Membership {
    /// On the roster and not removed (or see [`membership`]).
    Member,
    /// Removed, and the change was written after its author saw the removal.
    Removed,
    /// Never on the roster.
    Stranger,
}

/// The membership rule (docs/security.md, "Removing a member"), decided
/// from the change's own history so every node decides the same, whatever
/// order changes arrive in:
///
/// * a change by a removed key is refused if a removal of that key is among
///   its ancestors: its author had seen the removal and wrote on anyway;
/// * one that does not descend from its author's removal was written before
///   the author knew of it, and is accepted wherever it arrives. A rule that
///   looked at what a node happens to hold instead ("accepted only if the
///   remover had seen it") splits honest nodes: one that got the change
///   before the removal keeps it, one that got the removal first refuses it,
///   and every later change of the first that builds on it waits forever at
///   the second. The window this rule leaves is bounded the same way: only a
///   node that does not hold the removal yet syncs with the removed key.
///
/// Concurrent removals follow: two members who remove each other apart are
/// both removed on every node that holds both removals.
fn membership(trial: &Automerge, c: &Incoming, signer: &str) -> Membership {
    if !roster_all(trial).contains(signer) {
        return Membership::Stranger;
    }
    let saw_own_removal = dontpanic_incident::removals(trial)
        .into_iter()
        .filter(|r| r.key == signer)
        .filter_map(|r| r.change)
        .any(|h| is_ancestor(trial, h, c.change.deps()));
    if saw_own_removal {
        Membership::Removed
    } else {
        Membership::Member
    }
}

/// Timeline appends checked but not yet applied to the trial document.
#[derive(Default)]
struct Deferred {
    changes: Vec<automerge::Change>,
    hashes: HashSet<ChangeHash>,
}

impl Deferred {
    /// Applies what was deferred, in one batch.
    fn flush(&mut self, trial: &mut Automerge) -> Result<(), String> {
        if self.changes.is_empty() {
            return Ok(());
        }
        let which = match self.changes.as_slice() {
            [one] => format!("change {}", one.hash()),
            [first, ..] => format!(
                "one of {} changes (the first {})",
                self.changes.len(),
                first.hash()
            ),
            [] => String::new(),
        };
        trial
            .apply_changes(std::mem::take(&mut self.changes))
            .map_err(|e| format!("{which} does not apply: {e}"))?;
        self.hashes.clear();
        Ok(())
    }
}

/// Whether every operation of `change` inserts a string into the timeline
/// list that `doc` already has (a note, and nothing else).
fn timeline_only(doc: &Automerge, change: &automerge::Change) -> bool {
    use automerge::legacy::{ObjectId, OpType};
    use automerge::{ObjType, ScalarValue, Value, ROOT};
    let Ok(Some((Value::Object(ObjType::List), timeline))) = doc.get(ROOT, "timeline") else {
        return false;
    };
    let timeline = timeline.to_string();
    let decoded = change.decode();
    !decoded.operations.is_empty()
        && decoded.operations.iter().all(|op| {
            op.insert
                && op.pred.is_empty()
                && matches!(&op.obj, ObjectId::Id(id) if id.to_string() == timeline)
                && matches!(&op.action, OpType::Put(ScalarValue::Str(_)))
        })
}

/// Whether change `anc` is among `heads` or their ancestors in `doc`.
fn is_ancestor(doc: &Automerge, anc: ChangeHash, heads: &[ChangeHash]) -> bool {
    let mut seen: HashSet<ChangeHash> = HashSet::new();
    let mut stack: Vec<ChangeHash> = heads.to_vec();
    while let Some(h) = stack.pop() {
        if h == anc {
            return true;
        }
        if !seen.insert(h) {
            continue;
        }
        if let Some(c) = doc.get_change_meta_by_hash(&h) {
            stack.extend(c.deps.iter().copied());
        }
    }
    false
}

/// Journal records that trigger a snapshot during a session.
pub const COMPACT_EVERY: usize = 10_000;

/// Journal bytes that trigger a snapshot at the least (see
/// `OpenIncident::compact_at_bytes`): small incidents are not re-saved at
/// every few edits.
pub const COMPACT_BYTES: u64 = 512 << 10;

/// Re-checks every signature of a snapshot off the prompt's path: the
/// snapshot's seal already vouches for its content, this catches a signature
/// table that was wrong when it was sealed.
fn verify_in_background(id: String, signatures: Vec<ChangeSignature>, bad: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        let n = signatures.iter().filter(|s| s.verify().is_err()).count();
        if n > 0 {
            tracing::error!("incident {id}: {n} change signature(s) in the snapshot do not verify");
            bad.store(n, Ordering::Relaxed);
        }
    });
}

/// Whether `key` is behind any stored incident: it sealed the snapshot,
/// signed a record, or is on the roster (read without verification: this
/// only guards against a replaced key file).
fn knows_key(data: &DataDir, ids: &[String], key: &PublicKey) -> bool {
    if ids.iter().any(|id| data.signed_by(id, key)) {
        return true;
    }
    let hex = key.to_string();
    ids.iter().any(|id| {
        let sealed = data.peek_sealed(id);
        let mut doc = sealed
            .iter()
            .find_map(|(_, bytes)| load_sealed(bytes).ok())
            .unwrap_or_default();
        let _ = doc.apply_changes(data.unverified_changes(id));
        roster_entries(&doc).contains_key(&hex)
    })
}

fn summary_of(i: &Incident, id: &str) -> IncidentSummary {
    let v = i.view().ok();
    IncidentSummary {
        id: id.to_string(),
        title: v.as_ref().map(|v| v.title.clone()).unwrap_or_default(),
        severity: v
            .as_ref()
            .and_then(|v| v.severity)
            .map(|s| s.label())
            .unwrap_or_default(),
        status: i.status().to_string(),
    }
}

/// Every key ever on the roster, removed members included.
fn roster_all(doc: &Automerge) -> HashSet<String> {
    roster_entries(doc).into_keys().collect()
}

/// The current members (the roster without removed keys) and their names:
/// whom the node syncs with and accepts changes from.
pub(crate) fn roster_names(doc: &Automerge) -> HashMap<String, String> {
    let removed = dontpanic_incident::removed_keys(doc);
    let mut names = roster_entries(doc);
    names.retain(|k, _| !removed.contains(k));
    names
}

fn roster_entries(doc: &Automerge) -> HashMap<String, String> {
    use automerge::{ObjType, ReadDoc, Value, ROOT};
    let Ok(Some((Value::Object(ObjType::Map), roster))) = doc.get(ROOT, "roster") else {
        return HashMap::new();
    };
    doc.keys(&roster)
        .map(|k| {
            let name = match doc.get(&roster, k.as_str()) {
                Ok(Some((Value::Object(_), m))) => match doc.get(&m, "name") {
                    Ok(Some((Value::Scalar(s), _))) => s.as_str().unwrap_or("").to_string(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            (k, name)
        })
        .collect()
}

impl From<IdentityError> for NotebookError {
    fn from(e: IdentityError) -> Self {
        NotebookError::Rejected {
            count: 1,
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
