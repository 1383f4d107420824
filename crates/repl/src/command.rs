//! The command language: parsing a line into a [`Command`], separate from
//! running it, so the prompt, a script and a test share one grammar.

use dontpanic_incident::{Role, Severity, Status, Verdict};

/// A parse error; it names the command and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Unbalanced quotes and the like.
    #[error("cannot split the line: unbalanced quotes")]
    Quoting,
    /// Not a command.
    #[error("unknown command `{0}`; type `help` for the list")]
    Unknown(String),
    /// Wrong arguments; `usage` is the command's synopsis.
    #[error("{command}: {problem}\n  usage: {usage}")]
    Usage {
        /// The command.
        command: &'static str,
        /// What was wrong.
        problem: String,
        /// Its synopsis.
        usage: &'static str,
    },
}

/// How a command takes a flag.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    Value,
    Nothing,
}

/// One command of the language: its names, synopsis, help and flags.
pub struct Spec {
    /// The command's name.
    pub name: &'static str,
    /// Other names it answers to.
    pub aliases: &'static [&'static str],
    /// Synopsis.
    pub usage: &'static str,
    /// What it does.
    pub help: &'static str,
    flags: &'static [(&'static str, Takes)],
}

const V: Takes = Takes::Value;
const N: Takes = Takes::Nothing;

