//! Reading the document into plain structs, and finding conflicts.

use std::collections::BTreeMap;

use automerge::{Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};

use crate::evidence::Evidence;
use crate::{ItemId, Kind, RuleError, Severity, Status};

/// One item (symptom, hypothesis, test, ...) with its fields as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The full id.
    pub id: ItemId,
    /// The shortest unique prefix, for display.
    pub short: String,
    /// Fields by name (`text`, `status`, `hypothesis`, ...).
    pub fields: BTreeMap<String, String>,
    /// Hex key of the author.
    pub by: String,
    /// Creation time, ms since the Unix epoch.
    pub at: i64,
}

impl Item {
    /// A field, or "" when absent.
    pub fn get(&self, field: &str) -> &str {
        self.fields.get(field).map(String::as_str).unwrap_or("")
    }
}

/// What an id names in a view: an item, or an evidence.
#[derive(Clone, Copy, Debug)]
pub enum Found<'a> {
    /// A symptom, hypothesis, test, result, fix or follow-up.
    Item(&'a Item),
    /// An evidence.
    Evidence(&'a Evidence),
}

impl Found<'_> {
    /// The full id.
    pub fn id(&self) -> &ItemId {
        match self {
            Found::Item(i) => &i.id,
            Found::Evidence(e) => &e.id,
        }
    }
}

/// One line of the timeline, stored as one JSON string in the document.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimelineEntry {
    /// ms since the Unix epoch.
    pub at: i64,
    /// Hex key of the author.
    pub by: String,
    /// The author's display name when they wrote it.
    pub name: String,
    /// What kind of event (`symptom`, `result`, `status`, ...).
    pub kind: String,
    /// The item concerned, if any.
    pub item: Option<String>,
    /// Human text.
    pub text: String,
}

/// A lesson learned, stored as one JSON string in the `lessons` list.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lesson {
    /// ms since the Unix epoch.
    pub at: i64,
    /// Hex key of the author (the signer of the change).
    pub by: String,
    /// The lesson.
    pub text: String,
}

/// A roster member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Hex public key.
    pub key: String,
    /// Display name.
    pub name: String,
}

/// A field holding several concurrent values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Path such as `title`, `roles/commander` or `hypotheses/h7k2q9mz/status`.
    pub field: String,
    /// Each competing value with the actor (hex) whose change wrote it.
    pub values: Vec<(String, String)>,
}

/// A snapshot of the whole incident for reading and rendering.
#[derive(Clone, Debug, Default)]
pub struct IncidentView {
    /// Incident id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: Option<Severity>,
    /// Status.
    pub status: Option<Status>,
    /// When each status was (last) entered.
    pub status_times: BTreeMap<String, i64>,
    /// Role → name.
    pub roles: BTreeMap<String, String>,
    /// The roster.
    pub members: Vec<Member>,
    /// Items by kind, oldest first.
    pub items: BTreeMap<Kind, Vec<Item>>,
    /// The timeline, in time order (document order within one millisecond).
    pub timeline: Vec<TimelineEntry>,
    /// Unresolved conflicts.
    pub conflicts: Vec<Conflict>,
    /// Members taken off the roster, oldest first.
    pub removals: Vec<Removal>,
    /// Evidence attached to items, oldest first.
    pub evidence: Vec<Evidence>,
    /// Creation time.
    pub created_at: i64,
    /// The narrative summary for the report (`summary`), if written.
    pub summary: Option<String>,
    /// Lessons learned, oldest first.
    pub lessons: Vec<Lesson>,
    /// The incident's own update interval in seconds (`None`: never set;
    /// `Some(0)`: off); [`Standing::update_every`] is the one that applies.
    pub update_every: Option<i64>,
    /// Where the incident stands, for the nudges.
    pub standing: Standing,
}

impl IncidentView {
    /// Items of one kind.
    pub fn items(&self, kind: Kind) -> &[Item] {
        self.items.get(&kind).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Finds an item by full id.
    pub fn item(&self, id: &str) -> Option<&Item> {
        let kind = Kind::from_letter(id.chars().next()?)?;
        self.items(kind).iter().find(|i| i.id.as_str() == id)
    }

    /// The evidence attached to the item `id` (full id), oldest first.
    pub fn evidence_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Evidence> + 'a {
        self.evidence.iter().filter(move |e| e.of == id)
    }

