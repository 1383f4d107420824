//! The schema check of changes from elsewhere: could the commands of this
//! crate have produced this change, for this signer, on this document?
//!
//! A member holds a valid key and the whole document, so it can hand-craft
//! any Automerge change and sign it. [`Validator::check`] decodes a change's
//! operations, finds which part of the incident each one writes (the root,
//! the roster, a roster entry, an item collection, an item, the timeline)
//! and allows only what [`Incident::apply`](crate::Incident::apply) and
//! [`Incident::create`](crate::Incident::create) write: nothing is ever
//! deleted, the roster and items are written once, existing items change
//! only by the status moves the method allows, and every change records
//! exactly one timeline entry, in its signer's key and roster name, whose
//! kind says what else the change may write. The table of rules is in
//! `docs/protocol.md` ("The schema").
//!
//! The check is pure: it reads the document as it stands before the change
//! (the caller applies the earlier changes of a batch to a fork first) and
//! returns a [`Violation`] naming the broken [`Rule`].

use std::collections::HashMap;
use std::fmt;

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{
    Automerge, Change, ChangeHash, ObjId, ObjType, Prop, ReadDoc, ScalarValue, Value, ROOT,
};

use crate::{HypothesisStatus, ItemId, Kind, Role, Severity, Status, TimelineEntry};

/// A rule of the incident's schema; [`Rule::name`] is how errors cite it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// One timeline entry per change, and the change writes only what the
    /// command named by the entry's kind writes.
    Shape,
    /// Nothing is ever deleted: not items, not timeline entries, not
    /// roster entries, not fields.
    NoDeletion,
    /// Root keys: `title`, `severity`, `status`, `update_every`, each with
    /// a valid value.
    RootKey,
    /// The root's fixed keys and containers (`id`, `schema`, `roster`,
    /// `timeline`, the item collections, ...) are written only by the
    /// change that creates the incident.
    Containers,
    /// A roster entry is written once, whole, and never renamed, replaced
    /// or deleted.
    RosterOnce,
    /// No two roster entries share a name.
    UniqueName,
    /// An item is created once, under an id of its kind, with the fields
    /// of its kind.
    ItemOnce,
    /// An existing item changes only by the status moves the method
    /// allows (ruled out by a result, confirmed, a conflict resolved).
    ItemEdit,
    /// The timeline is append-only; each entry is one JSON string.
    Timeline,
    /// Every author written (`by`, `added_by`, an entry's `by`) is the signer.
    Author,
    /// A timeline entry's `name` is the signer's roster name.
    Name,
    /// The change writes an object that is not part of the schema.
    UnknownObject,
    /// A removal: one current member (not the signer), with `by`, `at`
    /// and a reason, written once, with a new join secret.
    Removal,
    /// Lessons are appended to `lessons`, one per `lesson` change, each a
    /// non-empty text in its signer's name.
    Lesson,
    /// A follow-up's owner is a name on the roster.
    Owner,
    /// Evidence: attached to an item that exists, with the fields of its
    /// kind (`run` or `file`) and their types, by its signer, written once.
    Evidence,
    /// A `role` change gives the role to a current member, by roster name
    /// (as the roster stood where the change was written).
    RoleHolder,
}

impl Rule {
    /// The rule's short name, as cited in rejections and docs.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Shape => "shape",
            Rule::NoDeletion => "no-deletion",
            Rule::RootKey => "root-key",
            Rule::Containers => "containers",
            Rule::RosterOnce => "roster-once",
            Rule::UniqueName => "unique-name",
            Rule::ItemOnce => "item-once",
            Rule::ItemEdit => "item-edit",
            Rule::Timeline => "timeline",
            Rule::Author => "author",
            Rule::Name => "name",
            Rule::UnknownObject => "unknown-object",
            Rule::Removal => "removal",
            Rule::Lesson => "lesson",
            Rule::Owner => "owner",
            Rule::Evidence => "evidence",
            Rule::RoleHolder => "role-holder",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a change was refused: the rule and what broke it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("schema rule `{rule}`: {detail}")]
pub struct Violation {
    /// The rule broken.
    pub rule: Rule,
    /// What the change did.
    pub detail: String,
}

fn broke<T>(rule: Rule, detail: impl Into<String>) -> Result<T, Violation> {
    Err(Violation {
        rule,
        detail: detail.into(),
    })
}

/// The longest interval between stakeholder updates a change may set (s).
pub const MAX_UPDATE_EVERY_S: i64 = 7 * 86_400;

/// At most this many characters of a peer-supplied string go into a message.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(24).collect();
    if s.chars().nth(24).is_some() {
        out.push('…');
    }
    out
}

