//! The two texts made from the record: the one-screen brief for a newcomer
//! and the Production Incident Report in Markdown.

use std::fmt::Write;

use time::OffsetDateTime;

use crate::evidence::{duration_text, Source};
use crate::{Evidence, Found, HypothesisStatus, IncidentView, Item, Kind, Verdict};

/// `2026-11-24 03:12:09 UTC` from ms since the Unix epoch.
pub fn utc(ms: i64) -> String {
    let fmt =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("@{ms}ms"))
}

/// `03:12:09` from ms since the Unix epoch.
pub fn clock(ms: i64) -> String {
    utc(ms).get(11..19).unwrap_or("").to_string()
}

/// Text that came from another member, made safe for a terminal: control
/// characters and escape sequences are shown as `\u{..}` instead of being
/// obeyed; newlines and tabs stay.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() || is_invisible_format(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters that reorder or hide text (bidirectional overrides and
/// isolates), which could make one line read as another.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Remote text for one line of output (a notice): made safe, and every line
/// break shown as ` ⏎ ` so it can never start a line of its own.
pub fn one_line(text: &str) -> String {
    terminal_safe(text).replace('\n', " ⏎ ")
}

/// Remote text continued on several lines under a row: every line after
/// the first is indented under `indent` columns and marked, so it cannot be
/// read as a row of its own.
pub fn continued(text: &str, indent: usize) -> String {
    terminal_safe(text).replace('\n', &format!("\n{:indent$}│ ", ""))
}

fn hyp_status(item: &Item) -> Option<HypothesisStatus> {
    item.get("status").parse().ok()
}

fn line(out: &mut String, s: impl AsRef<str>) {
    out.push_str(s.as_ref());
    out.push('\n');
}

pub use crate::when::span;

