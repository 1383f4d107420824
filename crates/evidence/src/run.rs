//! Running a command as evidence: in the user's shell, in a process group
//! of its own, with a timeout, its output streamed and captured.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::{redact, Capture, EvidenceError, Output};

/// How long a command stopped by Ctrl-C gets to end before it is killed.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// How often the child is looked at while no output comes.
const POLL: Duration = Duration::from_millis(20);

/// A partial line longer than this is handed on without waiting for its end.
const LINE_FLUSH: usize = 4096;

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status.
    Exit(i32),
    /// A signal ended it.
    Signal(i32),
}

/// Why dontpanic stopped the command, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The timeout passed: the group was killed (SIGKILL).
    Timeout,
    /// Ctrl-C: the group got SIGINT, then SIGKILL after [`INTERRUPT_GRACE`].
    Interrupt,
}

/// A command that ran, and what it printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ran {
    /// The command line, redacted.
    pub command: String,
    /// Secrets redacted from the command line itself.
    pub command_redactions: usize,
    /// How it ended.
    pub ended: Ended,
    /// Whether dontpanic stopped it.
    pub stopped: Option<Stopped>,
    /// The timeout that applied.
    pub timeout: Duration,
    /// From start to end.
    pub duration: Duration,
    /// Standard output and error, interleaved, capped and redacted.
    pub output: Output,
}

/// The shell commands run in: `$SHELL`, or `/bin/sh` when it is unset or empty.
pub fn shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "/bin/sh".into())
}

/// Ctrl-C while a command runs stops the command, not the program.
///
/// The command runs in a process group of its own, so the terminal's
/// SIGINT reaches only this process. [`Interrupt::install`] registers, once
/// for the process, a SIGINT action that is the default one (the program
/// ends, as before) except while [`run`] is running a command: then it only
/// raises a flag, and `run` sends SIGINT to the command's group.
#[derive(Clone, Copy, Debug)]
pub struct Interrupt(());

static REQUESTED: AtomicBool = AtomicBool::new(false);
static IDLE: AtomicBool = AtomicBool::new(true);
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

impl Interrupt {
    /// Registers the SIGINT actions (once per process).
    pub fn install() -> Result<Interrupt, String> {
        INSTALLED
            .get_or_init(|| {
                use signal_hook::consts::SIGINT;
                // Order matters: the default action is taken only when idle.
                signal_hook::flag::register_conditional_default(SIGINT, &IDLE)
                    .and_then(|_| signal_hook::flag::register(SIGINT, &REQUESTED))
                    .map(|_| ())
                    .map_err(|e| format!("cannot catch Ctrl-C: {e}"))
            })
            .clone()
            .map(|()| Interrupt(()))
    }

    fn arm(self) -> Armed {
        REQUESTED.store(false, Ordering::SeqCst);
        IDLE.store(false, Ordering::SeqCst);
        Armed
    }
}

/// While alive, Ctrl-C raises [`REQUESTED`] instead of ending the program.
struct Armed;

impl Armed {
    fn requested(&self) -> bool {
        REQUESTED.swap(false, Ordering::SeqCst)
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        IDLE.store(true, Ordering::SeqCst);
    }
}

/// Hands complete lines on as they come; a long partial line is handed on
/// at a character boundary once it passes [`LINE_FLUSH`].
struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    fn push(&mut self, bytes: &[u8], out: &mut dyn FnMut(&str)) {
        self.pending.extend_from_slice(bytes);
        if let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') {
            let rest = self.pending.split_off(end + 1);
            out(&String::from_utf8_lossy(&self.pending));
            self.pending = rest;
        } else if self.pending.len() > LINE_FLUSH {
            let cut = match std::str::from_utf8(&self.pending) {
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                _ => self.pending.len(),
            };
            let rest = self.pending.split_off(cut);
            out(&String::from_utf8_lossy(&self.pending));
            self.pending = rest;
        }
    }

    fn finish(self, out: &mut dyn FnMut(&str)) {
        if !self.pending.is_empty() {
            out(&String::from_utf8_lossy(&self.pending));
        }
    }
}

/// Kills the command's whole group; "no such process" means it is gone.
fn kill_group(pgid: Pid, signal: Signal) {
    let _ = killpg(pgid, signal);
}