/// What an object of the document is, by where it hangs.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Root,
    StatusTimes,
    Roles,
    Roster,
    Timeline,
    Collection(Kind),
    RosterEntry { key: String, new: bool },
    Removals,
    RemovalEntry { new: bool },
    Lessons,
    Item { kind: Kind, id: String, new: bool },
    Other,
}

fn container(key: &str) -> Option<(Target, ObjType)> {
    Some(match key {
        "status_times" => (Target::StatusTimes, ObjType::Map),
        "roles" => (Target::Roles, ObjType::Map),
        "roster" => (Target::Roster, ObjType::Map),
        "timeline" => (Target::Timeline, ObjType::List),
        c => (
            Target::Collection(Kind::ITEMS.into_iter().find(|k| k.collection() == c)?),
            ObjType::Map,
        ),
    })
}

/// The fields an item of each kind is created with (besides `by`, `at`).
fn item_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Symptom => &["text", "where", "frequency", "impact"],
        Kind::Hypothesis => &["text", "status"],
        Kind::Test => &["hypothesis", "action", "rules_out_if"],
        Kind::Result => &["test", "hypothesis", "observation", "verdict"],
        Kind::Fix => &["text", "unconfirmed_because"],
        Kind::FollowUp => &["text"],
        Kind::Update => &["text"],
        // Typed fields, checked by `evidence::field_type`.
        Kind::Incident | Kind::Evidence => &[],
    }
}

/// The timeline kind of the command that creates an item of `kind`.
fn creating_event(kind: Kind) -> &'static str {
    match kind {
        Kind::Symptom => "symptom",
        Kind::Hypothesis => "hypothesis",
        Kind::Test => "test",
        Kind::Result => "result",
        Kind::Fix => "fix",
        Kind::FollowUp => "followup",
        Kind::Update => "update",
        Kind::Evidence => "evidence",
        Kind::Incident => "open",
    }
}

