//! Evidence attached to an item: what a command printed when a responder
//! ran it, or a text file, recorded once and never changed.
//!
//! Evidence lives in the root map `evidence` (id → map), made by the first
//! evidence recorded, so incidents made before evidence existed need no new
//! container. Two first evidences made concurrently make two maps at that
//! key; both are read (`IncidentView::evidence`), so nothing is lost in a merge.
//!
//! The record is taken elsewhere (capped, secrets redacted); this module
//! only says what a record is, how it is stored and how it reads.

use automerge::{Automerge, ObjType, ReadDoc, ScalarValue, Value, ROOT};

use crate::view::{get_int, get_str};
use crate::{ItemId, Kind, Stopped};

/// The root key of the evidence map.
pub const ROOT_KEY: &str = "evidence";

/// The most text one evidence may hold, in bytes: well under the sync
/// layer's 1 MiB per change, whatever the rest of the change holds.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Exited with this status.
    Exit(i64),
    /// Ended by this signal.
    Signal(i64),
}

/// Where evidence came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A command run in the responder's shell.
    Run {
        /// The command line (redacted).
        command: String,
        /// How it ended.
        ended: Ended,
        /// Whether dontpanic stopped it, and why.
        stopped: Option<Stopped>,
        /// The timeout that applied, ms.
        timeout_ms: i64,
        /// How long it ran, ms.
        duration_ms: i64,
    },
    /// A text file.
    File {
        /// The file as it was named.
        name: String,
        /// Its size in bytes.
        bytes: i64,
    },
}

/// What one evidence records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where it came from.
    pub source: Source,
    /// The text kept: head and tail, secrets redacted.
    pub output: String,
    /// Bytes left out between head and tail.
    pub cut_bytes: i64,
    /// Secrets redacted (in the output and the command line).
    pub redactions: i64,
}

/// Evidence as read from the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// Its id (`e…`).
    pub id: ItemId,
    /// Shortest unique prefix among evidence ids.
    pub short: String,
    /// The full id of the item it is attached to.
    pub of: String,
    /// Hex key of who recorded it.
    pub by: String,
    /// When, ms since the Unix epoch.
    pub at: i64,
    /// What it holds.
    pub record: Record,
}

/// `250 ms`, `1.2 s`, `2 min 5 s`.
pub fn duration_text(ms: i64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

impl Record {
    /// `run` or `file`, as stored.
    pub fn kind(&self) -> &'static str {
        match self.source {
            Source::Run { .. } => "run",
            Source::File { .. } => "file",
        }
    }

    /// What it is, in a few words: `` `dig x` exited 3 after 1.2 s ``,
    /// `file notes.txt (1200 bytes)`. Remote text: make it safe before
    /// showing it.
    pub fn headline(&self) -> String {
        match &self.source {
            Source::Run {
                command,
                stopped: Some(Stopped::Timeout),
                ..
            } => format!("`{command}` {}", self.outcome()),
            Source::Run {
                command,
                duration_ms,
                ..
            } => format!(
                "`{command}` {} after {}",
                self.outcome(),
                duration_text(*duration_ms)
            ),
            Source::File { name, bytes } => format!("file {name} ({bytes} bytes)"),
        }
    }

    /// How a run ended: `exited 3`, `timed out after 2 min 0 s (killed)`,
    /// `stopped by Ctrl-C (signal 2)`, `killed by signal 9`; empty for a file.
    pub fn outcome(&self) -> String {
        let Source::Run {
            ended,
            stopped,
            timeout_ms,
            ..
        } = &self.source
        else {
            return String::new();
        };
        match (stopped, ended) {
            (Some(Stopped::Timeout), _) => {
                format!("timed out after {} (killed)", duration_text(*timeout_ms))
            }
            (Some(Stopped::Interrupt), Ended::Signal(s)) => {
                format!("stopped by Ctrl-C (signal {s})")
            }
            (Some(Stopped::Interrupt), Ended::Exit(c)) => {
                format!("stopped by Ctrl-C (exited {c})")
            }
            (None, Ended::Exit(c)) => format!("exited {c}"),
            (None, Ended::Signal(s)) => format!("killed by signal {s}"),
        }
    }

    /// What was left out or changed: `2 secret(s) redacted; 1200 bytes cut`.
    pub fn notes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.redactions > 0 {
            out.push(format!("{} secret(s) redacted", self.redactions));
        }
        if self.cut_bytes > 0 {
            out.push(format!("{} bytes cut from the middle", self.cut_bytes));
        }
        out
    }

    /// The fields as stored (besides `of`, `by`, `at`).
    pub(crate) fn fields(&self) -> Vec<(&'static str, ScalarValue)> {
        let mut f: Vec<(&'static str, ScalarValue)> = vec![("kind", self.kind().into())];
        match &self.source {
            Source::Run {
                command,
                ended,
                stopped,
                timeout_ms,
                duration_ms,
            } => {
                f.push(("command", command.as_str().into()));
                f.push(match ended {
                    Ended::Exit(c) => ("exit", ScalarValue::Int(*c)),
                    Ended::Signal(s) => ("signal", ScalarValue::Int(*s)),
                });
                if let Some(s) = stopped {
                    f.push(("stopped", s.as_str().into()));
                }
                f.push(("timeout_ms", ScalarValue::Int(*timeout_ms)));
                f.push(("duration_ms", ScalarValue::Int(*duration_ms)));
            }
            Source::File { name, bytes } => {
                f.push(("file", name.as_str().into()));
                f.push(("bytes", ScalarValue::Int(*bytes)));
            }
        }
        f.push(("output", self.output.as_str().into()));
        f.push(("cut_bytes", ScalarValue::Int(self.cut_bytes)));
        f.push(("redactions", ScalarValue::Int(self.redactions)));
        f
    }
}