    /// What a typed id or unique prefix names: an item or an evidence.
    pub fn resolve(&self, typed: &str) -> Result<Found<'_>, RuleError> {
        let typed = typed.trim().to_ascii_lowercase();
        let unknown = || RuleError::UnknownId {
            kind: "item",
            id: typed.clone(),
        };
        let kind = typed.chars().next().and_then(Kind::from_letter);
        if !crate::ids::could_be_id(&typed) || kind.is_none() || kind == Some(Kind::Incident) {
            return Err(unknown());
        }
        let hits: Vec<Found<'_>> = if kind == Some(Kind::Evidence) {
            self.evidence
                .iter()
                .filter(|e| e.id.as_str().starts_with(&typed))
                .map(Found::Evidence)
                .collect()
        } else {
            self.items(kind.unwrap_or(Kind::Incident))
                .iter()
                .filter(|i| i.id.as_str().starts_with(&typed))
                .map(Found::Item)
                .collect()
        };
        match hits.as_slice() {
            [] => Err(unknown()),
            [one] => Ok(*one),
            many => Err(RuleError::AmbiguousId {
                id: typed,
                candidates: many.iter().map(|f| f.id().to_string()).collect(),
            }),
        }
    }

    /// The removal of `key`, if it was removed (the first, when several
    /// members removed it concurrently).
    pub fn removal_of(&self, key: &str) -> Option<&Removal> {
        self.removals.iter().find(|r| r.key == key)
    }

    /// Display name of a key: the roster name, else a fingerprint.
    pub fn name_of(&self, key: &str) -> String {
        self.members
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| crate::fingerprint(key))
    }

    /// When impact began: the earliest `since` of the symptoms, if any
    /// symptom said.
    pub fn impact_start(&self) -> Option<i64> {
        self.items(Kind::Symptom)
            .iter()
            .filter_map(|s| s.get("since").parse::<i64>().ok())
            .min()
    }

    /// The short form of a full id, or the id itself when unknown.
    pub fn short(&self, id: &str) -> String {
        self.item(id)
            .map(|i| i.short.clone())
            .unwrap_or_else(|| id.to_string())
    }
}

pub(crate) fn scalar_to_string(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Str(s) => Some(s.to_string()),
        ScalarValue::Int(i) => Some(i.to_string()),
        ScalarValue::Uint(i) => Some(i.to_string()),
        ScalarValue::Timestamp(i) => Some(i.to_string()),
        ScalarValue::Boolean(b) => Some(b.to_string()),
        ScalarValue::F64(f) => Some(f.to_string()),
        _ => None,
    }
}

pub(crate) fn get_str(doc: &Automerge, obj: &ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(v), _) => scalar_to_string(v.as_ref()),
        _ => None,
    }
}

pub(crate) fn get_int(doc: &Automerge, obj: &ObjId, key: &str) -> i64 {
    match doc.get(obj, key).ok().flatten() {
        Some((Value::Scalar(v), _)) => match v.as_ref() {
            ScalarValue::Int(i) | ScalarValue::Timestamp(i) => *i,
            ScalarValue::Uint(u) => *u as i64,
            _ => 0,
        },
        _ => 0,
    }
}

pub(crate) fn get_map(doc: &Automerge, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key).ok()?? {
        (Value::Object(ObjType::Map), id) => Some(id),
        _ => None,
    }
}

fn string_map(doc: &Automerge, obj: &ObjId) -> BTreeMap<String, String> {
    doc.map_range(obj, ..)
        .filter_map(|item| {
            let v = match Value::from(item.value) {
                Value::Scalar(s) => scalar_to_string(s.as_ref())?,
                _ => return None,
            };
            Some((item.key.to_string(), v))
        })
        .collect()
}

/// The items held by `cols` (one collection, or every concurrently made
/// map of a lazily made one), oldest first.
fn read_items(doc: &Automerge, cols: &[ObjId]) -> Vec<Item> {
    let mut keys: Vec<(String, &ObjId)> = cols
        .iter()
        .flat_map(|c| doc.keys(c).map(move |k| (k, c)))
        .collect();
    keys.sort();
    keys.dedup_by(|a, b| a.0 == b.0);
    let names: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
    let shorts = crate::ids::short_forms(&names);
    let mut items: Vec<Item> = keys
        .iter()
        .zip(shorts)
        .filter_map(|((key, col), short)| {
            let id = ItemId::parse(key)?;
            let obj = get_map(doc, col, key)?;
            let mut fields = string_map(doc, &obj);
            let by = fields.remove("by").unwrap_or_default();
            let at = get_int(doc, &obj, "at");
            fields.remove("at");
            Some(Item {
                short,
                id,
                fields,
                by,
                at,
            })
        })
        .collect();
    items.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    items
}