/// Every command, in the order `help` lists them.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "new",
        aliases: &[],
        usage: "new <title> [--sev 1-4]",
        help: "Start a new incident (default SEV3) and open it.",
        flags: &[("sev", V)],
    },
    Spec {
        name: "incidents",
        aliases: &["ls"],
        usage: "incidents",
        help: "List the incidents stored on this device.",
        flags: &[],
    },
    Spec {
        name: "open",
        aliases: &[],
        usage: "open <incident-id>",
        help: "Open a stored incident (a unique prefix of its id is enough).",
        flags: &[],
    },
    Spec {
        name: "symptom",
        aliases: &["sym", "s"],
        usage: "symptom <text> [--where ..] [--freq ..] [--impact ..] [--since HH:MM|RFC3339]",
        help: "Capture what is happening, where, how often and the impact; --since says when impact began (HH:MM is UTC, today, or yesterday when later than now; or RFC 3339 like 2026-12-01T02:41:00Z).",
        flags: &[("where", V), ("freq", V), ("impact", V), ("since", V)],
    },
    Spec {
        name: "hypo",
        aliases: &["hypothesis", "h"],
        usage: "hypo <text>",
        help: "Add a hypothesis: anything that could cause the symptoms.",
        flags: &[],
    },
    Spec {
        name: "test",
        aliases: &["t"],
        usage: "test <hypo-id> <action> --rules-out-if <outcome>",
        help: "Plan a test designed to rule a hypothesis out, and the outcome that would.",
        flags: &[("rules-out-if", V)],
    },
    Spec {
        name: "result",
        aliases: &["r"],
        usage: "result <test-id> <observation> --ruled-out|--not-ruled-out|--inconclusive",
        help: "Record what a test showed; --ruled-out strikes its hypothesis.",
        flags: &[("ruled-out", N), ("not-ruled-out", N), ("inconclusive", N)],
    },
    Spec {
        name: "confirm",
        aliases: &[],
        usage: "confirm <hypo-id> <evidence>",
        help: "Confirm a hypothesis as the cause; evidence is a test id or a description.",
        flags: &[],
    },
    Spec {
        name: "fix",
        aliases: &[],
        usage: "fix <text> [--unconfirmed-because <reason>]",
        help: "Record a fix; before a cause is confirmed it needs a recorded reason.",
        flags: &[("unconfirmed-because", V)],
    },
    Spec {
        name: "note",
        aliases: &["n"],
        usage: "note <text>",
        help: "Add a free note to the timeline.",
        flags: &[],
    },
    Spec {
        name: "status",
        aliases: &[],
        usage: "status <investigating|identified|mitigated|resolved> [--because <reason>]",
        help: "Move the incident's status; --because records why (needed to resolve with no fix recorded).",
        flags: &[("because", V)],
    },
    Spec {
        name: "reopen",
        aliases: &[],
        usage: "reopen <reason>",
        help: "Reopen a resolved incident, saying why.",
        flags: &[],
    },
    Spec {
        name: "role",
        aliases: &[],
        usage: "role <commander|scribe|comms> <name>",
        help: "Give a role to someone.",
        flags: &[],
    },
    Spec {
        name: "title",
        aliases: &[],
        usage: "title <text>",
        help: "Retitle the incident.",
        flags: &[],
    },
    Spec {
        name: "sev",
        aliases: &["severity"],
        usage: "sev <1-4>",
        help: "Change the severity.",
        flags: &[],
    },
    Spec {
        name: "followup",
        aliases: &["fu"],
        usage: "followup <text> [--owner <member>] [--due YYYY-MM-DD|3d|2w]",
        help: "Add a follow-up action for after the incident, with the member who owns it and when it is due (a date, or days/weeks from now).",
        flags: &[("owner", V), ("due", V)],
    },
    Spec {
        name: "summary",
        aliases: &[],
        usage: "summary <text>",
        help: "Write the report's narrative: what happened, in a few sentences (the latest one wins).",
        flags: &[],
    },
    Spec {
        name: "lesson",
        aliases: &[],
        usage: "lesson <text>",
        help: "Record a lesson learned for the report, signed by you.",
        flags: &[],
    },
    Spec {
        name: "similar",
        aliases: &[],
        usage: "similar",
        help: "List past incidents on this device whose title, symptoms and hypotheses share words with the open one (offline, TF-IDF), with their confirmed cause and fix.",
        flags: &[],
    },
    Spec {
        name: "update",
        aliases: &[],
        usage: "update [--needs <text>] [--post [<text>]] [--last] [--out FILE [--force]] | update --every <15m|off>",
        help: "Draft a stakeholder update from the record (Conditions, Actions, Needs) without recording it; --post records the draft, or the text given instead; --last is the last one posted; --out writes it to FILE for a status page or an email (--force overwrites). --every sets, for the whole room, how often one is due (default 30m for SEV1 and SEV2, none otherwise; off for none).",
        flags: &[
            ("needs", V),
            ("post", N),
            ("last", N),
            ("out", V),
            ("force", N),
            ("every", V),
        ],
    },
    Spec {
        name: "updates",
        aliases: &[],
        usage: "updates [--all]",
        help: "List the stakeholder updates posted (time, author, first line); --all shows each whole.",
        flags: &[("all", N)],
    },
    Spec {
        name: "run",
        aliases: &[],
        usage: "run <test-id> [--timeout 2m] [-- <command>]",
        help: "Run the test's action (or the command after `--`, taken as typed) in your shell ($SHELL -c), show its output as it comes, and record the command, exit status, duration and output (stdout and stderr together; the first and last 16 KiB kept, secrets redacted) as signed evidence on the test. Killed with everything it started after --timeout (like 30s, 5m; default 2m); Ctrl-C stops it. Standard input is empty.",
        flags: &[("timeout", V)],
    },
    Spec {
        name: "attach",
        aliases: &[],
        usage: "attach <item-id> <file>",
        help: "Record a UTF-8 text file (at most 1 MiB; the first and last 16 KiB kept, secrets redacted) as signed evidence on any item.",
        flags: &[],
    },
    Spec {
        name: "show",
        aliases: &[],
        usage: "show <id> [--full]",
        help: "Print an item with all its fields and its evidence (long output trimmed; --full prints all of it).",
        flags: &[("full", N)],
    },
    Spec {
        name: "brief",
        aliases: &["b"],
        usage: "brief",
        help: "One screen for a newcomer: what is broken, what is open, what was ruled out.",
        flags: &[],
    },
    Spec {
        name: "timeline",
        aliases: &["tl"],
        usage: "timeline [--last N | --all]",
        help: "Show the timeline (the last 20 events by default).",
        flags: &[("last", V), ("all", N)],
    },
    Spec {
        name: "report",
        aliases: &[],
        usage: "report [--out FILE [--force]]",
        help: "Write the Production Incident Report (Markdown); --out never overwrites an existing file unless --force.",
        flags: &[("out", V), ("force", N)],
    },
    Spec {
        name: "export",
        aliases: &[],
        usage: "export [--out FILE]",
        help: "Write the incident's current state as a plain Automerge document for other tools (default <incident-id>.automerge); without history or the join secret, so the file is never an invite.",
        flags: &[("out", V)],
    },
    Spec {
        name: "conflicts",
        aliases: &[],
        usage: "conflicts",
        help: "List fields edited concurrently with different values.",
        flags: &[],
    },
    Spec {
        name: "resolve",
        aliases: &[],
        usage: "resolve <field> <value>",
        help: "Settle a conflicting field on one value.",
        flags: &[],
    },
    Spec {
        name: "log",
        aliases: &["history"],
        usage: "log",
        help: "List the signed changes with author, key fingerprint and verification.",
        flags: &[],
    },
    Spec {
        name: "doctor",
        aliases: &[],
        usage: "doctor",
        help: "Verify every stored file (journal records, segments, snapshot seal, every signature), report each problem with its file and byte offset, repair what this device can, and list the changes that must come from members.",
        flags: &[],
    },
    Spec {
        name: "whoami",
        aliases: &[],
        usage: "whoami",
        help: "Show this device's name and public key.",
        flags: &[],
    },
    Spec {
        name: "peers",
        aliases: &[],
        usage: "peers",
        help: "Show connected and discovered peers.",
        flags: &[],
    },
    Spec {
        name: "connect",
        aliases: &[],
        usage: "connect <multiaddr>",
        help: "Dial a peer by address (where multicast is blocked).",
        flags: &[],
    },
    Spec {
        name: "unblock",
        aliases: &[],
        usage: "unblock <peer-id>",
        help: "Trust again a peer that was rejected for hostile input (rejections are kept across restarts); any unique prefix of its peer id works.",
        flags: &[],
    },
    Spec {
        name: "invite",
        aliases: &[],
        usage: "invite [--expires <duration>] [--once]",
        help: "Print an invite string for the open incident. It expires after --expires (like 30m, 2h, 1d; default 24h), by the clock of the member who admits; --once admits one joiner only, through this node.",
        flags: &[("expires", V), ("once", N)],
    },
    Spec {
        name: "remove",
        aliases: &[],
        usage: "remove <member> <reason>",
        help: "Take a member (its roster name or key prefix) off the roster, saying why: its later changes are refused and it is disconnected wherever the removal reaches, and every earlier invite stops working (a new join secret).",
        flags: &[],
    },
    Spec {
        name: "join",
        aliases: &[],
        usage: "join <invite>",
        help: "Join an incident from an invite.",
        flags: &[],
    },
    Spec {
        name: "help",
        aliases: &["?"],
        usage: "help [command]",
        help: "List commands, or explain one.",
        flags: &[],
    },
    Spec {
        name: "quit",
        aliases: &["exit", "q"],
        usage: "quit",
        help: "Leave (Ctrl-D works too).",
        flags: &[],
    },
];