fn is_key_hex(k: &str) -> bool {
    k.len() == 64
        && k.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn norm(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The value left standing when `op` deletes some, not all, of the
/// concurrent values of a map key: how Automerge settles a conflict in
/// favour of a value already there.
fn settles_conflict(doc: &Automerge, op: &automerge::legacy::Op) -> Option<ScalarValue> {
    if op.action != OpType::Delete || op.pred.is_empty() {
        return None;
    }
    let Key::Map(key) = &op.key else {
        return None;
    };
    let obj = match &op.obj {
        ObjectId::Root => ROOT,
        ObjectId::Id(id) => doc.import(&id.to_string()).ok()?.0,
    };
    let values = doc.get_all(&obj, key.as_str()).ok()?;
    let deleted: Vec<String> = op.pred.iter().map(|p| p.to_string()).collect();
    if values.len() < 2
        || !deleted
            .iter()
            .all(|d| values.iter().any(|(_, id)| id.to_string() == *d))
    {
        return None;
    }
    let mut standing = values
        .into_iter()
        .filter(|(_, id)| !deleted.contains(&id.to_string()));
    match (standing.next(), standing.next()) {
        (Some((automerge::Value::Scalar(v), _)), None) => Some(v.into_owned()),
        _ => None,
    }
}

fn str_value(action: &OpType) -> Option<&str> {
    match action {
        OpType::Put(ScalarValue::Str(s)) => Some(s.as_str()),
        _ => None,
    }
}

fn is_int(action: &OpType) -> bool {
    matches!(
        action,
        OpType::Put(ScalarValue::Int(_) | ScalarValue::Uint(_) | ScalarValue::Timestamp(_))
    )
}

fn map_at(doc: &Automerge, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key).ok()?? {
        (Value::Object(ObjType::Map), id) => Some(id),
        _ => None,
    }
}

/// Whether `obj[key]` held something in the state the change was written
/// on (its deps). Checked only when it holds something now, so the common
/// case costs no history walk; an unreadable answer counts as "yes".
fn existed(doc: &Automerge, obj: &ObjId, key: &str, deps: &[ChangeHash]) -> bool {
    if !matches!(doc.get(obj, key), Ok(Some(_))) {
        return false;
    }
    doc.get_all_at(obj, key, deps)
        .map(|v| !v.is_empty())
        .unwrap_or(true)
}

/// Roster names by key, now or at `heads`.
fn roster_names(doc: &Automerge, heads: Option<&[ChangeHash]>) -> HashMap<String, String> {
    let Some(roster) = map_at(doc, &ROOT, "roster") else {
        return HashMap::new();
    };
    let keys: Vec<String> = match heads {
        Some(h) => doc.keys_at(&roster, h).collect(),
        None => doc.keys(&roster).collect(),
    };
    keys.into_iter()
        .map(|k| {
            let entry = match heads {
                Some(h) => match doc.get_at(&roster, k.as_str(), h) {
                    Ok(Some((Value::Object(ObjType::Map), e))) => Some(e),
                    _ => None,
                },
                None => map_at(doc, &roster, &k),
            };
            let name = entry
                .and_then(|e| match heads {
                    Some(h) => match doc.get_at(&e, "name", h) {
                        Ok(Some((Value::Scalar(s), _))) => s.as_str().map(str::to_string),
                        _ => None,
                    },
                    None => crate::view::get_str(doc, &e, "name"),
                })
                .unwrap_or_default();
            (k, name)
        })
        .collect()
}

/// An edit of an existing item: (kind, id, field, value, how many values it replaces).
struct ItemEditFact {
    kind: Kind,
    id: String,
    field: String,
    value: String,
    replaces: usize,
}

/// What one change writes, gathered while its operations are checked.
#[derive(Default)]
struct Facts {
    entries: Vec<TimelineEntry>,
    new_items: Vec<(Kind, String)>,
    /// New roster entries: key, name.
    new_members: Vec<(String, Option<String>)>,
    root: Vec<&'static str>,
    status_times: usize,
    roles: usize,
    /// The names roles are given to.
    role_names: Vec<String>,
    item_edits: Vec<ItemEditFact>,
    items_without_author: Vec<String>,
    /// Keys removed by the change.
    removed: Vec<String>,
    /// Fields written into the new removal entry.
    removal_fields: Vec<&'static str>,
    /// Lessons appended.
    lessons: usize,
    /// Fields written into new evidence: name, and the value of strings.
    evidence_fields: Vec<(String, String)>,
}

/// Checks changes against the schema. Keeps a cache of where the objects
/// of the document hang, valid for as long as the document only grows, so
/// one validator serves a whole batch.
#[derive(Default)]
pub struct Validator {
    targets: HashMap<String, Target>,
}

/// Checks one change against the document it is about to be applied to:
/// [`Validator::check`] with a fresh cache.
pub fn validate(doc: &Automerge, change: &Change, signer: &str) -> Result<(), Violation> {
    Validator::default().check(doc, change, signer)
}

impl Validator {
    fn classify(&mut self, doc: &Automerge, s: &str, depth: u8) -> Target {
        if s == "_root" {
            return Target::Root;
        }
        if let Some(t) = self.targets.get(s) {
            return t.clone();
        }
        let t = self.classify_uncached(doc, s, depth);
        self.targets.insert(s.to_string(), t.clone());
        t
    }

    fn classify_uncached(&mut self, doc: &Automerge, s: &str, depth: u8) -> Target {
        let Ok((obj, _)) = doc.import(s) else {
            return Target::Other;
        };
        let Some(parent) = doc.parents(&obj).ok().and_then(|mut p| p.next()) else {
            return Target::Other;
        };
        let Prop::Map(key) = parent.prop else {
            return Target::Other;
        };
        let up = if parent.obj == ROOT {
            Target::Root
        } else if depth == 0 {
            Target::Other
        } else {
            self.classify(doc, &parent.obj.to_string(), depth - 1)
        };
        match up {
            Target::Root if key == "removals" => Target::Removals,
            Target::Root if key == "lessons" => Target::Lessons,
            Target::Root if key == Kind::Update.collection() => Target::Collection(Kind::Update),
            Target::Root if key == crate::evidence::ROOT_KEY => Target::Collection(Kind::Evidence),
            Target::Root => container(&key).map(|(t, _)| t).unwrap_or(Target::Other),
            Target::Removals => Target::RemovalEntry { new: false },
            Target::Roster => Target::RosterEntry { key, new: false },
            Target::Collection(kind) => Target::Item {
                kind,
                id: key,
                new: false,
            },
            _ => Target::Other,
        }
    }

    /// Checks `change`, signed by `signer` (hex key), against `doc` as it
    /// stands before the change.
    pub fn check(
        &mut self,
        doc: &Automerge,
        change: &Change,
        signer: &str,
    ) -> Result<(), Violation> {
        let deps = change.deps().to_vec();
        let creating = deps.is_empty() && crate::view::get_str(doc, &ROOT, "id").is_none();
        let decoded = change.decode();
        let start = decoded.start_op.get();
        let actor = decoded.actor_id.to_string();
        let mut created: HashMap<String, Target> = HashMap::new();
        let mut facts = Facts::default();
        let roster_obj = map_at(doc, &ROOT, "roster");
        for (i, op) in decoded.operations.iter().enumerate() {
            let opid = format!("{}@{actor}", start + i as u64);
            // Automerge writes "settle a conflict on a value one side
            // already has" as a delete of the other values; seen as the
            // put of the surviving value, it goes through the same rules.
            let settled;
            let (op, also_replaces) = match settles_conflict(doc, op) {
                Some(survivor) => {
                    settled = automerge::legacy::Op {
                        action: OpType::Put(survivor),
                        ..op.clone()
                    };
                    (&settled, 1)
                }
                None => (op, 0),
            };
            let target = match &op.obj {
                ObjectId::Root => Target::Root,
                ObjectId::Id(id) => {
                    let s = id.to_string();
                    match created.get(&s) {
                        Some(t) => t.clone(),
                        None => self.classify(doc, &s, 2),
                    }
                }
            };
            match &op.action {
                OpType::Delete => {
                    return broke(
                        Rule::NoDeletion,
                        format!("deletes from {}", describe(&target)),
                    )
                }
                OpType::Increment(_) | OpType::MarkBegin(_) | OpType::MarkEnd(_) => {
                    return broke(
                        Rule::Shape,
                        "an operation no command makes (counter or mark)",
                    )
                }
                OpType::Make(_) | OpType::Put(_) => {}
            }
            let key = match &op.key {
                Key::Map(k) => Some(k.as_str()),
                Key::Seq(_) => None,
            };
            match target {
                Target::Root => {
                    let Some(k) = key else {
                        return broke(Rule::RootKey, "the root is a map");
                    };
                    match k {
                        "title" => match str_value(&op.action) {
                            Some(v) if !v.trim().is_empty() => facts.root.push("title"),
                            _ => return broke(Rule::RootKey, "`title` must be a non-empty string"),
                        },
                        "severity" => match str_value(&op.action).map(str::parse::<Severity>) {
                            Some(Ok(_)) => facts.root.push("severity"),
                            _ => return broke(Rule::RootKey, "`severity` must be a severity"),
                        },
                        "status" => match str_value(&op.action).map(str::parse::<Status>) {
                            Some(Ok(_)) => facts.root.push("status"),
                            _ => return broke(Rule::RootKey, "`status` must be a status"),
                        },
                        "join_secret" if !creating => {
                            // Rotated by a removal (checked in the shape).
                            if !matches!(&op.action, OpType::Put(ScalarValue::Bytes(b)) if b.len() == 32) {
                                return broke(Rule::Removal, "`join_secret` is 32 bytes");
                            }
                            facts.root.push("join_secret");
                        }
                        "summary" => match str_value(&op.action) {
                            Some(v) if !v.trim().is_empty() => facts.root.push("summary"),
                            _ => return broke(Rule::RootKey, "`summary` must be a non-empty string"),
                        },
                        "lessons" if !creating => {
                            // Made by the first lesson; never replaced.
                            if op.action != OpType::Make(ObjType::List) || !op.pred.is_empty() {
                                return broke(Rule::Lesson, "`lessons` is a list, made once");
                            }
                            created.insert(opid, Target::Lessons);
                            facts.root.push("lessons");
                        }
                        "updates" if !creating => {
                            // Made by the first posted update; never replaced.
                            if op.action != OpType::Make(ObjType::Map) || !op.pred.is_empty() {
                                return broke(Rule::ItemOnce, "`updates` is a map, made once");
                            }
                            created.insert(opid, Target::Collection(Kind::Update));
                            facts.root.push("updates");
                        }
                        "update_every" => match &op.action {
                            OpType::Put(ScalarValue::Int(s)) if (0..=MAX_UPDATE_EVERY_S).contains(s) => {
                                facts.root.push("update_every")
                            }
                            _ => {
                                return broke(
                                    Rule::RootKey,
                                    "`update_every` is a number of seconds, 0 (off) to 7 days",
                                )
                            }
                        },
                        "removals" if !creating => {
                            // Made by the first removal; never replaced.
                            if op.action != OpType::Make(ObjType::Map) || !op.pred.is_empty() {
                                return broke(Rule::Removal, "`removals` is a map, made once");
                            }
                            created.insert(opid, Target::Removals);
                            facts.root.push("removals");
                        }
                        crate::evidence::ROOT_KEY if !creating => {
                            // Made by the first evidence; never replaced.
                            if op.action != OpType::Make(ObjType::Map) || !op.pred.is_empty() {
                                return broke(Rule::Evidence, "`evidence` is a map, made once");
                            }
                            created.insert(opid, Target::Collection(Kind::Evidence));
                            facts.root.push(crate::evidence::ROOT_KEY);
                        }
                        "schema" | "id" | "created_at" | "join_secret" if creating => {
                            let ok = match k {
                                "id" => str_value(&op.action)
                                    .and_then(ItemId::parse)
                                    .is_some_and(|i| i.kind() == Kind::Incident),
                                "join_secret" => {
                                    matches!(&op.action, OpType::Put(ScalarValue::Bytes(b)) if b.len() == 32)
                                }
                                _ => is_int(&op.action),
                            };
                            if !ok {
                                return broke(Rule::Containers, format!("`{k}` has the wrong type"));
                            }
                        }
                        k => match container(k) {
                            Some((t, want)) if creating => {
                                if op.action != OpType::Make(want) {
                                    return broke(Rule::Containers, format!("`{k}` has the wrong type"));
                                }
                                created.insert(opid, t);
                            }
                            Some(_) => {
                                return broke(
                                    Rule::Containers,
                                    format!("writes root key `{k}`, which only the incident's creation writes"),
                                )
                            }
                            None if matches!(k, "schema" | "id" | "created_at" | "join_secret") => {
                                return broke(
                                    Rule::Containers,
                                    format!("writes root key `{k}`, which only the incident's creation writes"),
                                )
                            }
                            None => {
                                return broke(Rule::RootKey, format!("writes unknown root key `{}`", clip(k)))
                            }
                        },
                    }
                }
                Target::StatusTimes => {
                    let ok = key.is_some_and(|k| k.parse::<Status>().is_ok()) && is_int(&op.action);
                    if !ok {
                        return broke(Rule::RootKey, "`status_times` maps a status to a time");
                    }
                    facts.status_times += 1;
                }
                Target::Roles => {
                    let ok = key.is_some_and(|k| k.parse::<Role>().is_ok())
                        && str_value(&op.action).is_some_and(|v| !v.trim().is_empty());
                    if !ok {
                        return broke(Rule::RootKey, "`roles` maps a role to a name");
                    }
                    facts
                        .role_names
                        .extend(str_value(&op.action).map(str::to_string));
                    facts.roles += 1;
                }
                Target::Roster => {
                    let Some(k) = key.filter(|k| is_key_hex(k)) else {
                        return broke(Rule::RosterOnce, "roster keys are hex public keys");
                    };
                    if op.action != OpType::Make(ObjType::Map) {
                        return broke(Rule::RosterOnce, "a roster entry is a map");
                    }
                    let taken = !op.pred.is_empty()
                        || roster_obj
                            .as_ref()
                            .is_some_and(|r| existed(doc, r, k, &deps));
                    if taken {
                        return broke(
                            Rule::RosterOnce,
                            format!("replaces the roster entry of {}", clip(k)),
                        );
                    }
                    created.insert(
                        opid,
                        Target::RosterEntry {
                            key: k.to_string(),
                            new: true,
                        },
                    );
                    facts.new_members.push((k.to_string(), None));
                }
                Target::RosterEntry { key: member, new } => {
                    if !new {
                        return broke(
                            Rule::RosterOnce,
                            format!(
                                "rewrites the roster entry of {}; entries are written once and never renamed",
                                clip(&member)
                            ),
                        );
                    }
                    match key {
                        Some("name") => match str_value(&op.action) {
                            Some(n) if !n.trim().is_empty() => {
                                if let Some(m) =
                                    facts.new_members.iter_mut().find(|m| m.0 == member)
                                {
                                    m.1 = Some(n.to_string());
                                }
                            }
                            _ => {
                                return broke(
                                    Rule::RosterOnce,
                                    "a member's name is a non-empty string",
                                )
                            }
                        },
                        Some("at") if is_int(&op.action) => {}
                        Some("added_by") => {
                            if str_value(&op.action) != Some(signer) {
                                return broke(Rule::Author, "`added_by` is not the signer");
                            }
                        }
                        _ => {
                            return broke(
                                Rule::RosterOnce,
                                "a roster entry holds only name, at, added_by",
                            )
                        }
                    }
                }
                Target::Collection(kind) => {
                    let Some(id) = key.and_then(ItemId::parse).filter(|id| id.kind() == kind)
                    else {
                        return broke(
                            Rule::ItemOnce,
                            format!("{} holds only {} ids", kind.collection(), kind.noun()),
                        );
                    };
                    if op.action != OpType::Make(ObjType::Map) {
                        return broke(Rule::ItemOnce, "an item is a map");
                    }
                    let col = map_at(doc, &ROOT, kind.collection());
                    let taken = !op.pred.is_empty()
                        || col
                            .as_ref()
                            .is_some_and(|c| existed(doc, c, id.as_str(), &deps));
                    if taken {
                        return broke(Rule::ItemOnce, format!("replaces {} {id}", kind.noun()));
                    }
                    created.insert(
                        opid,
                        Target::Item {
                            kind,
                            id: id.to_string(),
                            new: true,
                        },
                    );
                    facts.new_items.push((kind, id.to_string()));
                    facts.items_without_author.push(id.to_string());
                }
                Target::Removals => {
                    let Some(k) = key.filter(|k| is_key_hex(k)) else {
                        return broke(Rule::Removal, "removals are keyed by hex public keys");
                    };
                    if op.action != OpType::Make(ObjType::Map) || !op.pred.is_empty() {
                        return broke(Rule::Removal, "a removal is a map, written once");
                    }
                    if !roster_names(doc, None).contains_key(k) {
                        return broke(Rule::Removal, format!("{} is not on the roster", clip(k)));
                    }
                    created.insert(opid, Target::RemovalEntry { new: true });
                    facts.removed.push(k.to_string());
                }
                Target::RemovalEntry { new } => {
                    if !new {
                        return broke(
                            Rule::Removal,
                            "rewrites a removal; removals are written once",
                        );
                    }
                    match key {
                        Some("by") if str_value(&op.action) == Some(signer) => {
                            facts.removal_fields.push("by")
                        }
                        Some("by") => return broke(Rule::Author, "`by` is not the signer"),
                        Some("at") if is_int(&op.action) => facts.removal_fields.push("at"),
                        Some("reason")
                            if str_value(&op.action).is_some_and(|r| !r.trim().is_empty()) =>
                        {
                            facts.removal_fields.push("reason")
                        }
                        _ => {
                            return broke(
                                Rule::Removal,
                                "a removal holds only by, at and a non-empty reason",
                            )
                        }
                    }
                }
                Target::Item {
                    kind,
                    id,
                    new: true,
                } => match key {
                    Some("by") => {
                        if str_value(&op.action) != Some(signer) {
                            return broke(
                                Rule::Author,
                                format!("{} {id} names another author", kind.noun()),
                            );
                        }
                        facts.items_without_author.retain(|i| *i != id);
                    }
                    Some("at") if is_int(&op.action) => {}
                    Some("since") if kind == Kind::Symptom && is_int(&op.action) => {}
                    Some("owner") if kind == Kind::FollowUp => {
                        let owner = str_value(&op.action).unwrap_or_default();
                        if !roster_names(doc, None).values().any(|n| n == owner) {
                            return broke(
                                Rule::Owner,
                                format!("`{}` is not a name on the roster", clip(owner)),
                            );
                        }
                    }
                    Some("due")
                        if kind == Kind::FollowUp
                            && str_value(&op.action).is_some_and(crate::when::is_date) => {}
                    Some(f) if kind == Kind::Evidence => {
                        use crate::evidence::FieldType;
                        let value = match crate::evidence::field_type(f) {
                            Some(FieldType::Str) => str_value(&op.action),
                            Some(FieldType::Int) if is_int(&op.action) => Some(""),
                            _ => None,
                        };
                        let Some(value) = value else {
                            return broke(
                                Rule::Evidence,
                                format!("evidence has no field `{}` of that type", clip(f)),
                            );
                        };
                        facts
                            .evidence_fields
                            .push((f.to_string(), value.to_string()));
                    }
                    Some(f)
                        if item_fields(kind).contains(&f) && str_value(&op.action).is_some() => {}
                    _ => {
                        return broke(
                            Rule::ItemOnce,
                            format!(
                                "a {} has no field `{}` of that type",
                                kind.noun(),
                                clip(key.unwrap_or("[]"))
                            ),
                        )
                    }
                },
                Target::Item {
                    kind,
                    id,
                    new: false,
                } => {
                    let (Some(f), Some(v)) = (key, str_value(&op.action)) else {
                        return broke(Rule::ItemEdit, format!("edits {} {id}", kind.noun()));
                    };
                    facts.item_edits.push(ItemEditFact {
                        kind,
                        id,
                        field: f.to_string(),
                        value: v.to_string(),
                        replaces: op.pred.len() + also_replaces,
                    });
                }
                Target::Timeline => {
                    if !op.insert || !op.pred.is_empty() {
                        return broke(
                            Rule::Timeline,
                            "overwrites a timeline entry; the timeline is append-only",
                        );
                    }
                    let entry = str_value(&op.action)
                        .and_then(|j| serde_json::from_str::<TimelineEntry>(j).ok());
                    match entry {
                        Some(e) => facts.entries.push(e),
                        None => {
                            return broke(Rule::Timeline, "a timeline entry is one JSON string")
                        }
                    }
                }
                Target::Lessons => {
                    if !op.insert || !op.pred.is_empty() {
                        return broke(Rule::Lesson, "overwrites a lesson; lessons are appended");
                    }
                    let lesson = str_value(&op.action)
                        .and_then(|j| serde_json::from_str::<crate::Lesson>(j).ok());
                    match lesson {
                        Some(l) if l.by != signer => {
                            return broke(Rule::Author, "a lesson names another author")
                        }
                        Some(l) if !l.text.trim().is_empty() => facts.lessons += 1,
                        _ => {
                            return broke(
                                Rule::Lesson,
                                "a lesson is one JSON string with at, by and a text",
                            )
                        }
                    }
                }
                Target::Other => {
                    return broke(
                        Rule::UnknownObject,
                        "writes an object outside the incident's schema",
                    )
                }
            }
        }
        self.check_shape(doc, &deps, creating, signer, facts)
    }

    fn check_shape(
        &self,
        doc: &Automerge,
        deps: &[ChangeHash],
        creating: bool,
        signer: &str,
        facts: Facts,
    ) -> Result<(), Violation> {
        let [entry] = facts.entries.as_slice() else {
            return broke(
                Rule::Shape,
                format!(
                    "records {} timeline entries; every command records exactly one",
                    facts.entries.len()
                ),
            );
        };
        if entry.by != signer {
            return broke(Rule::Author, "the timeline entry names another author");
        }
        if let Some(id) = facts.items_without_author.first() {
            return broke(Rule::Author, format!("item {id} names no author"));
        }
        let ev = entry.kind.as_str();
        if creating != (ev == "open") {
            return broke(
                Rule::Shape,
                "only the change that creates the incident is an `open` entry",
            );
        }
        // Names come from the roster: the entry must carry the signer's.
        let now = roster_names(doc, None);
        let own = now.get(signer).cloned().or_else(|| {
            facts
                .new_members
                .iter()
                .find(|m| creating && m.0 == signer)
                .and_then(|m| m.1.clone())
        });
        if own.as_deref() != Some(entry.name.as_str()) {
            return broke(
                Rule::Name,
                format!(
                    "the entry is signed as `{}` but names `{}`",
                    clip(&own.unwrap_or_default()),
                    clip(&entry.name)
                ),
            );
        }
        // Roster entries: only by `member` (one) or `open` (the creator's own).
        match (ev, facts.new_members.as_slice()) {
            (_, []) => {}
            ("member", [_]) => {}
            ("open", [m]) if m.0 == signer => {}
            _ => {
                return broke(
                    Rule::Shape,
                    format!(
                        "a `{}` change adds {} roster entr(ies)",
                        clip(ev),
                        facts.new_members.len()
                    ),
                )
            }
        }
        for (i, (key, name)) in facts.new_members.iter().enumerate() {
            let Some(name) = name else {
                return broke(Rule::RosterOnce, "a roster entry needs a name");
            };
            let clash = |names: &HashMap<String, String>| {
                names.iter().any(|(k, n)| k != key && norm(n) == norm(name))
                    || facts.new_members[..i]
                        .iter()
                        .any(|m| m.1.as_deref().map(norm) == Some(norm(name)))
            };
            // Taken now; if it was not yet taken where the change was
            // written, two members were admitted concurrently: allowed.
            if clash(&now) && clash(&roster_names(doc, Some(deps))) {
                return broke(
                    Rule::UniqueName,
                    format!("the name `{}` is already on the roster", clip(name)),
                );
            }
        }
        // New items: one, of the kind the entry says, and the entry names it.
        match facts.new_items.as_slice() {
            [] => {}
            [(kind, id)] if creating_event(*kind) == ev && entry.item.as_deref() == Some(id) => {}
            _ => {
                return broke(
                    Rule::Shape,
                    format!(
                        "a `{}` change creates {} item(s)",
                        clip(ev),
                        facts.new_items.len()
                    ),
                )
            }
        }
        // Each of these commands writes the one thing it is named for.
        let writes_its_thing = match ev {
            "update" => !facts.new_items.is_empty(),
            "interval" => facts.root.contains(&"update_every"),
            _ => true,
        };
        if !writes_its_thing {
            return broke(
                Rule::Shape,
                format!("an `{ev}` change must write what its command writes"),
            );
        }
        if let [(Kind::Evidence, _)] = facts.new_items.as_slice() {
            if let Some(problem) = crate::evidence::incomplete(&facts.evidence_fields) {
                return broke(Rule::Evidence, problem);
            }
            let of = facts
                .evidence_fields
                .iter()
                .find(|(k, _)| k == "of")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            let exists = ItemId::parse(of)
                .filter(|id| Kind::ITEMS.contains(&id.kind()))
                .and_then(|id| {
                    let col = map_at(doc, &ROOT, id.kind().collection())?;
                    map_at(doc, &col, id.as_str())
                })
                .is_some();
            if !exists {
                return broke(
                    Rule::Evidence,
                    format!("evidence is attached to `{}`, which is no item", clip(of)),
                );
            }
        }
        // A removal: one member, not the signer, whole, with a new secret.
        if ev == "remove" {
            let whole = ["by", "at", "reason"]
                .iter()
                .all(|f| facts.removal_fields.contains(f));
            match facts.removed.as_slice() {
                [k] if k == signer => return broke(Rule::Removal, "a member cannot remove itself"),
                [_] if whole && facts.root.contains(&"join_secret") => {}
                _ => {
                    return broke(
                        Rule::Removal,
                        "a `remove` change removes one member, with by, at, reason and a new join secret",
                    )
                }
            }
        } else if !facts.removed.is_empty() {
            return broke(
                Rule::Shape,
                format!("a `{}` change removes a member", clip(ev)),
            );
        }
        for k in &facts.root {
            let allowed: &[&str] = match *k {
                "join_secret" | "removals" => &["remove"],
                "lessons" => &["lesson"],
                "summary" => &["summary", "resolve"],
                "updates" => &["update"],
                "update_every" => &["interval", "resolve"],
                crate::evidence::ROOT_KEY => &["evidence"],
                "title" => &["title", "resolve", "open"],
                "severity" => &["severity", "resolve", "open"],
                _ => &["status", "reopen", "resolve", "open"],
            };
            if !allowed.contains(&ev) {
                return broke(Rule::Shape, format!("a `{}` change writes `{k}`", clip(ev)));
            }
        }
        if facts.status_times > 0 && !matches!(ev, "status" | "reopen" | "open") {
            return broke(
                Rule::Shape,
                format!("a `{}` change writes status times", clip(ev)),
            );
        }
        match (ev, facts.lessons) {
            ("lesson", 1) => {}
            ("lesson", n) | (_, n @ 1..) => {
                return broke(
                    Rule::Lesson,
                    format!("a `{}` change appends {n} lesson(s)", clip(ev)),
                )
            }
            _ => {}
        }
        if facts.roles > 0 && !matches!(ev, "role" | "resolve") {
            return broke(Rule::Shape, format!("a `{}` change writes roles", clip(ev)));
        }
        // Checked against the roster where the change was written, so every
        // device decides alike whatever order changes arrive in.
        if ev == "role" {
            let names = roster_names(doc, Some(deps));
            let removed: Vec<String> = map_at(doc, &ROOT, "removals")
                .map(|r| doc.keys_at(&r, deps).collect())
                .unwrap_or_default();
            for name in &facts.role_names {
                let member = names.iter().any(|(k, n)| n == name && !removed.contains(k));
                if !member {
                    return broke(
                        Rule::RoleHolder,
                        format!("gives a role to `{}`, who is not a member", clip(name)),
                    );
                }
            }
        }
        if ev == "resolve" && facts.root.len() + facts.roles + facts.item_edits.len() != 1 {
            return broke(Rule::Shape, "a `resolve` change settles exactly one field");
        }
        for e in &facts.item_edits {
            let what = format!("{} {}: `{}`", e.kind.noun(), e.id, clip(&e.field));
            let status = e.value.parse::<HypothesisStatus>().ok();
            let ok = match (ev, e.kind, e.field.as_str()) {
                // A result that rules the hypothesis out, with the result itself.
                ("result", Kind::Hypothesis, "status") => {
                    status == Some(HypothesisStatus::RuledOut)
                        && facts.new_items.iter().any(|(k, _)| *k == Kind::Result)
                }
                ("result", Kind::Hypothesis, "ruled_out_by" | "ruled_out_result") => {
                    facts.new_items.iter().any(|(k, _)| *k == Kind::Result)
                }
                ("confirm", Kind::Hypothesis, "status") => {
                    status == Some(HypothesisStatus::Confirmed)
                }
                ("confirm", Kind::Hypothesis, "confirmed_by" | "evidence") => {
                    entry.item.as_deref() == Some(e.id.as_str())
                }
                // Settling a real conflict: the write replaces two values or more.
                ("resolve", Kind::Hypothesis, "status") => status.is_some() && e.replaces >= 2,
                ("resolve", Kind::Hypothesis | Kind::Symptom, "text") => e.replaces >= 2,
                _ => false,
            };
            if !ok {
                return broke(
                    Rule::ItemEdit,
                    format!("a `{}` change edits {what}; items change only by the status moves the method allows", clip(ev)),
                );
            }
        }
        Ok(())
    }
}

fn describe(t: &Target) -> String {
    match t {
        Target::Root => "the root".into(),
        Target::StatusTimes => "status_times".into(),
        Target::Roles => "roles".into(),
        Target::Roster => "the roster".into(),
        Target::Timeline => "the timeline".into(),
        Target::Collection(k) => k.collection().into(),
        Target::RosterEntry { key, .. } => format!("the roster entry of {}", clip(key)),
        Target::Item { kind, id, .. } => format!("{} {}", kind.noun(), clip(id)),
        Target::Removals => "removals".into(),
        Target::RemovalEntry { .. } => "a removal".into(),
        Target::Lessons => "lessons".into(),
        Target::Other => "an object outside the schema".into(),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
