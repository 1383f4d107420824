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

/// Events shown at the end of the brief.
const BRIEF_EVENTS: usize = 5;

/// The one-screen summary that brings a newcomer up to speed.
pub fn brief(v: &IncidentView) -> String {
    let mut out = String::new();
    let sev = v.severity.map(|s| s.label()).unwrap_or_default();
    let status = v.status.map(|s| s.to_string()).unwrap_or_default();
    line(&mut out, format!("{} [{sev}] {} — {status}", v.id, v.title));
    let roles: Vec<String> = v.roles.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    line(
        &mut out,
        format!(
            "roles: {}",
            if roles.is_empty() {
                "none assigned".to_string()
            } else {
                roles.join(", ")
            }
        ),
    );
    line(&mut out, "");
    line(&mut out, "What is broken:");
    let symptoms = v.items(Kind::Symptom);
    if symptoms.is_empty() {
        line(&mut out, "  (no symptoms captured yet: `symptom <text>`)");
    }
    for s in symptoms.iter().rev().take(4) {
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
        line(&mut out, format!("  {} {}{extra}", s.short, s.get("text")));
    }
    let hyps = v.items(Kind::Hypothesis);
    let by_status = |st: HypothesisStatus| hyps.iter().filter(move |h| hyp_status(h) == Some(st));
    for h in by_status(HypothesisStatus::Confirmed) {
        line(
            &mut out,
            format!("Confirmed cause: {} {}", h.short, h.get("text")),
        );
    }
    line(&mut out, "Still open:");
    let mut any = false;
    for h in by_status(HypothesisStatus::Open) {
        any = true;
        let tests = v
            .items(Kind::Test)
            .iter()
            .filter(|t| t.get("hypothesis") == h.id.as_str())
            .count();
        line(
            &mut out,
            format!("  {} {} ({tests} test(s))", h.short, h.get("text")),
        );
    }
    if !any {
        line(&mut out, "  (none)");
    }
    line(&mut out, "Ruled out:");
    let mut any = false;
    for h in by_status(HypothesisStatus::RuledOut) {
        any = true;
        let test = h.get("ruled_out_by");
        let why = v
            .item(h.get("ruled_out_result"))
            .map(|r| r.get("observation"))
            .unwrap_or("");
        line(
            &mut out,
            format!(
                "  {} {} — by test {}: {why}",
                h.short,
                h.get("text"),
                v.short(test)
            ),
        );
    }
    if !any {
        line(&mut out, "  (none)");
    }
    if !v.conflicts.is_empty() {
        line(
            &mut out,
            format!(
                "! {} conflicting edit(s): see `conflicts`",
                v.conflicts.len()
            ),
        );
    }
    line(&mut out, "Last events:");
    let start = v.timeline.len().saturating_sub(BRIEF_EVENTS);
    for e in &v.timeline[start..] {
        line(
            &mut out,
            format!("  {} {}: {}", clock(e.at), e.name, e.text),
        );
    }
    out
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

/// A fenced code block of remote text at column `indent`: made
/// terminal-safe, fenced by more backticks than the text ever repeats, so
/// nothing inside can close it or be read as Markdown.
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
    let mut out = format!("{pad}{fence}text\n");
    for l in safe.lines() {
        out.push_str(&format!("{pad}{l}\n"));
    }
    out.push_str(&format!("{pad}{fence}\n"));
    out
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
            o.push_str(&fenced(&quoted, indent + 2));
        }
    }
    o
}

/// The Production Incident Report, as Markdown.
pub fn report(v: &IncidentView) -> String {
    let mut o = String::new();
    let sev = v.severity.map(|s| s.label()).unwrap_or_default();
    let _ = writeln!(o, "# Production Incident Report: {}\n", md1(&v.title));
    let _ = writeln!(o, "## Summary\n");
    let _ = writeln!(o, "- Incident: {}", code(&v.id));
    let _ = writeln!(o, "- Severity: {sev}");
    let _ = writeln!(
        o,
        "- Status: {}",
        v.status.map(|s| s.to_string()).unwrap_or_default()
    );
    let _ = writeln!(o, "- Opened: {}", utc(v.created_at));
    for (status, at) in &v.status_times {
        let _ = writeln!(o, "- {status}: {}", utc(*at));
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

    let _ = writeln!(o, "\n## Impact\n");
    let impacts: Vec<&Item> = v
        .items(Kind::Symptom)
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
    for s in v.items(Kind::Symptom) {
        let _ = write!(o, "- {} {}", code(&s.short), md(s.get("text"), 2));
        for (k, label) in [
            ("where", "where"),
            ("frequency", "how often"),
            ("impact", "impact"),
        ] {
            if !s.get(k).is_empty() {
                let _ = write!(o, "; {label}: {}", md(s.get(k), 2));
            }
        }
        let _ = writeln!(o, " — {}, {}", md1(&v.name_of(&s.by)), utc(s.at));
        o.push_str(&evidence_markdown(v, s.id.as_str(), 2));
    }

    let _ = writeln!(o, "\n## Hypotheses\n");
    for h in v.items(Kind::Hypothesis) {
        let outcome = match hyp_status(h) {
            Some(HypothesisStatus::RuledOut) => {
                let obs = v
                    .item(h.get("ruled_out_result"))
                    .map(|r| md(r.get("observation"), 2))
                    .unwrap_or_default();
                format!(
                    "**ruled out** by test {}: {obs}",
                    code(&v.short(h.get("ruled_out_by")))
                )
            }
            Some(HypothesisStatus::Confirmed) => {
                let by = h.get("confirmed_by");
                if by.is_empty() {
                    format!("**confirmed**: {}", md(h.get("evidence"), 2))
                } else {
                    format!("**confirmed** by test {}", code(&v.short(by)))
                }
            }
            _ => "still open".to_string(),
        };
        let _ = writeln!(
            o,
            "- {} {} — {outcome}",
            code(&h.short),
            md(h.get("text"), 2)
        );
        o.push_str(&evidence_markdown(v, h.id.as_str(), 2));
        for t in v
            .items(Kind::Test)
            .iter()
            .filter(|t| t.get("hypothesis") == h.id.as_str())
        {
            let _ = writeln!(
                o,
                "  - test {}: {} (rules it out if: {})",
                code(&t.short),
                md(t.get("action"), 4),
                md(t.get("rules_out_if"), 4)
            );
            o.push_str(&evidence_markdown(v, t.id.as_str(), 4));
            for r in v
                .items(Kind::Result)
                .iter()
                .filter(|r| r.get("test") == t.id.as_str())
            {
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

    let _ = writeln!(o, "\n## Fix\n");
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
        let _ = writeln!(o, "None recorded.");
    }
    for a in v.items(Kind::FollowUp) {
        let _ = writeln!(
            o,
            "- [ ] {} ({})",
            md(a.get("text"), 6),
            md1(&v.name_of(&a.by))
        );
    }

    let _ = writeln!(o, "\n## Timeline (UTC)\n");
    for e in &v.timeline {
        let _ = writeln!(o, "- {} — {} — {}", utc(e.at), md1(&e.name), md(&e.text, 2));
    }

    let _ = writeln!(o, "\n## Participants\n");
    for m in &v.members {
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
            "- {} ({}){removed}",
            md1(&m.name),
            code(&m.key.chars().take(16).collect::<String>())
        );
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