/// Every map at the root's `updates`: it is made by the first posted
/// update, and two members posting their first offline make two, both
/// kept (like `removals`).
pub(crate) fn update_maps(doc: &Automerge) -> Vec<ObjId> {
    doc.get_all(ROOT, Kind::Update.collection())
        .unwrap_or_default()
        .into_iter()
        .filter(|(v, _)| matches!(v, Value::Object(ObjType::Map)))
        .map(|(_, id)| id)
        .collect()
}

/// The root's `update_every` setting in seconds: `None` when never set
/// (the severity's default applies), `Some(0)` when turned off.
fn update_every(doc: &Automerge) -> Option<i64> {
    match doc.get(ROOT, "update_every").ok().flatten() {
        Some((Value::Scalar(v), _)) => match v.as_ref() {
            ScalarValue::Int(i) => Some((*i).max(0)),
            ScalarValue::Uint(u) => Some(i64::try_from(*u).unwrap_or(i64::MAX)),
            _ => None,
        },
        _ => None,
    }
}

/// Where the incident stands, in the few facts the nudges and the prompt
/// need. Read from the document without its timeline or the text of its
/// items, so the notebook can publish it after every request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Severity.
    pub severity: Option<Severity>,
    /// Status.
    pub status: Option<Status>,
    /// When the incident was opened (ms).
    pub opened_at: i64,
    /// Whether someone holds the commander role.
    pub commander: bool,
    /// Whether a hypothesis is confirmed.
    pub cause_confirmed: bool,
    /// How many fixes are recorded.
    pub fixes: usize,
    /// Short ids of the fixes made before the cause was confirmed, while
    /// it still is not (empty once a cause is confirmed).
    pub fixes_before_cause: Vec<String>,
    /// When the last stakeholder update was posted (ms), if one was.
    pub last_update_at: Option<i64>,
    /// Texts of the follow-ups nobody owns, oldest first.
    pub followups_without_owner: Vec<String>,
    /// The interval between updates in seconds, `None` for no reminder:
    /// the incident's `update_every` if set (0 = off), else 30 minutes for
    /// SEV1 and SEV2.
    pub update_every: Option<i64>,
}

/// The interval between stakeholder updates when the incident sets none.
pub const DEFAULT_UPDATE_EVERY_S: i64 = 30 * 60;

/// The update interval in seconds that applies: the incident's setting
/// (0 = off), else the severity's default.
pub fn effective_update_every(set: Option<i64>, severity: Option<Severity>) -> Option<i64> {
    match set {
        Some(0) => None,
        Some(s) => Some(s),
        None => matches!(severity, Some(Severity::Sev1 | Severity::Sev2))
            .then_some(DEFAULT_UPDATE_EVERY_S),
    }
}