/// Runs `command` with `$SHELL -c` (standard input empty), hands its output
/// to `on_output` line by line as it comes, and returns what it did. The
/// group is killed at `timeout`, on `interrupt` (after a grace period), and
/// once the command has ended, so nothing it started is left running.
pub fn run(
    command: &str,
    timeout: Duration,
    interrupt: Option<Interrupt>,
    on_output: &mut dyn FnMut(&str),
) -> Result<Ran, EvidenceError> {
    let shell = shell();
    let spawn_error = |source| EvidenceError::Spawn {
        shell: shell.clone(),
        source,
    };
    let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
    let mut cmd = Command::new(&shell);
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(spawn_error)?)
        .stderr(writer)
        .process_group(0);
    let armed = interrupt.map(Interrupt::arm);
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(spawn_error)?;
    // The pipe's write ends live in `cmd` too: drop them, or the reader
    // never sees the end of the output.
    drop(cmd);
    let pgid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(64);
    std::thread::Builder::new()
        .name("evidence-reader".into())
        .spawn(move || {
            let mut reader = reader;
            let mut buf = vec![0u8; 8192];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.send(buf.get(..n).unwrap_or(&[]).to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        })
        .map_err(spawn_error)?;

    let mut capture = Capture::new();
    let mut lines = Lines {
        pending: Vec::new(),
    };
    let mut status: Option<(ExitStatus, Instant)> = None;
    let mut stopped = None;
    let mut kill_at: Option<Instant> = None;
    let mut eof = false;
    let mut wait_error = None;
    loop {
        if eof {
            std::thread::sleep(POLL);
        } else {
            match rx.recv_timeout(POLL) {
                Ok(chunk) => {
                    capture.push(&chunk);
                    lines.push(&chunk, on_output);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => eof = true,
            }
        }
        let now = Instant::now();
        if status.is_none() {
            match child.try_wait() {
                Ok(Some(s)) => {
                    status = Some((s, now));
                    // What it left running in the background goes too.
                    kill_group(pgid, Signal::SIGKILL);
                }
                Ok(None) => {}
                Err(e) => {
                    kill_group(pgid, Signal::SIGKILL);
                    let _ = child.wait();
                    wait_error = Some(e);
                    break;
                }
            }
        }
        if status.is_none() {
            if stopped.is_none() && now.duration_since(start) >= timeout {
                stopped = Some(Stopped::Timeout);
                kill_group(pgid, Signal::SIGKILL);
            }
            if stopped.is_none() && armed.as_ref().is_some_and(Armed::requested) {
                stopped = Some(Stopped::Interrupt);
                kill_group(pgid, Signal::SIGINT);
                kill_at = Some(now + INTERRUPT_GRACE);
            }
            if kill_at.is_some_and(|t| now >= t) {
                kill_group(pgid, Signal::SIGKILL);
                kill_at = None;
            }
        }
        match status {
            Some(_) if eof => break,
            // A process that left the group still holds the pipe: the
            // output read so far is what is recorded.
            Some((_, at)) if now.duration_since(at) > INTERRUPT_GRACE => break,
            _ => {}
        }
    }
    drop(armed);
    if let Some(e) = wait_error {
        return Err(EvidenceError::Wait(e));
    }
    let (status, ended_at) = status.expect("the loop ends with a status");
    lines.finish(on_output);
    let ended = match (status.code(), status.signal()) {
        (Some(code), _) => Ended::Exit(code),
        (None, Some(sig)) => Ended::Signal(sig),
        (None, None) => Ended::Exit(-1),
    };
    let (command, command_redactions) = redact(command);
    Ok(Ran {
        command,
        command_redactions,
        ended,
        stopped,
        timeout,
        duration: ended_at.duration_since(start),
        output: capture.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(command: &str, timeout: Duration) -> Ran {
        run(command, timeout, None, &mut |_| {}).unwrap()
    }

    #[test]
    fn output_is_interleaved_and_the_exit_status_kept() {
        let ran = quiet(
            "echo out1; echo err1 >&2; echo out2; exit 3",
            Duration::from_secs(10),
        );
        assert_eq!(ran.ended, Ended::Exit(3));
        assert_eq!(ran.stopped, None);
        assert_eq!(ran.output.text, "out1\nerr1\nout2\n");
    }

    #[test]
    fn lines_are_handed_on_as_they_come() {
        let mut seen: Vec<(String, Duration)> = Vec::new();
        let start = Instant::now();
        run(
            "echo first; sleep 1; echo second",
            Duration::from_secs(10),
            None,
            &mut |l| seen.push((l.to_string(), start.elapsed())),
        )
        .unwrap();
        let texts: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(texts, ["first\n", "second\n"]);
        assert!(seen[0].1 < Duration::from_millis(900), "{seen:?}");
    }

    #[test]
    fn a_timeout_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("dp-evidence-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("child-alive");
        let ran = quiet(
            &format!(
                "(sleep 3; touch {}) & echo started; sleep 30",
                marker.display()
            ),
            Duration::from_secs(1),
        );
        assert_eq!(ran.stopped, Some(Stopped::Timeout));
        assert_eq!(ran.ended, Ended::Signal(9));
        assert!(ran.duration < Duration::from_secs(5), "{:?}", ran.duration);
        assert_eq!(ran.output.text, "started\n");
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            !marker.exists(),
            "the background child outlived the timeout"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_command_line_is_redacted_too() {
        let ran = quiet("echo token=abc >/dev/null", Duration::from_secs(10));
        assert_eq!(ran.command, "echo token=[REDACTED] >/dev/null");
        assert_eq!(ran.command_redactions, 1);
    }
}
