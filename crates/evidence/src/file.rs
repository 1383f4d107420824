//! Reading a text file as evidence.

use std::io::Read;
use std::path::Path;

use crate::{Capture, EvidenceError, Output};

/// Files larger than this are refused: evidence is an excerpt, and the
/// record keeps only its head and tail anyway.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A text file read as evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextFile {
    /// The file's size in bytes.
    pub bytes: u64,
    /// What is recorded: head and tail, redacted.
    pub output: Output,
}

/// Reads `path` as UTF-8 text of at most [`MAX_FILE_BYTES`]; anything else
/// is an error naming the file, and nothing is kept of it.
pub fn read_text_file(path: &Path) -> Result<TextFile, EvidenceError> {
    let unreadable = |source| EvidenceError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(EvidenceError::NotAFile {
            path: path.to_path_buf(),
            what,
        });
    }
    let too_large = |bytes| EvidenceError::TooLarge {
        path: path.to_path_buf(),
        bytes,
        cap: MAX_FILE_BYTES,
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(meta.len()));
    }
    // Read one byte past the cap: a file that grew since `metadata` is
    // refused too, never cut silently.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let not_text = |why, offset| EvidenceError::NotText {
        path: path.to_path_buf(),
        why,
        offset,
    };
    if let Some(offset) = bytes.iter().position(|b| *b == 0) {
        return Err(not_text("a NUL byte", offset));
    }
    if let Err(e) = std::str::from_utf8(&bytes) {
        return Err(not_text("invalid UTF-8", e.valid_up_to()));
    }
    let mut capture = Capture::new();
    capture.push(&bytes);
    Ok(TextFile {
        bytes: bytes.len() as u64,
        output: capture.finish(),
    })
}
