//! Reading the document into plain structs, and finding conflicts.

use std::collections::BTreeMap;

use automerge::{Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};

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
    /// The timeline, in document order.
    pub timeline: Vec<TimelineEntry>,
    /// Unresolved conflicts.
    pub conflicts: Vec<Conflict>,
    /// Members taken off the roster, oldest first.
    pub removals: Vec<Removal>,
    /// Creation time.
    pub created_at: i64,
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

fn get_int(doc: &Automerge, obj: &ObjId, key: &str) -> i64 {
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

pub(crate) fn read(doc: &Automerge) -> Result<IncidentView, RuleError> {
    let mut v = IncidentView {
        id: get_str(doc, &ROOT, "id")
            .ok_or_else(|| RuleError::Document("missing incident id".into()))?,
        title: get_str(doc, &ROOT, "title").unwrap_or_default(),
        severity: get_str(doc, &ROOT, "severity").and_then(|s| s.parse().ok()),
        status: get_str(doc, &ROOT, "status").and_then(|s| s.parse().ok()),
        created_at: get_int(doc, &ROOT, "created_at"),
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
    for kind in Kind::ITEMS {
        let Some(col) = get_map(doc, &ROOT, kind.collection()) else {
            continue;
        };
        let mut keys: Vec<String> = doc.keys(&col).collect();
        keys.sort();
        let shorts = crate::ids::short_forms(&keys);
        let mut items: Vec<Item> = keys
            .iter()
            .zip(shorts)
            .filter_map(|(key, short)| {
                let id = ItemId::parse(key)?;
                let obj = get_map(doc, &col, key)?;
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
        v.items.insert(kind, items);
    }
    if let Some((Value::Object(ObjType::List), timeline)) = doc.get(ROOT, "timeline")? {
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
    for key in ["title", "severity", "status"] {
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

/// Hex keys of removed members.
pub fn removed_keys(doc: &Automerge) -> std::collections::HashSet<String> {
    removals(doc).into_iter().map(|r| r.key).collect()
}