/// A parsed command, ready to run. Fields mean what the same fields of
/// `dontpanic_incident::Edit` mean, and each variant's synopsis is in [`SPECS`].
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `new`
    New { title: String, severity: Severity },
    /// `incidents`
    Incidents,
    /// `open`
    Open(String),
    /// `symptom`
    Symptom {
        text: String,
        place: Option<String>,
        frequency: Option<String>,
        impact: Option<String>,
        since: Option<String>,
    },
    /// `hypo`
    Hypo(String),
    /// `test`
    Test {
        hypothesis: String,
        action: String,
        rules_out_if: String,
    },
    /// `result`
    Result {
        test: String,
        observation: String,
        verdict: Verdict,
    },
    /// `confirm`
    Confirm {
        hypothesis: String,
        evidence: String,
    },
    /// `fix`
    Fix {
        text: String,
        unconfirmed_because: Option<String>,
    },
    /// `note`
    Note(String),
    /// `status`
    Status {
        status: Status,
        because: Option<String>,
    },
    /// `reopen`
    Reopen(String),
    /// `role`
    Role { role: Role, name: String },
    /// `title`
    Title(String),
    /// `sev`
    Severity(Severity),
    /// `followup`
    FollowUp {
        text: String,
        owner: Option<String>,
        due: Option<String>,
    },
    /// `summary`
    Summary(String),
    /// `lesson`
    Lesson(String),
    /// `similar`
    Similar,
    /// `update`
    Update {
        /// Draft, post, show the last, or set the interval.
        mode: UpdateMode,
        /// `--needs`: the Needs of the draft.
        needs: Option<String>,
        /// `--out`: the file to write the update to.
        out: Option<String>,
        /// `--force`: overwrite that file.
        force: bool,
    },
    /// `updates`
    Updates { all: bool },
    /// `run`
    Run {
        /// Id (or prefix) of the test.
        test: String,
        /// The command line, as typed after `--`; else the test's action.
        command: Option<String>,
        /// Killed after this long.
        timeout: std::time::Duration,
    },
    /// `attach`
    Attach {
        /// Id (or prefix) of any item.
        item: String,
        /// The file, as typed.
        path: String,
    },
    /// `show`
    Show {
        /// Id (or prefix) of an item or an evidence.
        id: String,
        /// All of the output, untrimmed.
        full: bool,
    },
    /// `brief`
    Brief,
    /// `timeline`
    Timeline { last: Option<usize> },
    /// `report`
    Report { out: Option<String>, force: bool },
    /// `export`
    Export { out: Option<String> },
    /// `conflicts`
    Conflicts,
    /// `resolve`
    Resolve { field: String, value: String },
    /// `log`
    Log,
    /// `doctor`
    Doctor,
    /// `whoami`
    Whoami,
    /// `peers`
    Peers,
    /// `connect`
    Connect(String),
    /// `unblock`
    Unblock(String),
    /// `invite`
    Invite {
        /// How long the invite admits joiners.
        expires: std::time::Duration,
        /// Admits one joiner only.
        once: bool,
    },
    /// `remove`
    Remove {
        /// Roster name or key prefix.
        member: String,
        /// Why.
        reason: String,
    },
    /// `join`
    Join(String),
    /// `help`
    Help(Option<String>),
    /// `quit`
    Quit,
}

