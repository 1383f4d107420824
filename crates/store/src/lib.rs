//! Crash-safe local storage: the data directory, its lock, the device key and
//! one journal of signed changes per incident.
//!
//! # Brief overview
//!
//! * [`DataDir`] is an opened, locked data directory: one process at a time.
//! * [`Device`] is this machine's key and display name, kept in
//!   `device.key` (owner-only) and `device.json`.
//! * [`Journal`] is an append-only file of [`Stored`] changes, each signed
//!   or covered by a later signed record of its actor. An append
//!   returns only once the bytes are on disk (`fdatasync`), so an edit the
//!   REPL acknowledged survives `kill -9`. On open every record is checked
//!   (checksum, then signature); damage is reported by file and offset, the
//!   damaged file is kept aside whole, and every valid record is kept.
//! * [`Snapshot`] is a cache: the whole document sealed by this device.
//!   Each snapshot is written twice: as `snapshot` and as a segment
//!   (`history-<ms>.seg`, the same sealed format), before the journal starts
//!   afresh; the segment and the live journal are the truth the snapshot
//!   stands for. [`DataDir::check_segments`] says cheaply (checksum, seal,
//!   heads) whether the segment is whole and whether the snapshot is older.
//!
//! Only this crate touches the disk. It knows signed changes, not what an
//! incident is.
#![deny(missing_docs)]
// Strings here come from peers, files and the prompt: no byte-index slicing.
#![deny(clippy::string_slice)]

mod addresses;
mod journal;
mod snapshot;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use dontpanic_identity::SecretKey;
use serde::{Deserialize, Serialize};

pub use addresses::{AddressBook, Whereabouts};
pub use journal::{Damage, Journal, Loaded, Scan, Stored};
pub use snapshot::Snapshot;

/// Storage errors; each names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another process holds the data directory.
    #[error("data directory {path} is in use by another dontpanic process{}; use --data-dir to pick another", holder.as_ref().map(|h| format!(" (pid {h})")).unwrap_or_default())]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// The pid written by the holder, if readable.
        holder: Option<String>,
    },
    /// A file's content is not what it should be.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file can be read by others.
    #[error("{path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// No incident with this id is stored.
    #[error("no incident `{0}` in this data directory (see `incidents`)")]
    UnknownIncident(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// This device's identity.
#[derive(Clone, Debug)]
pub struct Device {
    /// The signing key.
    pub key: SecretKey,
    /// The display name.
    pub name: String,
}

/// Settings remembered between runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// The incident opened last.
    #[serde(default)]
    pub current: Option<String>,
    /// Relay addresses to keep reservations on.
    #[serde(default)]
    pub relays: Vec<String>,
    /// The port listened on last time, tried first at the next start so
    /// members that remember this node's address find it again even when
    /// everyone restarted at once.
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Serialize, Deserialize)]
struct DeviceFile {
    name: String,
}

/// Peers rejected for hostile input: peer id → (ms since the epoch, reason).
pub type Blocked = std::collections::BTreeMap<String, (i64, String)>;

/// Single-use invites this device has admitted through: hex nonce → (the
/// invite's expiry in ms, the hex key it admitted). Kept across restarts so a
/// `--once` invite stays used; entries past their expiry can go.
pub type UsedInvites = std::collections::BTreeMap<String, (u64, String)>;

