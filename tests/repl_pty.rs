//! The interactive prompt on a real pseudo-terminal: every line that reaches
//! the prompt runs, in order — several lines in one read, lines typed ahead
//! while a command runs, a bracketed paste of commands, a paste after
//! `note` and a `note` block.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the REPL may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(20);

/// `dontpanic` on the slave side of a pty; the test holds the master.
struct Repl {
    child: Child,
    master: File,
    chunks: Receiver<Vec<u8>>,
    /// While set, nothing is read from the pty: once its buffer is full the
    /// REPL blocks writing, in the middle of a command.
    paused: Arc<AtomicBool>,
    /// Everything the REPL has written so far, escape sequences removed.
    screen: String,
}

impl Repl {
    fn start(dir: &Path) -> Repl {
        Repl::start_with(dir, &["--name", "alice", "--offline"])
    }

    /// `dontpanic --data-dir DIR [args...]` on a pty.
    fn start_with(dir: &Path, args: &[&str]) -> Repl {
        let size = nix::pty::Winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
        let child = Command::new(support::bin())
            .args(["--data-dir", dir.to_str().unwrap()])
            .args(args)
            .env("TERM", "xterm")
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave))
            .spawn()
            .expect("start dontpanic");
        let master = File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let (tx, chunks) = channel();
        let paused = Arc::new(AtomicBool::new(false));
        let reader_paused = paused.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                while reader_paused.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                // Ends with EIO once the child has gone and the slave is closed.
                let Ok(n @ 1..) = reader.read(&mut buf) else {
                    break;
                };
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Repl {
            child,
            master,
            chunks,
            paused,
            screen: String::new(),
        }
    }

    /// Types `text` in one write, as a fast typist or a paste would.
    fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// Reads on until `done(screen after from)` holds; returns the screen
    /// position where it held. Panics with the screen after `WAIT`.
    fn wait_for(&mut self, from: usize, what: &str, done: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            if done(&self.screen[from..]) {
                return self.screen.len();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(bytes) => self.screen.push_str(&strip_escapes(&bytes)),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "waited {WAIT:?} for {what}; the REPL showed:\n{}",
                    &self.screen[from..]
                ),
            }
        }
    }

    /// Waits for `n` prompts with an incident open after `from`.
    fn prompts(&mut self, from: usize, n: usize) -> usize {
        self.wait_for(from, &format!("{n} prompt(s)"), |s| {
            s.matches("]> ").count() >= n
        })
    }

    /// Lists the timeline and returns what it printed.
    fn timeline(&mut self) -> String {
        // From before the prompt's `]> `, if it has been drawn already.
        let mut from = self.screen.len().saturating_sub(3);
        while !self.screen.is_char_boundary(from) {
            from -= 1;
        }
        self.send("timeline\r");
        // Typed at a prompt, run, and ended by the next prompt.
        let end = self.wait_for(from, "the timeline", |s| {
            s.find("]> timeline")
                .is_some_and(|i| s[i + 3..].contains("]> "))
        });
        self.screen[from..end].to_string()
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Output with CSI sequences (colours, cursor moves) and `\r` removed.
fn strip_escapes(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// The timeline lists `text` as a note: `<time>  alice      note: <text>`.
fn lists_note(timeline: &str, text: &str) -> bool {
    let entry = format!("note: {text}");
    timeline.lines().any(|l| l.trim_end().ends_with(&entry))
}

#[test]
fn lines_arriving_together_all_run_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repl = Repl::start(tmp.path());
    let start = repl.wait_for(0, "the first prompt", |s| s.contains("dontpanic> "));
    repl.send("new \"outage\"\nnote \"one\"\nnote \"two\"\n");
    repl.prompts(start, 1);
    let timeline = repl.timeline();
    assert!(lists_note(&timeline, "one"), "note one lost:\n{timeline}");
    assert!(lists_note(&timeline, "two"), "note two lost:\n{timeline}");
    assert!(
        timeline.find("one") < timeline.rfind("two"),
        "out of order:\n{timeline}"
    );
}

#[test]
fn lines_typed_while_a_command_runs_all_run() {
    let tmp = tempfile::tempdir().unwrap();
    // A timeline long enough to fill the pty many times over, written by a
    // script run (stdin from a file: its replies are not read).
    let filler = format!("note \"{}\"\n", "filler ".repeat(200));
    let script = tmp.path().join("fill.txt");
    std::fs::write(&script, format!("new \"outage\"\n{}", filler.repeat(200))).unwrap();
    let status = Command::new(support::bin())
        .args(["--data-dir", tmp.path().to_str().unwrap()])
        .args(["--name", "alice", "--offline"])
        .stdin(File::open(&script).unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let mut repl = Repl::start(tmp.path());
    let start = repl.prompts(0, 1);
    repl.send("timeline\r");
    repl.wait_for(start, "the timeline to start", |s| s.contains("filler"));
    // The REPL is now stuck printing the timeline; the user types on.
    repl.paused.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    for line in ["note \"three\"\r", "note \"four\"\r", "note \"five\"\r"] {
        repl.send(line);
        std::thread::sleep(Duration::from_millis(50));
    }
    repl.paused.store(false, Ordering::SeqCst);
    // Once the first typed line is at a prompt, the rest have arrived.
    repl.wait_for(start, "the typed lines", |s| {
        s.contains("]> note \"three\"")
    });
    std::thread::sleep(Duration::from_millis(500));
    let timeline = repl.timeline();
    for n in ["three", "four", "five"] {
        assert!(lists_note(&timeline, n), "note {n} lost:\n{timeline}");
    }
}

#[test]
fn a_bracketed_paste_of_commands_runs_line_by_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repl = Repl::start(tmp.path());
    let start = repl.wait_for(0, "the first prompt", |s| s.contains("dontpanic> "));
    repl.send("new \"outage\"\r");
    let start = repl.prompts(start, 1);
    // What a terminal sends for a pasted block, then Enter.
    repl.send("\x1b[200~status identified\rnote pasted two\r\x1b[201~\r");
    repl.prompts(start, 1);
    let timeline = repl.timeline();
    assert!(
        timeline.contains("investigating -> identified"),
        "{timeline}"
    );
    assert!(lists_note(&timeline, "pasted two"), "{timeline}");
}

#[test]
fn the_prompt_says_when_a_stakeholder_update_is_due() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repl = Repl::start(tmp.path());
    let start = repl.wait_for(0, "the first prompt", |s| s.contains("dontpanic> "));
    repl.send("new \"outage\"\r");
    let start = repl.prompts(start, 1);
    repl.send("update --every 1s\r");
    let start = repl.prompts(start, 1);
    assert!(!repl.screen[..start].contains("update due"));
    std::thread::sleep(Duration::from_millis(1_500));
    repl.send("note \"still down\"\r");
    let due = repl.wait_for(start, "the due marker", |s| {
        s.contains("investigating · update due · offline]> ")
    });
    let shown = repl.screen[start..due].to_string();
    assert_eq!(
        shown.matches("! stakeholder update due").count(),
        1,
        "the nudge is said once:\n{shown}"
    );
    repl.send("update --post \"we are on it\"\r");
    repl.wait_for(due, "the marker gone", |s| {
        s.contains("posted:") && s.contains(" investigating · offline]> ")
    });
}

