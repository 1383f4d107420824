//! The append-only journal of signed changes, and its recovery on open.
//!
//! File layout: an 8-byte header `DPJOURN2`, then records:
//!
//! ```text
//! magic "DPc2" | payload length u32 LE | crc32(payload) u32 LE | payload
//! payload = kind u8 | [kind 1: signer public key (32) | signature (64)]
//!         | Automerge change bytes
//! ```
//!
//! Kind 1 is a *signed* record; kind 0 a *covered* one: its change is
//! covered (docs/security.md, "Signatures per run") by a later signed
//! record of the same actor in the same file. A batch is appended covered
//! records first, signed ones last, so a torn write can only leave covered
//! records without their signature at the tail: those are reported and
//! dropped as unverifiable, never accepted unverified.
//!
//! The per-record magic lets recovery find the next good record after a
//! damaged one instead of discarding everything that follows.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use automerge::Change;
use dontpanic_identity::{runs, verify_all, ChangeSignature, PublicKey, Signature, SignedChange};

use crate::{io_err, write_atomic, StoreError};

/// The journal's file name inside an incident directory.
pub(crate) const FILE: &str = "journal";
/// Extension of segments: sealed copies of a snapshot generation.
pub(crate) const SEGMENT: &str = "seg";
const HEADER: &[u8; 8] = b"DPJOURN2";
/// The header of the format before signatures per run.
const OLD_HEADER: &[u8; 8] = b"DPJOURN1";
const MAGIC: &[u8; 4] = b"DPc2";
const RECORD_HEAD: usize = 12;
const KIND_COVERED: u8 = 0;
const KIND_SIGNED: u8 = 1;
/// The smallest payload: a kind byte and a change header.
const MIN_PAYLOAD: usize = 1 + 8;

/// One change as the journal keeps it: with its own signature, or covered
/// by a later signed record of its actor in the same file.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The change.
    pub change: Change,
    /// Its signature, if this record is a signed one.
    pub signature: Option<ChangeSignature>,
}

impl Stored {
    /// A record carrying its own signature.
    pub fn signed(c: &SignedChange) -> Stored {
        Stored {
            change: c.change.clone(),
            signature: Some(c.detached()),
        }
    }

    /// The change hash.
    pub fn hash(&self) -> automerge::ChangeHash {
        self.change.hash()
    }
}
/// No legitimate change comes near this; a larger length is damage.
const MAX_PAYLOAD: usize = 64 << 20;

/// A damaged stretch of a journal found on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The journal file.
    pub path: PathBuf,
    /// Byte offset of the damage.
    pub offset: u64,
    /// Length of the damaged stretch in bytes.
    pub len: u64,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} at byte {} ({} bytes)",
            self.path.display(),
            self.reason,
            self.offset,
            self.len
        )
    }
}

/// What opening a journal found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every valid, verified change, in file order.
    pub changes: Vec<Stored>,
    /// Every damaged stretch; empty for a healthy journal.
    pub damage: Vec<Damage>,
    /// Where the damaged original was kept, whole, before the journal was
    /// rewritten with only its valid records.
    pub kept_aside: Option<PathBuf>,
    /// Said about the file as a whole (missing and recreated, a directory
    /// in its place), already acted on.
    pub notes: Vec<String>,
}

/// What a quick structural pass over a journal file found: headers, record
/// magics, lengths and checksums, but no parsing and no signatures. Cheap
/// enough to run over every segment at every open.
#[derive(Debug, Default)]
pub struct Scan {
    /// Records whose checksum holds.
    pub records: usize,
    /// Whether anything else was found (a bad header, a bad record, a tail).
    pub damaged: bool,
    /// Signer keys of the records, as raw bytes, first seen first.
    pub signers: Vec<[u8; 32]>,
}