/// What `update` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateMode {
    /// Show (or write) the draft; nothing is recorded.
    Draft,
    /// Record the draft, or the given text instead of it.
    Post(Option<String>),
    /// Show (or write) the last posted update.
    Last,
    /// Set the room's interval between updates; `None` turns it off.
    Every(Option<std::time::Duration>),
}

/// How long an invite admits joiners unless `--expires` says otherwise.
pub const DEFAULT_INVITE_VALIDITY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// How long `run` lets a command run unless `--timeout` says otherwise.
pub const DEFAULT_RUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Commands whose text after a lone `--` is kept exactly as typed: a shell
/// command line, whose quotes and pipes shell-like splitting would lose.
const RAW_AFTER_DASHES: &[&str] = &["run"];

/// `line` split at its first lone `--` into what comes before and the rest
/// as typed (trimmed), if it has one.
fn split_raw_tail(line: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(i) = line.get(from..)?.find("--") {
        let at = from + i;
        let (before, rest) = line.split_at(at);
        let after = rest.get(2..).unwrap_or("");
        let alone_before = before.ends_with(char::is_whitespace);
        let alone_after = after.is_empty() || after.starts_with(char::is_whitespace);
        if alone_before && alone_after {
            return Some((before, after.trim()));
        }
        from = at + 2;
    }
    None
}

/// `90s`, `30m`, `2h`, `1d` (a number and one unit), at most a year.
fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = s.split_at_checked(split)?;
    let n: u64 = digits.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let secs = n
        .checked_mul(unit)
        .filter(|&t| t > 0 && t <= 366 * 86_400)?;
    Some(std::time::Duration::from_secs(secs))
}

/// Finds a command's spec by name or alias.
pub fn spec(name: &str) -> Option<&'static Spec> {
    SPECS
        .iter()
        .find(|s| s.name == name || s.aliases.contains(&name))
}

/// Positionals and flags of one line.
struct Args {
    spec: &'static Spec,
    words: Vec<String>,
    flags: Vec<(&'static str, Option<String>)>,
}

impl Args {
    fn usage(&self, problem: impl Into<String>) -> ParseError {
        ParseError::Usage {
            command: self.spec.name,
            problem: problem.into(),
            usage: self.spec.usage,
        }
    }

    fn flag(&self, name: &str) -> Option<String> {
        self.flags
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.clone())
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| *n == name)
    }

    /// All positionals joined: the free text of a command.
    fn text(&self, what: &str) -> Result<String, ParseError> {
        self.rest(0, what)
    }

    fn rest(&self, from: usize, what: &str) -> Result<String, ParseError> {
        let text = self.words.get(from..).unwrap_or(&[]).join(" ");
        if text.trim().is_empty() {
            Err(self.usage(format!("missing {what}")))
        } else {
            Ok(text)
        }
    }

    fn word(&self, i: usize, what: &str) -> Result<String, ParseError> {
        self.words
            .get(i)
            .cloned()
            .ok_or_else(|| self.usage(format!("missing {what}")))
    }

    fn none(&self) -> Result<(), ParseError> {
        match self.words.first() {
            Some(w) => Err(self.usage(format!("unexpected argument `{w}`"))),
            None => Ok(()),
        }
    }

    fn at_most_one(&self) -> Result<Option<String>, ParseError> {
        match self.words.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            [_, extra, ..] => Err(self.usage(format!("unexpected argument `{extra}`"))),
        }
    }
}

