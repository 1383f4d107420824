//! `doctor`: every file of every stored incident verified, what the node can
//! repair by itself repaired, and what must come from members named.
//!
//! The checks are the store's read-only ones ([`DataDir::verify`]): journal
//! and segment records (CRC, parsing, signature), the snapshot's checksum,
//! seal and signature table. Repair is what opening an incident already
//! does (damaged files kept aside whole, valid records rewritten, the
//! snapshot rebuilt): an incident with problems is dropped from memory and
//! loaded again, then verified again to say what was repaired. A change
//! whose only copy was damaged cannot be rebuilt here; its hash is known
//! (later changes depend on it) and any member that holds it sends it.
//!
//! The background scrub ([`Notebook::scrub`]) is the cheap part of this,
//! run by the notebook thread every few minutes: a structural pass over the
//! segments, reporting only.
//!
//! [`DataDir::verify`]: dontpanic_store::DataDir::verify

use std::path::PathBuf;

use automerge::{ChangeHash, ReadDoc};

use crate::{Notebook, NotebookError};

/// One problem `doctor` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The incident whose file it is.
    pub incident: String,
    /// The file.
    pub file: PathBuf,
    /// Byte offset of the damage (0 for the file as a whole).
    pub offset: u64,
    /// What is wrong.
    pub problem: String,
    /// Whether it was repaired here (the file no longer shows damage).
    pub repaired: bool,
}

/// What `doctor` found and did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Incidents checked.
    pub incidents: usize,
    /// Every problem, by incident and offset.
    pub problems: Vec<Problem>,
    /// Changes that must come from members, by incident: their only local
    /// copy was damaged and later changes wait for them.
    pub from_peers: Vec<(String, Vec<ChangeHash>)>,
    /// What repairing (loading again) said.
    pub notes: Vec<String>,
}

impl Report {
    /// Whether nothing is wrong and nothing is awaited.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.from_peers.iter().all(|(_, h)| h.is_empty())
    }
}

impl Notebook {
    /// Verifies every file of every stored incident, repairs what loading
    /// repairs, and lists the changes that must come from members.
    pub fn doctor(&mut self) -> Result<Report, NotebookError> {
        let key = self.device.key.public();
        let mut report = Report::default();
        for id in self.data.incidents()? {
            report.incidents += 1;
            let found = self.data.verify(&id, &key)?;
            if found.is_empty() {
                match self.ensure_loaded(&id) {
                    Ok(notes) => report.notes.extend(notes),
                    Err(e) => report.notes.push(format!("incident {id}: {e}")),
                }
            } else {
                // Loading again is the repair: sync states are saved first,
                // the incident is read back from what is on disk.
                if let Err(e) = self.save_sync_states() {
                    tracing::warn!("saving sync states: {e}");
                }
                self.held.remove(&id);
                let loaded = self.load(&id);
                let after = match &loaded {
                    Ok(notes) => {
                        report.notes.extend(notes.iter().cloned());
                        self.data.verify(&id, &key)?
                    }
                    Err(e) => {
                        report.notes.push(format!("incident {id}: {e}"));
                        found.clone()
                    }
                };
                report.problems.extend(found.into_iter().map(|d| Problem {
                    incident: id.clone(),
                    repaired: loaded.is_ok() && !after.iter().any(|a| a.path == d.path),
                    file: d.path,
                    offset: d.offset,
                    problem: d.reason,
                }));
            }
            let missing = self.missing_changes(&id);
            if !missing.is_empty() {
                report.from_peers.push((id.clone(), missing));
            }
        }
        self.scrub();
        Ok(report)
    }

    /// The changes a loaded incident waits for: later changes depend on
    /// them but their only local copy was damaged. Any member that holds
    /// them sends them (Automerge's sync asks for them by hash).
    pub fn missing_changes(&self, id: &str) -> Vec<ChangeHash> {
        self.held
            .get(id)
            .map(|o| o.incident.doc().get_missing_deps(&[]))
            .unwrap_or_default()
    }

    /// The background scrub: a structural pass over every loaded incident's
    /// segments (reporting only; the next open or `doctor` repairs). The
    /// findings replace the previous ones and are kept for `brief`.
    pub fn scrub(&mut self) -> Vec<String> {
        let mut all = Vec::new();
        for id in self.held_ids() {
            let found = match self.data.scrub_segments(&id) {
                Ok(found) => found.iter().map(|d| d.to_string()).collect(),
                Err(e) => vec![e.to_string()],
            };
            for f in &found {
                tracing::warn!("incident {id}: scrub: {f}; run `doctor` to repair");
            }
            all.extend(found.iter().cloned());
            if found.is_empty() {
                self.scrub_findings.remove(&id);
            } else {
                self.scrub_findings.insert(id, found);
            }
        }
        all
    }

    /// What the last background scrub found in an incident's segments.
    pub fn scrub_findings(&self, id: &str) -> &[String] {
        self.scrub_findings
            .get(id)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}
