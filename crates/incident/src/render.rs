//! The two texts made from the record: the one-screen brief for a newcomer
//! and the Production Incident Report in Markdown.

use std::fmt::Write;

use time::OffsetDateTime;

use crate::{HypothesisStatus, IncidentView, Item, Kind, Verdict};

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

/// Remote text of several lines (a pasted log) as a fenced code block
/// indented to `indent`, so it reads as typed and cannot break out of its
/// list item: the fence is longer than any run of backticks inside.
fn code_block(text: &str, indent: usize) -> String {
    let safe = terminal_safe(text).replace('\t', "    ");
    let mut longest = 0;
    let mut run = 0;
    for c in safe.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    let pad = " ".repeat(indent);
    let mut out = format!("{pad}{fence}\n");
    for l in safe.lines() {
        out.push_str(&format!("{pad}{l}\n"));
    }
    out.push_str(&format!("{pad}{fence}"));
    out
}

/// A timeline entry's text for a list item: its first line as text, and
/// the lines after it, if any, as a code block under it.
fn entry_text(text: &str) -> String {
    match text.split_once('\n') {
        Some((first, more)) => format!("{}\n{}", md1(first), code_block(more, 2)),
        None => md(text, 2),
    }
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
        let _ = writeln!(
            o,
            "- {} — {} — {}",
            utc(e.at),
            md1(&e.name),
            entry_text(&e.text)
        );
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
            code(&crate::fingerprint(&m.key))
        );
    }
    o
}

#[cfg(test)]
mod markdown_tests {
    use super::{entry_text, markdown, md, md1};

    #[test]
    fn several_lines_become_a_code_block_under_the_item() {
        let cases: &[(&str, &str)] = &[
            ("note: one line", "note: one line"),
            (
                "note: the log:\nERR 1\n  at x",
                "note: the log:\n  ```\n  ERR 1\n    at x\n  ```",
            ),
            (
                "note: fences\n```\n- not a list",
                "note: fences\n  ````\n  ```\n  - not a list\n  ````",
            ),
            (
                "note: \x1b[31m\nred\x1b[0m",
                "note: \\\\u{1b}\\[31m\n  ```\n  red\\u{1b}[0m\n  ```",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&entry_text(input), want, "{input:?}");
        }
    }

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
