//! The command language: parsing a line into a [`Command`], separate from
//! running it, so the prompt, a script and a test share one grammar.

use dontpanic_incident::{Role, RuleError, Severity, Status, Verdict};

/// A parse error; it names the command and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A word opens with a quote that never closes; it holds the start of that word.
    #[error("cannot split the line: unbalanced quotes: the quote opening `{0}` is never closed (free text needs no quotes: leave it off, or close it)")]
    Quoting(String),
    /// Not a command.
    #[error("unknown command `{name}`{}; type `help` for the list", did_you_mean(.suggestion))]
    Unknown {
        /// What was typed.
        name: String,
        /// The nearest command name, if one is near.
        suggestion: Option<&'static str>,
    },
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

fn did_you_mean(s: &Option<&'static str>) -> String {
    s.map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// The error for a command name that is not one, with a did-you-mean.
fn unknown(name: &str) -> ParseError {
    ParseError::Unknown {
        name: name.to_string(),
        suggestion: suggest(name, command_names()),
    }
}

/// How a command takes a flag.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    /// One word (`--sev 2`, `--out FILE`).
    Value,
    /// Free text up to the next flag, as typed (`--unconfirmed-because revenue loss`).
    Text,
    /// Nothing (`--once`).
    Nothing,
}

/// Where a command's free text is: the positional argument that takes the
/// rest of the line as typed (apostrophes and all), up to the next flag of
/// the command. A command opts in by setting [`Spec::rest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rest {
    /// Every positional argument is one word (quote a word with spaces).
    Words,
    /// Positional argument `n` and everything after it is one text.
    Line(usize),
    /// As [`Rest::Line`], and also several lines: the command alone on its
    /// line opens a block of lines ended by a line holding a single `.`
    /// (and a multi-line paste after the command is one text).
    Block(usize),
}

impl Rest {
    fn at(self) -> Option<usize> {
        match self {
            Rest::Words => None,
            Rest::Line(n) | Rest::Block(n) => Some(n),
        }
    }
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
    /// Which positional argument, if any, takes the rest of the line.
    pub rest: Rest,
    flags: &'static [(&'static str, Takes)],
}

const V: Takes = Takes::Value;
const T: Takes = Takes::Text;
const N: Takes = Takes::Nothing;

impl Spec {
    /// The names of its flags (without `--`).
    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> {
        self.flags.iter().map(|(f, _)| *f)
    }
}

