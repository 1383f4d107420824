//! Past incidents that resemble the open one, offline and explainable:
//! TF-IDF weighted cosine similarity over the words of the title, the
//! symptoms (text, where, impact) and the hypotheses, with common English
//! words left out and a plural `s` folded. Every match says which words it
//! shares, so a responder can see why it was offered.

use std::collections::{BTreeMap, HashMap};

use crate::{HypothesisStatus, IncidentView, Kind};

/// Words too common to tell incidents apart.
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "been", "before", "being", "but", "by", "can", "cannot", "could", "did", "do", "does",
    "doing", "down", "during", "each", "few", "for", "from", "had", "has", "have", "having", "he",
    "her", "here", "his", "how", "i", "if", "in", "into", "is", "it", "its", "just", "may", "me",
    "might", "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only",
    "or", "other", "our", "out", "over", "same", "she", "should", "so", "some", "such", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "through",
    "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "why", "will", "with", "would", "you", "your",
];

/// How many shared words a match names.
const SHARED_SHOWN: usize = 5;

/// A past incident that resembles the open one.
#[derive(Clone, Debug, PartialEq)]
pub struct Resemblance {
    /// The past incident's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// When it was opened, ms since the Unix epoch.
    pub opened_at: i64,
    /// Cosine similarity in (0, 1]; 1 is the same words in the same measure.
    pub score: f64,
    /// The words that weigh most in the match, heaviest first.
    pub shared: Vec<String>,
    /// What was confirmed as its cause.
    pub causes: Vec<String>,
    /// What was done to fix it.
    pub fixes: Vec<String>,
}

/// The words of `text` that count: lower-case runs of letters and digits,
/// stop words and one-letter words left out, a plural `s` folded
/// (`timeouts` counts as `timeout`; not in `-ss`, `-is`, `-us`: `redis`,
/// `status`).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 1)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
        .map(|w| {
            let folds = w.chars().count() > 3
                && w.ends_with('s')
                && !["ss", "is", "us"].iter().any(|e| w.ends_with(e));
            match w.strip_suffix('s') {
                Some(stem) if folds => stem.to_string(),
                _ => w,
            }
        })
}

/// The words an incident is compared by, with their counts.
fn terms(v: &IncidentView) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut add = |text: &str| {
        for w in words(text) {
            *out.entry(w).or_insert(0.0) += 1.0;
        }
    };
    add(&v.title);
    for s in v.items(Kind::Symptom) {
        for field in ["text", "where", "impact"] {
            add(s.get(field));
        }
    }
    for h in v.items(Kind::Hypothesis) {
        add(h.get("text"));
    }
    out
}

