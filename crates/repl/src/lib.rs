//! The dontpanic command language and its two front ends: the interactive
//! prompt (rustyline) and the script reader (non-interactive stdin).
//!
//! # Brief overview
//!
//! * [`command`] parses a line into a [`Command`]; [`command::SPECS`] is the
//!   one table of names, aliases, usage and help.
//! * [`Session`] runs commands against the notebook and answers each with one
//!   [`Reply`] (text and JSON).
//! * [`interactive`] and [`script`] are the loops; [`Notice`]s (remote edits,
//!   peers coming and going) are printed above the prompt or as JSON lines.
//!
//! This crate knows nothing of libp2p: the network is reached through the
//! [`Network`] trait, implemented by the binary.
#![deny(missing_docs)]
// Strings here come from peers, files and the prompt: no byte-index slicing.
#![deny(clippy::string_slice)]

pub mod command;
mod session;

use std::borrow::Cow;
use std::cell::OnceCell;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, ExternalPrinter, Helper};

pub use command::{Command, ParseError};
pub use session::{
    doctor_json, doctor_text, Company, Live, Network, PeerRow, PromptContext, Reply, Session,
};

/// Something that happened on its own (not in answer to a command).
#[derive(Clone, Debug)]
pub struct Notice {
    /// For humans, e.g. `[alice] ruled out h7k2 ...`.
    pub text: String,
    /// For scripts; has an `event` field.
    pub json: serde_json::Value,
}

/// Turns lines of input into commands. Each line is one command, except
/// that a command taking a block ([`command::Rest::Block`], like `note`)
/// alone on its line opens a block: the lines after it, up to a line
/// holding a single `.`, are its text, and the whole is one command.
#[derive(Default)]
pub struct Lines {
    open: Option<(String, Vec<String>)>,
}

impl Lines {
    /// Takes one line; returns a command's text once one is complete.
    pub fn feed(&mut self, line: &str) -> Option<String> {
        match &mut self.open {
            Some(_) if line.trim() == "." => self.finish(),
            Some((_, lines)) => {
                lines.push(line.to_string());
                None
            }
            None if command::opens_block(line) => {
                self.open = Some((line.to_string(), Vec::new()));
                None
            }
            None => Some(line.to_string()),
        }
    }

    /// Starts a block whose first line already holds some of its text (a
    /// multi-line paste after `note `).
    fn continue_lines(&mut self, first: &str) {
        self.open = Some((first.to_string(), Vec::new()));
    }

    /// Ends the block being gathered (the input ended, or a paste did):
    /// the command it makes, if one was open.
    pub fn finish(&mut self) -> Option<String> {
        let (head, lines) = self.open.take()?;
        Some(format!("{head}\n{}", lines.join("\n")))
    }

    /// Whether a block is being gathered.
    pub fn in_block(&self) -> bool {
        self.open.is_some()
    }
}

/// Said when a block opens.
const BLOCK_HINT: &str = "(one entry: the lines up to a line holding a single `.`)";

/// Terminal colours, only when writing to a terminal.
#[derive(Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Colours on or off.
    pub fn new(on: bool) -> Style {
        Style { on }
    }

    fn paint<'a>(&self, code: &str, text: &'a str) -> Cow<'a, str> {
        if self.on {
            Cow::Owned(format!("\x1b[{code}m{text}\x1b[0m"))
        } else {
            Cow::Borrowed(text)
        }
    }

    /// An error line.
    pub fn error(&self, text: &str) -> String {
        format!("{} {text}", self.paint("1;31", "error:"))
    }

    /// A notice from elsewhere.
    pub fn notice(&self, text: &str) -> String {
        self.paint("36", text).into_owned()
    }
}

/// What the prompt completes, refreshed after every command and notice
/// from what the notebook holds (never from the network).
#[derive(Clone, Debug, Default)]
pub struct Offer {
    /// Incidents, items and conflicts, from the notebook.
    pub notebook: dontpanic_notebook::Completions,
    /// Roster names of the incident at the prompt.
    pub members: Vec<String>,
}

/// A candidate shown as `display`, inserting only `insert`.
fn pair(insert: &str, label: &str) -> Pair {
    let display = if label.is_empty() {
        insert.to_string()
    } else {
        let label: String = label.chars().take(60).collect();
        format!("{insert:<10} {label}")
    };
    Pair {
        display,
        replacement: insert.to_string(),
    }
}

