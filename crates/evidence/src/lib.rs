//! Evidence for the notebook: what a command printed, or what a text file
//! holds, capped to a size that travels in one change, with strings that
//! look like secrets redacted before anything is recorded.
//!
//! # Brief overview
//!
//! * [`run`] runs a command line in the user's shell (`$SHELL -c`, else
//!   `/bin/sh -c`) in a process group of its own, with a timeout; standard
//!   output and standard error share one pipe, so they stay interleaved as
//!   the command wrote them. The whole group is killed on timeout, on
//!   [`Interrupt`] (Ctrl-C at the prompt) after a grace period, and when
//!   the command ends (so nothing it started in the background is left
//!   behind). Lines are handed to a callback as they come.
//! * [`read_text_file`] reads a text file: a directory, a binary or
//!   non-UTF-8 file, or one over [`MAX_FILE_BYTES`] is refused, naming it.
//! * [`Capture`] keeps the first [`HEAD_BYTES`] and the last [`TAIL_BYTES`]
//!   of a stream and counts what it cut; [`redact`] replaces secrets.
//!
//! This crate knows nothing of incidents, Automerge or terminals: it
//! returns plain text and numbers for the caller to record.
//!
//! ```
//! let (text, n) = dontpanic_evidence::redact("login password=hunter2 ok");
//! assert_eq!((text.as_str(), n), ("login password=[REDACTED] ok", 1));
//! ```
#![deny(missing_docs)]
// Strings here come from commands and files: no byte-index slicing.
#![deny(clippy::string_slice)]

mod capture;
mod file;
mod redact;
mod run;

use std::path::PathBuf;

pub use capture::{Capture, Output, HEAD_BYTES, TAIL_BYTES};
pub use file::{read_text_file, TextFile, MAX_FILE_BYTES};
pub use redact::{redact, REDACTED};
pub use run::{run, shell, Ended, Interrupt, Ran, Stopped, INTERRUPT_GRACE};

/// Why evidence could not be taken; each names the file or command.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file as given.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A directory, a device, a socket...
    #[error("{} is {what}, not a file; attach a text file", path.display())]
    NotAFile {
        /// The path as given.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// Larger than [`MAX_FILE_BYTES`].
    #[error("{} is {bytes} bytes; files over {cap} bytes are not attached (attach an excerpt, e.g. `tail -n 500 FILE > excerpt.txt`)", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The cap.
        cap: u64,
    },
    /// Holds a NUL byte or is not UTF-8: not text.
    #[error("{} is not a text file ({why} at byte {offset}); only UTF-8 text is attached", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
        /// `a NUL byte` or `invalid UTF-8`.
        why: &'static str,
        /// Where, from 0.
        offset: usize,
    },
    /// The shell could not be started.
    #[error("cannot start the shell {shell}: {source}")]
    Spawn {
        /// The shell tried.
        shell: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// Waiting for the command failed.
    #[error("lost track of the command: {0}")]
    Wait(std::io::Error),
}