impl Record {
    /// The stored fields as JSON, for scripts: the same names and values
    /// as in the document; a run's `exit`, `signal` and `stopped` are
    /// `null` when absent.
    pub fn to_json(&self) -> serde_json::Value {
        let mut j = serde_json::Map::new();
        if matches!(self.source, Source::Run { .. }) {
            for k in ["exit", "signal", "stopped"] {
                j.insert(k.into(), serde_json::Value::Null);
            }
        }
        for (k, v) in self.fields() {
            let v = match v {
                ScalarValue::Str(s) => serde_json::Value::from(s.as_str()),
                ScalarValue::Int(i) => serde_json::Value::from(i),
                other => serde_json::Value::from(other.to_string()),
            };
            j.insert(k.into(), v);
        }
        serde_json::Value::Object(j)
    }
}

/// The type of each field an evidence map may hold.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FieldType {
    Str,
    Int,
}

/// The fields of an evidence map and their types (`by` and `at` included).
pub(crate) fn field_type(field: &str) -> Option<FieldType> {
    Some(match field {
        "of" | "by" | "kind" | "command" | "stopped" | "file" | "output" => FieldType::Str,
        "at" | "exit" | "signal" | "timeout_ms" | "duration_ms" | "bytes" | "cut_bytes"
        | "redactions" => FieldType::Int,
        _ => return None,
    })
}

/// Why a set of fields is not a whole evidence record, if it is not:
/// `fields` are (name, string value) for strings, (name, "") for ints.
pub(crate) fn incomplete(fields: &[(String, String)]) -> Option<String> {
    let has = |f: &str| fields.iter().any(|(k, _)| k == f);
    let value = |f: &str| fields.iter().find(|(k, _)| k == f).map(|(_, v)| v.as_str());
    let common = ["of", "kind", "output", "cut_bytes", "redactions"];
    if let Some(f) = common.iter().find(|f| !has(f)) {
        return Some(format!("evidence needs `{f}`"));
    }
    let kind = value("kind").unwrap_or_default();
    let (needed, forbidden): (&[&str], &[&str]) = match kind {
        "run" => (
            &["command", "timeout_ms", "duration_ms"],
            &["file", "bytes"],
        ),
        "file" => (
            &["file", "bytes"],
            &[
                "command",
                "exit",
                "signal",
                "stopped",
                "timeout_ms",
                "duration_ms",
            ],
        ),
        _ => return Some("evidence is of kind `run` or `file`".into()),
    };
    if let Some(f) = needed.iter().find(|f| !has(f)) {
        return Some(format!("{kind} evidence needs `{f}`"));
    }
    if let Some(f) = forbidden.iter().find(|f| has(f)) {
        return Some(format!("{kind} evidence has no `{f}`"));
    }
    if kind == "run" && has("exit") == has("signal") {
        return Some("a run ended either by `exit` or by `signal`".into());
    }
    if let Some(s) = value("stopped") {
        if s.parse::<Stopped>().is_err() {
            return Some("`stopped` is `timeout` or `interrupt`".into());
        }
    }
    if value("output").is_some_and(|o| o.len() > MAX_TEXT_BYTES) {
        return Some(format!("evidence holds at most {MAX_TEXT_BYTES} bytes"));
    }
    None
}

/// The ids of every evidence in the document, without reading their text.
pub(crate) fn ids(doc: &Automerge) -> Vec<String> {
    doc.get_all(ROOT, ROOT_KEY)
        .unwrap_or_default()
        .into_iter()
        .filter(|(v, _)| matches!(v, Value::Object(ObjType::Map)))
        .flat_map(|(_, col)| doc.keys(&col).collect::<Vec<_>>())
        .collect()
}

/// Every evidence in the document, oldest first (every map at `evidence`).
pub(crate) fn read(doc: &Automerge) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (v, col) in doc.get_all(ROOT, ROOT_KEY).unwrap_or_default() {
        if !matches!(v, Value::Object(ObjType::Map)) {
            continue;
        }
        for key in doc.keys(&col) {
            let Some(id) = ItemId::parse(&key).filter(|i| i.kind() == Kind::Evidence) else {
                continue;
            };
            let Ok(Some((Value::Object(ObjType::Map), obj))) = doc.get(&col, key.as_str()) else {
                continue;
            };
            let s = |f: &str| get_str(doc, &obj, f).unwrap_or_default();
            let has = |f: &str| matches!(doc.get(&obj, f), Ok(Some(_)));
            let i = |f: &str| get_int(doc, &obj, f);
            let source = match s("kind").as_str() {
                "run" => Source::Run {
                    command: s("command"),
                    ended: if has("signal") {
                        Ended::Signal(i("signal"))
                    } else {
                        Ended::Exit(i("exit"))
                    },
                    stopped: s("stopped").parse().ok(),
                    timeout_ms: i("timeout_ms"),
                    duration_ms: i("duration_ms"),
                },
                _ => Source::File {
                    name: s("file"),
                    bytes: i("bytes"),
                },
            };
            out.push(Evidence {
                id,
                short: String::new(),
                of: s("of"),
                by: s("by"),
                at: i("at"),
                record: Record {
                    source,
                    output: s("output"),
                    cut_bytes: i("cut_bytes"),
                    redactions: i("redactions"),
                },
            });
        }
    }
    let mut ids: Vec<String> = out.iter().map(|e| e.id.to_string()).collect();
    ids.sort();
    ids.dedup();
    let shorts = crate::ids::short_forms(&ids);
    for e in &mut out {
        if let Ok(i) = ids.binary_search(&e.id.to_string()) {
            e.short.clone_from(&shorts[i]);
        }
    }
    out.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    out
}