/// The candidates for the word being typed at the end of `before`: command
/// names first, then what makes sense for that argument of that command
/// (open hypotheses for `test`, tests without results for `result`, the
/// values of `status`, `sev`, `role`, members, flags), ids otherwise.
/// Returns where the word starts.
fn complete_line(offer: &Offer, before: &str) -> (usize, Vec<Pair>) {
    let start = before
        .char_indices()
        .rfind(|(_, c)| c.is_whitespace())
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    let (head, word) = before.split_at_checked(start).unwrap_or((before, ""));
    let args: Vec<&str> = head.split_whitespace().collect();
    let matching = |c: &&str| c.starts_with(word);
    let Some((name, done)) = args.split_first() else {
        let names = command::command_names().filter(|n| n.starts_with(word));
        return (start, names.map(|n| pair(n, "")).collect());
    };
    let Some(spec) = command::spec(&name.to_ascii_lowercase()) else {
        return (start, Vec::new());
    };
    let words = |all: Vec<(String, &'static str)>| -> Vec<Pair> {
        all.into_iter()
            .filter(|(w, _)| w.starts_with(word))
            .map(|(w, m)| pair(&w, m))
            .collect()
    };
    let items = |kind: Option<dontpanic_incident::Kind>, open_only: bool| -> Vec<Pair> {
        offer
            .notebook
            .items
            .iter()
            .filter(|i| kind.is_none_or(|k| i.kind == k) && (i.open || !open_only))
            .filter(|i| i.id.starts_with(word))
            .map(|i| pair(&i.id, &i.label))
            .collect()
    };
    use dontpanic_incident::{Kind, Role, Severity, Status};
    if word.starts_with("--") {
        let flags = spec.flag_names().map(|f| format!("--{f}"));
        let flags: Vec<String> = flags.filter(|f| f.starts_with(word)).collect();
        return (start, flags.iter().map(|f| pair(f, "")).collect());
    }
    let plain = |v: &[String]| {
        v.iter()
            .map(String::as_str)
            .filter(matching)
            .map(|c| pair(c, ""))
            .collect()
    };
    let found = match (spec.name, done.len()) {
        ("test" | "confirm", 0) => items(Some(Kind::Hypothesis), true),
        ("result", 0) => items(Some(Kind::Test), true),
        ("status", 0) => words(
            Status::ALL
                .iter()
                .map(|v| (v.to_string(), v.meaning()))
                .collect(),
        ),
        ("sev", 0) => words(
            Severity::ALL
                .iter()
                .map(|v| (v.to_string(), v.meaning()))
                .collect(),
        ),
        ("role", 0) => words(
            Role::ALL
                .iter()
                .map(|v| (v.to_string(), v.meaning()))
                .collect(),
        ),
        ("role", 1) | ("remove", 0) => plain(&offer.members),
        ("open", 0) => plain(&offer.notebook.incidents),
        ("resolve", 0) => plain(&offer.notebook.conflicts),
        ("help", 0) => command::command_names()
            .filter(matching)
            .map(|n| pair(n, ""))
            .collect(),
        _ => items(None, false),
    };
    (start, found)
}

/// Completes at the prompt from an [`Offer`] (see [`complete_line`]).
struct IdCompleter {
    offer: Arc<Mutex<Offer>>,
}

impl Completer for IdCompleter {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        // rustyline gives a char boundary; `get` keeps a bad one harmless.
        let before = line.get(..pos).unwrap_or(line);
        let offer = self.offer.lock().map(|g| g.clone()).unwrap_or_default();
        Ok(complete_line(&offer, before))
    }
}

impl Hinter for IdCompleter {
    type Hint = String;
}
impl Highlighter for IdCompleter {}
impl Validator for IdCompleter {}
impl Helper for IdCompleter {}

struct StyledPrompt {
    raw: String,
    styled: String,
}

impl rustyline::Prompt for StyledPrompt {
    fn raw(&self) -> &str {
        &self.raw
    }
    fn styled(&self) -> &str {
        &self.styled
    }
}