/// An opened and locked data directory.
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Opens (creating if needed) and locks a data directory.
    pub fn open(root: &Path) -> Result<DataDir, StoreError> {
        fs::create_dir_all(root.join("incidents")).map_err(io_err(root))?;
        let _ = fs::set_permissions(root, fs::Permissions::from_mode(0o700));
        let lock_path = root.join("lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&lock_path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty());
                return Err(StoreError::Locked {
                    path: root.to_path_buf(),
                    holder,
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        lock.set_len(0).map_err(io_err(&lock_path))?;
        write!(lock, "{}", std::process::id()).map_err(io_err(&lock_path))?;
        // An incident being created when the process died was never
        // acknowledged: its temporary directory is removed.
        if let Ok(entries) = fs::read_dir(root.join("incidents")) {
            for e in entries.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with(NEW_PREFIX) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(DataDir {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The REPL history file.
    pub fn history_path(&self) -> PathBuf {
        self.root.join("history")
    }

    /// The device key file.
    pub fn key_path(&self) -> PathBuf {
        self.root.join("device.key")
    }

    /// Loads the device identity, if one was created.
    pub fn device(&self) -> Result<Option<Device>, StoreError> {
        let Some(key) = read_key(&self.key_path())? else {
            return Ok(None);
        };
        let name_path = self.root.join("device.json");
        let name = fs::read(&name_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<DeviceFile>(&b).ok())
            .map(|d| d.name)
            .unwrap_or_else(|| "anonymous".into());
        Ok(Some(Device { key, name }))
    }

    /// The display name recorded in `device.json`, if readable.
    pub fn device_name(&self) -> Option<String> {
        fs::read(self.root.join("device.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<DeviceFile>(&b).ok())
            .map(|d| d.name)
    }

    /// Creates the device key (owner-only) and records the name.
    pub fn create_device(&self, name: &str) -> Result<Device, StoreError> {
        let key = create_key(&self.key_path())?;
        self.set_name(name)?;
        Ok(Device {
            key,
            name: name.to_string(),
        })
    }

    /// Starts a new identity on purpose: an existing `device.key` (whatever
    /// state it is in) is kept aside as `device.key.replaced-<ms>`, never
    /// deleted, and a new key is created. Returns where the old one went.
    pub fn replace_device(&self, name: &str) -> Result<(Device, Option<PathBuf>), StoreError> {
        let path = self.key_path();
        let aside = if fs::symlink_metadata(&path).is_ok() {
            let stamp = now_ms();
            let aside = path.with_file_name(format!("device.key.replaced-{stamp}"));
            fs::rename(&path, &aside).map_err(io_err(&aside))?;
            Some(aside)
        } else {
            None
        };
        Ok((self.create_device(name)?, aside))
    }

    /// Changes the display name.
    pub fn set_name(&self, name: &str) -> Result<(), StoreError> {
        let json = serde_json::to_vec(&DeviceFile { name: name.into() }).expect("plain struct");
        write_atomic(&self.root.join("device.json"), &json)
    }

    /// Reads the settings; a missing file is the default. Settings are not
    /// history: a damaged file is set aside (see [`DataDir::check_config`])
    /// and the defaults are used.
    pub fn config(&self) -> Result<Config, StoreError> {
        let (config, warning) = self.check_config();
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        Ok(config)
    }

    /// Reads the settings, and if `config.json` cannot be read or parsed,
    /// sets it aside as `config.json.damaged-<ms>` and says so, naming both.
    pub fn check_config(&self) -> (Config, Option<String>) {
        let (config, warning) = self.read_json_or_default("config.json");
        let warning = warning.map(|w| {
            format!("{w}; starting with default settings (the incident opened last and the relays are forgotten)")
        });
        (config, warning)
    }

    /// Saves the settings atomically.
    pub fn save_config(&self, config: &Config) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(config).expect("plain struct");
        write_atomic(&self.root.join("config.json"), &json)
    }

    /// Reads a JSON file that is a convenience, not the truth (settings, the
    /// address book, the rejected peers): missing is the default, and one
    /// that cannot be read or parsed is set aside (`<name>.damaged-<ms>`,
    /// named in the warning) and started afresh.
    fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> (T, Option<String>) {
        let path = self.root.join(name);
        let problem = match fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(v) => return (v, None),
                Err(e) => e.to_string(),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (T::default(), None),
            Err(e) => e.to_string(),
        };
        let aside = journal::aside_path(&path);
        let kept = match fs::rename(&path, &aside) {
            Ok(()) => format!("set aside as {}", aside.display()),
            Err(e) => format!("could not be set aside ({e})"),
        };
        (
            T::default(),
            Some(format!("{}: {problem}; {kept}", path.display())),
        )
    }

    /// Reads the address book (a cache of what the network said).
    pub fn address_book(&self) -> (AddressBook, Option<String>) {
        self.read_json_or_default("addresses.json")
    }

    /// Saves the address book atomically.
    pub fn save_address_book(&self, book: &AddressBook) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(book).expect("plain struct");
        write_atomic(&self.root.join("addresses.json"), &json)
    }

    /// Peers rejected for hostile input, by peer id: they stay rejected
    /// across restarts until `unblock`.
    pub fn blocked(&self) -> (Blocked, Option<String>) {
        self.read_json_or_default("blocked.json")
    }

    /// Saves the rejected peers atomically.
    pub fn save_blocked(&self, blocked: &Blocked) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(blocked).expect("plain map");
        write_atomic(&self.root.join("blocked.json"), &json)
    }

    /// Single-use invites already used here (`invites-used.json`).
    pub fn used_invites(&self) -> (UsedInvites, Option<String>) {
        self.read_json_or_default("invites-used.json")
    }

    /// Saves the used single-use invites atomically (and durably: a joiner
    /// is admitted only after this returns).
    pub fn save_used_invites(&self, used: &UsedInvites) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(used).expect("plain map");
        write_atomic(&self.root.join("invites-used.json"), &json)
    }

    /// Ids of the stored incidents: every incident directory holding a
    /// journal, a snapshot or a segment (any one of them is history).
    pub fn incidents(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("incidents");
        let mut ids: Vec<String> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| has_history(&e.path()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The directory of one incident.
    pub fn incident_dir(&self, id: &str) -> PathBuf {
        self.root.join("incidents").join(id)
    }

    /// Creates the journal of a new incident.
    pub fn create_journal(&self, id: &str) -> Result<Journal, StoreError> {
        let dir = self.incident_dir(id);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        sync_dir(&self.root.join("incidents"))?;
        Journal::create(&dir.join(journal::FILE))
    }

    /// Creates a new incident whose journal holds `changes`, atomically: it
    /// is written in a temporary directory, synced, and renamed into place,
    /// so no incident directory exists unless its first records are durable.
    pub fn create_incident(&self, id: &str, changes: &[Stored]) -> Result<Journal, StoreError> {
        let incidents = self.root.join("incidents");
        let dir = self.incident_dir(id);
        if fs::symlink_metadata(&dir).is_ok() {
            return Err(StoreError::Io {
                path: dir,
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        let tmp = incidents.join(format!("{NEW_PREFIX}{id}-{}", std::process::id()));
        let made = fs::create_dir_all(&tmp)
            .map_err(io_err(&tmp))
            .and_then(|_| Journal::create_with(&tmp.join(journal::FILE), changes))
            .and_then(|_| sync_dir(&tmp))
            .and_then(|_| fs::rename(&tmp, &dir).map_err(io_err(&dir)))
            .and_then(|_| sync_dir(&incidents));
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        Ok(Journal::open(&dir.join(journal::FILE))?.0)
    }

    /// Opens an incident's journal, checking every record. A journal that
    /// is missing beside a snapshot or segments is recreated empty, and a
    /// directory in its place is moved aside; both are said in
    /// [`Loaded::notes`].
    pub fn open_journal(&self, id: &str) -> Result<(Journal, Loaded), StoreError> {
        let dir = self.incident_dir(id);
        let path = dir.join(journal::FILE);
        let mut notes = Vec::new();
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                let aside = journal::aside_path(&path);
                fs::rename(&path, &aside).map_err(io_err(&aside))?;
                notes.push(format!(
                    "{}: not a file; moved aside as {} and a new, empty journal started",
                    path.display(),
                    aside.display()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !has_history(&dir) {
                    return Err(StoreError::UnknownIncident(id.to_string()));
                }
                notes.push(format!(
                    "{}: missing; a new, empty journal was started (what only it held must come back from peers)",
                    path.display()
                ));
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
        if !notes.is_empty() {
            drop(Journal::create(&path)?);
            sync_dir(&dir)?;
        }
        let (journal, mut loaded) = Journal::open(&path)?;
        notes.append(&mut loaded.notes);
        loaded.notes = notes;
        Ok((journal, loaded))
    }

    /// Reads the incident's snapshot, if any. A damaged, unreadable or
    /// foreign one (a directory in its place included) is moved aside whole
    /// (never deleted) and reported as the error.
    pub fn read_snapshot(
        &self,
        id: &str,
        sealer: &dontpanic_identity::PublicKey,
    ) -> Result<Option<Snapshot>, StoreError> {
        let path = self.incident_dir(id).join(snapshot::FILE);
        let checked = match fs::read(&path) {
            Ok(bytes) => snapshot::read(&path, &bytes, sealer),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => Err(StoreError::Corrupt {
                path: path.clone(),
                reason: format!("snapshot cannot be read: {e}"),
            }),
        };
        checked.map(Some).map_err(|e| {
            let aside = journal::aside_path(&path);
            let kept = match fs::rename(&path, &aside) {
                Ok(()) => format!("kept aside as {}", aside.display()),
                Err(e) => format!("could not be kept aside: {e}"),
            };
            StoreError::Corrupt {
                path: path.clone(),
                reason: format!("{e}; {kept}"),
            }
        })
    }

    /// The snapshot's sealer key and document, unchecked, for the
    /// start-up question "whose incident is this?" only; `None` if there is
    /// no readable snapshot.
    pub fn peek_snapshot(&self, id: &str) -> Option<([u8; 32], Vec<u8>)> {
        let bytes = fs::read(self.incident_dir(id).join(snapshot::FILE)).ok()?;
        snapshot::peek(&bytes)
    }

    /// Writes a fresh snapshot sealed with `key`, leaving the journal as it
    /// is (its changes are then held twice, which loading tolerates): how a
    /// rebuilt incident is written back so that the next start is clean.
    pub fn write_snapshot(
        &self,
        id: &str,
        key: &SecretKey,
        snap: &Snapshot,
    ) -> Result<(), StoreError> {
        snapshot::write(&self.incident_dir(id).join(snapshot::FILE), key, snap)
    }

    /// Writes a new segment holding `snap` (the whole history, when the
    /// segments were found to lack some of what the snapshot holds), sealed
    /// with `key`, so the snapshot is a cache again. Returns its path.
    pub fn write_segment(
        &self,
        id: &str,
        key: &SecretKey,
        snap: &Snapshot,
    ) -> Result<PathBuf, StoreError> {
        let path = self.new_segment_path(id);
        snapshot::write(&path, key, snap)?;
        Ok(path)
    }

    fn new_segment_path(&self, id: &str) -> PathBuf {
        let dir = self.incident_dir(id);
        let mut stamp = now_ms();
        loop {
            let path = dir.join(format!("{SEGMENT_NAME}-{stamp}.{}", journal::SEGMENT));
            if fs::symlink_metadata(&path).is_err() {
                return path;
            }
            stamp += 1;
        }
    }

    /// The check of every segment run at each open: each is read and its
    /// checksum and seal checked, nothing parsed; a damaged
    /// one, or anything else in a segment's place, is moved aside whole.
    /// The newest segment's heads are returned so the caller can tell
    /// whether the snapshot is older than the segments.
    pub fn check_segments(&self, id: &str) -> Result<SegmentCheck, StoreError> {
        let mut check = SegmentCheck::default();
        for path in self.segment_paths(id)? {
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let read = if meta.is_file() {
                let bytes = fs::read(&path).map_err(io_err(&path))?;
                // A segment sealed under an earlier identity is kept: its
                // changes are then verified by their signatures on rebuild.
                snapshot::read_any(&path, &bytes)
                    .map(|(snap, _)| snap)
                    .map_err(|e| e.to_string())
            } else {
                Err(format!("{}: not a file", path.display()))
            };
            match read {
                Ok(snap) => {
                    check.newest = Some((path.clone(), snap.heads));
                    check.paths.push(path);
                }
                Err(problem) => {
                    let aside = journal::aside_path(&path);
                    fs::rename(&path, &aside).map_err(io_err(&aside))?;
                    check.warnings.push(format!(
                        "{problem}; the segment was kept aside whole as {}",
                        aside.display()
                    ));
                    check.lost = true;
                }
            }
        }
        Ok(check)
    }

    fn segment_paths(&self, id: &str) -> Result<Vec<PathBuf>, StoreError> {
        let dir = self.incident_dir(id);
        let mut segments: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == journal::SEGMENT))
            .collect();
        // `journal-<ms>.seg`: by time, whatever the number of digits.
        segments.sort_by_key(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            (name.as_ref().map(|n| n.len()).unwrap_or(0), name)
        });
        Ok(segments)
    }

    /// Whether `key` signed anything held for this incident: the seal of
    /// the snapshot or of a segment, or a signed record of the journal
    /// (checked by structure only, no signature verification: this is a
    /// start-up sanity check).
    pub fn signed_by(&self, id: &str, key: &dontpanic_identity::PublicKey) -> bool {
        let key = key.to_bytes();
        if self
            .peek_sealed(id)
            .iter()
            .any(|(sealer, _)| *sealer == key)
        {
            return true;
        }
        let journal = self.incident_dir(id).join(journal::FILE);
        // A damaged file stops the quick scan at the damage; the records
        // after it (kept, waiting for the lost change) count too.
        fs::read(journal)
            .map(|b| {
                let scan = journal::scan(&b);
                scan.signers.contains(&key)
                    || (scan.damaged
                        && journal::records_of(&b)
                            .iter()
                            .filter_map(|c| c.signature)
                            .any(|s| s.signer.to_bytes() == key))
            })
            .unwrap_or(false)
    }

    /// The sealer keys and documents of the snapshot and of every segment,
    /// unchecked, for the start-up question "whose incident is this?" only.
    pub fn peek_sealed(&self, id: &str) -> Vec<([u8; 32], Vec<u8>)> {
        let mut files = vec![self.incident_dir(id).join(snapshot::FILE)];
        files.extend(self.segment_paths(id).unwrap_or_default());
        files
            .iter()
            .filter_map(|f| snapshot::peek(&fs::read(f).ok()?))
            .collect()
    }

    /// Every change of an incident's journal, parsed but not verified, for
    /// the start-up roster check only.
    pub fn unverified_changes(&self, id: &str) -> Vec<automerge::Change> {
        fs::read(self.incident_dir(id).join(journal::FILE))
            .map(|b| journal::changes_of(&b))
            .unwrap_or_default()
    }

    /// Replaces the snapshot (sealed with `key`) and starts the journal
    /// afresh. The snapshot is written twice, as a new segment first and
    /// then as `snapshot`, both durable before the journal is emptied, so
    /// any one of the three files may be lost without losing a change: a
    /// crash in between leaves changes held twice, or a segment newer than
    /// the snapshot (found at open, the snapshot rebuilt). Older segments,
    /// each a subset of the new one, are then removed.
    pub fn compact(
        &self,
        id: &str,
        key: &SecretKey,
        snap: &Snapshot,
        journal: &mut Journal,
    ) -> Result<(), StoreError> {
        let older = self.segment_paths(id)?;
        let segment = self.write_segment(id, key, snap)?;
        snapshot::write(&self.incident_dir(id).join(snapshot::FILE), key, snap)?;
        journal.restart()?;
        sync_dir(&self.incident_dir(id))?;
        for old in older.into_iter().filter(|p| *p != segment) {
            if let Err(e) = fs::remove_file(&old) {
                tracing::warn!("{}: could not remove an older segment: {e}", old.display());
            }
        }
        Ok(())
    }

    /// The documents of every segment that passes its checksum and seal,
    /// with the key that sealed each: the way back to the whole history
    /// when a snapshot is damaged, missing or stale.
    pub fn read_segments(&self, id: &str) -> Result<Vec<Segment>, StoreError> {
        let mut out = Vec::new();
        for path in self.segment_paths(id)? {
            if !path.is_file() {
                continue;
            }
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            if let Ok((snap, sealer)) = snapshot::read_any(&path, &bytes) {
                out.push(Segment { path, snap, sealer });
            }
        }
        Ok(out)
    }

    /// Reads a small per-incident file (such as a peer's sync state).
    pub fn read_aux(&self, id: &str, name: &str) -> Option<Vec<u8>> {
        fs::read(self.incident_dir(id).join(name)).ok()
    }

    /// Writes a small per-incident file atomically.
    pub fn write_aux(&self, id: &str, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.incident_dir(id).join(name), bytes)
    }
}

/// Read-only verification, for `doctor` and the background scrub: nothing
/// here moves, rewrites or deletes a file.
impl DataDir {
    /// Verifies every file of an incident without changing any: the
    /// journal and each segment record by record (checksums, parsing,
    /// signatures), the snapshot's checksum and seal (by `sealer`) and every
    /// signature of its table. Each problem names its file and byte offset.
    /// Files kept aside earlier (`*.damaged-*`) are not looked at.
    pub fn verify(
        &self,
        id: &str,
        sealer: &dontpanic_identity::PublicKey,
    ) -> Result<Vec<Damage>, StoreError> {
        let dir = self.incident_dir(id);
        let mut out = Vec::new();
        let whole = |path: &Path, reason: &str| Damage {
            path: path.to_path_buf(),
            offset: 0,
            len: 0,
            reason: reason.to_string(),
        };
        let journal = dir.join(journal::FILE);
        match fs::symlink_metadata(&journal) {
            Ok(m) if m.is_file() => {
                let bytes = fs::read(&journal).map_err(io_err(&journal))?;
                out.extend(journal::check(&journal, &bytes).1);
            }
            Ok(_) => out.push(whole(&journal, "not a file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => out.push(whole(&journal, "missing")),
            Err(e) => return Err(io_err(&journal)(e)),
        }
        let segments = self.segment_paths(id)?;
        let mut sealed = vec![(dir.join(snapshot::FILE), true)];
        sealed.extend(segments.iter().map(|p| (p.clone(), false)));
        for (path, is_snapshot) in sealed {
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => {
                    let bytes = fs::read(&path).map_err(io_err(&path))?;
                    let read = if is_snapshot {
                        snapshot::read(&path, &bytes, sealer)
                    } else {
                        snapshot::read_any(&path, &bytes).map(|(s, _)| s)
                    };
                    match read {
                        Ok(s) => {
                            // The table follows the header, the document and
                            // the count: 128 bytes per entry.
                            let table = 8 + 4 + s.doc.len() as u64 + 4;
                            for (i, sig) in s.signatures.iter().enumerate() {
                                if let Err(e) = sig.verify() {
                                    out.push(Damage {
                                        path: path.clone(),
                                        offset: table + 128 * i as u64,
                                        len: 128,
                                        reason: format!(
                                            "signature of change {} does not verify: {e}",
                                            sig.hash
                                        ),
                                    });
                                }
                            }
                        }
                        Err(StoreError::Corrupt { reason, .. }) => out.push(whole(&path, &reason)),
                        Err(e) => return Err(e),
                    }
                }
                Ok(_) => out.push(whole(&path, "not a file")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if is_snapshot && !segments.is_empty() {
                        out.push(whole(
                            &path,
                            "missing (the segments hold what it stood for)",
                        ));
                    }
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(out)
    }

    /// The background scrub: every segment's checksum and seal checked, as
    /// at open, but reporting only.
    pub fn scrub_segments(&self, id: &str) -> Result<Vec<Damage>, StoreError> {
        let mut out = Vec::new();
        for path in self.segment_paths(id)? {
            let problem = match fs::read(&path) {
                Ok(b) => snapshot::read_any(&path, &b).err().map(|e| match e {
                    StoreError::Corrupt { reason, .. } => reason,
                    e => e.to_string(),
                }),
                Err(e) => Some(format!("cannot be read: {e}")),
            };
            if let Some(reason) = problem {
                out.push(Damage {
                    path: path.clone(),
                    offset: 0,
                    len: 0,
                    reason,
                });
            }
        }
        Ok(out)
    }
}

/// A segment read back: a sealed copy of a snapshot generation.
#[derive(Debug)]
pub struct Segment {
    /// The file.
    pub path: PathBuf,
    /// Its content.
    pub snap: Snapshot,
    /// The key that sealed it (this device's, or an earlier identity's).
    pub sealer: dontpanic_identity::PublicKey,
}

/// What [`DataDir::check_segments`] found.
#[derive(Debug, Default)]
pub struct SegmentCheck {
    /// The segments, oldest first.
    pub paths: Vec<PathBuf>,
    /// Damage found and what was done about it, each naming the file.
    pub warnings: Vec<String>,
    /// Whether some segment lost records (or was moved aside): what it held
    /// must then come from the snapshot (or peers).
    pub lost: bool,
    /// The newest segment and its document's heads.
    pub newest: Option<(PathBuf, Vec<automerge::ChangeHash>)>,
}

const NEW_PREFIX: &str = ".new-";
/// Segments are named `history-<ms>.seg`.
const SEGMENT_NAME: &str = "history";

/// Whether an incident directory holds any history file (a journal, a
/// snapshot or a segment), whatever their state.
fn has_history(dir: &Path) -> bool {
    if fs::symlink_metadata(dir.join(journal::FILE)).is_ok()
        || fs::symlink_metadata(dir.join(snapshot::FILE)).is_ok()
    {
        return true;
    }
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.path().extension().is_some_and(|x| x == journal::SEGMENT))
        })
        .unwrap_or(false)
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Reads a key file written by [`create_key`]; `None` if it does not exist.
/// A key readable by others is refused, naming the file.
pub fn read_key(path: &Path) -> Result<Option<SecretKey>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mode = fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::KeyPermissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let seed = data_from_hex(text.trim()).ok_or_else(|| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: "expected 64 hex digits (a 32-byte ed25519 seed)".into(),
    })?;
    Ok(Some(SecretKey::from_bytes(&seed)))
}

/// Creates a new key file, owner-only, durably; fails if one exists.
pub fn create_key(path: &Path) -> Result<SecretKey, StoreError> {
    let key = SecretKey::generate();
    let hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    writeln!(f, "{hex}").map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(key)
}

fn data_from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Writes a file so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a directory entry (a created or renamed file) durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_of_a_data_dir_is_refused_by_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path())
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(&std::process::id().to_string()));
        drop(first);
        DataDir::open(dir.path()).unwrap();
    }

    #[test]
    fn device_key_is_owner_only_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        assert!(data.device().unwrap().is_none());
        let made = data.create_device("alice").unwrap();
        let mode = fs::metadata(dir.path().join("device.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = data.device().unwrap().unwrap();
        assert_eq!(loaded.key.public(), made.key.public());
        assert_eq!(loaded.name, "alice");
        fs::set_permissions(
            dir.path().join("device.key"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(matches!(
            data.device(),
            Err(StoreError::KeyPermissions { .. })
        ));
    }

    #[test]
    fn config_round_trips_and_garbage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let cfg = Config {
            current: Some("iabc".into()),
            relays: vec!["/ip4/127.0.0.1/tcp/1".into()],
            port: Some(4001),
        };
        data.save_config(&cfg).unwrap();
        assert_eq!(data.config().unwrap(), cfg);
        fs::write(dir.path().join("config.json"), b"{nope").unwrap();
        let (config, warning) = data.check_config();
        assert_eq!(config, Config::default());
        let warning = warning.expect("damage is said");
        assert!(warning.contains("config.json: "), "{warning}");
        assert!(warning.contains("config.json.damaged-"), "{warning}");
        assert!(!dir.path().join("config.json").exists());
        assert_eq!(data.config().unwrap(), Config::default());
    }
}