/// Every command, in the order `help` lists them.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "new",
        aliases: &[],
        usage: "new <title> [--sev 1-4]",
        help: "Start a new incident (default SEV3) and open it.",
        rest: Rest::Line(0),
        flags: &[("sev", V)],
    },
    Spec {
        name: "incidents",
        aliases: &["ls"],
        usage: "incidents",
        help: "List the incidents stored on this device.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "open",
        aliases: &[],
        usage: "open <incident-id>",
        help: "Open a stored incident (a unique prefix of its id is enough).",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "symptom",
        aliases: &["sym", "s"],
        usage: "symptom <text> [--where ..] [--freq ..] [--impact ..] [--since HH:MM|RFC3339]",
        help: "Capture what is happening, where, how often and the impact; --since says when impact began (HH:MM is UTC, today, or yesterday when later than now; or RFC 3339 like 2026-12-01T02:41:00Z).",
        rest: Rest::Line(0),
        flags: &[("where", T), ("freq", T), ("impact", T), ("since", V)],
    },
    Spec {
        name: "hypo",
        aliases: &["hypothesis", "h"],
        usage: "hypo <text>",
        help: "Add a hypothesis: anything that could cause the symptoms.",
        rest: Rest::Line(0),
        flags: &[],
    },
    Spec {
        name: "test",
        aliases: &["t"],
        usage: "test <hypo-id> <action> --rules-out-if <outcome>",
        help: "Plan a test designed to rule a hypothesis out, and the outcome that would.",
        rest: Rest::Line(1),
        flags: &[("rules-out-if", T)],
    },
    Spec {
        name: "result",
        aliases: &["r"],
        usage: "result <test-id> <observation> --ruled-out|--not-ruled-out|--inconclusive",
        help: "Record what a test showed; --ruled-out strikes its hypothesis.",
        rest: Rest::Line(1),
        flags: &[("ruled-out", N), ("not-ruled-out", N), ("inconclusive", N)],
    },
    Spec {
        name: "confirm",
        aliases: &[],
        usage: "confirm <hypo-id> <evidence>",
        help: "Confirm a hypothesis as the cause; evidence is a test id or a description.",
        rest: Rest::Line(1),
        flags: &[],
    },
    Spec {
        name: "fix",
        aliases: &[],
        usage: "fix <text> [--unconfirmed-because <reason>]",
        help: "Record a fix; before a cause is confirmed it needs a recorded reason.",
        rest: Rest::Line(0),
        flags: &[("unconfirmed-because", T)],
    },
    Spec {
        name: "note",
        aliases: &["n"],
        usage: "note <text>",
        help: "Add a free note to the timeline.",
        rest: Rest::Block(0),
        flags: &[],
    },
    Spec {
        name: "status",
        aliases: &[],
        usage: "status [investigating|identified|mitigated|resolved] [--because <reason>]",
        help: "Move the incident's status (alone, show it); --because records why (needed to resolve with no fix recorded).",
        rest: Rest::Words,
        flags: &[("because", T)],
    },
    Spec {
        name: "reopen",
        aliases: &[],
        usage: "reopen <reason>",
        help: "Reopen a resolved incident, saying why.",
        rest: Rest::Line(0),
        flags: &[],
    },
    Spec {
        name: "role",
        aliases: &[],
        usage: "role [<commander|scribe|comms> [<member>]]",
        help: "Give a role to a member (by roster name); alone, show who holds each role.",
        rest: Rest::Line(1),
        flags: &[],
    },
    Spec {
        name: "title",
        aliases: &[],
        usage: "title <text>",
        help: "Retitle the incident.",
        rest: Rest::Line(0),
        flags: &[],
    },
    Spec {
        name: "sev",
        aliases: &["severity"],
        usage: "sev [1-4]",
        help: "Change the severity; alone, show it. `help sev` defines SEV1..SEV4.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "followup",
        aliases: &["fu"],
        usage: "followup <text> [--owner <member>] [--due YYYY-MM-DD|3d|2w]",
        help: "Add a follow-up action for after the incident, with the member who owns it and when it is due (a date, or days/weeks from now).",
        rest: Rest::Line(0),
        flags: &[("owner", V), ("due", V)],
    },
    Spec {
        name: "summary",
        aliases: &[],
        usage: "summary <text>",
        help: "Write the report's narrative: what happened, in a few sentences (the latest one wins).",
        rest: Rest::Block(0),
        flags: &[],
    },
    Spec {
        name: "lesson",
        aliases: &[],
        usage: "lesson <text>",
        help: "Record a lesson learned for the report, signed by you.",
        rest: Rest::Block(0),
        flags: &[],
    },
    Spec {
        name: "similar",
        aliases: &[],
        usage: "similar",
        help: "List past incidents on this device whose title, symptoms and hypotheses share words with the open one (offline, TF-IDF), with their confirmed cause and fix.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "update",
        aliases: &[],
        usage: "update [--needs <text>] [--post [<text>]] [--last] [--out FILE [--force]] | update --every <15m|off>",
        help: "Draft a stakeholder update from the record (Conditions, Actions, Needs) without recording it; --post records the draft, or the text given instead; --last is the last one posted; --out writes it to FILE for a status page or an email (--force overwrites). --every sets, for the whole room, how often one is due (default 30m for SEV1 and SEV2, none otherwise; off for none).",
        rest: Rest::Line(0),
        flags: &[
            ("needs", T),
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
        rest: Rest::Words,
        flags: &[("all", N)],
    },
    Spec {
        name: "run",
        aliases: &[],
        usage: "run <test-id> [--timeout 2m] [-- <command>]",
        help: "Run the test's action (or the command after `--`, taken as typed) in your shell ($SHELL -c), show its output as it comes, and record the command, exit status, duration and output (stdout and stderr together; the first and last 16 KiB kept, secrets redacted) as signed evidence on the test. Killed with everything it started after --timeout (like 30s, 5m; default 2m); Ctrl-C stops it. Standard input is empty.",
        rest: Rest::Words,
        flags: &[("timeout", V)],
    },
    Spec {
        name: "attach",
        aliases: &[],
        usage: "attach <item-id> <file>",
        help: "Record a UTF-8 text file (at most 1 MiB; the first and last 16 KiB kept, secrets redacted) as signed evidence on any item.",
        rest: Rest::Line(1),
        flags: &[],
    },
    Spec {
        name: "show",
        aliases: &[],
        usage: "show <id> [--full]",
        help: "Print an item with all its fields and its evidence (long output trimmed; --full prints all of it).",
        rest: Rest::Words,
        flags: &[("full", N)],
    },
    Spec {
        name: "brief",
        aliases: &["b"],
        usage: "brief",
        help: "One screen for a newcomer: what is broken, what is open, what was ruled out.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "timeline",
        aliases: &["tl"],
        usage: "timeline [--last N | --all]",
        help: "Show the timeline (the last 20 events by default).",
        rest: Rest::Words,
        flags: &[("last", V), ("all", N)],
    },
    Spec {
        name: "report",
        aliases: &[],
        usage: "report [--out FILE [--force]]",
        help: "Write the Production Incident Report (Markdown); --out never overwrites an existing file unless --force.",
        rest: Rest::Words,
        flags: &[("out", V), ("force", N)],
    },
    Spec {
        name: "export",
        aliases: &[],
        usage: "export [--out FILE]",
        help: "Write the incident's current state as a plain Automerge document for other tools (default <incident-id>.automerge); without history or the join secret, so the file is never an invite.",
        rest: Rest::Words,
        flags: &[("out", V)],
    },
    Spec {
        name: "conflicts",
        aliases: &[],
        usage: "conflicts",
        help: "List fields edited concurrently with different values.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "resolve",
        aliases: &[],
        usage: "resolve <field> <value>",
        help: "Settle a conflicting field on one value.",
        rest: Rest::Line(1),
        flags: &[],
    },
    Spec {
        name: "log",
        aliases: &["history"],
        usage: "log",
        help: "List the signed changes with author, key fingerprint and verification.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "doctor",
        aliases: &[],
        usage: "doctor",
        help: "Verify every stored file (journal records, segments, snapshot seal, every signature), report each problem with its file and byte offset, repair what this device can, and list the changes that must come from members.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "whoami",
        aliases: &[],
        usage: "whoami",
        help: "Show this device's name and public key.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "peers",
        aliases: &[],
        usage: "peers [-v]",
        help: "Show connected and discovered peers; -v adds peer ids, addresses, how each was found and why one was rejected.",
        rest: Rest::Words,
        flags: &[("verbose", N)],
    },
    Spec {
        name: "connect",
        aliases: &[],
        usage: "connect <multiaddr>",
        help: "Dial a peer by address (where multicast is blocked).",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "unblock",
        aliases: &[],
        usage: "unblock <peer-id>",
        help: "Trust again a peer that was rejected for hostile input (rejections are kept across restarts); any unique prefix of its peer id works.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "invite",
        aliases: &[],
        usage: "invite [--expires <duration>] [--once]",
        help: "Print an invite string for the open incident. It expires after --expires (like 30m, 2h, 1d; default 24h), by the clock of the member who admits; --once admits one joiner only, through this node.",
        rest: Rest::Words,
        flags: &[("expires", V), ("once", N)],
    },
    Spec {
        name: "remove",
        aliases: &[],
        usage: "remove <member> <reason>",
        help: "Take a member (its roster name or key prefix) off the roster, saying why: its later changes are refused and it is disconnected wherever the removal reaches, and every earlier invite stops working (a new join secret).",
        rest: Rest::Line(1),
        flags: &[],
    },
    Spec {
        name: "join",
        aliases: &[],
        usage: "join <invite>",
        help: "Join an incident from an invite.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "help",
        aliases: &["?"],
        usage: "help [command]",
        help: "List commands, or explain one.",
        rest: Rest::Words,
        flags: &[],
    },
    Spec {
        name: "quit",
        aliases: &["exit", "q"],
        usage: "quit",
        help: "Leave (Ctrl-D works too).",
        rest: Rest::Words,
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
    /// `status`; without a value it shows the current one.
    Status {
        status: Option<Status>,
        because: Option<String>,
    },
    /// `reopen`
    Reopen(String),
    /// `role`: gives `role` to `name`; without a name it shows who holds
    /// `role`, and without a role, who holds each.
    Role {
        role: Option<Role>,
        name: Option<String>,
    },
    /// `title`
    Title(String),
    /// `sev`; without a value it shows the current one.
    Severity(Option<Severity>),
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
    Peers {
        /// `-v`: the details under each row.
        verbose: bool,
    },
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

/// One word of a line: its text with the quotes taken off, and where it
/// stands in the line (byte offsets at char boundaries), so a run of words
/// can be taken as typed.
#[derive(Debug)]
struct Token {
    value: String,
    start: usize,
    end: usize,
    /// Some of it was quoted: never a flag.
    quoted: bool,
    /// `--name=`: the flag's value is the next token.
    inline: bool,
}

impl Token {
    fn is_flag(&self, only_words: bool) -> bool {
        !only_words && !self.quoted && self.value.starts_with("--") && self.value.len() > 2
    }

    fn ends_words(&self) -> bool {
        !self.quoted && !self.inline && self.value == "--"
    }
}

/// Where the quote opened at `open` closes: the next same quote followed by
/// a space or the end of the line (in double quotes, not after a `\`).
fn closing(chars: &[(usize, char)], open: usize) -> Option<usize> {
    let q = chars.get(open)?.1;
    let mut k = open + 1;
    while let Some(&(_, c)) = chars.get(k) {
        if q == '"' && c == '\\' {
            k += 2;
            continue;
        }
        let before_space = chars.get(k + 1).is_none_or(|(_, n)| n.is_whitespace());
        if c == q && before_space {
            return Some(k);
        }
        k += 1;
    }
    None
}

/// The inside of a quoted group; in double quotes `\"` and `\\` escape.
fn unquote(inside: &[(usize, char)], q: char) -> String {
    let mut out = String::new();
    let mut it = inside.iter().map(|(_, c)| *c).peekable();
    while let Some(c) = it.next() {
        match (q, c, it.peek()) {
            ('"', '\\', Some(&n)) if n == '"' || n == '\\' => {
                out.push(n);
                it.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Splits a line into words. A quote groups words only where a word opens
/// with it (or a flag's value opens with it after `=`) and the same quote
/// closes it before a space or the end; anywhere else it is a character,
/// so `don't` needs no quoting. Backslashes outside quotes are kept.
fn lex(line: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let byte = |i: usize| chars.get(i).map(|(b, _)| *b).unwrap_or(line.len());
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&(_, c)) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let mut start = i;
        let mut value = String::new();
        let (mut quoted, mut can_open, mut split) = (false, true, false);
        while let Some(&(_, c)) = chars.get(i).filter(|(_, c)| !c.is_whitespace()) {
            if can_open && (c == '\'' || c == '"') {
                match closing(&chars, i) {
                    Some(close) => {
                        value.push_str(&unquote(chars.get(i + 1..close).unwrap_or(&[]), c));
                        (quoted, can_open, i) = (true, false, close + 1);
                        continue;
                    }
                    None => {
                        let from: String = chars.iter().skip(i).map(|(_, c)| c).take(12).collect();
                        return Err(ParseError::Quoting(from));
                    }
                }
            }
            value.push(c);
            can_open = false;
            i += 1;
            if c == '=' && !split && !quoted && value.starts_with("--") && value.len() > 3 {
                // `--flag=value`: the flag, then its value as a word of its own.
                value.pop();
                tokens.push(Token {
                    value: std::mem::take(&mut value),
                    start: byte(start),
                    end: byte(i),
                    quoted: false,
                    inline: true,
                });
                (start, can_open, split) = (i, true, true);
            }
        }
        tokens.push(Token {
            value,
            start: byte(start),
            end: byte(i),
            quoted,
            inline: false,
        });
    }
    Ok(tokens)
}

/// The text of a run of words: one word without its quotes, several as typed.
fn text_of(line: &str, run: &[Token]) -> String {
    match run {
        [] => String::new(),
        [one] => one.value.clone(),
        [first, .., last] => line
            .get(first.start..last.end)
            .unwrap_or_default()
            .to_string(),
    }
}

/// Positionals, free text and flags of one line.
struct Args {
    spec: &'static Spec,
    words: Vec<String>,
    /// The free text ([`Spec::rest`]), when some was given.
    text: Option<String>,
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

    /// The free text of the command.
    fn text(&self, what: &str) -> Result<String, ParseError> {
        match &self.text {
            Some(t) if !t.trim().is_empty() => Ok(t.clone()),
            _ => Err(self.usage(format!("missing {what}"))),
        }
    }

    fn word(&self, i: usize, what: &str) -> Result<String, ParseError> {
        self.words
            .get(i)
            .cloned()
            .ok_or_else(|| self.usage(format!("missing {what}")))
    }

    fn none(&self) -> Result<(), ParseError> {
        match (self.words.first(), &self.text) {
            (Some(w), _) | (None, Some(w)) => Err(self.usage(format!("unexpected argument `{w}`"))),
            (None, None) => Ok(()),
        }
    }

    fn at_most_one(&self) -> Result<Option<String>, ParseError> {
        match self.words.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            [_, extra, ..] => Err(self.usage(format!("unexpected argument `{extra}`"))),
        }
    }

    /// An optional word that must parse as one of a word enum's values.
    fn value<T: std::str::FromStr<Err = RuleError>>(&self) -> Result<Option<T>, ParseError> {
        self.at_most_one()?
            .map(|w| w.parse().map_err(|e| self.usage(problem(e))))
            .transpose()
    }
}

/// A rule error as a usage problem, with a did-you-mean for a bad value.
fn problem(e: RuleError) -> String {
    if let RuleError::BadValue {
        value, expected, ..
    } = &e
    {
        if let Some(s) = suggest(value, expected.split(", ")) {
            return format!("{e}; did you mean `{s}`?");
        }
    }
    e.to_string()
}

/// The flag `tok` names, or an error with a did-you-mean.
fn find_flag(args: &Args, tok: &Token) -> Result<(&'static str, Takes), ParseError> {
    let name = tok.value.get(2..).unwrap_or_default();
    let spec = args.spec;
    match spec.flags.iter().find(|(f, _)| *f == name) {
        Some(&found) => Ok(found),
        None => {
            let hint = match suggest(name, spec.flags.iter().map(|(f, _)| *f)) {
                Some(s) => format!("; did you mean `--{s}`?"),
                None => String::new(),
            };
            Err(args.usage(format!(
                "unknown flag `--{name}`{hint} (to write it as text, put `--` before the text)"
            )))
        }
    }
}

fn split_args(
    spec: &'static Spec,
    line: &str,
    tokens: &[Token],
    block: Option<&str>,
) -> Result<Args, ParseError> {
    let mut args = Args {
        spec,
        words: Vec::new(),
        text: None,
        flags: Vec::new(),
    };
    let mut texts: Vec<String> = Vec::new();
    let mut only_words = false;
    let mut i = 0;
    // The end of a run of free text: the next flag (or `--`).
    let run_end = |from: usize, only_words: bool| {
        from + tokens
            .iter()
            .skip(from)
            .take_while(|t| !t.is_flag(only_words) && (only_words || !t.ends_words()))
            .count()
    };
    while let Some(tok) = tokens.get(i) {
        if !only_words && tok.ends_words() {
            only_words = true;
            i += 1;
            continue;
        }
        if tok.is_flag(only_words) {
            let (name, takes) = find_flag(&args, tok)?;
            i += 1;
            let value = match takes {
                Takes::Nothing if tok.inline => {
                    return Err(args.usage(format!("`--{name}` takes no value")))
                }
                Takes::Nothing => None,
                Takes::Value => match tokens.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.value.clone())
                    }
                    None => return Err(args.usage(format!("`--{name}` needs a value"))),
                },
                Takes::Text => {
                    let end = run_end(i, only_words);
                    let text = text_of(line, tokens.get(i..end).unwrap_or(&[]));
                    if end == i {
                        return Err(args.usage(format!("`--{name}` needs a value")));
                    }
                    i = end;
                    Some(text)
                }
            };
            args.flags.push((name, value));
            continue;
        }
        match spec.rest.at() {
            Some(at) if args.words.len() >= at => {
                let end = run_end(i, only_words).max(i + 1);
                texts.push(text_of(line, tokens.get(i..end).unwrap_or(&[])));
                i = end;
            }
            _ => {
                args.words.push(tok.value.clone());
                i += 1;
            }
        }
    }
    let mut text = (!texts.is_empty()).then(|| texts.join(" "));
    if let Some(block) = block {
        if spec.rest.at().is_none() {
            return Err(args.usage("takes one line; its arguments cannot continue on the next"));
        }
        text = Some(match text {
            Some(t) => format!("{t}\n{block}"),
            None => block.to_string(),
        });
    }
    args.text = text;
    Ok(args)
}