fn prompt(session: &Session, style: Style) -> StyledPrompt {
    match session.prompt_context() {
        Some(PromptContext {
            incident,
            status,
            company,
            update_due,
        }) => {
            let due = if update_due { " · update due" } else { "" };
            StyledPrompt {
                raw: format!("dontpanic [{incident} {status}{due} · {company}]> "),
                styled: format!(
                    "{} [{} {}{} · {}]> ",
                    style.paint("1", "dontpanic"),
                    style.paint("33", &incident),
                    style.paint(if status == "resolved" { "32" } else { "31" }, &status),
                    style.paint("1;33", due),
                    style.paint(
                        match company {
                            Company::Members { online, .. } if online > 0 => "32",
                            Company::Alone => "0",
                            _ => "33",
                        },
                        &company.to_string()
                    )
                ),
            }
        }
        None => StyledPrompt {
            raw: "dontpanic> ".into(),
            styled: format!("{}> ", style.paint("1", "dontpanic")),
        },
    }
}

/// The prompt of one `readline`, recomputed after a notice.
///
/// rustyline 19 asks its `Prompt` for the text again on every redraw,
/// including the one that follows an external print (`State::external_print`
/// → `repaint`, src/edit.rs), so a notice can bring a new prompt. But it
/// measures the prompt once, when the line starts (`State::new`,
/// src/edit.rs:63), and places the cursor by that width until `readline`
/// returns. So a new text is drawn at the starting width ([`fit`]): padded
/// when shorter, abbreviated when longer; the next prompt shows it whole.
///
/// `Prompt` hands out `&str` borrowed from `&self`, so the versions are an
/// append-only chain: an older text stays where rustyline may still hold it.
/// A version is added only when the text changes.
struct LivePrompt<'a> {
    session: &'a Session,
    style: Style,
    /// Set by the notice thread before each print.
    stale: &'a AtomicBool,
    /// Refreshed with the prompt: a notice may bring new ids.
    ids: &'a Mutex<Offer>,
    width: usize,
    first: PromptVersion,
}

struct PromptVersion {
    text: StyledPrompt,
    next: OnceCell<Box<PromptVersion>>,
}

impl<'a> LivePrompt<'a> {
    fn new(
        session: &'a Session,
        style: Style,
        stale: &'a AtomicBool,
        ids: &'a Mutex<Offer>,
    ) -> Self {
        stale.store(false, Ordering::SeqCst);
        let text = prompt(session, style);
        LivePrompt {
            session,
            style,
            stale,
            ids,
            width: text.raw.chars().count(),
            first: PromptVersion {
                text,
                next: OnceCell::new(),
            },
        }
    }

    fn current(&self) -> &StyledPrompt {
        let mut v = &self.first;
        while let Some(next) = v.next.get() {
            v = next;
        }
        if self.stale.swap(false, Ordering::SeqCst) {
            *self.ids.lock().unwrap_or_else(|p| p.into_inner()) = self.session.completions();
            let fresh = fit(prompt(self.session, self.style), self.width);
            if fresh.raw != v.text.raw || fresh.styled != v.text.styled {
                v = v.next.get_or_init(|| {
                    Box::new(PromptVersion {
                        text: fresh,
                        next: OnceCell::new(),
                    })
                });
            }
        }
        &v.text
    }
}

impl rustyline::Prompt for LivePrompt<'_> {
    fn raw(&self) -> &str {
        &self.current().raw
    }
    fn styled(&self) -> &str {
        &self.current().styled
    }
}

/// `p` at exactly `width` columns: padded, or cut with `…` (and uncoloured).
fn fit(p: StyledPrompt, width: usize) -> StyledPrompt {
    let w = p.raw.chars().count();
    if w <= width {
        let pad = " ".repeat(width - w);
        return StyledPrompt {
            raw: format!("{}{pad}", p.raw),
            styled: format!("{}{pad}", p.styled),
        };
    }
    let body = p.raw.trim_end_matches("> ");
    let cut: String = body.chars().take(width.saturating_sub(3)).collect();
    let raw = format!("{cut}…> ");
    StyledPrompt {
        styled: raw.clone(),
        raw,
    }
}

