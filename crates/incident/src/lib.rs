//! The incident model: the response method of dontpanic as data and rules on
//! one Automerge document.
//!
//! # Brief overview
//!
//! * [`Incident`] wraps the Automerge document and is the only way to edit
//!   it: [`Incident::apply`] checks an [`Edit`] against the method's rules,
//!   records it with a timeline entry in one Automerge change, and hands that
//!   change back for the caller to sign and store.
//! * [`IncidentView`] is a plain snapshot of the document for reading;
//!   [`render`] turns it into the one-screen brief and the Markdown report.
//! * Items have stable random ids ([`ItemId`]) typed by unique prefix.
//! * [`evidence`]: a command's output or a text file attached to an item
//!   ([`Edit::AddEvidence`]), recorded once and never changed.
//!
//! This crate knows nothing of keys, disks, networks or terminals: it is
//! given the author and the time of every edit, and it returns changes.
//!
//! ```
//! use dontpanic_incident::{Editor, Edit, Incident, Severity};
//! let me = Editor { key: "ab".repeat(32), name: "alice".into() };
//! let (mut incident, _) = Incident::create("DNS down", Severity::Sev2, &me, 0).unwrap();
//! let h = incident.apply(Edit::AddHypothesis { text: "resolver crashed".into() }, &me, 1).unwrap();
//! assert!(h.id.is_some());
//! ```
#![deny(missing_docs)]
// Strings here come from peers, files and the prompt: no byte-index slicing.
#![deny(clippy::string_slice)]

pub mod evidence;
pub mod export;
mod ids;
mod nudge;
pub mod render;
pub mod similar;
mod types;
pub mod validate;
mod view;
pub mod when;

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, Change, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};

pub use dontpanic_identity::fingerprint;
pub use evidence::Evidence;
pub use ids::{short_forms, shortest_unique, ItemId, Kind, MIN_SHORT_LEN};
pub use nudge::{nudges, Nudge};
pub use types::{HypothesisStatus, Role, Severity, Status, Stopped, Verdict};
pub use validate::{validate, Rule, Validator, Violation};
pub use view::{
    effective_update_every, removals, removed_keys, Conflict, Found, IncidentView, Item, Lesson,
    Member, Removal, Standing, TimelineEntry, DEFAULT_UPDATE_EVERY_S,
};
pub use when::TimeError;

/// Version of the document layout, stored at the root.
pub const SCHEMA: i64 = 1;

/// A rule of the method was broken, or an edit named something that is not
/// there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// No item has this id (or prefix).
    #[error("no {kind} has id `{id}`")]
    UnknownId {
        /// What was looked for.
        kind: &'static str,
        /// What was typed.
        id: String,
    },
    /// A prefix matches several items.
    #[error("id `{id}` is ambiguous: it could be {}", candidates.join(", "))]
    AmbiguousId {
        /// What was typed.
        id: String,
        /// The items it matches.
        candidates: Vec<String>,
    },
    /// An id of the wrong kind was given (a test id where a hypothesis was needed).
    #[error("`{id}` is a {got}, but a {want} is needed here")]
    WrongKind {
        /// What was typed.
        id: String,
        /// What it is.
        got: &'static str,
        /// What was needed.
        want: &'static str,
    },
    /// A word was not one of the allowed values.
    #[error("`{value}` is not a {what} (expected one of: {expected})")]
    BadValue {
        /// What was being parsed.
        what: &'static str,
        /// What was typed.
        value: String,
        /// The allowed words.
        expected: String,
    },
    /// A required text was empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// `confirm` without evidence.
    #[error("confirming {0} needs evidence: a test id or a description of what showed it")]
    NoEvidence(String),
    /// A fix while nothing is confirmed and no reason given.
    #[error("no hypothesis is confirmed yet; first, do no harm: give --unconfirmed-because <reason> to record why this fix cannot wait")]
    FixWithoutCause,
    /// Resolving while no fix is recorded, without saying why.
    #[error("no fix is recorded; say why it is resolved without one: `status resolved --because <reason>` (or record the fix first: `fix <text>`)")]
    ResolveWithoutFix,
    /// The incident is resolved; it has to be reopened first.
    #[error("incident is resolved; `reopen <reason>` it before changing it")]
    Resolved,
    /// Reopening an incident that is not resolved.
    #[error("incident is not resolved (it is {0}); nothing to reopen")]
    NotResolved(Status),
    /// A hypothesis that was ruled out cannot be confirmed.
    #[error("{hypothesis} was ruled out by {by}; add a new hypothesis instead of confirming it")]
    RuledOut {
        /// The hypothesis.
        hypothesis: String,
        /// The test that ruled it out.
        by: String,
    },
    /// A test given as evidence tests another hypothesis.
    #[error("test {test} is about {tests}, not {hypothesis}")]
    TestOfOtherHypothesis {
        /// The test.
        test: String,
        /// Its hypothesis.
        tests: String,
        /// The hypothesis being confirmed.
        hypothesis: String,
    },
    /// The key is already on the roster.
    #[error("{0} is already a member")]
    AlreadyMember(String),
    /// No current member matches what was typed.
    #[error("`{typed}` is not a member of this incident; the members are: {}", members.join(", "))]
    UnknownMember {
        /// What was typed (cut short).
        typed: String,
        /// The current members' roster names.
        members: Vec<String>,
    },
    /// A member cannot remove itself.
    #[error("you cannot remove yourself; ask another member")]
    RemoveSelf,
    /// The key was removed from the roster: it cannot be admitted again.
    #[error("{0} was removed from this incident; a removed key cannot rejoin (start with --new-identity and a fresh invite)")]
    Removed(String),
    /// A time or date that could not be read.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// A text is over its cap.
    #[error("{what} is too long: at most {max} bytes")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// The cap.
        max: usize,
    },
    /// The document is not a dontpanic incident or is damaged.
    #[error("document is not a readable incident: {0}")]
    Document(String),
}

impl From<automerge::AutomergeError> for RuleError {
    fn from(e: automerge::AutomergeError) -> Self {
        RuleError::Document(e.to_string())
    }
}

/// Who makes an edit: the device key (hex) and display name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Editor {
    /// Hex of the device's public key; the authoritative identity.
    pub key: String,
    /// Display name, as the responder gave it.
    pub name: String,
}