/// Reads the [`Standing`] of an incident.
pub(crate) fn standing(doc: &Automerge) -> Standing {
    let severity = get_str(doc, &ROOT, "severity").and_then(|s| s.parse().ok());
    let commander = get_map(doc, &ROOT, "roles")
        .and_then(|r| get_str(doc, &r, crate::Role::Commander.as_str()))
        .is_some_and(|n| !n.trim().is_empty());
    let items = |kind: Kind| -> Vec<(String, ObjId)> {
        get_map(doc, &ROOT, kind.collection())
            .map(|c| {
                doc.keys(&c)
                    .filter_map(|k| get_map(doc, &c, &k).map(|o| (k, o)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let cause_confirmed = items(Kind::Hypothesis).iter().any(|(_, h)| {
        get_str(doc, h, "status").as_deref() == Some(crate::HypothesisStatus::Confirmed.as_str())
    });
    let mut fixes = items(Kind::Fix);
    fixes.sort_by(|a, b| a.0.cmp(&b.0));
    let ids: Vec<String> = fixes.iter().map(|(k, _)| k.clone()).collect();
    let fixes_before_cause = if cause_confirmed {
        Vec::new()
    } else {
        fixes
            .iter()
            .zip(crate::ids::short_forms(&ids))
            .filter(|((_, fix), _)| {
                get_str(doc, fix, "unconfirmed_because").is_some_and(|r| !r.is_empty())
            })
            .map(|(_, short)| short)
            .collect()
    };
    let last_update_at = update_maps(doc)
        .iter()
        .flat_map(|m| {
            doc.keys(m)
                .filter_map(|k| get_map(doc, m, &k))
                .map(|u| get_int(doc, &u, "at"))
                .collect::<Vec<_>>()
        })
        .max();
    let mut unowned: Vec<(i64, String)> = items(Kind::FollowUp)
        .iter()
        .filter(|(_, a)| get_str(doc, a, "owner").is_none_or(|o| o.trim().is_empty()))
        .map(|(_, a)| {
            (
                get_int(doc, a, "at"),
                get_str(doc, a, "text").unwrap_or_default(),
            )
        })
        .collect();
    unowned.sort();
    Standing {
        followups_without_owner: unowned.into_iter().map(|(_, t)| t).collect(),
        severity,
        status: get_str(doc, &ROOT, "status").and_then(|s| s.parse().ok()),
        opened_at: get_int(doc, &ROOT, "created_at"),
        commander,
        cause_confirmed,
        fixes: fixes.len(),
        fixes_before_cause,
        last_update_at,
        update_every: effective_update_every(update_every(doc), severity),
    }
}

/// The whole view; with `timeline` false, the timeline is left empty (for
/// readers of items only, such as `similar`, so long timelines cost nothing).
pub(crate) fn read(doc: &Automerge, timeline: bool) -> Result<IncidentView, RuleError> {
    let mut v = IncidentView {
        id: get_str(doc, &ROOT, "id")
            .ok_or_else(|| RuleError::Document("missing incident id".into()))?,
        title: get_str(doc, &ROOT, "title").unwrap_or_default(),
        severity: get_str(doc, &ROOT, "severity").and_then(|s| s.parse().ok()),
        status: get_str(doc, &ROOT, "status").and_then(|s| s.parse().ok()),
        created_at: get_int(doc, &ROOT, "created_at"),
        summary: get_str(doc, &ROOT, "summary"),
        lessons: lessons(doc),
        ..Default::default()
    };
    if let Some(times) = get_map(doc, &ROOT, "status_times") {
        v.status_times = doc
            .keys(&times)
            .map(|k| {
                let t = get_int(doc, &times, &k);
                (k, t)
            })
            .collect();
    }
    if let Some(roles) = get_map(doc, &ROOT, "roles") {
        v.roles = string_map(doc, &roles);
    }
    if let Some(roster) = get_map(doc, &ROOT, "roster") {
        for key in doc.keys(&roster) {
            let name = get_map(doc, &roster, &key)
                .and_then(|m| get_str(doc, &m, "name"))
                .unwrap_or_default();
            v.members.push(Member { key, name });
        }
    }
    v.removals = removals(doc);
    v.evidence = crate::evidence::read(doc);
    for kind in Kind::ITEMS {
        let Some(col) = get_map(doc, &ROOT, kind.collection()) else {
            continue;
        };
        v.items.insert(kind, read_items(doc, &[col]));
    }
    v.items
        .insert(Kind::Update, read_items(doc, &update_maps(doc)));
    v.update_every = update_every(doc);
    v.standing = standing(doc);
    let list = doc.get(ROOT, "timeline")?.filter(|_| timeline);
    if let Some((Value::Object(ObjType::List), timeline)) = list {
        v.timeline.reserve(doc.length(&timeline));
        let names: std::collections::HashMap<&str, &String> = v
            .members
            .iter()
            .map(|m| (m.key.as_str(), &m.name))
            .collect();
        for entry in doc.list_range(&timeline, ..) {
            if let Value::Scalar(s) = Value::from(entry.value) {
                if let Some(mut e) = s
                    .as_str()
                    .and_then(|j| serde_json::from_str::<TimelineEntry>(j).ok())
                {
                    // Names come from the roster, never from the entry.
                    if let Some(name) = names.get(e.by.as_str()) {
                        e.name.clone_from(name);
                    }
                    v.timeline.push(e);
                }
            }
        }
        // Document order is not time order once offline edits merge: a
        // list's concurrent inserts are placed by actor, not by time. A
        // stable sort keeps the document order, the same on every member,
        // for entries of the same millisecond.
        v.timeline.sort_by_key(|e| e.at);
    }
    v.conflicts = conflicts(doc);
    Ok(v)
}

/// Fields that hold one value and can therefore conflict.
pub(crate) fn conflicts(doc: &Automerge) -> Vec<Conflict> {
    let mut out = Vec::new();
    let mut check = |obj: &ObjId, key: &str, path: String| {
        let Ok(all) = doc.get_all(obj, key) else {
            return;
        };
        if all.len() < 2 {
            return;
        }
        let values: Vec<(String, String)> = all
            .iter()
            .filter_map(|(v, id)| match v {
                Value::Scalar(s) => Some((scalar_to_string(s.as_ref())?, actor_of(id))),
                _ => None,
            })
            .collect();
        let distinct = values
            .iter()
            .map(|(v, _)| v)
            .collect::<std::collections::BTreeSet<_>>();
        if distinct.len() > 1 {
            out.push(Conflict {
                field: path,
                values,
            });
        }
    };
    for key in ["title", "severity", "status", "summary", "update_every"] {
        check(&ROOT, key, key.to_string());
    }
    if let Some(roles) = get_map(doc, &ROOT, "roles") {
        for role in doc.keys(&roles) {
            check(&roles, &role, format!("roles/{role}"));
        }
    }
    for kind in [Kind::Hypothesis, Kind::Symptom] {
        let Some(col) = get_map(doc, &ROOT, kind.collection()) else {
            continue;
        };
        for id in doc.keys(&col) {
            if let Some(obj) = get_map(doc, &col, &id) {
                for field in ["status", "text"] {
                    check(&obj, field, format!("{}/{id}/{field}", kind.collection()));
                }
            }
        }
    }
    out
}

fn actor_of(id: &automerge::ObjId) -> String {
    // An ExId's text form is `counter@actorhex`.
    let text = id.to_string();
    text.split('@').nth(1).unwrap_or(&text).to_string()
}

/// Checks a value for a conflicting field and returns its stored form.
pub(crate) fn canonical_value(field: &str, value: &str) -> Result<String, RuleError> {
    Ok(match field {
        "severity" => value.parse::<Severity>()?.as_str().to_string(),
        "status" => value.parse::<Status>()?.as_str().to_string(),
        "update_every" => value
            .parse::<i64>()
            .ok()
            .filter(|s| (0..=crate::validate::MAX_UPDATE_EVERY_S).contains(s))
            .ok_or_else(|| RuleError::BadValue {
                what: "update interval",
                value: value.to_string(),
                expected: "seconds, 0 (off) to 604800".into(),
            })?
            .to_string(),
        f if f.ends_with("/status") && f.starts_with("hypotheses/") => value
            .parse::<crate::HypothesisStatus>()?
            .as_str()
            .to_string(),
        _ => value.to_string(),
    })
}

/// A member taken off the roster by a `remove` change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The removed member's hex key.
    pub key: String,
    /// The remover's hex key.
    pub by: String,
    /// When (the remover's clock, ms).
    pub at: i64,
    /// Why.
    pub reason: String,
    /// The change that made the removal.
    pub change: Option<automerge::ChangeHash>,
}

/// Every removal in the document, oldest first. Reads every object at
/// `removals` and every entry at each key, so removals made concurrently
/// (two first removals, two removals of the same member) all count:
/// removals only accumulate, and every node reads the same set.
pub fn removals(doc: &Automerge) -> Vec<Removal> {
    let mut out = Vec::new();
    for (v, list) in doc.get_all(ROOT, "removals").unwrap_or_default() {
        if !matches!(v, Value::Object(ObjType::Map)) {
            continue;
        }
        for key in doc.keys(&list) {
            for (v, entry) in doc.get_all(&list, key.as_str()).unwrap_or_default() {
                if !matches!(v, Value::Object(ObjType::Map)) {
                    continue;
                }
                out.push(Removal {
                    key: key.clone(),
                    by: get_str(doc, &entry, "by").unwrap_or_default(),
                    at: get_int(doc, &entry, "at"),
                    reason: get_str(doc, &entry, "reason").unwrap_or_default(),
                    change: doc.hash_for_opid(&entry),
                });
            }
        }
    }
    out.sort_by(|a, b| (a.at, &a.key, &a.by).cmp(&(b.at, &b.key, &b.by)));
    out
}

/// Every lesson, oldest first. Reads every list at `lessons`, so lessons
/// written while two members made the first one concurrently all count.
pub(crate) fn lessons(doc: &Automerge) -> Vec<Lesson> {
    let mut out: Vec<Lesson> = Vec::new();
    for (v, list) in doc.get_all(ROOT, "lessons").unwrap_or_default() {
        if !matches!(v, Value::Object(ObjType::List)) {
            continue;
        }
        for entry in doc.list_range(&list, ..) {
            if let Value::Scalar(s) = Value::from(entry.value) {
                if let Some(l) = s.as_str().and_then(|j| serde_json::from_str(j).ok()) {
                    out.push(l);
                }
            }
        }
    }
    out.sort_by(|a, b| (a.at, &a.by, &a.text).cmp(&(b.at, &b.by, &b.text)));
    out
}

/// Hex keys of removed members.
pub fn removed_keys(doc: &Automerge) -> std::collections::HashSet<String> {
    removals(doc).into_iter().map(|r| r.key).collect()
}