fn split_args(spec: &'static Spec, tokens: Vec<String>) -> Result<Args, ParseError> {
    let mut args = Args {
        spec,
        words: Vec::new(),
        flags: Vec::new(),
    };
    let mut it = tokens.into_iter();
    let mut only_words = false;
    while let Some(tok) = it.next() {
        if only_words || !tok.starts_with("--") || tok.len() == 2 {
            if tok == "--" && !only_words {
                only_words = true;
                continue;
            }
            args.words.push(tok);
            continue;
        }
        let flag = tok.get(2..).unwrap_or_default();
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        let Some((fname, takes)) = spec.flags.iter().find(|(f, _)| *f == name) else {
            return Err(args.usage(format!("unknown flag `--{name}`")));
        };
        let value = match (takes, inline) {
            (Takes::Nothing, None) => None,
            (Takes::Nothing, Some(_)) => {
                return Err(args.usage(format!("`--{name}` takes no value")))
            }
            (Takes::Value, Some(v)) => Some(v),
            (Takes::Value, None) => match it.next() {
                Some(v) => Some(v),
                None => return Err(args.usage(format!("`--{name}` needs a value"))),
            },
        };
        args.flags.push((fname, value));
    }
    Ok(args)
}

/// Parses one line; `Ok(None)` for a blank line or a comment.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let first = trimmed
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let raw = spec(&first)
        .filter(|s| RAW_AFTER_DASHES.contains(&s.name))
        .and_then(|_| split_raw_tail(trimmed));
    let (head, raw_tail) = match raw {
        Some((head, tail)) => (head, Some(tail.to_string())),
        None => (trimmed, None),
    };
    let mut tokens = shlex::split(head).ok_or(ParseError::Quoting)?;
    if tokens.is_empty() {
        return Ok(None);
    }
    let name = tokens.remove(0).to_ascii_lowercase();
    let spec = spec(&name).ok_or_else(|| ParseError::Unknown(name.clone()))?;
    let a = split_args(spec, tokens)?;
    let rule = |e: dontpanic_incident::RuleError| a.usage(e.to_string());
    let cmd = match spec.name {
        "new" => Command::New {
            title: a.text("title")?,
            severity: match a.flag("sev") {
                Some(s) => s.parse().map_err(rule)?,
                None => Severity::Sev3,
            },
        },
        "incidents" => a.none().map(|_| Command::Incidents)?,
        "open" => Command::Open(a.word(0, "incident id")?),
        "symptom" => Command::Symptom {
            text: a.text("symptom text")?,
            place: a.flag("where"),
            frequency: a.flag("freq"),
            impact: a.flag("impact"),
            since: a.flag("since"),
        },
        "hypo" => Command::Hypo(a.text("hypothesis text")?),
        "test" => Command::Test {
            hypothesis: a.word(0, "hypothesis id")?,
            action: a.rest(1, "action")?,
            rules_out_if: a.flag("rules-out-if").ok_or_else(|| {
                a.usage("missing --rules-out-if <outcome>: say what would rule the hypothesis out")
            })?,
        },
        "result" => {
            let verdicts: Vec<Verdict> = [
                ("ruled-out", Verdict::RulesOut),
                ("not-ruled-out", Verdict::DoesNotRuleOut),
                ("inconclusive", Verdict::Inconclusive),
            ]
            .into_iter()
            .filter(|(f, _)| a.has(f))
            .map(|(_, v)| v)
            .collect();
            let verdict = match verdicts.as_slice() {
                [v] => *v,
                [] => {
                    return Err(
                        a.usage("missing verdict: --ruled-out, --not-ruled-out or --inconclusive")
                    )
                }
                _ => return Err(a.usage("give exactly one verdict")),
            };
            Command::Result {
                test: a.word(0, "test id")?,
                observation: a.rest(1, "observation")?,
                verdict,
            }
        }
        "confirm" => Command::Confirm {
            hypothesis: a.word(0, "hypothesis id")?,
            evidence: a.rest(1, "evidence (a test id or what showed it)")?,
        },
        "fix" => Command::Fix {
            text: a.text("fix text")?,
            unconfirmed_because: a.flag("unconfirmed-because"),
        },
        "note" => Command::Note(a.text("note text")?),
        "status" => Command::Status {
            status: a.word(0, "status")?.parse().map_err(rule)?,
            because: a.flag("because"),
        },
        "reopen" => Command::Reopen(a.text("reason")?),
        "role" => Command::Role {
            role: a.word(0, "role")?.parse().map_err(rule)?,
            name: a.rest(1, "name")?,
        },
        "title" => Command::Title(a.text("title")?),
        "sev" => Command::Severity(a.word(0, "severity")?.parse().map_err(rule)?),
        "followup" => Command::FollowUp {
            text: a.text("follow-up text")?,
            owner: a.flag("owner"),
            due: a.flag("due"),
        },
        "summary" => Command::Summary(a.text("summary text")?),
        "lesson" => Command::Lesson(a.text("lesson text")?),
        "similar" => a.none().map(|_| Command::Similar)?,
        "update" => parse_update(&a)?,
        "updates" => a.none().map(|_| Command::Updates { all: a.has("all") })?,
        "run" => {
            let test = a.word(0, "test id")?;
            if let Some(extra) = a.words.get(1) {
                return Err(a.usage(format!(
                    "unexpected argument `{extra}`; give a command after `--`"
                )));
            }
            let command = match raw_tail {
                Some(c) if c.is_empty() => return Err(a.usage("missing command after `--`")),
                other => other,
            };
            let timeout = match a.flag("timeout") {
                Some(d) => parse_duration(&d).ok_or_else(|| {
                    a.usage(format!("`{d}` is not a duration (like 30s, 5m, 1h)"))
                })?,
                None => DEFAULT_RUN_TIMEOUT,
            };
            Command::Run {
                test,
                command,
                timeout,
            }
        }
        "attach" => Command::Attach {
            item: a.word(0, "item id")?,
            path: a.rest(1, "file")?,
        },
        "show" => match a.words.as_slice() {
            [id] => Command::Show {
                id: id.clone(),
                full: a.has("full"),
            },
            [] => return Err(a.usage("missing id")),
            [_, extra, ..] => return Err(a.usage(format!("unexpected argument `{extra}`"))),
        },
        "brief" => a.none().map(|_| Command::Brief)?,
        "timeline" => Command::Timeline {
            last: match (a.has("all"), a.flag("last")) {
                (true, _) => None,
                (false, Some(n)) => Some(
                    n.parse()
                        .map_err(|_| a.usage(format!("--last needs a number, not `{n}`")))?,
                ),
                (false, None) => Some(20),
            },
        },
        "report" => {
            a.none()?;
            let out = a.flag("out");
            if out.is_none() && a.has("force") {
                return Err(a.usage("--force only goes with --out FILE"));
            }
            Command::Report {
                out,
                force: a.has("force"),
            }
        }
        "export" => a.none().map(|_| Command::Export { out: a.flag("out") })?,
        "conflicts" => a.none().map(|_| Command::Conflicts)?,
        "resolve" => Command::Resolve {
            field: a.word(0, "field")?,
            value: a.rest(1, "value")?,
        },
        "log" => a.none().map(|_| Command::Log)?,
        "doctor" => a.none().map(|_| Command::Doctor)?,
        "whoami" => a.none().map(|_| Command::Whoami)?,
        "peers" => a.none().map(|_| Command::Peers)?,
        "connect" => Command::Connect(a.word(0, "multiaddr")?),
        "unblock" => Command::Unblock(a.word(0, "peer id")?),
        "invite" => {
            a.none()?;
            let expires = match a.flag("expires") {
                Some(d) => parse_duration(&d).ok_or_else(|| {
                    a.usage(format!("`{d}` is not a duration (like 30m, 2h, 1d)"))
                })?,
                None => DEFAULT_INVITE_VALIDITY,
            };
            Command::Invite {
                expires,
                once: a.has("once"),
            }
        }
        "remove" => Command::Remove {
            member: a.word(0, "member")?,
            reason: a.rest(1, "reason")?,
        },
        "join" => Command::Join(a.word(0, "invite")?),
        "help" => Command::Help(a.at_most_one()?),
        "quit" => Command::Quit,
        other => unreachable!("spec without parser: {other}"),
    };
    Ok(Some(cmd))
}