/// A request to change the incident, checked against the rules by
/// [`Incident::apply`].
#[derive(Clone, Debug, PartialEq)]
pub enum Edit {
    /// Capture a symptom.
    AddSymptom {
        /// What is happening.
        text: String,
        /// Where.
        place: Option<String>,
        /// How often.
        frequency: Option<String>,
        /// The impact on users.
        impact: Option<String>,
        /// When impact began, as typed (`HH:MM` or RFC 3339, see
        /// [`when::parse_since`]); read against the edit's time.
        since: Option<String>,
    },
    /// Add a hypothesis; nothing is ruled out by opinion.
    AddHypothesis {
        /// What could cause the symptoms.
        text: String,
    },
    /// Plan a test designed to rule a hypothesis out.
    AddTest {
        /// Id (or prefix) of the hypothesis.
        hypothesis: String,
        /// What will be done.
        action: String,
        /// The outcome that would rule the hypothesis out.
        rules_out_if: String,
    },
    /// Record a test's result.
    AddResult {
        /// Id (or prefix) of the test.
        test: String,
        /// What was observed.
        observation: String,
        /// What it means for the hypothesis.
        verdict: Verdict,
    },
    /// Confirm a hypothesis as the cause.
    Confirm {
        /// Id (or prefix) of the hypothesis.
        hypothesis: String,
        /// A test id, or a description of what showed it.
        evidence: String,
    },
    /// Record a fix.
    AddFix {
        /// What was done.
        text: String,
        /// Why it could not wait for a confirmed cause.
        unconfirmed_because: Option<String>,
    },
    /// A free note.
    AddNote {
        /// The note.
        text: String,
    },
    /// A follow-up for after the incident.
    AddFollowUp {
        /// What should be done.
        text: String,
        /// Who will do it: a member (roster name or key prefix).
        owner: Option<String>,
        /// When it is due, as typed (`YYYY-MM-DD`, `3d`, `2w`, see
        /// [`when::parse_due`]); read against the edit's time.
        due: Option<String>,
    },
    /// Write (or rewrite) the narrative summary of the incident for the
    /// report; the latest wins, concurrent ones show as a conflict.
    SetSummary(String),
    /// Record a lesson learned, signed by its author.
    AddLesson {
        /// The lesson.
        text: String,
    },
    /// Move the status (not out of `resolved`: see [`Edit::Reopen`]).
    SetStatus {
        /// The new status.
        status: Status,
        /// Why, recorded in the timeline entry; needed to resolve an
        /// incident with no fix recorded.
        because: Option<String>,
    },
    /// Post a stakeholder update (the text as it was sent).
    PostUpdate {
        /// The update.
        text: String,
    },
    /// Set how often a stakeholder update is due, for the whole room.
    SetUpdateInterval {
        /// Seconds between updates; `None` turns the reminder off.
        every_s: Option<i64>,
    },
    /// Reopen a resolved incident, saying why.
    Reopen {
        /// Why.
        reason: String,
    },
    /// Give a role to someone.
    SetRole {
        /// The role.
        role: Role,
        /// Who holds it.
        name: String,
    },
    /// Retitle the incident.
    SetTitle(String),
    /// Change the severity.
    SetSeverity(Severity),
    /// Add a responder's key to the roster.
    AddMember {
        /// Hex public key.
        key: String,
        /// Display name.
        name: String,
    },
    /// Take a member off the roster, saying why. The removal also writes
    /// a new join secret, so invites made before it stop working.
    RemoveMember {
        /// The member: roster name, or a prefix of its hex key.
        member: String,
        /// Why.
        reason: String,
    },
    /// Attach evidence (a command's output, a file) to an item; it is
    /// written once and never changed.
    AddEvidence {
        /// Id (or prefix) of the item: symptom, hypothesis, test, result,
        /// fix or follow-up.
        of: String,
        /// What it records (already capped and redacted).
        record: evidence::Record,
    },
    /// Settle a conflicting field on one value.
    Resolve {
        /// The field path as [`Conflict::field`] names it.
        field: String,
        /// The value to keep.
        value: String,
    },
}

/// The keys a change claims as its author inside the record: the `by` of
/// timeline entries and items and the `added_by` of roster entries it writes.
/// Whoever receives the change checks these against the key that signed it,
/// so no member can write in another member's name.
pub fn claimed_authors(change: &Change) -> Vec<String> {
    let mut out = Vec::new();
    for op in change.decode().operations {
        let automerge::legacy::OpType::Put(ScalarValue::Str(s)) = &op.action else {
            continue;
        };
        match &op.key {
            automerge::legacy::Key::Map(k) if k == "by" || k == "added_by" => {
                out.push(s.to_string())
            }
            automerge::legacy::Key::Seq(_) => {
                if let Ok(entry) = serde_json::from_str::<TimelineEntry>(s) {
                    out.push(entry.by);
                }
            }
            _ => {}
        }
    }
    out
}

/// The kind of the timeline entry a change writes (`remove`, `note`, ...),
/// if it writes one.
pub fn change_event(change: &Change) -> Option<String> {
    change.decode().operations.into_iter().find_map(|op| {
        let (automerge::legacy::Key::Seq(_), automerge::legacy::OpType::Put(ScalarValue::Str(s))) =
            (&op.key, &op.action)
        else {
            return None;
        };
        serde_json::from_str::<TimelineEntry>(s)
            .ok()
            .map(|e| e.kind)
    })
}

/// An item as the prompt offers it for completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Its shortest unique id.
    pub id: String,
    /// Its kind.
    pub kind: Kind,
    /// Its text on one line, terminal-safe.
    pub label: String,
    /// A hypothesis still open, a test without a result (other kinds: always).
    pub open: bool,
}

/// What an applied edit produced.
#[derive(Debug)]
pub struct Applied {
    /// The created item, if the edit created one.
    pub id: Option<ItemId>,
    /// One line for humans, as the timeline shows it.
    pub summary: String,
    /// The Automerge change to sign and store.
    pub change: Change,
}

/// One incident: an Automerge document and the rules for changing it.
pub struct Incident {
    doc: Automerge,
}

fn need(text: &str, what: &'static str) -> Result<String, RuleError> {
    let t = text.trim();
    if t.is_empty() {
        Err(RuleError::Empty(what))
    } else {
        Ok(t.to_string())
    }
}