/// The interactive loop: history, completion, colour, notices above the
/// prompt. Returns when the user quits or presses Ctrl-D.
///
/// Every line that reaches the prompt runs, in order: lines typed ahead
/// while a command runs, a paste, several lines in one read. rustyline reads
/// the terminal through a 1 KiB buffer and keeps what is left of it for the
/// next `readline` only with its `buffer-redux` feature (without it
/// `PosixRawReader::unbuffer` returns `None`, src/tty/unix.rs:908, and
/// `Editor::readline_edit` drops the rest, src/lib.rs:848), so this crate
/// turns that feature on. A bracketed paste arrives as one multi-line entry;
/// it is run line by line, unless it starts with a command that takes a
/// block (`note ...`): then it is that one command's text, up to a `.`
/// line or the end of the paste. `note` alone opens a block ([`Lines`]),
/// which Ctrl-C drops and Ctrl-D ends.
pub fn interactive(
    session: &Session,
    history: &Path,
    notices: Receiver<Notice>,
) -> Result<(), String> {
    let style = Style::new(std::io::stdout().is_terminal());
    let config = rustyline::Config::builder()
        .auto_add_history(false)
        .max_history_size(10_000)
        .map_err(|e| e.to_string())?
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut rl: rustyline::Editor<IdCompleter, rustyline::history::FileHistory> =
        rustyline::Editor::with_config(config).map_err(|e| e.to_string())?;
    let ids = Arc::new(Mutex::new(session.completions()));
    rl.set_helper(Some(IdCompleter { offer: ids.clone() }));
    let _ = rl.load_history(history);
    let mut printer = rl.create_external_printer().map_err(|e| e.to_string())?;
    let stale = Arc::new(AtomicBool::new(false));
    let printer_stale = stale.clone();
    std::thread::spawn(move || {
        for n in notices {
            // Before the print: its redraw asks for the prompt again.
            printer_stale.store(true, Ordering::SeqCst);
            if printer.print(style.notice(&n.text)).is_err() {
                break;
            }
        }
    });
    // A command that `run` runs prints as it goes.
    let mut print = |text: &str| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    };
    println!("dontpanic — stay calm; capture symptoms, test hypotheses. `help` lists commands.");
    for n in session.fresh_nudges() {
        println!("{}", style.notice(&format!("! {n}")));
    }
    let mut lines = Lines::default();
    loop {
        let entry = if lines.in_block() {
            rl.readline("… ")
        } else {
            rl.readline(&LivePrompt::new(session, style, &stale, &ids))
        };
        let entry = match entry {
            Ok(entry) => entry,
            Err(ReadlineError::Interrupted) if lines.in_block() => {
                lines = Lines::default();
                eprintln!("block dropped; nothing was recorded");
                continue;
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => match lines.finish() {
                // Ctrl-D ends a block as `.` would, then the session.
                Some(command) => {
                    run_entry(session, &command, style, &ids, &mut print);
                    break;
                }
                None => break,
            },
            Err(e) => return Err(e.to_string()),
        };
        let mut commands = Vec::new();
        let was_in_block = lines.in_block();
        let mut it = entry.lines();
        let pasted = entry.trim_end().contains('\n');
        // A paste of several lines after `note `: one entry, up to a `.`
        // line or the end of the paste.
        let paste_is_text = pasted && !lines.in_block() && {
            let first = entry.lines().next().unwrap_or_default();
            command::takes_lines(first)
        };
        if paste_is_text {
            if let Some(first) = it.next() {
                lines.continue_lines(first);
            }
        }
        for line in it {
            commands.extend(lines.feed(line));
        }
        if paste_is_text {
            commands.extend(lines.finish());
        } else if lines.in_block() && !was_in_block {
            println!("{BLOCK_HINT}");
        }
        for command in commands {
            let _ = rl.add_history_entry(command.as_str());
            let _ = rl.append_history(history);
            if run_entry(session, &command, style, &ids, &mut print) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Runs one command of the interactive loop (a `run` shows its output
/// through `live` as it comes) and prints its reply; true when it asked to
/// leave.
fn run_entry(
    session: &Session,
    command: &str,
    style: Style,
    ids: &Mutex<Offer>,
    live: &mut session::Live<'_>,
) -> bool {
    let Some(reply) = session.run_line_live(command, Some(live)) else {
        return false;
    };
    if reply.ok {
        println!("{}", reply.text);
    } else {
        eprintln!("{}", style.error(&reply.text));
    }
    *ids.lock().unwrap_or_else(|p| p.into_inner()) = session.completions();
    reply.quit
}

/// The script loop: one command per line from `input`. In JSON mode every
/// command answers with exactly one JSON line; notices are JSON lines with an
/// `event` field. Returns how many commands failed.
pub fn script(
    session: &Session,
    input: impl BufRead,
    json: bool,
    notices: Receiver<Notice>,
) -> usize {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let printer_out = out.clone();
    let printer = std::thread::spawn(move || {
        for n in notices {
            let line = if json { n.json.to_string() } else { n.text };
            let mut o = printer_out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(o, "{line}");
            let _ = o.flush();
        }
    });
    let mut failed = 0;
    let mut lines = Lines::default();
    // The line a block opened on, for its error message.
    let mut opened = 0;
    let mut input = input.split(b'\n').enumerate();
    loop {
        let (n, command) = match input.next() {
            None => match lines.finish() {
                // The input ended inside a block: it ends the block too.
                Some(command) => (opened, Ok(command)),
                None => break,
            },
            Some((n, Err(e))) => {
                eprintln!("error: stdin line {}: {e}", n + 1);
                failed += 1;
                break;
            }
            // A line that is not UTF-8 gets an error reply; the rest still run.
            Some((n, Ok(line))) => match std::str::from_utf8(&line) {
                Ok(text) => {
                    if !lines.in_block() {
                        opened = n;
                    }
                    match lines.feed(text.strip_suffix('\r').unwrap_or(text)) {
                        Some(command) => (opened, Ok(command)),
                        None => continue,
                    }
                }
                Err(e) => (
                    n,
                    Err(format!(
                        "line {} is not valid UTF-8 (byte {} of the line); it was not run",
                        n + 1,
                        e.valid_up_to() + 1
                    )),
                ),
            },
        };
        let reply = match command {
            Ok(text) => session.run_line(&text),
            Err(message) => Some(Reply::error(message)),
        };
        let Some(reply) = reply else {
            continue;
        };
        {
            let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
            if json {
                let _ = writeln!(o, "{}", reply.json);
            } else if reply.ok {
                let _ = writeln!(o, "{}", reply.text);
            }
            let _ = o.flush();
        }
        if !reply.ok {
            failed += 1;
            eprintln!("error: line {}: {}", n + 1, reply.text);
        }
        if reply.quit {
            break;
        }
    }
    drop(printer);
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use dontpanic_incident::{Completion, Kind};

    fn offer() -> Offer {
        let item = |id: &str, kind, label: &str, open| Completion {
            id: id.into(),
            kind,
            label: label.into(),
            open,
        };
        Offer {
            notebook: dontpanic_notebook::Completions {
                incidents: vec!["i4bhad7e".into()],
                items: vec![
                    item("h7k2", Kind::Hypothesis, "DNS resolution failing", true),
                    item("h9zz", Kind::Hypothesis, "ruled-out idea", false),
                    item("tq3a", Kind::Test, "dig @10.0.0.2", true),
                    item("tq4b", Kind::Test, "already has a result", false),
                ],
                conflicts: vec!["title".into()],
            },
            members: vec!["alice".into(), "Bob Smith".into()],
        }
    }

    /// Each row: the line before the cursor, what is inserted for each
    /// candidate, and one candidate's display.
    #[test]
    fn completion_offers_what_fits_the_argument() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("hyp", &["hypo", "hypothesis"], "hypo"),
            ("test ", &["h7k2"], "h7k2       DNS resolution failing"),
            ("confirm h", &["h7k2"], "h7k2       DNS resolution failing"),
            ("result ", &["tq3a"], "tq3a       dig @10.0.0.2"),
            (
                "status res",
                &["resolved"],
                "resolved   Over; only reopening changes it again.",
            ),
            (
                "sev ",
                &["sev1", "sev2", "sev3", "sev4"],
                "sev1       Critical: total outage or data loss.",
            ),
            (
                "role ",
                &["commander", "scribe", "comms"],
                "scribe     Keeps the record.",
            ),
            ("role ic ", &["alice", "Bob Smith"], "alice"),
            ("remove B", &["Bob Smith"], "Bob Smith"),
            ("open i", &["i4bhad7e"], "i4bhad7e"),
            ("resolve ", &["title"], "title"),
            ("result tq3a saw it --r", &["--ruled-out"], "--ruled-out"),
            (
                "note see t",
                &["tq3a", "tq4b"],
                "tq4b       already has a result",
            ),
            ("frobnicate ", &[], ""),
        ];
        let offer = offer();
        for (line, inserts, display) in cases {
            let (start, got) = complete_line(&offer, line);
            let replacements: Vec<&str> = got.iter().map(|p| p.replacement.as_str()).collect();
            assert_eq!(&replacements, inserts, "{line:?}");
            assert_eq!(
                start,
                line.rfind(' ').map(|i| i + 1).unwrap_or(0),
                "{line:?}"
            );
            if !display.is_empty() {
                let shown: Vec<&str> = got.iter().map(|p| p.display.as_str()).collect();
                assert!(shown.contains(display), "{line:?}: {shown:?}");
            }
        }
    }
}
