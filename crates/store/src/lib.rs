//! Crash-safe local storage: the data directory, its lock, the device key and
//! one journal of signed changes per incident.
//!
//! # Brief overview
//!
//! * [`DataDir`] is an opened, locked data directory: one process at a time.
//! * [`Device`] is this machine's key and display name, kept in
//!   `device.key` (owner-only) and `device.json`.
//! * [`Journal`] is an append-only file of [`SignedChange`]s. An append
//!   returns only once the bytes are on disk (`fdatasync`), so an edit the
//!   REPL acknowledged survives `kill -9`. On open every record is checked
//!   (checksum, then signature); damage is reported by file and offset, the
//!   damaged file is kept aside whole, and every valid record is kept.
//!
//! Only this crate touches the disk. It knows signed changes, not what an
//! incident is.
#![deny(missing_docs)]

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
pub use journal::{Damage, Journal, Loaded};
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

    fn key_path(&self) -> PathBuf {
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

    /// Creates the device key (owner-only) and records the name.
    pub fn create_device(&self, name: &str) -> Result<Device, StoreError> {
        let key = create_key(&self.key_path())?;
        self.set_name(name)?;
        Ok(Device {
            key,
            name: name.to_string(),
        })
    }

    /// Changes the display name.
    pub fn set_name(&self, name: &str) -> Result<(), StoreError> {
        let json = serde_json::to_vec(&DeviceFile { name: name.into() }).expect("plain struct");
        write_atomic(&self.root.join("device.json"), &json)
    }

    /// Reads the settings; a missing file is the default.
    pub fn config(&self) -> Result<Config, StoreError> {
        let path = self.root.join("config.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Saves the settings atomically.
    pub fn save_config(&self, config: &Config) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(config).expect("plain struct");
        write_atomic(&self.root.join("config.json"), &json)
    }

    /// Reads a JSON file that is a convenience, not the truth (the address
    /// book, the rejected peers): missing is the default, and a damaged one
    /// is set aside (named in the warning) and started afresh.
    fn read_json_or_default<T: serde::de::DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> (T, Option<String>) {
        let path = self.root.join(name);
        match fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(v) => (v, None),
                Err(e) => {
                    let aside = journal::aside_path(&path);
                    let _ = fs::rename(&path, &aside);
                    let warning = format!(
                        "{}: {e}; set aside as {} and started afresh",
                        path.display(),
                        aside.display()
                    );
                    (T::default(), Some(warning))
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (T::default(), None),
            Err(e) => (T::default(), Some(format!("{}: {e}", path.display()))),
        }
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

    /// Ids of the stored incidents.
    pub fn incidents(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("incidents");
        let mut ids: Vec<String> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(journal::FILE).exists())
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

    /// Opens an incident's journal, checking every record.
    pub fn open_journal(&self, id: &str) -> Result<(Journal, Loaded), StoreError> {
        let path = self.incident_dir(id).join(journal::FILE);
        if !path.exists() {
            return Err(StoreError::UnknownIncident(id.to_string()));
        }
        Journal::open(&path)
    }

    /// Reads the incident's snapshot, if any. A damaged or foreign one is
    /// moved aside whole (never deleted) and reported as the error.
    pub fn read_snapshot(
        &self,
        id: &str,
        sealer: &dontpanic_identity::PublicKey,
    ) -> Result<Option<Snapshot>, StoreError> {
        let path = self.incident_dir(id).join(snapshot::FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        snapshot::read(&path, &bytes, sealer)
            .map(Some)
            .map_err(|e| {
                let aside = path.with_file_name(format!("snapshot.damaged-{}", std::process::id()));
                let _ = fs::rename(&path, &aside);
                StoreError::Corrupt {
                    path: path.clone(),
                    reason: format!("{e}; kept aside as {}", aside.display()),
                }
            })
    }

    /// Replaces the snapshot (sealed with `key`) and starts a new journal:
    /// the snapshot is durable before the journal is rotated, so a crash in
    /// between only leaves changes stored twice; the old journal is kept as
    /// a segment.
    pub fn compact(
        &self,
        id: &str,
        key: &SecretKey,
        snap: &Snapshot,
        journal: &mut Journal,
    ) -> Result<(), StoreError> {
        snapshot::write(&self.incident_dir(id).join(snapshot::FILE), key, snap)?;
        journal.rotate()?;
        sync_dir(&self.incident_dir(id))
    }

    /// Every change in the journal segments already folded into snapshots:
    /// the way back to the whole history when a snapshot is damaged.
    pub fn read_segments(&self, id: &str) -> Result<Loaded, StoreError> {
        let dir = self.incident_dir(id);
        let mut segments: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == journal::SEGMENT))
            .collect();
        segments.sort();
        let mut all = Loaded::default();
        for s in segments {
            let (_, loaded) = Journal::open(&s)?;
            all.changes.extend(loaded.changes);
            all.damage.extend(loaded.damage);
        }
        Ok(all)
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
        let err = data.config().unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
    }
}