/// Structural pass over journal bytes; see [`Scan`].
pub(crate) fn scan(buf: &[u8]) -> Scan {
    let mut out = Scan::default();
    if !buf.starts_with(HEADER) {
        out.damaged = true;
        return out;
    }
    let mut pos = HEADER.len();
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < RECORD_HEAD || &rest[..4] != MAGIC {
            out.damaged = true;
            return out;
        }
        let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
        if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) || rest.len() < RECORD_HEAD + len {
            out.damaged = true;
            return out;
        }
        let crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        let payload = &rest[RECORD_HEAD..RECORD_HEAD + len];
        if crc32fast::hash(payload) != crc {
            out.damaged = true;
            return out;
        }
        match payload[0] {
            KIND_SIGNED if len >= 97 + 8 => {
                let signer: [u8; 32] = payload[1..33].try_into().expect("32 bytes");
                if !out.signers.contains(&signer) {
                    out.signers.push(signer);
                }
            }
            KIND_COVERED => {}
            _ => {
                out.damaged = true;
                return out;
            }
        }
        out.records += 1;
        pos += RECORD_HEAD + len;
    }
    out
}

/// Every change of journal bytes that parses, no checksum or signature
/// checked (the start-up roster check only).
pub(crate) fn changes_of(buf: &[u8]) -> Vec<Change> {
    records_of(buf).into_iter().map(|c| c.change).collect()
}

/// Every record of journal bytes that passes its checksum and parses, also
/// those after a damaged one (resynchronising on the record magic), no
/// signature checked: start-up sanity checks only.
pub(crate) fn records_of(buf: &[u8]) -> Vec<Stored> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = buf[at..].windows(4).position(|w| w == MAGIC) {
        let pos = at + found;
        match read_record(&buf[pos..]) {
            Record::Good(c, used) => {
                out.push(*c);
                at = pos + used;
            }
            _ => at = pos + 1,
        }
    }
    out
}

/// An open, append-only journal.
pub struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
    records: usize,
}

fn encode(record: &Stored, out: &mut Vec<u8>) {
    let bytes = record.change.raw_bytes();
    let mut head = Vec::with_capacity(97);
    match &record.signature {
        Some(s) => {
            head.push(KIND_SIGNED);
            head.extend_from_slice(&s.signer.to_bytes());
            head.extend_from_slice(&s.signature.to_bytes());
        }
        None => head.push(KIND_COVERED),
    }
    let payload_len = head.len() + bytes.len();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(bytes);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(bytes);
}

/// Encodes a batch: covered records first, signed ones last, so a torn
/// write leaves only uncovered changes (found and dropped on open).
fn encode_batch(records: &[Stored], out: &mut Vec<u8>) {
    for r in records.iter().filter(|r| r.signature.is_none()) {
        encode(r, out);
    }
    for r in records.iter().filter(|r| r.signature.is_some()) {
        encode(r, out);
    }
}

/// Outcome of reading one record at an offset.
enum Record {
    Good(Box<Stored>, usize),
    Torn,
    Bad(String),
}

fn read_record(buf: &[u8]) -> Record {
    if buf.len() < RECORD_HEAD {
        return Record::Torn;
    }
    if &buf[..4] != MAGIC {
        return Record::Bad("no record starts here".into());
    }
    let len = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
    if !(MIN_PAYLOAD..=MAX_PAYLOAD).contains(&len) {
        return Record::Bad(format!("impossible record length {len}"));
    }
    if buf.len() < RECORD_HEAD + len {
        return Record::Torn;
    }
    let crc = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    let payload = &buf[RECORD_HEAD..RECORD_HEAD + len];
    if crc32fast::hash(payload) != crc {
        return Record::Bad("checksum mismatch".into());
    }
    let (signed, bytes) = match payload[0] {
        KIND_COVERED => (None, &payload[1..]),
        KIND_SIGNED if len >= 97 + 8 => {
            let signer = match PublicKey::from_bytes(&payload[1..33]) {
                Ok(k) => k,
                Err(e) => return Record::Bad(e.to_string()),
            };
            let signature = match Signature::from_bytes(&payload[33..97]) {
                Ok(s) => s,
                Err(e) => return Record::Bad(e.to_string()),
            };
            (Some((signer, signature)), &payload[97..])
        }
        other => return Record::Bad(format!("unknown record kind {other}")),
    };
    match Change::try_from(bytes) {
        Ok(change) => {
            let signature = signed.map(|(signer, signature)| ChangeSignature {
                hash: change.hash(),
                signer,
                signature,
            });
            Record::Good(Box::new(Stored { change, signature }), RECORD_HEAD + len)
        }
        Err(e) => Record::Bad(format!("change does not parse: {e}")),
    }
}