fn parse_update(a: &Args) -> Result<Command, ParseError> {
    let text = a.words.join(" ");
    let (post, last) = (a.has("post"), a.has("last"));
    if !text.trim().is_empty() && !post {
        return Err(a.usage(format!(
            "unexpected argument `{}`: text is posted with --post <text>",
            a.words[0]
        )));
    }
    let mode = match (a.flag("every"), post, last) {
        (Some(every), false, false) => {
            if a.has("needs") || a.has("out") || a.has("force") {
                return Err(a.usage("--every takes no other flag"));
            }
            let d = match every.trim() {
                "off" | "none" | "0" => None,
                d => Some(parse_duration(d).ok_or_else(|| {
                    a.usage(format!("`{d}` is not an interval (like 15m, 1h, or off)"))
                })?),
            };
            UpdateMode::Every(d)
        }
        (Some(_), _, _) => return Err(a.usage("--every takes no other flag")),
        (None, true, true) => return Err(a.usage("give --post or --last, not both")),
        (None, true, false) => UpdateMode::Post(Some(text).filter(|t| !t.trim().is_empty())),
        (None, false, true) if a.has("needs") => {
            return Err(a.usage("--needs is for a draft, not the last posted update"))
        }
        (None, false, true) => UpdateMode::Last,
        (None, false, false) => UpdateMode::Draft,
    };
    if a.has("force") && !a.has("out") {
        return Err(a.usage("--force is for --out FILE"));
    }
    Ok(Command::Update {
        mode,
        needs: a.flag("needs"),
        out: a.flag("out"),
        force: a.has("force"),
    })
}