#[test]
fn run_shows_output_as_it_comes_and_ctrl_c_stops_the_command_not_the_repl() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repl = Repl::start(tmp.path());
    let start = repl.wait_for(0, "the first prompt", |s| s.contains("dontpanic> "));
    repl.send("new \"outage\"\r");
    let start = repl.prompts(start, 1);
    repl.send("hypo \"slow disk\"\r");
    let start = repl.prompts(start, 1);
    repl.send("test h 'echo begun; sleep 30; echo never' --rules-out-if fast\r");
    let start = repl.prompts(start, 1);
    let began = Instant::now();
    repl.send("run t\r");
    // The first line shows while the command still runs.
    let at = repl.wait_for(start, "the command's first line", |s| {
        s.contains("\nbegun\n")
    });
    // Ctrl-C: the terminal signals its foreground process group, which is
    // the REPL's alone (the command runs in a group of its own).
    let pid = nix::unistd::Pid::from_raw(repl.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    repl.wait_for(at, "the command to stop", |s| {
        s.contains("stopped by Ctrl-C")
    });
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    // The prompt after the reply (it may have come in the same read).
    let stop = start + repl.screen[start..].find("stopped by Ctrl-C").unwrap();
    repl.prompts(stop, 1);
    let timeline = repl.timeline();
    assert!(timeline.contains("stopped by Ctrl-C"), "{timeline}");
    assert!(!repl.screen.contains("\nnever\n"), "{}", repl.screen);
    assert!(repl.child.try_wait().unwrap().is_none(), "the REPL ended");
    // Output without a final newline does not run into the reply.
    let from = repl.screen.len();
    repl.send("run t -- printf no-newline\r");
    repl.wait_for(from, "the reply on its own line", |s| {
        s.contains("\nno-newline\nevidence ")
    });
}