/// Finds the next offset after `from` where a good record starts.
fn resync(buf: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(found) = buf[at..].windows(4).position(|w| w == MAGIC) {
        let candidate = at + found;
        if let Record::Good(..) = read_record(&buf[candidate..]) {
            return candidate;
        }
        at = candidate + 1;
    }
    buf.len()
}

/// Checks journal bytes record by record (header, magic, length, CRC,
/// parsing, then every signature) without touching the file: the valid
/// changes, in file order, and every damaged stretch, by offset.
pub(crate) fn check(path: &Path, buf: &[u8]) -> (Vec<Stored>, Vec<Damage>) {
    let mut found = Vec::new();
    let mut damage = |offset: usize, len: usize, reason: String| {
        found.push(Damage {
            path: path.to_path_buf(),
            offset: offset as u64,
            len: len as u64,
            reason,
        })
    };
    let mut offsets = Vec::new();
    let mut changes = Vec::new();
    let mut pos = if buf.starts_with(HEADER) {
        HEADER.len()
    } else if buf.starts_with(OLD_HEADER) {
        // Nothing of the old format is read as the new one: said once.
        damage(
            0,
            buf.len(),
            "a journal of the older per-change-signature format (DPJOURN1), which this version does not read".into(),
        );
        return (Vec::new(), found);
    } else {
        let next = resync(buf, 0);
        damage(0, next, "missing journal header".into());
        next
    };
    while pos < buf.len() {
        match read_record(&buf[pos..]) {
            Record::Good(change, used) => {
                offsets.push(pos);
                changes.push(*change);
                pos += used;
            }
            // A record running past the end is a torn tail only if no
            // good record follows; otherwise its length was damaged.
            Record::Torn if resync(buf, pos + 1) == buf.len() => {
                damage(
                    pos,
                    buf.len() - pos,
                    "torn record at the end (an interrupted write)".into(),
                );
                break;
            }
            Record::Torn => {
                let next = resync(buf, pos + 1);
                damage(
                    pos,
                    next - pos,
                    "record length runs past a later record".into(),
                );
                pos = next;
            }
            Record::Bad(reason) => {
                let next = resync(buf, pos + 1);
                damage(pos, next - pos, reason);
                pos = next;
            }
        }
    }
    let record_len = |r: &Stored| {
        RECORD_HEAD + 1 + r.change.raw_bytes().len() + if r.signature.is_some() { 96 } else { 0 }
    };
    // Signed records: each signature checked (and the author, where the
    // change names one).
    let signed: Vec<usize> = (0..changes.len())
        .filter(|i| changes[*i].signature.is_some())
        .collect();
    let as_signed: Vec<SignedChange> = signed
        .iter()
        .map(|i| {
            let r: &Stored = &changes[*i];
            let s = r.signature.expect("signed");
            SignedChange::from_parts(r.change.clone(), s.signer, s.signature)
        })
        .collect();
    let mut good = vec![true; changes.len()];
    for (j, err) in verify_all(&as_signed) {
        let i = signed[j];
        damage(
            offsets[i],
            record_len(&changes[i]),
            format!("rejected record: {err}"),
        );
        good[i] = false;
    }
    // Covered records: reached by a good signed record of their actor.
    let batch: Vec<Change> = changes.iter().map(|r| r.change.clone()).collect();
    let heads: Vec<usize> = signed.iter().copied().filter(|i| good[*i]).collect();
    let covered = runs::covered(&batch, &heads);
    for i in 0..changes.len() {
        if good[i] && !covered[i] {
            damage(
                offsets[i],
                record_len(&changes[i]),
                format!(
                    "change {} is covered by no signed record of its actor (a batch cut short?): unverifiable, dropped",
                    changes[i].hash()
                ),
            );
            good[i] = false;
        }
    }
    let mut keep = good.into_iter();
    changes.retain(|_| keep.next().unwrap_or(false));
    found.sort_by_key(|d| d.offset);
    (changes, found)
}

impl Journal {
    /// Creates a journal holding `changes`, durably, where nothing was:
    /// the file is written under a temporary name in the same directory,
    /// synced, then renamed.
    pub(crate) fn create_with(path: &Path, changes: &[Stored]) -> Result<(), StoreError> {
        let mut bytes = HEADER.to_vec();
        encode_batch(changes, &mut bytes);
        write_atomic(path, &bytes)
    }