/// Remote text on one line of at most `max` characters: made safe, line
/// breaks shown as ` ⏎ `, tabs as spaces, and cut (by characters) with `…`.
pub fn trimmed(text: &str, max: usize) -> String {
    let line = one_line(text).replace('\t', " ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// How many lines `brief` takes at most: one screen.
pub const BRIEF_LINES: usize = 40;

/// The widest line of the brief (characters), so that none wraps.
const BRIEF_WIDTH: usize = 100;

/// Events the brief shows at most.
const BRIEF_EVENTS: usize = 6;

/// A list of the brief, cut to what fits.
struct Section {
    heading: String,
    rows: Vec<String>,
    /// At most this many rows, however much room there is.
    max: usize,
    /// The rows are oldest first and the newest are shown (the events);
    /// otherwise the first rows are shown.
    newest: bool,
    /// Where the rest is.
    see: &'static str,
    /// Rows shown, decided by [`fit`].
    shown: usize,
}

impl Section {
    fn new(heading: String, rows: Vec<String>, max: usize, see: &'static str) -> Section {
        Section {
            heading,
            rows,
            max,
            newest: false,
            see,
            shown: 0,
        }
    }

    /// Lines taken with `shown` rows: the heading, the rows, and a line
    /// saying how many are left out.
    fn cost(&self, shown: usize) -> usize {
        1 + shown + usize::from(shown < self.rows.len())
    }

    fn render(&self, out: &mut String) {
        line(out, &self.heading);
        let left = self.rows.len() - self.shown;
        let more = |out: &mut String, word: &str| {
            if left > 0 {
                line(out, format!("  … and {left} {word} (see `{}`)", self.see));
            }
        };
        if self.newest {
            more(out, "earlier");
            for r in &self.rows[left..] {
                line(out, r);
            }
        } else {
            for r in &self.rows[..self.shown] {
                line(out, r);
            }
            more(out, "more");
        }
    }
}

/// Shares `budget` lines among the sections, a row at a time in turn, in
/// the order given (the first gets a row first).
fn fit(sections: &mut [Section], budget: usize) {
    let mut used: usize = sections.iter().map(|s| s.cost(0)).sum();
    loop {
        let mut grew = false;
        for s in sections.iter_mut() {
            if s.shown >= s.rows.len().min(s.max) {
                continue;
            }
            let extra = s.cost(s.shown + 1) - s.cost(s.shown);
            if used + extra <= budget {
                s.shown += 1;
                used += extra;
                grew = true;
            }
        }
        if !grew {
            return;
        }
    }
}

fn row(text: String) -> String {
    trimmed(&format!("  {text}"), BRIEF_WIDTH)
}

/// Tests without a result yet.
fn under_way(v: &IncidentView) -> impl Iterator<Item = &Item> {
    v.items(Kind::Test).iter().filter(|t| {
        !v.items(Kind::Result)
            .iter()
            .any(|r| r.get("test") == t.id.as_str())
    })
}

/// The impact recorded on the symptoms, newest first.
fn impacts(v: &IncidentView) -> Vec<&str> {
    v.items(Kind::Symptom)
        .iter()
        .rev()
        .map(|s| s.get("impact"))
        .filter(|i| !i.is_empty())
        .collect()
}

/// The one-screen summary that brings a newcomer up to speed, at `now_ms`:
/// at most [`BRIEF_LINES`] lines, `warnings` (from the device) first.
pub fn brief(v: &IncidentView, now_ms: i64, warnings: &[String]) -> String {
    // The device's own findings, whole: they name files and offsets.
    let mut top: Vec<String> = warnings.iter().map(|w| format!("! {w}")).collect();
    let sev = v.severity.map(|s| s.label()).unwrap_or_default();
    let status = v.status.map(|s| s.to_string()).unwrap_or_default();
    top.push(trimmed(
        &format!("{} [{sev}] {} — {status}", v.id, v.title),
        BRIEF_WIDTH,
    ));
    let mut timing = format!(
        "opened {} ({} ago)",
        utc(v.created_at),
        span(now_ms - v.created_at)
    );
    if let Some(since) = v.impact_start() {
        timing.push_str(&format!(
            " · impact since {} UTC ({} ago)",
            clock(since),
            span(now_ms - since)
        ));
    }
    if let Some(at) = v.status.and_then(|s| v.status_times.get(s.as_str())) {
        if *at > v.created_at {
            timing.push_str(&format!(" · {status} for {}", span(now_ms - at)));
        }
    }
    top.push(timing);
    let roles: Vec<String> = v
        .roles
        .iter()
        .map(|(r, n)| format!("{r}: {}", one_line(n)))
        .collect();
    top.push(trimmed(
        &if roles.is_empty() {
            "roles: none assigned".to_string()
        } else {
            roles.join(" · ")
        },
        BRIEF_WIDTH,
    ));
    top.push(updates_line(v, now_ms));
    for n in crate::nudges(&v.standing, now_ms) {
        top.push(trimmed(&format!("! {n}"), BRIEF_WIDTH));
    }
    if !v.conflicts.is_empty() {
        top.push(format!(
            "! {} conflicting edit(s): see `conflicts`",
            v.conflicts.len()
        ));
    }
    top.push(String::new());

    let mut sections = Vec::new();
    let symptoms: Vec<String> = v
        .items(Kind::Symptom)
        .iter()
        .rev()
        .map(|s| {
            let mut extra = Vec::new();
            for (k, label) in [
                ("where", "where"),
                ("frequency", "how often"),
                ("impact", "impact"),
            ] {
                if !s.get(k).is_empty() {
                    extra.push(format!("{label}: {}", s.get(k)));
                }
            }
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!(" ({})", extra.join("; "))
            };
            row(format!("{} {}{extra}", s.short, s.get("text")))
        })
        .collect();
    sections.push(Section::new(
        "What is broken:".into(),
        if symptoms.is_empty() {
            vec!["  (no symptoms captured yet: `symptom <text>`)".into()]
        } else {
            symptoms
        },
        4,
        "report",
    ));
    let hyps = v.items(Kind::Hypothesis);
    let of = |st: HypothesisStatus| hyps.iter().filter(move |h| hyp_status(h) == Some(st));
    let confirmed: Vec<String> = of(HypothesisStatus::Confirmed)
        .map(|h| {
            let by = h.get("confirmed_by");
            let why = if by.is_empty() {
                h.get("evidence").to_string()
            } else {
                format!("test {}", v.short(by))
            };
            row(format!("{} {} — by {why}", h.short, h.get("text")))
        })
        .collect();
    if !confirmed.is_empty() {
        sections.push(Section::new(
            "Confirmed cause:".into(),
            confirmed,
            2,
            "report",
        ));
    }
    let open: Vec<String> = of(HypothesisStatus::Open)
        .map(|h| row(format!("{} {}", h.short, h.get("text"))))
        .collect();
    sections.push(Section::new(
        format!("Still open ({}):", open.len()),
        if open.is_empty() {
            vec!["  (none)".into()]
        } else {
            open
        },
        6,
        "report",
    ));
    let tests: Vec<String> = under_way(v)
        .map(|t| {
            row(format!(
                "{} of {} by {}: {}",
                t.short,
                v.short(t.get("hypothesis")),
                v.name_of(&t.by),
                t.get("action")
            ))
        })
        .collect();
    if !tests.is_empty() {
        sections.push(Section::new(
            format!("Tests under way ({}):", tests.len()),
            tests,
            6,
            "report",
        ));
    }
    let ruled: Vec<String> = of(HypothesisStatus::RuledOut)
        .map(|h| {
            let why = v
                .item(h.get("ruled_out_result"))
                .map(|r| r.get("observation"))
                .unwrap_or("");
            row(format!(
                "{} {} — by test {}: {why}",
                h.short,
                h.get("text"),
                v.short(h.get("ruled_out_by"))
            ))
        })
        .collect();
    sections.push(Section::new(
        format!("Ruled out ({}):", ruled.len()),
        if ruled.is_empty() {
            vec!["  (none)".into()]
        } else {
            ruled
        },
        4,
        "report",
    ));
    let fixes: Vec<String> = v
        .items(Kind::Fix)
        .iter()
        .map(|f| {
            let flag = if f.get("unconfirmed_because").is_empty() {
                ""
            } else {
                " (before the cause was confirmed)"
            };
            row(format!(
                "{} {} — {} {}{flag}",
                f.short,
                f.get("text"),
                v.name_of(&f.by),
                clock(f.at)
            ))
        })
        .collect();
    if !fixes.is_empty() {
        sections.push(Section::new(
            format!("Fixes applied ({}):", fixes.len()),
            fixes,
            3,
            "report",
        ));
    }
    let followups: Vec<String> = v
        .items(Kind::FollowUp)
        .iter()
        .map(|a| row(format!("{} {}", a.short, a.get("text"))))
        .collect();
    if !followups.is_empty() {
        sections.push(Section::new(
            format!("Open follow-ups ({}):", followups.len()),
            followups,
            3,
            "report",
        ));
    }
    let events: Vec<String> = v
        .timeline
        .iter()
        .map(|e| row(format!("{} {}: {}", clock(e.at), e.name, e.text)))
        .collect();
    let mut last = Section::new("Last events:".into(), events, BRIEF_EVENTS, "timeline");
    last.newest = true;
    sections.push(last);

    fit(&mut sections, BRIEF_LINES.saturating_sub(top.len()));
    let mut out = String::new();
    for l in &top {
        line(&mut out, l);
    }
    for s in &sections {
        s.render(&mut out);
    }
    out
}

/// When the last stakeholder update was posted, and the interval.
fn updates_line(v: &IncidentView, now_ms: i64) -> String {
    let every = match v.standing.update_every {
        Some(s) => format!("due every {}", span(s * 1000)),
        None => "no reminder: `update --every 30m` sets one".into(),
    };
    match v.items(Kind::Update).last() {
        Some(u) => trimmed(
            &format!(
                "last update: {} ago by {} ({every})",
                span(now_ms - u.at),
                v.name_of(&u.by)
            ),
            BRIEF_WIDTH,
        ),
        None => format!("last update: none posted ({every})"),
    }
}

/// Longest an item's text is in a stakeholder update (characters).
const UPDATE_ITEM_CHARS: usize = 300;

/// The line of a draft update that asks the user to say what is needed.
pub const NEEDS_PLACEHOLDER: &str = "- [fill in what you need from stakeholders, or \"nothing\"]";

/// A stakeholder update drafted from the record at `now_ms`, in CAN form:
/// Conditions (impact, severity, status, how long, what is ruled out and
/// confirmed), Actions (tests under way and who runs them, fixes applied),
/// Needs (`needs`, or a placeholder line to fill in). Plain text for a
/// status page or an email: no internal ids, every item on one line.
pub fn update_draft(v: &IncidentView, now_ms: i64, needs: Option<&str>) -> String {
    let t = |s: &str| trimmed(s, UPDATE_ITEM_CHARS);
    let sev = v.severity.map(|s| s.label()).unwrap_or_default();
    let status = v.status.map(|s| s.to_string()).unwrap_or_default();
    let mut o = String::new();
    line(
        &mut o,
        format!(
            "Status update: {} — {sev}, {status} (as of {})",
            t(&v.title),
            utc(now_ms)
        ),
    );
    line(&mut o, "");
    line(&mut o, "Conditions");
    let impacts = impacts(v);
    line(
        &mut o,
        if impacts.is_empty() {
            "- Impact: not yet assessed".to_string()
        } else {
            format!(
                "- Impact: {}",
                impacts.iter().map(|i| t(i)).collect::<Vec<_>>().join("; ")
            )
        },
    );
    let mut since = format!(
        "- {sev}, {status}; open for {} (since {})",
        span(now_ms - v.created_at),
        utc(v.created_at)
    );
    if let Some(at) = v.status.and_then(|s| v.status_times.get(s.as_str())) {
        if *at > v.created_at {
            since.push_str(&format!("; {status} for {}", span(now_ms - at)));
        }
    }
    line(&mut o, since);
    if let Some(began) = v.impact_start() {
        line(
            &mut o,
            format!(
                "- Impact began {} ({} ago)",
                utc(began),
                span(now_ms - began)
            ),
        );
    }
    let hyps = v.items(Kind::Hypothesis);
    let confirmed: Vec<String> = hyps
        .iter()
        .filter(|h| hyp_status(h) == Some(HypothesisStatus::Confirmed))
        .map(|h| t(h.get("text")))
        .collect();
    line(
        &mut o,
        if confirmed.is_empty() {
            "- Cause: not confirmed yet".to_string()
        } else {
            format!("- Cause confirmed: {}", confirmed.join("; "))
        },
    );
    for h in hyps
        .iter()
        .filter(|h| hyp_status(h) == Some(HypothesisStatus::RuledOut))
    {
        let why = v
            .item(h.get("ruled_out_result"))
            .map(|r| format!(" ({})", t(r.get("observation"))))
            .unwrap_or_default();
        line(&mut o, format!("- Ruled out: {}{why}", t(h.get("text"))));
    }
    line(&mut o, "");
    line(&mut o, "Actions");
    let mut any = false;
    for test in under_way(v) {
        any = true;
        let about = v
            .item(test.get("hypothesis"))
            .map(|h| format!(" (checking: {})", t(h.get("text"))))
            .unwrap_or_default();
        line(
            &mut o,
            format!(
                "- Testing: {}{about}, by {}",
                t(test.get("action")),
                t(&v.name_of(&test.by))
            ),
        );
    }
    for f in v.items(Kind::Fix) {
        any = true;
        let flag = if f.get("unconfirmed_because").is_empty() {
            ""
        } else {
            ", before the cause was confirmed"
        };
        line(
            &mut o,
            format!(
                "- Applied at {}: {}, by {}{flag}",
                clock(f.at),
                t(f.get("text")),
                t(&v.name_of(&f.by))
            ),
        );
    }
    if !any {
        line(&mut o, "- No test or fix under way yet");
    }
    line(&mut o, "");
    line(&mut o, "Needs");
    match needs.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => line(&mut o, format!("- {}", t(n))),
        None => line(&mut o, NEEDS_PLACEHOLDER),
    }
    o
}