#[test]
fn a_paste_after_note_is_one_entry_and_so_is_a_block() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repl = Repl::start(tmp.path());
    let start = repl.wait_for(0, "the first prompt", |s| s.contains("dontpanic> "));
    repl.send("new outage\r");
    let start = repl.prompts(start, 1);
    repl.send("\x1b[200~note here's the log:\rERR one\r  ERR two\r\x1b[201~\r");
    let start = repl.prompts(start, 1);
    // `note` alone opens a block, ended by a line holding a single `.`.
    repl.send("note\r");
    repl.wait_for(start, "the block hint", |s| s.contains("single `.`"));
    for line in ["first line\r", "second's line\r", ".\r"] {
        repl.send(line);
        std::thread::sleep(Duration::from_millis(50));
    }
    repl.prompts(start, 1);
    let timeline = repl.timeline();
    let rows: Vec<&str> = timeline.lines().map(str::trim_end).collect();
    let at = |text: &str| {
        rows.iter()
            .rposition(|l| l.ends_with(text))
            .unwrap_or_else(|| panic!("no row ending `{text}`:\n{timeline}"))
    };
    // One entry each, its further lines indented and marked under it.
    let log = at("note: here's the log:");
    assert!(rows[log + 1].ends_with("│ ERR one"), "{timeline}");
    assert!(rows[log + 2].ends_with("│   ERR two"), "{timeline}");
    let block = at("note: first line");
    assert!(rows[block + 1].ends_with("│ second's line"), "{timeline}");
    let notes = rows
        .iter()
        .filter(|l| l.contains("alice      note: "))
        .count();
    assert_eq!(notes, 2, "{timeline}");
}

#[test]
fn the_first_run_name_prompt_asks_again_on_empty_input() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repl = Repl::start_with(tmp.path(), &["--offline"]);
    let ask = "Your name (as teammates will see it): ";
    let at = repl.wait_for(0, "the name prompt", |s| s.contains(ask));
    repl.send("\r");
    let at = repl.wait_for(at, "the prompt again", |s| {
        s.contains("A name is needed") && s.contains(ask)
    });
    repl.send("   \r");
    let at = repl.wait_for(at, "the prompt a third time", |s| s.contains(ask));
    repl.send("alice\r");
    repl.wait_for(at, "the REPL", |s| s.contains("dontpanic> "));
    repl.send("whoami\r");
    repl.wait_for(at, "whoami", |s| s.contains("\nalice\n"));
}

#[test]
fn end_of_input_at_the_name_prompt_says_why_it_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repl = Repl::start_with(tmp.path(), &["--offline"]);
    let at = repl.wait_for(0, "the name prompt", |s| s.contains("Your name"));
    repl.send("\x04");
    repl.wait_for(at, "the reason", |s| {
        s.contains("no name given (end of input)")
    });
    let status = repl.child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn completion_shows_titles_and_offers_what_fits() {
    let tmp = tempfile::tempdir().unwrap();
    let mut repl = Repl::start(tmp.path());
    let start = repl.wait_for(0, "the first prompt", |s| s.contains("dontpanic> "));
    repl.send("new outage\r");
    let start = repl.prompts(start, 1);
    repl.send("hypo DNS resolution failing\r");
    let start = repl.prompts(start, 1);
    repl.send("hypo bad deploy of v42\r");
    let start = repl.prompts(start, 1);
    // Two open hypotheses: the list shows each id with its text.
    repl.send("test \t\t");
    let start = repl.wait_for(start, "the candidates", |s| {
        s.contains("DNS resolution failing") && s.contains("bad deploy of v42")
    });
    repl.send("\x15status res\t");
    repl.wait_for(start, "the status completed", |s| {
        s.contains("status resolved")
    });
}