    /// Creates a new, empty journal (header only, on disk).
    pub fn create(path: &Path) -> Result<Journal, StoreError> {
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        file.write_all(HEADER).map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            len: HEADER.len() as u64,
            records: 0,
        })
    }

    /// Opens a journal, checking every record; see [`Loaded`].
    pub fn open(path: &Path) -> Result<(Journal, Loaded), StoreError> {
        let mut buf = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(io_err(path))?;
        let (changes, damage) = check(path, &buf);
        let mut loaded = Loaded {
            damage,
            ..Loaded::default()
        };
        loaded.changes = changes;
        if !loaded.damage.is_empty() {
            let aside = aside_path(path);
            fs::copy(path, &aside).map_err(io_err(&aside))?;
            // Kept in file order: each change is still covered by the
            // same later signed record.
            let mut clean = HEADER.to_vec();
            for c in &loaded.changes {
                encode(c, &mut clean);
            }
            write_atomic(path, &clean)?;
            loaded.kept_aside = Some(aside);
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        let len = file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
        let records = loaded.changes.len();
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                len,
                records,
            },
            loaded,
        ))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size on disk in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Records in the journal.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Starts the journal afresh, empty, after a snapshot and its segment
    /// twin hold everything it held (written atomically: a crash leaves
    /// either the old journal, whose changes are then held twice, or the
    /// empty one).
    pub(crate) fn restart(&mut self) -> Result<(), StoreError> {
        write_atomic(&self.path, HEADER)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        self.len = HEADER.len() as u64;
        self.records = 0;
        Ok(())
    }

    /// True when the journal holds no record.
    pub fn is_empty(&self) -> bool {
        self.len <= HEADER.len() as u64
    }

    /// Appends a verified batch and returns once it is durable: covered
    /// records first, signed ones last (see the module docs). Every
    /// covered change must be reached by a signed one of its actor in the
    /// batch. On failure the file is cut back so no partial record is left
    /// behind.
    pub fn append(&mut self, changes: &[Stored]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        encode_batch(changes, &mut buf);
        let result = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.records += changes.len();
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(io_err(&self.path)(e))
            }
        }
    }
}

