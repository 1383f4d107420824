//! Item ids: a kind letter and random base32, typed by their shortest unique
//! prefix.

use std::fmt;

use rand::Rng;

/// Lower-case Crockford base32: no `i`, `l`, `o`, `u`, so ids read aloud well.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Random characters after the kind letter: 35 bits, so two responders
/// creating items concurrently practically never pick the same id, and a
/// local collision is retried.
const RANDOM_LEN: usize = 7;

/// Shortest prefix ever shown, kind letter included (`h7k2`).
pub const MIN_SHORT_LEN: usize = 4;

/// What an item is; the first letter of its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An incident (`i…`).
    Incident,
    /// A symptom (`s…`).
    Symptom,
    /// A hypothesis (`h…`).
    Hypothesis,
    /// A test designed to rule a hypothesis out (`t…`).
    Test,
    /// A test's result (`r…`).
    Result,
    /// A fix or mitigation (`f…`).
    Fix,
    /// A follow-up action (`a…`).
    FollowUp,
    /// A posted stakeholder update (`u…`). Not in [`Kind::ITEMS`]: its map
    /// is made by the first update, not by the incident's creation.
    Update,
    /// Evidence attached to an item: a command's output or a file (`e…`).
    /// Not one of [`Kind::ITEMS`]: its collection is made by the first
    /// evidence, so incidents made before it need no new container.
    Evidence,
}

impl Kind {
    /// Every kind of item inside an incident, in report order.
    pub const ITEMS: [Kind; 6] = [
        Kind::Symptom,
        Kind::Hypothesis,
        Kind::Test,
        Kind::Result,
        Kind::Fix,
        Kind::FollowUp,
    ];

    /// The id prefix letter.
    pub fn letter(self) -> char {
        match self {
            Kind::Incident => 'i',
            Kind::Symptom => 's',
            Kind::Hypothesis => 'h',
            Kind::Test => 't',
            Kind::Result => 'r',
            Kind::Fix => 'f',
            Kind::FollowUp => 'a',
            Kind::Update => 'u',
            Kind::Evidence => 'e',
        }
    }

    /// The kind named by an id's first letter.
    pub fn from_letter(c: char) -> Option<Kind> {
        [Kind::Incident, Kind::Update, Kind::Evidence]
            .into_iter()
            .chain(Kind::ITEMS)
            .find(|k| k.letter() == c)
    }

    /// The key of this kind's map in the document.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Incident => "incidents",
            Kind::Symptom => "symptoms",
            Kind::Hypothesis => "hypotheses",
            Kind::Test => "tests",
            Kind::Result => "results",
            Kind::Fix => "fixes",
            Kind::FollowUp => "followups",
            Kind::Update => "updates",
            Kind::Evidence => "evidence",
        }
    }

    /// A human name.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Incident => "incident",
            Kind::Symptom => "symptom",
            Kind::Hypothesis => "hypothesis",
            Kind::Test => "test",
            Kind::Result => "result",
            Kind::Fix => "fix",
            Kind::FollowUp => "follow-up",
            Kind::Update => "update",
            Kind::Evidence => "evidence",
        }
    }
}

/// A stable, globally unique item id such as `h7k2q9mz`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(String);

impl ItemId {
    /// A fresh random id of `kind`.
    pub fn random(kind: Kind) -> ItemId {
        let mut rng = rand::thread_rng();
        let mut s = String::with_capacity(RANDOM_LEN + 1);
        s.push(kind.letter());
        for _ in 0..RANDOM_LEN {
            s.push(ALPHABET[rng.gen_range(0..32)] as char);
        }
        ItemId(s)
    }

    /// Wraps an id read from a document, if it is well formed.
    pub fn parse(s: &str) -> Option<ItemId> {
        let mut chars = s.chars();
        let kind = Kind::from_letter(chars.next()?)?;
        let _ = kind;
        (s.len() == RANDOM_LEN + 1 && chars.all(|c| ALPHABET.contains(&(c as u8))))
            .then(|| ItemId(s.to_string()))
    }

    /// The kind encoded in the first letter.
    pub fn kind(&self) -> Kind {
        Kind::from_letter(self.0.chars().next().unwrap_or('n')).unwrap_or(Kind::Incident)
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The shortest prefix of `id` (at least [`MIN_SHORT_LEN`]) that no other id
/// in `others` shares.
pub fn shortest_unique<'a>(id: &str, others: impl IntoIterator<Item = &'a str>) -> String {
    let longest_shared = others
        .into_iter()
        .filter(|o| *o != id)
        .map(|o| {
            o.bytes()
                .zip(id.bytes())
                .take_while(|(a, b)| a == b)
                .count()
        })
        .max()
        .unwrap_or(0);
    prefix(id, (longest_shared + 1).max(MIN_SHORT_LEN)).to_string()
}

/// The first `len` bytes of `s`, or more up to the next character boundary
/// (ids from peers need not be ASCII), or all of `s` if it is shorter.
pub(crate) fn prefix(s: &str, len: usize) -> &str {
    let mut end = len.min(s.len());
    while !s.is_char_boundary(end) {
        end += 1;
    }
    s.split_at(end).0
}

/// Whether `s` could be (a prefix of) an item id: a kind letter, then only
/// id characters, no longer than a full id.
pub fn could_be_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().and_then(Kind::from_letter).is_some()
        && s.len() <= RANDOM_LEN + 1
        && chars.all(|c| ALPHABET.contains(&(c as u8)))
}

/// Shortest unique prefixes for a sorted list of ids, in one pass: an id's
/// longest shared prefix is always with a neighbour in sorted order.
pub fn short_forms(sorted: &[String]) -> Vec<String> {
    let lcp = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    (0..sorted.len())
        .map(|i| {
            let id = sorted[i].as_str();
            let before = i.checked_sub(1).map(|j| lcp(id, &sorted[j])).unwrap_or(0);
            let after = sorted.get(i + 1).map(|n| lcp(id, n)).unwrap_or(0);
            prefix(id, (before.max(after) + 1).max(MIN_SHORT_LEN)).to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_parse_and_keep_their_kind() {
        for kind in Kind::ITEMS.into_iter().chain([Kind::Update]) {
            let id = ItemId::random(kind);
            assert_eq!(ItemId::parse(id.as_str()), Some(id.clone()));
            assert_eq!(id.kind(), kind);
        }
        assert_eq!(ItemId::parse("hOOPS000"), None);
        assert_eq!(ItemId::parse("h12"), None);
    }

    #[test]
    fn shortest_unique_grows_only_when_needed() {
        let cases = [
            ("h7k2q9mz", vec!["h8aaaaaa"], "h7k2"),
            ("h7k2q9mz", vec!["h7k2abcd"], "h7k2q"),
            ("h7k2q9mz", vec!["h7k2q9my"], "h7k2q9mz"),
            ("h7k2q9mz", vec![], "h7k2"),
        ];
        for (id, others, want) in cases {
            assert_eq!(shortest_unique(id, others.clone()), want, "{id}");
            let mut all: Vec<String> = others.iter().map(|s| s.to_string()).collect();
            all.push(id.to_string());
            all.sort();
            let pos = all.iter().position(|s| s == id).unwrap();
            assert_eq!(short_forms(&all)[pos], want, "{id} (sorted pass)");
        }
    }
}