/// Past incidents ranked by how much they resemble `open`, most alike
/// first; those sharing no word are left out. `past` should not hold
/// `open` itself. Word weights (inverse document frequency) come from
/// `past` and `open` together, so a word every incident uses weighs little.
pub fn rank(open: &IncidentView, past: &[IncidentView]) -> Vec<Resemblance> {
    let open_terms = terms(open);
    let past_terms: Vec<HashMap<String, f64>> = past.iter().map(terms).collect();
    let n = (past.len() + 1) as f64;
    let mut df: HashMap<&str, f64> = HashMap::new();
    for t in past_terms.iter().chain([&open_terms]) {
        for w in t.keys() {
            *df.entry(w.as_str()).or_insert(0.0) += 1.0;
        }
    }
    // Smoothed, so a word in every incident still weighs a little.
    let idf = |w: &str| ((n + 1.0) / (df.get(w).copied().unwrap_or(0.0) + 1.0)).ln() + 1.0;
    let weigh = |t: &HashMap<String, f64>| -> BTreeMap<String, f64> {
        t.iter().map(|(w, c)| (w.clone(), c * idf(w))).collect()
    };
    let norm = |v: &BTreeMap<String, f64>| v.values().map(|x| x * x).sum::<f64>().sqrt();
    let q = weigh(&open_terms);
    let q_norm = norm(&q);
    let mut out: Vec<Resemblance> = past
        .iter()
        .zip(&past_terms)
        .filter_map(|(v, t)| {
            let d = weigh(t);
            let mut shared: Vec<(f64, &String)> = q
                .iter()
                .filter_map(|(w, a)| d.get(w).map(|b| (a * b, w)))
                .collect();
            let dot: f64 = shared.iter().map(|(x, _)| x).sum();
            if dot <= 0.0 || q_norm == 0.0 {
                return None;
            }
            shared.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
            Some(Resemblance {
                id: v.id.clone(),
                title: v.title.clone(),
                opened_at: v.created_at,
                score: dot / (q_norm * norm(&d)),
                shared: shared
                    .into_iter()
                    .take(SHARED_SHOWN)
                    .map(|(_, w)| w.clone())
                    .collect(),
                causes: v
                    .items(Kind::Hypothesis)
                    .iter()
                    .filter(|h| h.get("status") == HypothesisStatus::Confirmed.as_str())
                    .map(|h| h.get("text").to_string())
                    .collect(),
                fixes: v
                    .items(Kind::Fix)
                    .iter()
                    .map(|f| f.get("text").to_string())
                    .collect(),
            })
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Edit, Editor, Incident, Severity};

    fn me() -> Editor {
        Editor {
            key: "aa".repeat(32),
            name: "alice".into(),
        }
    }

    /// An incident with a title, symptoms and hypotheses; the first
    /// hypothesis confirmed and a fix recorded when `cause` is given.
    fn incident(title: &str, symptoms: &[&str], hypos: &[&str], fix: Option<&str>) -> IncidentView {
        let (mut i, _) = Incident::create(title, Severity::Sev2, &me(), 0).unwrap();
        for s in symptoms {
            i.apply(
                Edit::AddSymptom {
                    text: s.to_string(),
                    place: None,
                    frequency: None,
                    impact: None,
                    since: None,
                },
                &me(),
                1,
            )
            .unwrap();
        }
        let mut first = None;
        for h in hypos {
            let id = i
                .apply(
                    Edit::AddHypothesis {
                        text: h.to_string(),
                    },
                    &me(),
                    2,
                )
                .unwrap()
                .id;
            first = first.or(id);
        }
        if let (Some(fix), Some(h)) = (fix, first) {
            i.apply(
                Edit::Confirm {
                    hypothesis: h.to_string(),
                    evidence: "seen".into(),
                },
                &me(),
                3,
            )
            .unwrap();
            i.apply(
                Edit::AddFix {
                    text: fix.into(),
                    unconfirmed_because: None,
                },
                &me(),
                4,
            )
            .unwrap();
        }
        i.view().unwrap()
    }

    #[test]
    fn words_drop_stop_words_and_fold_plurals() {
        let cases: &[(&str, &[&str])] = &[
            ("The DNS resolver is DOWN", &["dns", "resolver"]),
            ("Timeouts on eu-west", &["timeout", "eu", "west"]),
            ("HTTP 500s, 5xx", &["http", "500", "5xx"]),
            ("class of glass", &["class", "glass"]),
            ("redis status", &["redis", "status"]),
            ("a b c", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(words(text).collect::<Vec<_>>(), *want, "{text:?}");
        }
    }

    #[test]
    fn the_most_alike_comes_first_with_what_fixed_it() {
        let open = incident(
            "checkout 500s",
            &["HTTP 500 on /checkout", "payment timeouts"],
            &["bad deploy of payments"],
            None,
        );
        let past = vec![
            incident(
                "disk full on db-3",
                &["writes failing on db-3"],
                &["log rotation stopped"],
                Some("rotate logs"),
            ),
            incident(
                "checkout errors",
                &["500 on checkout", "payments timeout"],
                &["payments deploy", "DNS"],
                Some("roll back payments"),
            ),
            incident("login slow", &["login timeouts"], &["DNS resolver"], None),
        ];
        let ranked = rank(&open, &past);
        let ids: Vec<&str> = ranked.iter().map(|r| r.title.as_str()).collect();
        assert_eq!(ids, ["checkout errors", "login slow"], "{ranked:#?}");
        let best = &ranked[0];
        assert_eq!(best.causes, ["payments deploy"]);
        assert_eq!(best.fixes, ["roll back payments"]);
        assert!(best.shared.contains(&"checkout".to_string()), "{best:?}");
        assert!(best.score > ranked[1].score && best.score <= 1.0 + 1e-9);
        assert_eq!(ranked[1].shared, ["timeout"]);
    }

    #[test]
    fn identical_incidents_score_one_and_strangers_are_left_out() {
        let a = incident("dns down", &["resolver timeouts"], &["bad config"], None);
        let same = incident("dns down", &["resolver timeouts"], &["bad config"], None);
        let ranked = rank(&a, &[same]);
        assert!((ranked[0].score - 1.0).abs() < 1e-9, "{ranked:?}");
        let empty = incident("the", &[], &[], None);
        assert!(rank(&empty, std::slice::from_ref(&a)).is_empty());
        assert!(rank(&a, &[]).is_empty());
    }

    #[test]
    fn a_word_every_incident_uses_weighs_less_than_a_rare_one() {
        // Each past incident shares two words with the open one; only
        // the weights tell them apart.
        let open = incident("outage", &["errors", "redis"], &[], None);
        let past = vec![
            incident("outage", &["errors"], &[], None),
            incident("outage", &["errors"], &[], None),
            incident("outage", &["errors"], &[], None),
            incident("outage", &["redis"], &[], None),
        ];
        let ranked = rank(&open, &past);
        assert_eq!(ranked[0].shared, ["redis", "outage"], "{ranked:#?}");
        assert!(ranked[0].score > ranked[1].score, "{ranked:#?}");
    }
}