/// A free name beside `path` to keep a damaged file under:
/// `<name>.damaged-<ms>` (with `-<n>` added if that is taken).
pub(crate) fn aside_path(path: &Path) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let base = format!(
        "{}.damaged-{stamp}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or(FILE)
    );
    let mut candidate = path.with_file_name(&base);
    let mut n = 1;
    while fs::symlink_metadata(&candidate).is_ok() {
        candidate = path.with_file_name(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use dontpanic_identity::SecretKey;

    fn changes(n: usize) -> Vec<Stored> {
        let key = SecretKey::generate();
        let mut doc = automerge::AutoCommit::new();
        (0..n)
            .map(|i| {
                doc.put(automerge::ROOT, "n", i as i64).unwrap();
                Stored::signed(&SignedChange::sign(
                    &key,
                    doc.get_last_local_change().unwrap(),
                ))
            })
            .collect()
    }

    /// `n` changes of one actor as one batch: only the last is signed.
    fn batch(n: usize) -> Vec<Stored> {
        let mut all = changes(n);
        for r in &mut all[..n - 1] {
            r.signature = None;
        }
        all
    }

    fn written(n: usize) -> (tempfile::TempDir, PathBuf, Vec<Stored>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut j = Journal::create(&path).unwrap();
        let all = changes(n);
        for c in &all {
            j.append(std::slice::from_ref(c)).unwrap();
        }
        (dir, path, all)
    }

    fn hashes(cs: &[Stored]) -> Vec<automerge::ChangeHash> {
        cs.iter().map(|c| c.hash()).collect()
    }

    #[test]
    fn healthy_journal_round_trips() {
        let (_d, path, all) = written(20);
        let (_, loaded) = Journal::open(&path).unwrap();
        assert!(loaded.damage.is_empty());
        assert_eq!(hashes(&loaded.changes), hashes(&all));
    }

    /// Each case damages a 10-record journal and says which records survive.
    #[test]
    fn damage_is_reported_and_valid_records_survive() {
        type Mangle = fn(&mut Vec<u8>, &[usize]);
        let cases: Vec<(&str, Mangle, Vec<usize>)> = vec![
            (
                "torn tail",
                |b, _| b.truncate(b.len() - 5),
                (0..9).collect(),
            ),
            (
                "flipped byte in record 3",
                |b, o| b[o[3] + 40] ^= 0xff,
                [0, 1, 2, 4, 5, 6, 7, 8, 9].into(),
            ),
            (
                "garbage length in record 0",
                |b, o| b[o[0] + 6] = 0x7f,
                (1..10).collect(),
            ),
            ("lost header", |b, _| b[0] = b'X', (0..10).collect()),
            (
                "forged signature in record 5",
                |b, o| {
                    // Re-sign nothing: swap in record 4's signature and fix the CRC.
                    let (s4, s5) = (o[4] + RECORD_HEAD + 33, o[5] + RECORD_HEAD + 33);
                    let sig: Vec<u8> = b[s4..s4 + 64].to_vec();
                    b[s5..s5 + 64].copy_from_slice(&sig);
                    let len =
                        u32::from_le_bytes(b[o[5] + 4..o[5] + 8].try_into().unwrap()) as usize;
                    let crc = crc32fast::hash(&b[o[5] + RECORD_HEAD..o[5] + RECORD_HEAD + len]);
                    b[o[5] + 8..o[5] + 12].copy_from_slice(&crc.to_le_bytes());
                },
                [0, 1, 2, 3, 4, 6, 7, 8, 9].into(),
            ),
        ];
        for (name, mangle, survivors) in cases {
            let (_d, path, all) = written(10);
            let mut bytes = fs::read(&path).unwrap();
            let original_len = bytes.len();
            let mut offsets = vec![HEADER.len()];
            while offsets.len() < 10 {
                let o = *offsets.last().unwrap();
                let len = u32::from_le_bytes(bytes[o + 4..o + 8].try_into().unwrap()) as usize;
                offsets.push(o + RECORD_HEAD + len);
            }
            mangle(&mut bytes, &offsets);
            fs::write(&path, &bytes).unwrap();
            let (mut journal, loaded) = Journal::open(&path).unwrap();
            assert!(!loaded.damage.is_empty(), "{name}: no damage reported");
            for d in &loaded.damage {
                assert!(
                    d.to_string().contains(&path.display().to_string()),
                    "{name}: {d}"
                );
            }
            let want: Vec<_> = survivors.iter().map(|i| all[*i].hash()).collect();
            assert_eq!(hashes(&loaded.changes), want, "{name}");
            let aside = loaded.kept_aside.expect("original kept aside");
            assert_eq!(fs::read(&aside).unwrap().len(), bytes.len(), "{name}");
            assert!(bytes.len() <= original_len);
            // The rewritten journal is healthy and appendable.
            journal.append(&changes(1)).unwrap();
            let (_, again) = Journal::open(&path).unwrap();
            assert!(again.damage.is_empty(), "{name}: {:?}", again.damage);
            assert_eq!(again.changes.len(), survivors.len() + 1, "{name}");
        }
    }

    /// A batch covered by its last record: whole, it loads; cut anywhere
    /// before its signed record, every change is reported and dropped,
    /// none accepted unverified.
    #[test]
    fn a_covered_batch_stands_or_falls_with_its_signed_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut j = Journal::create(&path).unwrap();
        let all = batch(5);
        j.append(&all).unwrap();
        drop(j);
        let (_, loaded) = Journal::open(&path).unwrap();
        assert!(loaded.damage.is_empty(), "{:?}", loaded.damage);
        assert_eq!(hashes(&loaded.changes), hashes(&all));
        // Torn just before the end of the signed (last) record.
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let (_, loaded) = Journal::open(&path).unwrap();
        assert!(loaded.changes.is_empty(), "{:?}", hashes(&loaded.changes));
        let uncovered = loaded
            .damage
            .iter()
            .filter(|d| d.reason.contains("covered by no signed record"))
            .count();
        assert_eq!(uncovered, 4, "{:?}", loaded.damage);
    }

    #[test]
    fn an_old_format_journal_is_named_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        fs::write(&path, b"DPJOURN1 and some old records").unwrap();
        let (_, loaded) = Journal::open(&path).unwrap();
        assert!(loaded.changes.is_empty());
        assert!(
            loaded.damage[0].to_string().contains("DPJOURN1")
                && loaded.damage[0]
                    .to_string()
                    .contains(&path.display().to_string()),
            "{:?}",
            loaded.damage
        );
    }
}