/// A word close to `typed` among `candidates`, for a did-you-mean: the one
/// `typed` is a prefix of, or the nearest within a small edit distance.
pub fn suggest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typed = typed.to_lowercase();
    let n = typed.chars().count();
    if n == 0 {
        return None;
    }
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let prefixed: Vec<&&str> = candidates
        .iter()
        .filter(|c| c.starts_with(&typed))
        .collect();
    if let [one] = prefixed.as_slice() {
        return Some(one);
    }
    let limit = (n / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (distance(&typed, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, by chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// Every name and alias a command answers to (one-letter aliases left out
/// of suggestions and completion: too many near misses).
pub fn command_names() -> impl Iterator<Item = &'static str> {
    SPECS
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
        .filter(|n| n.len() > 1)
}

/// Whether `line` is a command that opens a block of lines (see
/// [`Rest::Block`]): the command's name alone, with nothing after it.
pub fn opens_block(line: &str) -> bool {
    let t = line.trim();
    !t.contains(char::is_whitespace) && takes_lines(t)
}

/// Whether a multi-line entry starting with `first_line` is one command
/// whose free text goes on over the lines (a paste after `note `).
pub fn takes_lines(first_line: &str) -> bool {
    let name = first_line.split_whitespace().next().unwrap_or_default();
    spec(&name.to_ascii_lowercase()).is_some_and(|s| matches!(s.rest, Rest::Block(_)))
}

/// Parses one command; `Ok(None)` for a blank line or a comment. The
/// input is one line, or, for a command that takes free text, a first line
/// followed by more lines of that text (a block or a paste).
pub fn parse(input: &str) -> Result<Option<Command>, ParseError> {
    let (head, block) = match input.split_once('\n') {
        Some((h, b)) => (h, Some(b.trim_end_matches(['\n', '\r']))),
        None => (input, None),
    };
    let block = block.filter(|b| !b.trim().is_empty());
    let trimmed = head.trim();
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
    let (trimmed, raw_tail) = match raw {
        Some((head, tail)) => (head.trim_end(), Some(tail.to_string())),
        None => (trimmed, None),
    };
    let tokens = lex(trimmed)?;
    let Some((first, rest)) = tokens.split_first() else {
        return Ok(None);
    };
    let name = first.value.to_ascii_lowercase();
    let spec = spec(&name).ok_or_else(|| unknown(&name))?;
    let a = split_args(spec, trimmed, rest, block)?;
    let rule = |e: RuleError| a.usage(problem(e));
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
            action: a.text("action")?,
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
                observation: a.text("observation")?,
                verdict,
            }
        }
        "confirm" => Command::Confirm {
            hypothesis: a.word(0, "hypothesis id")?,
            evidence: a.text("evidence (a test id or what showed it)")?,
        },
        "fix" => Command::Fix {
            text: a.text("fix text")?,
            unconfirmed_because: a.flag("unconfirmed-because"),
        },
        "note" => Command::Note(a.text("note text")?),
        "status" => Command::Status {
            status: a.value()?,
            because: a.flag("because"),
        },
        "reopen" => Command::Reopen(a.text("reason")?),
        "role" => Command::Role {
            role: a
                .words
                .first()
                .map(|r| r.parse())
                .transpose()
                .map_err(rule)?,
            name: a.text.clone().filter(|n| !n.trim().is_empty()),
        },
        "title" => Command::Title(a.text("title")?),
        "sev" => Command::Severity(a.value()?),
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
            path: a.text("file")?,
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
            value: a.text("value")?,
        },
        "log" => a.none().map(|_| Command::Log)?,
        "doctor" => a.none().map(|_| Command::Doctor)?,
        "whoami" => a.none().map(|_| Command::Whoami)?,
        "peers" => Command::Peers {
            verbose: match a.at_most_one()?.as_deref() {
                None => a.has("verbose"),
                Some("-v") => true,
                Some(other) => return Err(a.usage(format!("unexpected argument `{other}`"))),
            },
        },
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
            reason: a.text("reason")?,
        },
        "join" => Command::Join(a.word(0, "invite")?),
        "help" => Command::Help(a.at_most_one()?),
        "quit" => Command::Quit,
        other => unreachable!("spec without parser: {other}"),
    };
    Ok(Some(cmd))
}