/// The text of `help` or `help <command>`.
pub fn help(topic: Option<&str>) -> Result<String, ParseError> {
    match topic {
        None => {
            let mut out = String::from("Commands (ids may be shortened to any unique prefix):\n");
            for s in SPECS {
                out.push_str(&format!("  {:<52} {}\n", s.usage, s.help));
            }
            Ok(out)
        }
        Some(name) => {
            let s =
                spec(&name.to_ascii_lowercase()).ok_or_else(|| ParseError::Unknown(name.into()))?;
            let aliases = if s.aliases.is_empty() {
                String::new()
            } else {
                format!("\n  also: {}", s.aliases.join(", "))
            };
            Ok(format!("usage: {}\n  {}{aliases}\n", s.usage, s.help))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse(line).unwrap().unwrap()
    }

    #[test]
    fn lines_parse_into_commands() {
        let cases: Vec<(&str, Command)> = vec![
            (
                "new DNS is down --sev 1",
                Command::New {
                    title: "DNS is down".into(),
                    severity: Severity::Sev1,
                },
            ),
            (
                "new 'checkout 500s'",
                Command::New {
                    title: "checkout 500s".into(),
                    severity: Severity::Sev3,
                },
            ),
            (
                "hypo \"resolver crashed\"",
                Command::Hypo("resolver crashed".into()),
            ),
            ("h bad deploy", Command::Hypo("bad deploy".into())),
            (
                "symptom 500s --where eu-west --freq '1 in 3' --impact=checkout",
                Command::Symptom {
                    text: "500s".into(),
                    place: Some("eu-west".into()),
                    frequency: Some("1 in 3".into()),
                    impact: Some("checkout".into()),
                    since: None,
                },
            ),
            (
                "symptom 500s --since 02:41",
                Command::Symptom {
                    text: "500s".into(),
                    place: None,
                    frequency: None,
                    impact: None,
                    since: Some("02:41".into()),
                },
            ),
            (
                "followup 'alert on 5xx' --owner bob --due 3d",
                Command::FollowUp {
                    text: "alert on 5xx".into(),
                    owner: Some("bob".into()),
                    due: Some("3d".into()),
                },
            ),
            (
                "summary a bad deploy broke checkout",
                Command::Summary("a bad deploy broke checkout".into()),
            ),
            (
                "lesson page earlier",
                Command::Lesson("page earlier".into()),
            ),
            ("similar", Command::Similar),
            (
                "report --out pir.md --force",
                Command::Report {
                    out: Some("pir.md".into()),
                    force: true,
                },
            ),
            (
                "test h7k2 dig @8.8.8.8 --rules-out-if 'answers ok'",
                Command::Test {
                    hypothesis: "h7k2".into(),
                    action: "dig @8.8.8.8".into(),
                    rules_out_if: "answers ok".into(),
                },
            ),
            (
                "result t3 resolvers answer --ruled-out",
                Command::Result {
                    test: "t3".into(),
                    observation: "resolvers answer".into(),
                    verdict: Verdict::RulesOut,
                },
            ),
            (
                "fix restart --unconfirmed-because 'bleeding money'",
                Command::Fix {
                    text: "restart".into(),
                    unconfirmed_because: Some("bleeding money".into()),
                },
            ),
            (
                "status mitigated",
                Command::Status {
                    status: Status::Mitigated,
                    because: None,
                },
            ),
            (
                "status resolved --because 'went away'",
                Command::Status {
                    status: Status::Resolved,
                    because: Some("went away".into()),
                },
            ),
            (
                "update",
                Command::Update {
                    mode: UpdateMode::Draft,
                    needs: None,
                    out: None,
                    force: false,
                },
            ),
            (
                "update --needs 'a DBA' --out u.txt --force",
                Command::Update {
                    mode: UpdateMode::Draft,
                    needs: Some("a DBA".into()),
                    out: Some("u.txt".into()),
                    force: true,
                },
            ),
            (
                "update --post",
                Command::Update {
                    mode: UpdateMode::Post(None),
                    needs: None,
                    out: None,
                    force: false,
                },
            ),
            (
                "update --post all clear",
                Command::Update {
                    mode: UpdateMode::Post(Some("all clear".into())),
                    needs: None,
                    out: None,
                    force: false,
                },
            ),
            (
                "update --last --out u.txt",
                Command::Update {
                    mode: UpdateMode::Last,
                    needs: None,
                    out: Some("u.txt".into()),
                    force: false,
                },
            ),
            (
                "update --every 15m",
                Command::Update {
                    mode: UpdateMode::Every(Some(std::time::Duration::from_secs(900))),
                    needs: None,
                    out: None,
                    force: false,
                },
            ),
            (
                "update --every off",
                Command::Update {
                    mode: UpdateMode::Every(None),
                    needs: None,
                    out: None,
                    force: false,
                },
            ),
            ("updates --all", Command::Updates { all: true }),
            (
                "role ic Alice Smith",
                Command::Role {
                    role: Role::Commander,
                    name: "Alice Smith".into(),
                },
            ),
            ("timeline --last 5", Command::Timeline { last: Some(5) }),
            ("timeline --all", Command::Timeline { last: None }),
            ("note -- --weird text", Command::Note("--weird text".into())),
            ("help test", Command::Help(Some("test".into()))),
            (
                "run t3ab",
                Command::Run {
                    test: "t3ab".into(),
                    command: None,
                    timeout: DEFAULT_RUN_TIMEOUT,
                },
            ),
            (
                "run t3ab --timeout 30s -- grep 'a  b' x.log | wc -l --total",
                Command::Run {
                    test: "t3ab".into(),
                    command: Some("grep 'a  b' x.log | wc -l --total".into()),
                    timeout: std::time::Duration::from_secs(30),
                },
            ),
            (
                "run t3ab -- echo don't -- stop",
                Command::Run {
                    test: "t3ab".into(),
                    command: Some("echo don't -- stop".into()),
                    timeout: DEFAULT_RUN_TIMEOUT,
                },
            ),
            (
                "attach h7k2 'logs/resolver 1.log'",
                Command::Attach {
                    item: "h7k2".into(),
                    path: "logs/resolver 1.log".into(),
                },
            ),
            (
                "show e4k2 --full",
                Command::Show {
                    id: "e4k2".into(),
                    full: true,
                },
            ),
            ("QUIT", Command::Quit),
        ];
        for (line, want) in cases {
            assert_eq!(ok(line), want, "{line}");
        }
        assert_eq!(parse("   ").unwrap(), None);
        assert_eq!(parse("# a comment").unwrap(), None);
    }

    #[test]
    fn bad_lines_name_what_is_wrong() {
        let cases = [
            ("frobnicate", "unknown command `frobnicate`"),
            ("hypo 'unbalanced", "unbalanced quotes"),
            ("test h1 dig", "missing --rules-out-if"),
            ("result t1 saw it", "missing verdict"),
            (
                "result t1 saw it --ruled-out --inconclusive",
                "exactly one verdict",
            ),
            ("status sideways", "`sideways` is not a status"),
            ("new x --sev 9", "`9` is not a severity"),
            ("hypo", "missing hypothesis text"),
            ("note hi --loud", "unknown flag `--loud`"),
            ("report --out", "`--out` needs a value"),
            ("report --force", "--force only goes with --out FILE"),
            ("similar dns", "unexpected argument `dns`"),
            ("summary", "missing summary text"),
            ("followup fix it --owner", "`--owner` needs a value"),
            ("brief now", "unexpected argument `now`"),
            ("timeline --last many", "--last needs a number"),
            ("update all clear", "text is posted with --post <text>"),
            ("update --every soon", "`soon` is not an interval"),
            ("update --every 15m --post", "--every takes no other flag"),
            ("update --post --last", "not both"),
            ("update --force", "--force is for --out FILE"),
            ("run", "missing test id"),
            ("run t1 --", "missing command after `--`"),
            ("run t1 echo hi", "give a command after `--`"),
            ("run t1 --timeout soon -- true", "`soon` is not a duration"),
            ("attach h1", "missing file"),
            ("show", "missing id"),
        ];
        for (line, want) in cases {
            let err = parse(line).unwrap_err().to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn every_spec_has_help_and_parses_its_name() {
        for s in SPECS {
            assert!(help(Some(s.name)).unwrap().contains(s.usage));
            assert!(
                !matches!(parse(s.name), Err(ParseError::Unknown(_))),
                "{}",
                s.name
            );
        }
    }
}