impl Incident {
    /// Starts a new incident with its creator as the first member.
    pub fn create(
        title: &str,
        severity: Severity,
        editor: &Editor,
        now_ms: i64,
    ) -> Result<(Incident, Applied), RuleError> {
        let title = need(title, "title")?;
        let id = ItemId::random(Kind::Incident);
        let mut doc = Automerge::new().with_actor(ActorId::random());
        // The first change of an actor is the one that names its author
        // (Automerge writes the field at seq 1 only): it binds the actor to
        // the creator's key (docs/security.md, "Signatures per run").
        if let Ok(key) = editor.key.parse::<dontpanic_identity::PublicKey>() {
            doc.set_author(Some(automerge::Author::from(key.to_bytes().to_vec())));
        }
        let mut secret = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut secret);
        let summary = format!("opened incident {id}: {title} ({})", severity.label());
        let result = doc.transact_with(
            |_| {
                CommitOptions::default()
                    .with_message(summary.clone())
                    .with_time(now_ms / 1000)
            },
            |tx| -> Result<(), automerge::AutomergeError> {
                tx.put(ROOT, "schema", SCHEMA)?;
                tx.put(ROOT, "id", id.as_str())?;
                tx.put(ROOT, "title", title.as_str())?;
                tx.put(ROOT, "severity", severity.as_str())?;
                tx.put(ROOT, "status", Status::Investigating.as_str())?;
                tx.put(ROOT, "created_at", now_ms)?;
                tx.put(ROOT, "join_secret", ScalarValue::Bytes(secret.to_vec()))?;
                let times = tx.put_object(ROOT, "status_times", ObjType::Map)?;
                tx.put(&times, Status::Investigating.as_str(), now_ms)?;
                tx.put_object(ROOT, "roles", ObjType::Map)?;
                let roster = tx.put_object(ROOT, "roster", ObjType::Map)?;
                let me = tx.put_object(&roster, editor.key.as_str(), ObjType::Map)?;
                tx.put(&me, "name", editor.name.as_str())?;
                tx.put(&me, "at", now_ms)?;
                for kind in Kind::ITEMS {
                    tx.put_object(ROOT, kind.collection(), ObjType::Map)?;
                }
                let timeline = tx.put_object(ROOT, "timeline", ObjType::List)?;
                append_timeline(tx, &timeline, editor, now_ms, "open", Some(&id), &summary)?;
                Ok(())
            },
        );
        result.map_err(|f| RuleError::from(f.error))?;
        let change = doc
            .get_last_local_change()
            .ok_or_else(|| RuleError::Document("no change was made".into()))?;
        let incident = Incident { doc };
        Ok((
            incident,
            Applied {
                id: Some(id),
                summary,
                change,
            },
        ))
    }

    /// Wraps a document loaded from storage or the network; a fresh actor
    /// id is chosen so this session never reuses another's sequence numbers.
    pub fn from_doc(doc: Automerge) -> Result<Incident, RuleError> {
        let doc = doc.with_actor(ActorId::random());
        let incident = Incident { doc };
        incident.id()?;
        Ok(incident)
    }

    /// Binds this session's changes to an author (the device's public key
    /// bytes), recorded by Automerge in each change.
    pub fn set_author(&mut self, author_key: &[u8]) {
        self.doc
            .set_author(Some(automerge::Author::from(author_key.to_vec())));
    }

    /// The underlying document (for saving and sync).
    pub fn doc(&self) -> &Automerge {
        &self.doc
    }

    /// The underlying document, mutably: only for applying verified changes
    /// from elsewhere, never for local edits (they go through [`apply`](Self::apply)).
    pub fn doc_mut(&mut self) -> &mut Automerge {
        &mut self.doc
    }

    /// The incident id.
    pub fn id(&self) -> Result<ItemId, RuleError> {
        self.str_at(&ROOT, "id")
            .and_then(|s| ItemId::parse(&s))
            .ok_or_else(|| RuleError::Document("missing or malformed incident id".into()))
    }

    /// The capability secret an invite carries; known only to members.
    pub fn join_secret(&self) -> Option<Vec<u8>> {
        match self.doc.get(ROOT, "join_secret").ok().flatten() {
            Some((Value::Scalar(v), _)) => match v.as_ref() {
                ScalarValue::Bytes(b) => Some(b.clone()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Hex keys of the current members: the roster without removed keys.
    pub fn member_keys(&self) -> Vec<String> {
        let removed = removed_keys(&self.doc);
        self.roster_keys()
            .into_iter()
            .filter(|k| !removed.contains(k))
            .collect()
    }

    /// Hex keys of everyone ever on the roster, removed members included.
    pub fn roster_keys(&self) -> Vec<String> {
        match self.doc.get(ROOT, "roster").ok().flatten() {
            Some((Value::Object(ObjType::Map), roster)) => {
                self.doc.keys(&roster).map(|k| k.to_string()).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The current member `typed` names: its roster name (no case), or a
    /// unique prefix of its hex key.
    pub fn resolve_member(&self, typed: &str) -> Result<String, RuleError> {
        let t = typed.trim();
        let want = t.to_lowercase();
        let keys = self.member_keys();
        if let Some(k) = keys.iter().find(|k| {
            self.roster_name(k)
                .is_some_and(|n| n.trim().to_lowercase() == want)
        }) {
            return Ok(k.clone());
        }
        // A key prefix, or a fingerprint as shown (colons dropped).
        let prefix = want.replace(':', "");
        let hits: Vec<&String> = keys
            .iter()
            .filter(|k| !prefix.is_empty() && k.starts_with(&prefix))
            .collect();
        match hits.as_slice() {
            [k] => Ok((*k).clone()),
            [] => Err(RuleError::UnknownMember {
                typed: t.chars().take(24).collect(),
                members: keys
                    .iter()
                    .map(|k| self.roster_name(k).unwrap_or_default())
                    .collect(),
            }),
            many => Err(RuleError::AmbiguousId {
                id: t.chars().take(24).collect(),
                candidates: many.iter().map(|k| fingerprint(k)).collect(),
            }),
        }
    }

    /// The title.
    pub fn title(&self) -> String {
        self.str_at(&ROOT, "title").unwrap_or_default()
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.str_at(&ROOT, "status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(Status::Investigating)
    }

    /// The roster name of a member key, if it is on the roster.
    pub fn roster_name(&self, key: &str) -> Option<String> {
        let roster = view::get_map(&self.doc, &ROOT, "roster")?;
        let entry = view::get_map(&self.doc, &roster, key)?;
        Some(self.str_at(&entry, "name").unwrap_or_default())
    }

    /// `name`, or the first of `name-2`, `name-3`, ... that no member has:
    /// a joiner whose name is taken is admitted under a numbered one
    /// (compared without case or surrounding spaces).
    pub fn free_name(&self, name: &str) -> String {
        let taken: std::collections::HashSet<String> = self
            .view()
            .map(|v| {
                v.members
                    .iter()
                    .map(|m| m.name.trim().to_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        let mut candidate = name.to_string();
        let mut n = 2;
        while taken.contains(&candidate.trim().to_lowercase()) {
            candidate = format!("{name}-{n}");
            n += 1;
        }
        candidate
    }

    pub(crate) fn str_at(&self, obj: &ObjId, key: &str) -> Option<String> {
        view::get_str(&self.doc, obj, key)
    }

    fn collection(&self, kind: Kind) -> Result<ObjId, RuleError> {
        match self.doc.get(ROOT, kind.collection())? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(RuleError::Document(format!(
                "missing {} collection",
                kind.collection()
            ))),
        }
    }

    /// Every item id of `kind`.
    pub fn ids(&self, kind: Kind) -> Vec<String> {
        self.collection(kind)
            .map(|c| self.doc.keys(&c).map(|k| k.to_string()).collect())
            .unwrap_or_default()
    }

    /// Every item as the prompt completes it: short id, kind, one-line
    /// label and whether it is still open (a hypothesis not ruled out or
    /// confirmed, a test without a result). Reads the items only, never the
    /// timeline, so it stays cheap on a long incident.
    pub fn completions(&self) -> Vec<Completion> {
        let tested: std::collections::HashSet<String> = self
            .ids(Kind::Result)
            .iter()
            .filter_map(|r| ItemId::parse(r).and_then(|id| self.item_field(&id, "test")))
            .collect();
        let mut out = Vec::new();
        for kind in Kind::ITEMS {
            let mut ids = self.ids(kind);
            ids.sort();
            let shorts = ids::short_forms(&ids);
            for (full, short) in ids.iter().zip(shorts) {
                let Some(id) = ItemId::parse(full) else {
                    continue;
                };
                let field = match kind {
                    Kind::Test => "action",
                    Kind::Result => "observation",
                    _ => "text",
                };
                let open = match kind {
                    Kind::Hypothesis => {
                        self.item_field(&id, "status").as_deref()
                            == Some(HypothesisStatus::Open.as_str())
                    }
                    Kind::Test => !tested.contains(full),
                    _ => true,
                };
                out.push(Completion {
                    id: short,
                    kind,
                    label: render::one_line(&self.item_field(&id, field).unwrap_or_default()),
                    open,
                });
            }
        }
        out
    }

    /// Resolves a typed id or unique prefix to an item of `kind`.
    pub fn resolve(&self, kind: Kind, typed: &str) -> Result<ItemId, RuleError> {
        let typed = typed.trim().to_ascii_lowercase();
        let unknown = || RuleError::UnknownId {
            kind: kind.noun(),
            id: typed.clone(),
        };
        if !ids::could_be_id(&typed) {
            return Err(unknown());
        }
        if let Some(other) = typed.chars().next().and_then(Kind::from_letter) {
            if other != kind {
                // Only an existing item of another kind is "the wrong kind";
                // anything else is simply not a known id of the kind wanted.
                self.resolve(other, &typed).map_err(|_| unknown())?;
                return Err(RuleError::WrongKind {
                    id: typed,
                    got: other.noun(),
                    want: kind.noun(),
                });
            }
        }
        let matches = self.ids_with_prefix(kind, &typed, 8);
        match matches.as_slice() {
            [] => Err(RuleError::UnknownId {
                kind: kind.noun(),
                id: typed,
            }),
            [one] => ItemId::parse(one).ok_or_else(|| RuleError::UnknownId {
                kind: kind.noun(),
                id: typed,
            }),
            many if typed.is_empty() || many.len() > 1 => Err(RuleError::AmbiguousId {
                id: typed,
                candidates: many.iter().map(|s| s.to_string()).collect(),
            }),
            _ => unreachable!(),
        }
    }

    /// Up to `limit` ids of `kind` starting with `prefix`, found by a range
    /// scan so large collections stay cheap.
    fn ids_with_prefix(&self, kind: Kind, prefix: &str, limit: usize) -> Vec<String> {
        let Ok(c) = self.collection(kind) else {
            return Vec::new();
        };
        self.doc
            .map_range(&c, prefix.to_string()..)
            .map(|item| item.key.to_string())
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .collect()
    }

    /// The shortest unique prefix of an item id, for display.
    pub fn short(&self, id: &ItemId) -> String {
        let head = ids::prefix(id.as_str(), MIN_SHORT_LEN);
        let near = self.ids_with_prefix(id.kind(), head, usize::MAX);
        shortest_unique(id.as_str(), near.iter().map(String::as_str))
    }

    fn item_field(&self, id: &ItemId, field: &str) -> Option<String> {
        let c = self.collection(id.kind()).ok()?;
        match self.doc.get(&c, id.as_str()).ok()?? {
            (Value::Object(ObjType::Map), obj) => self.str_at(&obj, field),
            _ => None,
        }
    }

    /// The roster name of the member `typed` names, for a follow-up's
    /// owner; a name that is not a member's is refused, listing who is.
    fn owner_name(&self, typed: &str) -> Result<String, RuleError> {
        let key = self.resolve_member(typed)?;
        Ok(self.roster_name(&key).unwrap_or_default())
    }

    fn any_confirmed(&self) -> bool {
        self.ids(Kind::Hypothesis).iter().any(|h| {
            ItemId::parse(h)
                .and_then(|id| self.item_field(&id, "status"))
                .as_deref()
                == Some(HypothesisStatus::Confirmed.as_str())
        })
    }

    /// A plain snapshot for reading.
    pub fn view(&self) -> Result<IncidentView, RuleError> {
        view::read(&self.doc, true)
    }

    /// A snapshot without the timeline: items, roster and root fields
    /// only, as cheap for 100,000 timeline entries as for ten.
    pub fn view_without_timeline(&self) -> Result<IncidentView, RuleError> {
        view::read(&self.doc, false)
    }

    /// Where the incident stands, for nudges and the prompt: cheap to read
    /// (no timeline, no item texts), so it can be published often.
    pub fn standing(&self) -> Standing {
        view::standing(&self.doc)
    }

    /// Fields edited concurrently with different values, still unresolved.
    pub fn conflicts(&self) -> Vec<Conflict> {
        view::conflicts(&self.doc)
    }

    /// Checks `edit` against the rules and, if it passes, records it (with a
    /// timeline entry) as one change.
    pub fn apply(
        &mut self,
        edit: Edit,
        editor: &Editor,
        now_ms: i64,
    ) -> Result<Applied, RuleError> {
        let status = self.status();
        let allowed_when_resolved = matches!(
            edit,
            Edit::AddNote { .. }
                | Edit::AddFollowUp { .. }
                | Edit::SetSummary(_)
                | Edit::AddLesson { .. }
                | Edit::Reopen { .. }
                | Edit::PostUpdate { .. }
                | Edit::AddEvidence { .. }
        );
        if status == Status::Resolved && !allowed_when_resolved {
            return Err(RuleError::Resolved);
        }
        let plan = self.plan(edit, status, now_ms)?;
        if plan
            .writes
            .iter()
            .any(|w| matches!(w, Write::Removal { key, .. } if *key == editor.key))
        {
            return Err(RuleError::RemoveSelf);
        }
        // Names come from the roster: a member's entries carry the name it
        // was admitted under, whatever its device calls itself.
        let editor = &Editor {
            key: editor.key.clone(),
            name: self
                .roster_name(&editor.key)
                .unwrap_or_else(|| editor.name.clone()),
        };
        let summary = plan.summary.clone();
        let created = plan.created.clone();
        let timeline = match self.doc.get(ROOT, "timeline")? {
            Some((Value::Object(ObjType::List), t)) => t,
            _ => return Err(RuleError::Document("missing timeline".into())),
        };
        let cols: Vec<(Kind, ObjId)> = Kind::ITEMS
            .iter()
            .map(|k| self.collection(*k).map(|c| (*k, c)))
            .collect::<Result<_, _>>()?;
        let result = self.doc.transact_with(
            |_| {
                CommitOptions::default()
                    .with_message(summary.clone())
                    .with_time(now_ms / 1000)
            },
            |tx| -> Result<(), automerge::AutomergeError> {
                for write in &plan.writes {
                    write.apply(tx, &cols, editor, now_ms)?;
                }
                append_timeline(
                    tx,
                    &timeline,
                    editor,
                    now_ms,
                    plan.event,
                    created.as_ref().or(plan.subject.as_ref()),
                    &summary,
                )
            },
        );
        result.map_err(|f| RuleError::from(f.error))?;
        let change = self
            .doc
            .get_last_local_change()
            .ok_or_else(|| RuleError::Document("no change was made".into()))?;
        Ok(Applied {
            id: created,
            summary,
            change,
        })
    }

    /// Validates an edit and turns it into writes; nothing is changed yet.
    fn plan(&self, edit: Edit, status: Status, now_ms: i64) -> Result<Plan, RuleError> {
        let mut plan = Plan::default();
        match edit {
            Edit::AddSymptom {
                text,
                place,
                frequency,
                impact,
                since,
            } => {
                let text = need(&text, "symptom")?;
                let since = since
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| when::parse_since(&s, now_ms))
                    .transpose()?;
                let mut fields = vec![("text", text.clone())];
                for (k, v) in [
                    ("where", place),
                    ("frequency", frequency),
                    ("impact", impact),
                ] {
                    if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
                        fields.push((k, v.trim().to_string()));
                    }
                }
                let ints: Vec<(&'static str, i64)> =
                    since.map(|t| ("since", t)).into_iter().collect();
                let id = plan.create_with(self, Kind::Symptom, fields, ints);
                let began = since
                    .map(|t| format!(" (since {})", render::utc(t)))
                    .unwrap_or_default();
                plan.finish(
                    "symptom",
                    format!("symptom {}: {text}{began}", self.short(&id)),
                );
            }
            Edit::AddHypothesis { text } => {
                let text = need(&text, "hypothesis")?;
                let fields = vec![
                    ("text", text.clone()),
                    ("status", HypothesisStatus::Open.as_str().into()),
                ];
                let id = plan.create(self, Kind::Hypothesis, fields);
                plan.finish(
                    "hypothesis",
                    format!("hypothesis {}: {text}", self.short(&id)),
                );
            }
            Edit::AddTest {
                hypothesis,
                action,
                rules_out_if,
            } => {
                let h = self.resolve(Kind::Hypothesis, &hypothesis)?;
                let action = need(&action, "test action")?;
                let rules_out_if = need(&rules_out_if, "--rules-out-if outcome")?;
                let fields = vec![
                    ("hypothesis", h.to_string()),
                    ("action", action.clone()),
                    ("rules_out_if", rules_out_if.clone()),
                ];
                let id = plan.create(self, Kind::Test, fields);
                plan.finish(
                    "test",
                    format!(
                        "test {} of {} ({}): {action}; rules it out if {rules_out_if}",
                        self.short(&id),
                        self.short(&h),
                        self.item_field(&h, "text").unwrap_or_default()
                    ),
                );
            }
            Edit::AddResult {
                test,
                observation,
                verdict,
            } => {
                let t = self.resolve(Kind::Test, &test)?;
                let observation = need(&observation, "observation")?;
                let h = self
                    .item_field(&t, "hypothesis")
                    .and_then(|h| ItemId::parse(&h))
                    .ok_or_else(|| RuleError::Document(format!("test {t} names no hypothesis")))?;
                let fields = vec![
                    ("test", t.to_string()),
                    ("hypothesis", h.to_string()),
                    ("observation", observation.clone()),
                    ("verdict", verdict.as_str().into()),
                ];
                let id = plan.create(self, Kind::Result, fields);
                let htext = self.item_field(&h, "text").unwrap_or_default();
                let summary = if verdict == Verdict::RulesOut {
                    plan.set_item(
                        &h,
                        "status",
                        HypothesisStatus::RuledOut.as_str().to_string(),
                    );
                    plan.set_item(&h, "ruled_out_by", t.to_string());
                    plan.set_item(&h, "ruled_out_result", id.to_string());
                    format!(
                        "ruled out {} ({htext}) by test {}: {observation}",
                        self.short(&h),
                        self.short(&t)
                    )
                } else {
                    format!(
                        "result {} of test {} on {} ({htext}): {observation} [{verdict}]",
                        self.short(&id),
                        self.short(&t),
                        self.short(&h)
                    )
                };
                plan.finish("result", summary);
            }
            Edit::Confirm {
                hypothesis,
                evidence,
            } => {
                let h = self.resolve(Kind::Hypothesis, &hypothesis)?;
                let evidence = evidence.trim().to_string();
                if evidence.is_empty() {
                    return Err(RuleError::NoEvidence(self.short(&h)));
                }
                if self.item_field(&h, "status").as_deref()
                    == Some(HypothesisStatus::RuledOut.as_str())
                {
                    return Err(RuleError::RuledOut {
                        hypothesis: self.short(&h),
                        by: self.item_field(&h, "ruled_out_by").unwrap_or_default(),
                    });
                }
                let single_word = !evidence.contains(char::is_whitespace);
                let test = if single_word && evidence.starts_with(Kind::Test.letter()) {
                    self.resolve(Kind::Test, &evidence).ok()
                } else {
                    None
                };
                if let Some(t) = &test {
                    let tests = self.item_field(t, "hypothesis").unwrap_or_default();
                    if tests != h.as_str() {
                        return Err(RuleError::TestOfOtherHypothesis {
                            test: self.short(t),
                            tests,
                            hypothesis: self.short(&h),
                        });
                    }
                    plan.set_item(&h, "confirmed_by", t.to_string());
                } else {
                    plan.set_item(&h, "evidence", evidence.clone());
                }
                plan.set_item(
                    &h,
                    "status",
                    HypothesisStatus::Confirmed.as_str().to_string(),
                );
                plan.subject = Some(h.clone());
                plan.finish(
                    "confirm",
                    format!(
                        "confirmed {} ({}): {}",
                        self.short(&h),
                        self.item_field(&h, "text").unwrap_or_default(),
                        test.map(|t| format!("test {}", self.short(&t)))
                            .unwrap_or(evidence)
                    ),
                );
            }
            Edit::AddFix {
                text,
                unconfirmed_because,
            } => {
                let text = need(&text, "fix")?;
                let reason = unconfirmed_because.filter(|r| !r.trim().is_empty());
                let confirmed = self.any_confirmed();
                if !confirmed && reason.is_none() {
                    return Err(RuleError::FixWithoutCause);
                }
                let mut fields = vec![("text", text.clone())];
                if !confirmed {
                    fields.push(("unconfirmed_because", reason.clone().unwrap_or_default()));
                }
                let id = plan.create(self, Kind::Fix, fields);
                let flag = if confirmed {
                    String::new()
                } else {
                    format!(
                        " (before the cause was confirmed, because {})",
                        reason.unwrap_or_default()
                    )
                };
                plan.finish("fix", format!("fix {}: {text}{flag}", self.short(&id)));
            }
            Edit::AddNote { text } => {
                let text = need(&text, "note")?;
                // A note is only a timeline entry: nothing refers to it, and
                // incidents with 100,000 notes stay small and fast.
                plan.finish("note", format!("note: {text}"));
            }
            Edit::AddFollowUp { text, owner, due } => {
                let text = need(&text, "follow-up")?;
                let mut fields = vec![("text", text.clone())];
                let mut said = Vec::new();
                if let Some(owner) = owner.filter(|o| !o.trim().is_empty()) {
                    let name = self.owner_name(&owner)?;
                    said.push(format!("owner {name}"));
                    fields.push(("owner", name));
                }
                if let Some(due) = due.filter(|d| !d.trim().is_empty()) {
                    let date = when::parse_due(&due, now_ms)?;
                    said.push(format!("due {date}"));
                    fields.push(("due", date));
                }
                let id = plan.create(self, Kind::FollowUp, fields);
                let said = if said.is_empty() {
                    " (no owner yet)".to_string()
                } else {
                    format!(" ({})", said.join(", "))
                };
                plan.finish(
                    "followup",
                    format!("follow-up {}: {text}{said}", self.short(&id)),
                );
            }
            Edit::SetSummary(text) => {
                let text = need(&text, "summary")?;
                plan.root.push(("summary", text.clone()));
                plan.finish("summary", format!("summary: {text}"));
            }
            Edit::AddLesson { text } => {
                let text = need(&text, "lesson")?;
                plan.writes.push(Write::Lesson(text.clone()));
                plan.finish("lesson", format!("lesson: {text}"));
            }
            Edit::SetStatus {
                status: new,
                because,
            } => {
                let because = because
                    .map(|b| b.trim().to_string())
                    .filter(|b| !b.is_empty());
                let fixed = !self.ids(Kind::Fix).is_empty();
                if new == Status::Resolved && !fixed && because.is_none() {
                    return Err(RuleError::ResolveWithoutFix);
                }
                plan.root.push(("status", new.as_str().into()));
                plan.status_time = Some(new);
                let why = match because {
                    Some(b) if new == Status::Resolved && !fixed => {
                        format!(" (no fix recorded, because: {b})")
                    }
                    Some(b) => format!(" (because: {b})"),
                    None => String::new(),
                };
                plan.finish("status", format!("status {status} -> {new}{why}"));
            }
            Edit::PostUpdate { text } => {
                let text = need(&text, "update")?;
                let id = plan.create(self, Kind::Update, vec![("text", text.clone())]);
                plan.finish(
                    "update",
                    format!("update {} posted:\n{text}", self.short(&id)),
                );
            }
            Edit::SetUpdateInterval { every_s } => {
                let every_s = every_s.filter(|s| *s > 0);
                if every_s.is_some_and(|s| s > validate::MAX_UPDATE_EVERY_S) {
                    return Err(RuleError::BadValue {
                        what: "update interval",
                        value: render::span(every_s.unwrap_or_default() * 1000),
                        expected: "at most 7 days, or off".into(),
                    });
                }
                plan.writes
                    .push(Write::RootInt("update_every", every_s.unwrap_or(0)));
                let summary = match every_s {
                    Some(s) => format!("stakeholder updates due every {}", render::span(s * 1000)),
                    None => "stakeholder update reminders off".to_string(),
                };
                plan.finish("interval", summary);
            }
            Edit::Reopen { reason } => {
                if status != Status::Resolved {
                    return Err(RuleError::NotResolved(status));
                }
                let reason = need(&reason, "reason for reopening")?;
                plan.root
                    .push(("status", Status::Investigating.as_str().into()));
                plan.status_time = Some(Status::Investigating);
                plan.finish("reopen", format!("reopened: {reason}"));
            }
            Edit::SetRole { role, name } => {
                // Roles go to members, under their roster names: a typo
                // must not silently replace the commander.
                let key = self.resolve_member(&need(&name, "name")?)?;
                let name = self.roster_name(&key).unwrap_or_default();
                let was = view::get_map(&self.doc, &ROOT, "roles")
                    .and_then(|roles| self.str_at(&roles, role.as_str()));
                let summary = match was {
                    Some(w) if w == name => format!("{role}: {name} (already held)"),
                    Some(w) => format!("{role}: {name} (replaces {w})"),
                    None => format!("{role}: {name}"),
                };
                plan.role = Some((role, name));
                plan.finish("role", summary);
            }
            Edit::SetTitle(title) => {
                let title = need(&title, "title")?;
                plan.root.push(("title", title.clone()));
                plan.finish("title", format!("title: {title}"));
            }
            Edit::SetSeverity(sev) => {
                plan.root.push(("severity", sev.as_str().into()));
                plan.finish("severity", format!("severity: {}", sev.label()));
            }
            Edit::AddMember { key, name } => {
                let name = need(&name, "member name")?;
                if self.roster_name(&key).is_some() {
                    return Err(RuleError::AlreadyMember(fingerprint(&key)));
                }
                let name = self.free_name(&name);
                plan.member = Some((key.clone(), name.clone()));
                plan.finish("member", format!("{name} joined ({})", fingerprint(&key)));
            }
            Edit::RemoveMember { member, reason } => {
                let reason = need(&reason, "reason for the removal")?;
                let key = self.resolve_member(&member)?;
                let name = self.roster_name(&key).unwrap_or_default();
                let mut secret = [0u8; 32];
                rand::Rng::fill(&mut rand::thread_rng(), &mut secret);
                plan.writes.push(Write::Removal {
                    key: key.clone(),
                    reason: reason.clone(),
                    secret,
                });
                plan.finish(
                    "remove",
                    format!("removed {name} ({}): {reason}", fingerprint(&key)),
                );
            }
            Edit::AddEvidence { of, record } => {
                let kind = of
                    .trim()
                    .chars()
                    .next()
                    .and_then(Kind::from_letter)
                    .filter(|k| Kind::ITEMS.contains(k))
                    .ok_or_else(|| RuleError::UnknownId {
                        kind: "item",
                        id: of.trim().chars().take(24).collect(),
                    })?;
                let item = self.resolve(kind, &of)?;
                let command_or_name = match &record.source {
                    evidence::Source::Run { command, .. } => command,
                    evidence::Source::File { name, .. } => name,
                };
                need(command_or_name, "evidence command or file name")?;
                if record.output.len() > evidence::MAX_TEXT_BYTES {
                    return Err(RuleError::TooLong {
                        what: "evidence",
                        max: evidence::MAX_TEXT_BYTES,
                    });
                }
                let taken = evidence::ids(&self.doc);
                let id = loop {
                    let id = ItemId::random(Kind::Evidence);
                    if !taken.contains(&id.to_string()) {
                        break id;
                    }
                };
                let mut summary = format!(
                    "evidence {} on {} {}: {}",
                    shortest_unique(id.as_str(), taken.iter().map(String::as_str)),
                    kind.noun(),
                    self.short(&item),
                    record.headline()
                );
                let notes = record.notes();
                if !notes.is_empty() {
                    summary.push_str(&format!(" ({})", notes.join("; ")));
                }
                plan.created = Some(id.clone());
                plan.writes.push(Write::Evidence {
                    id,
                    of: item,
                    record,
                });
                plan.finish("evidence", summary);
            }
            Edit::Resolve { field, value } => {
                let known = self.conflicts().into_iter().any(|c| c.field == field);
                if !known {
                    return Err(RuleError::UnknownId {
                        kind: "conflict",
                        id: field,
                    });
                }
                let value = view::canonical_value(&field, &need(&value, "value")?)?;
                match value.parse::<i64>() {
                    // The interval is a number in the document, not text.
                    Ok(secs) if field == "update_every" => {
                        plan.writes.push(Write::RootInt("update_every", secs))
                    }
                    _ => plan.resolve = Some((field.clone(), value.clone())),
                }
                plan.finish("resolve", format!("resolved conflict on {field}: {value}"));
            }
        }
        Ok(plan)
    }
}

/// What an edit will write, decided before the transaction starts.
#[derive(Default)]
struct Plan {
    writes: Vec<Write>,
    root: Vec<(&'static str, String)>,
    status_time: Option<Status>,
    role: Option<(Role, String)>,
    member: Option<(String, String)>,
    resolve: Option<(String, String)>,
    created: Option<ItemId>,
    subject: Option<ItemId>,
    event: &'static str,
    summary: String,
}

enum Write {
    Create {
        id: ItemId,
        fields: Vec<(&'static str, String)>,
        ints: Vec<(&'static str, i64)>,
    },
    SetItem {
        id: ItemId,
        field: &'static str,
        value: String,
    },
    Root(&'static str, String),
    RootInt(&'static str, i64),
    StatusTime(Status),
    Role(Role, String),
    Member(String, String),
    Path(String, String),
    /// A lesson appended to `lessons` (made by the first lesson).
    Lesson(String),
    /// Evidence, in the `evidence` map (made by the first one).
    Evidence {
        id: ItemId,
        of: ItemId,
        record: evidence::Record,
    },
    /// A removal: the entry under `removals` and a new join secret.
    Removal {
        key: String,
        reason: String,
        secret: [u8; 32],
    },
}

impl Plan {
    fn create(
        &mut self,
        incident: &Incident,
        kind: Kind,
        fields: Vec<(&'static str, String)>,
    ) -> ItemId {
        self.create_with(incident, kind, fields, Vec::new())
    }

    /// [`Plan::create`] with integer fields besides the text ones.
    fn create_with(
        &mut self,
        incident: &Incident,
        kind: Kind,
        fields: Vec<(&'static str, String)>,
        ints: Vec<(&'static str, i64)>,
    ) -> ItemId {
        let col = incident.collection(kind).ok();
        let id = loop {
            let id = ItemId::random(kind);
            let taken = col
                .as_ref()
                .is_some_and(|c| matches!(incident.doc.get(c, id.as_str()), Ok(Some(_))));
            if !taken {
                break id;
            }
        };
        self.created = Some(id.clone());
        self.writes.push(Write::Create {
            id: id.clone(),
            fields,
            ints,
        });
        id
    }

    fn set_item(&mut self, id: &ItemId, field: &'static str, value: String) {
        self.writes.push(Write::SetItem {
            id: id.clone(),
            field,
            value,
        });
    }

    fn finish(&mut self, event: &'static str, summary: String) {
        self.event = event;
        self.summary = summary;
        for (k, v) in self.root.drain(..) {
            self.writes.push(Write::Root(k, v));
        }
        if let Some(s) = self.status_time.take() {
            self.writes.push(Write::StatusTime(s));
        }
        if let Some((r, n)) = self.role.take() {
            self.writes.push(Write::Role(r, n));
        }
        if let Some((k, n)) = self.member.take() {
            self.writes.push(Write::Member(k, n));
        }
        if let Some((f, v)) = self.resolve.take() {
            self.writes.push(Write::Path(f, v));
        }
    }
}

impl Write {
    fn apply(
        &self,
        tx: &mut Transaction<'_>,
        cols: &[(Kind, ObjId)],
        editor: &Editor,
        now_ms: i64,
    ) -> Result<(), automerge::AutomergeError> {
        let col = |kind: Kind| {
            cols.iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, c)| c.clone())
        };
        match self {
            Write::Create { id, fields, ints } => {
                let c = match col(id.kind()) {
                    Some(c) => c,
                    // Made by the first update (incidents opened before
                    // updates existed have none).
                    None => match tx.get(ROOT, id.kind().collection())? {
                        Some((_, c)) => c,
                        None => tx.put_object(ROOT, id.kind().collection(), ObjType::Map)?,
                    },
                };
                let obj = tx.put_object(&c, id.as_str(), ObjType::Map)?;
                for (k, v) in fields {
                    tx.put(&obj, *k, v.as_str())?;
                }
                for (k, v) in ints {
                    tx.put(&obj, *k, *v)?;
                }
                tx.put(&obj, "by", editor.key.as_str())?;
                tx.put(&obj, "at", now_ms)?;
            }
            Write::SetItem { id, field, value } => {
                let c = col(id.kind()).expect("collections were checked");
                if let Some((_, obj)) = tx.get(&c, id.as_str())? {
                    tx.put(&obj, *field, value.as_str())?;
                }
            }
            Write::Root(k, v) => tx.put(ROOT, *k, v.as_str())?,
            Write::RootInt(k, v) => tx.put(ROOT, *k, *v)?,
            Write::StatusTime(status) => {
                let times = match tx.get(ROOT, "status_times")? {
                    Some((_, t)) => t,
                    None => tx.put_object(ROOT, "status_times", ObjType::Map)?,
                };
                tx.put(&times, status.as_str(), now_ms)?;
            }
            Write::Role(role, name) => {
                let roles = match tx.get(ROOT, "roles")? {
                    Some((_, r)) => r,
                    None => tx.put_object(ROOT, "roles", ObjType::Map)?,
                };
                tx.put(&roles, role.as_str(), name.as_str())?;
            }
            Write::Member(key, name) => {
                let roster = match tx.get(ROOT, "roster")? {
                    Some((_, r)) => r,
                    None => tx.put_object(ROOT, "roster", ObjType::Map)?,
                };
                let m = tx.put_object(&roster, key.as_str(), ObjType::Map)?;
                tx.put(&m, "name", name.as_str())?;
                tx.put(&m, "at", now_ms)?;
                tx.put(&m, "added_by", editor.key.as_str())?;
            }
            Write::Lesson(text) => {
                // `lessons` is made by the first lesson; two made
                // concurrently both stay readable (`view::lessons` reads
                // every list at the key).
                let lessons = match tx.get(ROOT, "lessons")? {
                    Some((Value::Object(ObjType::List), l)) => l,
                    _ => tx.put_object(ROOT, "lessons", ObjType::List)?,
                };
                let lesson = Lesson {
                    at: now_ms,
                    by: editor.key.clone(),
                    text: text.clone(),
                };
                let json = serde_json::to_string(&lesson).expect("plain struct");
                let len = tx.length(&lessons);
                tx.insert(&lessons, len, json)?;
            }
            Write::Removal {
                key,
                reason,
                secret,
            } => {
                // `removals` is made by the first removal; two made
                // concurrently both stay readable (`view::removals` reads
                // every object at the key).
                let removals = match tx.get(ROOT, "removals")? {
                    Some((_, r)) => r,
                    None => tx.put_object(ROOT, "removals", ObjType::Map)?,
                };
                let m = tx.put_object(&removals, key.as_str(), ObjType::Map)?;
                tx.put(&m, "by", editor.key.as_str())?;
                tx.put(&m, "at", now_ms)?;
                tx.put(&m, "reason", reason.as_str())?;
                tx.put(ROOT, "join_secret", ScalarValue::Bytes(secret.to_vec()))?;
            }
            Write::Evidence { id, of, record } => {
                let col = match tx.get(ROOT, evidence::ROOT_KEY)? {
                    Some((Value::Object(ObjType::Map), c)) => c,
                    _ => tx.put_object(ROOT, evidence::ROOT_KEY, ObjType::Map)?,
                };
                let obj = tx.put_object(&col, id.as_str(), ObjType::Map)?;
                tx.put(&obj, "of", of.as_str())?;
                for (k, v) in record.fields() {
                    tx.put(&obj, k, v)?;
                }
                tx.put(&obj, "by", editor.key.as_str())?;
                tx.put(&obj, "at", now_ms)?;
            }
            Write::Path(path, value) => {
                let mut obj = ROOT;
                let parts: Vec<&str> = path.split('/').collect();
                for p in &parts[..parts.len() - 1] {
                    obj = match tx.get(&obj, *p)? {
                        Some((_, o)) => o,
                        None => return Ok(()),
                    };
                }
                tx.put(&obj, parts[parts.len() - 1], value.as_str())?;
            }
        }
        Ok(())
    }
}

fn append_timeline(
    tx: &mut Transaction<'_>,
    timeline: &ObjId,
    editor: &Editor,
    now_ms: i64,
    kind: &str,
    item: Option<&ItemId>,
    text: &str,
) -> Result<(), automerge::AutomergeError> {
    // One scalar per entry: entries never change, and a single insert keeps
    // large timelines cheap to store, load and read.
    let entry = TimelineEntry {
        at: now_ms,
        by: editor.key.clone(),
        name: editor.name.clone(),
        kind: kind.to_string(),
        item: item.map(|i| i.to_string()),
        text: text.to_string(),
    };
    let json = serde_json::to_string(&entry).expect("plain struct");
    let len = tx.length(timeline);
    tx.insert(timeline, len, json)?;
    Ok(())
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod catch_up_tests;