fn parse_update(a: &Args) -> Result<Command, ParseError> {
    let text = a.text.clone().unwrap_or_default();
    let (post, last) = (a.has("post"), a.has("last"));
    if let Some(first) = text.split_whitespace().next().filter(|_| !post) {
        return Err(a.usage(format!(
            "unexpected argument `{first}`: text is posted with --post <text>"
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
            let mut out = String::from(
                "Commands (ids may be shortened to any unique prefix; free text needs no quotes):\n",
            );
            for s in SPECS {
                out.push_str(&format!("  {:<52} {}{}\n", s.usage, s.help, also(s)));
            }
            Ok(out)
        }
        Some(name) => {
            let s = spec(&name.to_ascii_lowercase()).ok_or_else(|| unknown(name))?;
            let mut out = format!("usage: {}\n  {}{}\n", s.usage, s.help, also(s));
            let values = |out: &mut String, rows: Vec<(String, &str)>| {
                for (word, meaning) in rows {
                    out.push_str(&format!("  {word:<14} {meaning}\n"));
                }
            };
            match s.name {
                "sev" | "new" => values(
                    &mut out,
                    Severity::ALL
                        .iter()
                        .map(|v| (v.label(), v.meaning()))
                        .collect(),
                ),
                "status" => values(
                    &mut out,
                    Status::ALL
                        .iter()
                        .map(|v| (v.to_string(), v.meaning()))
                        .collect(),
                ),
                "role" => values(
                    &mut out,
                    Role::ALL
                        .iter()
                        .map(|v| (v.to_string(), v.meaning()))
                        .collect(),
                ),
                "result" => values(
                    &mut out,
                    [
                        ("--ruled-out", Verdict::RulesOut),
                        ("--not-ruled-out", Verdict::DoesNotRuleOut),
                        ("--inconclusive", Verdict::Inconclusive),
                    ]
                    .iter()
                    .map(|(f, v)| (f.to_string(), v.meaning()))
                    .collect(),
                ),
                _ => {}
            }
            Ok(out)
        }
    }
}

/// ` (also: a, b)`, the other names of a command, or nothing.
fn also(s: &Spec) -> String {
    if s.aliases.is_empty() {
        String::new()
    } else {
        format!(" (also: {})", s.aliases.join(", "))
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
                    status: Some(Status::Mitigated),
                    because: None,
                },
            ),
            (
                "status resolved --because 'went away'",
                Command::Status {
                    status: Some(Status::Resolved),
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
                    role: Some(Role::Commander),
                    name: Some("Alice Smith".into()),
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

    /// Free text is taken as typed: each row is a line and the command it
    /// must give.
    #[test]
    fn free_text_needs_no_quotes() {
        let note = |t: &str| Command::Note(t.into());
        let cases: Vec<(&str, Command)> = vec![
            (
                "note don't restart the pods yet",
                note("don't restart the pods yet"),
            ),
            ("n it's Bob's  call", note("it's Bob's  call")),
            ("note 'it's quoted'", note("it's quoted")),
            ("note \"say \\\"hi\\\"\"", note("say \"hi\"")),
            ("note the \"big\" one", note("the \"big\" one")),
            ("note C:\\tmp\\x", note("C:\\tmp\\x")),
            ("note -- --force was wrong", note("--force was wrong")),
            ("note résumé — ok", note("résumé — ok")),
            (
                "fix roll back now --unconfirmed-because revenue loss",
                Command::Fix {
                    text: "roll back now".into(),
                    unconfirmed_because: Some("revenue loss".into()),
                },
            ),
            (
                "fix roll back --unconfirmed-because=we're bleeding now",
                Command::Fix {
                    text: "roll back".into(),
                    unconfirmed_because: Some("we're bleeding now".into()),
                },
            ),
            (
                "symptom checkout's 500s --where eu-west 1 --freq 1 in 3 --impact can't pay",
                Command::Symptom {
                    text: "checkout's 500s".into(),
                    place: Some("eu-west 1".into()),
                    frequency: Some("1 in 3".into()),
                    impact: Some("can't pay".into()),
                    since: None,
                },
            ),
            (
                "test h7k2 dig @10.0.0.2 it's up --rules-out-if answers don't fail",
                Command::Test {
                    hypothesis: "h7k2".into(),
                    action: "dig @10.0.0.2 it's up".into(),
                    rules_out_if: "answers don't fail".into(),
                },
            ),
            (
                "result t3 resolvers --ruled-out answer fine",
                Command::Result {
                    test: "t3".into(),
                    observation: "resolvers answer fine".into(),
                    verdict: Verdict::RulesOut,
                },
            ),
            (
                "confirm h1 the canary's errors stopped",
                Command::Confirm {
                    hypothesis: "h1".into(),
                    evidence: "the canary's errors stopped".into(),
                },
            ),
            (
                "new payments don't settle --sev 2",
                Command::New {
                    title: "payments don't settle".into(),
                    severity: Severity::Sev2,
                },
            ),
            (
                "remove mallory they're not on call",
                Command::Remove {
                    member: "mallory".into(),
                    reason: "they're not on call".into(),
                },
            ),
            ("reopen it's back", Command::Reopen("it's back".into())),
            ("title Bob's DNS", Command::Title("Bob's DNS".into())),
            (
                "fu write the runbook's step",
                Command::FollowUp {
                    text: "write the runbook's step".into(),
                    owner: None,
                    due: None,
                },
            ),
            (
                "hypo the cache's TTL",
                Command::Hypo("the cache's TTL".into()),
            ),
            ("note\nline one\n  line two", note("line one\n  line two")),
            (
                "note here's the log:\nERR 1\nERR 2\n",
                note("here's the log:\nERR 1\nERR 2"),
            ),
            (
                "status",
                Command::Status {
                    status: None,
                    because: None,
                },
            ),
            ("sev", Command::Severity(None)),
            ("sev 1", Command::Severity(Some(Severity::Sev1))),
            (
                "role",
                Command::Role {
                    role: None,
                    name: None,
                },
            ),
            (
                "role scribe",
                Command::Role {
                    role: Some(Role::Scribe),
                    name: None,
                },
            ),
        ];
        let mut failures = Vec::new();
        for (line, want) in cases {
            match parse(line) {
                Ok(Some(got)) if got == want => {}
                other => failures.push(format!("{line:?}: want {want:?}, got {other:?}")),
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    /// Each row is a line and a piece of its error: a did-you-mean for a
    /// mistyped command, value or flag.
    #[test]
    fn near_misses_are_named() {
        let cases = [
            ("hypoo bad deploy", "did you mean `hypo`?"),
            ("stauts", "did you mean `status`?"),
            ("status resolve", "did you mean `resolved`?"),
            ("status mitgated", "did you mean `mitigated`?"),
            ("sev sev5", "did you mean `sev1`?"),
            ("role comander alice", "did you mean `commander`?"),
            ("role scrib alice", "did you mean `scribe`?"),
            ("result t1 ok --ruled-ot", "did you mean `--ruled-out`?"),
            (
                "result t1 ok --inconclusiv",
                "did you mean `--inconclusive`?",
            ),
            (
                "fix x --unconfirmed-becaus y",
                "did you mean `--unconfirmed-because`?",
            ),
            (
                "note 'never closed",
                "the quote opening `'never close` is never closed",
            ),
            ("open a\nb", "takes one line"),
        ];
        for (line, want) in cases {
            let err = parse(line).unwrap_err().to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
        assert!(!parse("xyzzy")
            .unwrap_err()
            .to_string()
            .contains("did you mean"));
        let help_err = help(Some("hypoo")).unwrap_err().to_string();
        assert!(help_err.contains("did you mean `hypo`?"), "{help_err}");
    }

    #[test]
    fn help_lists_aliases_and_defines_values() {
        let all = help(None).unwrap();
        assert!(
            all.contains("(also: sym, s)") && all.contains("(also: exit, q)"),
            "{all}"
        );
        let sev = help(Some("sev")).unwrap();
        for (label, meaning) in [
            ("SEV1", "Critical: total outage or data loss."),
            ("SEV4", "Low"),
        ] {
            assert!(sev.contains(label) && sev.contains(meaning), "{sev}");
        }
        assert!(help(Some("status")).unwrap().contains("Impact has stopped"));
        assert!(help(Some("severity")).unwrap().contains("(also: severity)"));
    }

    #[test]
    fn block_commands_are_told_apart() {
        for (line, opens, lines) in [
            ("note", true, true),
            ("  NOTE ", true, true),
            ("n", true, true),
            ("note hi", false, true),
            ("hypo", false, false),
            ("status", false, false),
        ] {
            assert_eq!(
                (opens_block(line), takes_lines(line)),
                (opens, lines),
                "{line}"
            );
        }
    }

    #[test]
    fn every_spec_has_help_and_parses_its_name() {
        for s in SPECS {
            assert!(help(Some(s.name)).unwrap().contains(s.usage));
            assert!(
                !matches!(parse(s.name), Err(ParseError::Unknown { .. })),
                "{}",
                s.name
            );
        }
    }
}