/// Remote text placed inside the report's Markdown, so that it stays inside
/// the place it was put: made terminal-safe, characters that open Markdown
/// structure (`\`, `` ` ``, `*`, `_`, `[`, `]`, `<`, `>`, `#`, `|`, `~`) are
/// backslash-escaped everywhere, and at the start of a line so are list,
/// quote and heading markers (`-`, `+`, `=`, `1.`, `1)`). With `indent`
/// (the column where the list item's text starts) every further line is
/// indented to it, so it continues the item instead of starting a block of
/// its own; without, line breaks are shown as ` ⏎ ` (headings, names).
fn markdown(text: &str, indent: Option<usize>) -> String {
    let safe = terminal_safe(text).replace('\t', " ");
    let mut out = String::with_capacity(safe.len() + 8);
    for (i, l) in safe.split('\n').enumerate() {
        let l = if i == 0 { l } else { l.trim_start() };
        if i > 0 {
            match indent {
                Some(_) if l.is_empty() => out.push('\n'),
                Some(n) => {
                    out.push('\n');
                    out.extend(std::iter::repeat_n(' ', n));
                }
                None => out.push_str(" ⏎ "),
            }
        }
        let digits = l.chars().take_while(char::is_ascii_digit).count();
        for (j, c) in l.chars().enumerate() {
            let opens_line = j == 0 && matches!(c, '-' | '+' | '=')
                || digits > 0 && j == digits && matches!(c, '.' | ')');
            if opens_line
                || matches!(
                    c,
                    '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '~'
                )
            {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// Remote text continuing a list item whose text starts at column `indent`.
fn md(text: &str, indent: usize) -> String {
    markdown(text, Some(indent))
}

/// Remote text kept on one line (a heading, a name, a table of one line).
fn md1(text: &str) -> String {
    markdown(text, None)
}

/// A short id as inline code: one line, no backtick to close it early.
fn code(text: &str) -> String {
    format!("`{}`", one_line(text).replace('`', "'"))
}

/// A follow-up's owner and due date, as the report says them.
fn owner_and_due(a: &Item) -> String {
    let owner = match a.get("owner") {
        "" => "**no owner**".to_string(),
        o => format!("owner: {}", md1(o)),
    };
    let due = match a.get("due") {
        "" => "no due date".to_string(),
        d => format!("due {}", md1(d)),
    };
    format!("{owner}, {due}")
}

/// A test named for a reader: by what it did, not by its id.
fn test_named(v: &IncidentView, test_id: &str, indent: usize) -> String {
    match v.item(test_id) {
        Some(t) => format!("the test “{}”", md(t.get("action"), indent)),
        None => format!("test {}", code(&v.short(test_id))),
    }
}

/// Output lines `show` prints of an evidence unless asked for all: this
/// many from the start and as many from the end.
pub const SHOWN_LINES: usize = 10;

/// Characters of one output line `show` prints unless asked for all.
const SHOWN_LINE_CHARS: usize = 240;

/// Output lines the report quotes of an evidence: this many from the start
/// and as many from the end.
pub const REPORT_LINES: usize = 8;

/// `line` cut to `max` characters, marked `…` when it was.
fn clip_line(line: &str, max: usize) -> String {
    if line.chars().count() <= max {
        return line.to_string();
    }
    let mut c: String = line.chars().take(max).collect();
    c.push('…');
    c
}

/// The first and last `keep` lines of `text`, and how many were left out
/// between them (`None` when nothing was).
fn head_and_tail(text: &str, keep: usize) -> (Vec<&str>, Option<usize>, Vec<&str>) {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 2 * keep {
        return (lines, None, Vec::new());
    }
    let (head, rest) = lines.split_at(keep);
    let (gap, tail) = rest.split_at(rest.len() - keep);
    (head.to_vec(), Some(gap.len()), tail.to_vec())
}

/// One evidence for the terminal: who recorded what and how it ended, then
/// its output, each line marked `│` so it cannot pass for the tool's own.
/// Unless `full`, the output is trimmed to its first and last
/// [`SHOWN_LINES`] lines (long lines cut), with a hint how to see it all.
pub fn evidence_text(v: &IncidentView, e: &Evidence, full: bool) -> String {
    let r = &e.record;
    let mut out = format!(
        "evidence {} by {}, {}: {}",
        e.short,
        v.name_of(&e.by),
        utc(e.at),
        r.headline()
    );
    let notes = r.notes();
    if !notes.is_empty() {
        out.push_str(&format!(" ({})", notes.join("; ")));
    }
    let out = one_line(&out);
    let mut out = format!("{out}\n");
    if r.output.is_empty() {
        out.push_str("  │ (no output)\n");
        return out;
    }
    let safe = terminal_safe(&r.output);
    let cut_line = |l: &str| -> String {
        if full {
            l.to_string()
        } else {
            clip_line(l, SHOWN_LINE_CHARS)
        }
    };
    let (head, gap, tail) = if full {
        (safe.lines().collect(), None, Vec::new())
    } else {
        head_and_tail(&safe, SHOWN_LINES)
    };
    for l in head {
        out.push_str(&format!(
            "  │ {}
",
            cut_line(l)
        ));
    }
    if let Some(n) = gap {
        out.push_str(&format!(
            "  │ … {n} more line(s): `show {} --full` prints them all\n",
            e.short
        ));
    }
    for l in tail {
        out.push_str(&format!(
            "  │ {}
",
            cut_line(l)
        ));
    }
    out
}

/// `show <id>`: an item with every field, what its id fields point at,
/// and its evidence (each trimmed unless `full`); or one evidence and the
/// item it is attached to.
pub fn show(v: &IncidentView, found: Found<'_>, full: bool) -> String {
    let (item, evidence): (&Item, Vec<&Evidence>) = match found {
        Found::Evidence(e) => {
            let mut out = evidence_text(v, e, full);
            if let Some(i) = v.item(&e.of) {
                out.push_str(&format!("on {}\n", one_line(&describe(i))));
            }
            return out;
        }
        Found::Item(i) => (i, v.evidence_of(i.id.as_str()).collect()),
    };
    let mut out = format!(
        "{} — by {}, {}\n",
        one_line(&describe(item)),
        v.name_of(&item.by),
        utc(item.at)
    );
    for (field, value) in &item.fields {
        // An id field shows what it points at: `hypothesis: h7k2 (DNS)`.
        let value = match v.item(value) {
            Some(i) => one_line(&format!("{} ({})", i.short, main_text(i))),
            None => continued(value, 4),
        };
        out.push_str(&format!("  {field}: {value}\n"));
    }
    if evidence.is_empty() {
        out.push_str("no evidence (`run <test-id>` or `attach <id> <file>` records some)\n");
    }
    for e in evidence {
        out.push_str(&evidence_text(v, e, full));
    }
    out
}

/// `test t3ab: dig @resolver`: an item's kind, short id and main text.
fn describe(i: &Item) -> String {
    format!("{} {}: {}", i.id.kind().noun(), i.short, main_text(i))
}

/// What an item says: a test's action, a result's observation, else its text.
fn main_text(i: &Item) -> &str {
    match i.id.kind() {
        Kind::Test => i.get("action"),
        Kind::Result => i.get("observation"),
        _ => i.get("text"),
    }
}

/// Remote text as a fenced code block under a list item whose text starts
/// at column `indent`: shown exactly as typed (after terminal safety), and
/// the fence is longer than any run of backticks inside, so no line of a
/// pasted log can close it and break out of the item.
fn fenced(text: &str, indent: usize) -> String {
    let safe = terminal_safe(text);
    let mut longest = 0;
    let mut run = 0;
    for c in safe.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    let pad = " ".repeat(indent);
    let mut out = format!("\n{pad}{fence}\n");
    for l in safe.trim_end_matches('\n').split('\n') {
        let _ = writeln!(out, "{pad}{l}");
    }
    let _ = write!(out, "{pad}{fence}");
    out
}

/// The item a word of a timeline entry names, when the word is a unique
/// prefix of an item id (as the commands write them: `h7k2`, `t3`).
fn named_item<'a>(v: &'a IncidentView, word: &str) -> Option<&'a Item> {
    let kind = Kind::from_letter(word.chars().next()?)?;
    let base32 = word
        .chars()
        .skip(1)
        .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
    if word.chars().count() < crate::MIN_SHORT_LEN || !base32 || kind == Kind::Incident {
        return None;
    }
    let mut hits = v
        .items(kind)
        .iter()
        .filter(|i| i.id.as_str().starts_with(word));
    match (hits.next(), hits.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// A timeline entry's text for a reader: the item ids the commands wrote
/// into it are dropped where the text already names the item (`h7k2
/// (DNS)`, `symptom s1dk: ...`) and replaced by what the item says
/// elsewhere (a test by its action). Notes are left as typed.
fn without_ids(v: &IncidentView, e: &crate::TimelineEntry) -> String {
    if matches!(e.kind.as_str(), "note" | "open") {
        return e.text.clone();
    }
    // `h7k2 (DNS)` reads as “DNS”.
    let mut text = e.text.clone();
    for w in e.text.split(' ') {
        if let Some(item) = named_item(v, w) {
            let said = item.get("text");
            text = text.replace(&format!("{w} ({said})"), &format!("“{said}”"));
        }
    }
    let words: Vec<&str> = text.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let (bare, tail) = match w.strip_suffix([':', ',']) {
            Some(b) => (b, w.get(b.len()..).unwrap_or_default()),
            None => (*w, ""),
        };
        let Some(item) = named_item(v, bare) else {
            out.push(w.to_string());
            continue;
        };
        let own = e.item.as_deref() == Some(item.id.as_str());
        let named_next = words.get(i + 1).is_some_and(|n| n.starts_with('('));
        if own || named_next {
            // `symptom s1dk: ...` (the entry's own item) or `h7k2 (DNS)`:
            // the text names it already.
            match out.last_mut() {
                Some(last) => last.push_str(tail),
                None => out.push(tail.to_string()),
            }
            continue;
        }
        let what = match item.id.kind() {
            Kind::Test => item.get("action"),
            _ => item.get("text"),
        };
        out.push(format!("“{what}”{tail}"));
    }
    out.join(" ")
}

/// Statuses entered, in the order they were entered.
fn status_history(v: &IncidentView) -> Vec<(&str, i64)> {
    let mut times: Vec<(&str, i64)> = v
        .status_times
        .iter()
        .map(|(s, at)| (s.as_str(), *at))
        .collect();
    times.sort_by_key(|(s, at)| (*at, *s));
    times
}

fn status_time(v: &IncidentView, status: crate::Status) -> Option<i64> {
    v.status_times.get(status.as_str()).copied()
}

/// The evidence attached to item `id`, for the report, as list items at
/// column `indent`: what was run or attached, how it ended, by whom, then
/// the first and last [`REPORT_LINES`] lines of its output in a code block.
pub fn evidence_markdown(v: &IncidentView, id: &str, indent: usize) -> String {
    let mut o = String::new();
    let pad = " ".repeat(indent);
    for e in v.evidence_of(id) {
        let r = &e.record;
        let what = match &r.source {
            Source::Run {
                command,
                stopped: Some(crate::Stopped::Timeout),
                ..
            } => format!("ran {} — {}", code(command), r.outcome()),
            Source::Run {
                command,
                duration_ms,
                ..
            } => format!(
                "ran {} — {} after {}",
                code(command),
                r.outcome(),
                duration_text(*duration_ms)
            ),
            Source::File { name, bytes } => format!("file {} ({bytes} bytes)", code(name)),
        };
        let mut notes = r.notes();
        notes.insert(0, format!("{}, {}", md1(&v.name_of(&e.by)), utc(e.at)));
        let _ = writeln!(o, "{pad}- evidence: {what} ({})", notes.join("; "));
        let (head, gap, tail) = head_and_tail(&r.output, REPORT_LINES);
        let clip = |lines: Vec<&str>| -> Vec<String> {
            lines
                .into_iter()
                .map(|l| clip_line(l, SHOWN_LINE_CHARS))
                .collect()
        };
        let mut quoted = clip(head).join("\n");
        if let Some(n) = gap {
            quoted.push_str(&format!("\n… {n} more line(s) …\n"));
            quoted.push_str(&clip(tail).join("\n"));
        }
        if !quoted.trim().is_empty() {
            o.push_str(fenced(&quoted, indent + 2).trim_start_matches('\n'));
            o.push('\n');
        }
    }
    o
}

/// The Production Incident Report, as Markdown. Every section says in one
/// line when it has nothing to show.
pub fn report(v: &IncidentView) -> String {
    use crate::Status;
    let mut o = String::new();
    let sev = v.severity.map(|s| s.label()).unwrap_or_default();
    let _ = writeln!(o, "# Production Incident Report: {}\n", md1(&v.title));

    // Summary: the figures a reader looks for first.
    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(o, "- Incident: {}", code(&v.id));
    let _ = writeln!(o, "- Severity: {sev}");
    let _ = writeln!(
        o,
        "- Status: {}",
        v.status.map(|s| s.to_string()).unwrap_or_default()
    );
    let start = v.impact_start();
    let end = status_time(v, Status::Mitigated).or(status_time(v, Status::Resolved));
    let window = match (start, end) {
        (Some(s), Some(e)) => format!("{} → {} ({})", utc(s), utc(e), span(e.saturating_sub(s))),
        (Some(s), None) => format!("{} → not mitigated yet", utc(s)),
        (None, _) => {
            "impact start not recorded (`symptom <text> --since HH:MM` records it)".to_string()
        }
    };
    let _ = writeln!(o, "- Impact: {window}");
    match start {
        None => {
            let _ = writeln!(
                o,
                "- Time to detect, identify, mitigate and resolve: unknown (no impact start)"
            );
        }
        Some(s) => {
            for (label, at) in [
                ("Time to detect", Some(v.created_at)),
                ("Time to identify", status_time(v, Status::Identified)),
                ("Time to mitigate", status_time(v, Status::Mitigated)),
                ("Time to resolve", status_time(v, Status::Resolved)),
            ] {
                let took = at.map_or("not reached".to_string(), |at| span(at.saturating_sub(s)));
                let _ = writeln!(o, "- {label}: {took}");
            }
        }
    }
    let _ = writeln!(o, "- Opened: {}", utc(v.created_at));
    for (status, at) in status_history(v) {
        let _ = writeln!(o, "- {status}: {}", utc(at));
    }
    for (role, name) in &v.roles {
        let _ = writeln!(o, "- {role}: {}", md1(name));
    }
    let confirmed: Vec<&Item> = v
        .items(Kind::Hypothesis)
        .iter()
        .filter(|h| hyp_status(h) == Some(HypothesisStatus::Confirmed))
        .collect();
    let _ = writeln!(
        o,
        "- Root cause: {}",
        if confirmed.is_empty() {
            "not confirmed".to_string()
        } else {
            confirmed
                .iter()
                .map(|h| md(h.get("text"), 2))
                .collect::<Vec<_>>()
                .join("; ")
        }
    );

    let _ = writeln!(o, "\n## Narrative\n");
    match &v.summary {
        Some(text) => {
            let _ = writeln!(o, "{}", md(text, 0));
            if v.conflicts.iter().any(|c| c.field == "summary") {
                let _ = writeln!(
                    o,
                    "\n⚠ The summary was written concurrently by several members; this is one of the versions (`conflicts` shows them)."
                );
            }
        }
        None => {
            let _ = writeln!(
                o,
                "No narrative was written yet: `summary <text>` records what happened, in a few sentences."
            );
        }
    }

    let _ = writeln!(o, "\n## Detection\n");
    let opener = v
        .timeline
        .iter()
        .find(|e| e.kind == "open")
        .map(|e| md1(&e.name))
        .unwrap_or_else(|| "someone".to_string());
    let since = start
        .map(|s| {
            format!(
                ", {} after impact began ({})",
                span(v.created_at.saturating_sub(s)),
                utc(s)
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "{opener} opened the incident at {}{since}.",
        utc(v.created_at)
    );
    // The first symptoms: those captured before the first hypothesis, or
    // the first one when hypotheses came first.
    let symptoms = v.items(Kind::Symptom);
    let first_hypothesis = v.items(Kind::Hypothesis).first().map(|h| h.at);
    let first: Vec<&Item> = symptoms
        .iter()
        .enumerate()
        .filter(|(i, s)| *i == 0 || first_hypothesis.is_none_or(|h| s.at <= h))
        .map(|(_, s)| s)
        .collect();
    if first.is_empty() {
        let _ = writeln!(o, "No symptom was recorded.");
    } else {
        let _ = writeln!(o, "\nFirst noticed:\n");
        for s in first {
            let _ = writeln!(
                o,
                "- {} — {}, {}",
                md(s.get("text"), 2),
                md1(&v.name_of(&s.by)),
                utc(s.at)
            );
        }
    }

    let _ = writeln!(o, "\n## Impact\n");
    let impacts: Vec<&Item> = symptoms
        .iter()
        .filter(|s| !s.get("impact").is_empty())
        .collect();
    if impacts.is_empty() {
        let _ = writeln!(o, "No impact was recorded.");
    }
    for s in impacts {
        let _ = writeln!(o, "- {} ({})", md(s.get("impact"), 2), md(s.get("text"), 2));
    }

    let _ = writeln!(o, "\n## Symptoms\n");
    if symptoms.is_empty() {
        let _ = writeln!(o, "No symptoms were recorded.");
    }
    for s in symptoms {
        let _ = write!(o, "- {}", md(s.get("text"), 2));
        for (k, label) in [
            ("where", "where"),
            ("frequency", "how often"),
            ("impact", "impact"),
        ] {
            if !s.get(k).is_empty() {
                let _ = write!(o, "; {label}: {}", md(s.get(k), 2));
            }
        }
        if let Ok(since) = s.get("since").parse::<i64>() {
            let _ = write!(o, "; since {}", utc(since));
        }
        let _ = writeln!(o, " — {}, {}", md1(&v.name_of(&s.by)), utc(s.at));
        o.push_str(&evidence_markdown(v, s.id.as_str(), 2));
    }

    let _ = writeln!(o, "\n## Hypotheses\n");
    if v.items(Kind::Hypothesis).is_empty() {
        let _ = writeln!(o, "No hypotheses were recorded.");
    }
    for h in v.items(Kind::Hypothesis) {
        let outcome = match hyp_status(h) {
            Some(HypothesisStatus::RuledOut) => {
                let obs = v
                    .item(h.get("ruled_out_result"))
                    .map(|r| md(r.get("observation"), 2))
                    .unwrap_or_default();
                format!(
                    "**ruled out** by {}: {obs}",
                    test_named(v, h.get("ruled_out_by"), 2)
                )
            }
            Some(HypothesisStatus::Confirmed) => {
                let by = h.get("confirmed_by");
                if by.is_empty() {
                    format!("**confirmed**: {}", md(h.get("evidence"), 2))
                } else {
                    format!("**confirmed** by {}", test_named(v, by, 2))
                }
            }
            _ => "still open".to_string(),
        };
        let _ = writeln!(o, "- {} — {outcome}", md(h.get("text"), 2));
        o.push_str(&evidence_markdown(v, h.id.as_str(), 2));
        for t in v
            .items(Kind::Test)
            .iter()
            .filter(|t| t.get("hypothesis") == h.id.as_str())
        {
            let _ = writeln!(
                o,
                "  - test: {} (rules it out if: {}) — planned by {}",
                md(t.get("action"), 4),
                md(t.get("rules_out_if"), 4),
                md1(&v.name_of(&t.by))
            );
            o.push_str(&evidence_markdown(v, t.id.as_str(), 4));
            let results: Vec<&Item> = v
                .items(Kind::Result)
                .iter()
                .filter(|r| r.get("test") == t.id.as_str())
                .collect();
            if results.is_empty() {
                let _ = writeln!(o, "    - no result was recorded");
            }
            for r in results {
                let verdict = r
                    .get("verdict")
                    .parse::<Verdict>()
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                let _ = writeln!(
                    o,
                    "    - result: {} — {verdict} ({}, {})",
                    md(r.get("observation"), 6),
                    md1(&v.name_of(&r.by)),
                    utc(r.at)
                );
                o.push_str(&evidence_markdown(v, r.id.as_str(), 6));
            }
        }
    }

    let _ = writeln!(o, "\n## Root cause\n");
    if confirmed.is_empty() {
        let _ = writeln!(o, "No hypothesis was confirmed.");
    }
    for h in &confirmed {
        let _ = writeln!(o, "{}\n", md(h.get("text"), 0));
    }

    let _ = writeln!(o, "\n## Fixes\n");
    if v.items(Kind::Fix).is_empty() {
        let _ = writeln!(o, "No fix was recorded.");
    }
    for f in v.items(Kind::Fix) {
        let why = f.get("unconfirmed_because");
        let flag = if why.is_empty() {
            String::new()
        } else {
            format!(
                " — ⚠ made before the cause was confirmed, because: {}",
                md(why, 2)
            )
        };
        let _ = writeln!(
            o,
            "- {}{flag} ({}, {})",
            md(f.get("text"), 2),
            md1(&v.name_of(&f.by)),
            utc(f.at)
        );
        o.push_str(&evidence_markdown(v, f.id.as_str(), 2));
    }

    let _ = writeln!(o, "\n## Follow-ups\n");
    if v.items(Kind::FollowUp).is_empty() {
        let _ = writeln!(o, "No follow-ups were recorded.");
    }
    for a in v.items(Kind::FollowUp) {
        let _ = writeln!(o, "- [ ] {} — {}", md(a.get("text"), 6), owner_and_due(a));
    }

    let _ = writeln!(o, "\n## Lessons\n");
    if v.lessons.is_empty() {
        let _ = writeln!(
            o,
            "No lessons were recorded yet: `lesson <text>` adds one, signed by you."
        );
    }
    for l in &v.lessons {
        let _ = writeln!(o, "- {} — {}", md(&l.text, 2), md1(&v.name_of(&l.by)));
    }

    let _ = writeln!(o, "\n## Participants\n");
    for m in &v.members {
        let roles: Vec<&str> = v
            .roles
            .iter()
            .filter(|(_, n)| n.trim().eq_ignore_ascii_case(m.name.trim()))
            .map(|(r, _)| r.as_str())
            .collect();
        let roles = if roles.is_empty() {
            String::new()
        } else {
            format!(" — {}", roles.join(", "))
        };
        let removed = v
            .removal_of(&m.key)
            .map(|r| {
                format!(
                    " — removed by {}: {}",
                    md1(&v.name_of(&r.by)),
                    md1(&r.reason)
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "- {}{roles} (key {}){removed}",
            md1(&m.name),
            code(&crate::fingerprint(&m.key))
        );
    }

    // In time order whatever order merges left the entries in; entries of
    // the same instant keep their document order.
    let _ = writeln!(o, "\n## Timeline (UTC)\n");
    let mut timeline: Vec<&crate::TimelineEntry> = v.timeline.iter().collect();
    timeline.sort_by_key(|e| e.at);
    for e in timeline {
        if e.text.contains('\n') {
            let body = e
                .text
                .strip_prefix(&format!("{}: ", e.kind))
                .unwrap_or(&e.text);
            let _ = writeln!(
                o,
                "- {} — {} — {}:{}",
                utc(e.at),
                md1(&e.name),
                md1(&e.kind),
                fenced(body, 2)
            );
        } else {
            let _ = writeln!(
                o,
                "- {} — {} — {}",
                utc(e.at),
                md1(&e.name),
                md(&without_ids(v, e), 2)
            );
        }
    }
    o
}

#[cfg(test)]
mod markdown_tests {
    use super::{markdown, md, md1};

    #[test]
    fn remote_text_cannot_open_markdown_structure() {
        let cases: &[(&str, Option<usize>, &str)] = &[
            ("plain text.", Some(2), "plain text."),
            ("# heading", Some(2), "\\# heading"),
            (
                "a\n## injected\n- item",
                Some(2),
                "a\n  \\#\\# injected\n  \\- item",
            ),
            ("1. one", Some(2), "1\\. one"),
            ("| a | b |", Some(2), "\\| a \\| b \\|"),
            ("```\ncode", Some(4), "\\`\\`\\`\n    code"),
            ("x\n\n    indented", Some(2), "x\n\n  indented"),
            ("a\nb", None, "a ⏎ b"),
            ("<script>", None, "\\<script\\>"),
            ("[link](http://x)", None, "\\[link\\](http://x)"),
            ("===", Some(2), "\\==="),
        ];
        for (input, indent, want) in cases {
            assert_eq!(&markdown(input, *indent), want, "{input:?}");
        }
        assert_eq!(md("a", 2), md1("a"));
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod report_tests;
