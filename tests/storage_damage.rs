//! The storage damage matrix: every file of a data directory × every kind
//! of damage, each driven through the real binary (`--offline --json`),
//! started twice. Every acknowledged note held by a surviving copy must be
//! reachable on both starts, and the damage must be reported, naming the
//! file; where a case cannot keep everything (the only copy destroyed), the
//! truthful report is asserted instead. The matrix is printed as a table.
//!
//! `DONTPANIC_COMPACT_AT_EXIT=10` makes the notebook fold its journal into a
//! snapshot (written twice: `snapshot` and its segment twin) at exit from
//! ten records on, so a few notes build a directory with a snapshot, its
//! segment (the older generation's removed) and a journal.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{script, Node};

/// The kinds of damage.
#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip,
    Truncate,
    Delete,
    Zero,
    Older,
    Directory,
}

const DAMAGES: [Damage; 6] = [
    Damage::Flip,
    Damage::Truncate,
    Damage::Delete,
    Damage::Zero,
    Damage::Older,
    Damage::Directory,
];

/// The files damaged.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Journal,
    Segment,
    Snapshot,
    DeviceKey,
    Config,
}

const TARGETS: [Target; 5] = [
    Target::Journal,
    Target::Segment,
    Target::Snapshot,
    Target::DeviceKey,
    Target::Config,
];

/// What a case must show.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Every note is reachable on both starts.
    All,
    /// Notes only the journal held may be lost; everything else is kept.
    JournalOnlyMayBeLost,
    /// The start is refused, naming `device.key` and `--new-identity`.
    Refused,
}

/// How the damage must be reported on the first start.
#[derive(Debug, PartialEq)]
enum Report {
    /// A warning naming the file (its full path).
    NamesFile,
    /// A warning containing this text (the file is gone and the loss is
    /// found by what is missing).
    Says(&'static str),
    /// Nothing to say (the file was identical, or not history).
    Nothing,
}

/// The expectations of one case: the table the matrix is checked against.
fn expect(target: Target, damage: Damage, older_differs: bool) -> (Expect, Report, &'static str) {
    use Damage::*;
    use Target::*;
    match (target, damage) {
        (DeviceKey, Older) if !older_differs => (Expect::All, Report::Nothing, "same key"),
        (DeviceKey, _) => (Expect::Refused, Report::NamesFile, "refused, then --new-identity"),
        (_, Older) if !older_differs => (Expect::All, Report::Nothing, "older copy identical"),
        (Journal, Older) => (
            Expect::JournalOnlyMayBeLost,
            Report::Nothing,
            "UNDETECTABLE: an older journal is a consistent earlier state; later notes must come from peers",
        ),
        (Journal, _) => (
            Expect::JournalOnlyMayBeLost,
            Report::NamesFile,
            "journal-only notes lost or waiting, reported",
        ),
        (Segment, Delete) => (
            Expect::All,
            Report::Says("segments lacked"),
            "kept; whole-history segment rewritten",
        ),
        (Segment, _) => (
            Expect::All,
            Report::NamesFile,
            "kept; kept aside, whole-history segment rewritten",
        ),
        (Snapshot, _) => (Expect::All, Report::NamesFile, "kept; rebuilt and written back"),
        (Config, Delete) => (Expect::All, Report::Nothing, "kept; defaults"),
        (Config, _) => (Expect::All, Report::NamesFile, "kept; set aside, defaults"),
    }
}

const NAME: &str = "hal";

fn notes(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i:02}")).collect()
}

fn run_ok(dir: &Path, lines: &[String]) -> Vec<Value> {
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (replies, stderr, code) = script(dir, NAME, &refs);
    assert_eq!(code, 0, "build step failed: {stderr}\n{replies:?}");
    replies
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else if e.file_name() != "lock" {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn segments(inc: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = fs::read_dir(inc)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    s.sort();
    s
}

/// A built data directory: a snapshot, its segment, a journal with three
/// notes, and older copies of the whole directory taken on the way.
struct Built {
    dir: PathBuf,
    id: String,
    /// Copies of the directory, newest first.
    backups: Vec<PathBuf>,
    /// Every acknowledged note.
    all: Vec<String>,
    /// Notes held only by the journal.
    journal_only: Vec<String>,
}

fn build(root: &Path) -> Built {
    let dir = root.join("template");
    let mut first = vec!["new \"damage matrix\"".to_string()];
    let a = notes("a", 12);
    first.extend(a.iter().map(|n| format!("note {n}")));
    let replies = run_ok(&dir, &first);
    let id = replies[0]["id"]
        .as_str()
        .expect("new gives the id")
        .to_string();
    let b1 = root.join("backup-1");
    copy_dir(&dir, &b1);
    let b = notes("b", 12);
    run_ok(
        &dir,
        &b.iter().map(|n| format!("note {n}")).collect::<Vec<_>>(),
    );
    let j = notes("j", 3);
    run_ok(&dir, &[format!("note {}", j[0])]);
    let b3 = root.join("backup-3");
    copy_dir(&dir, &b3);
    run_ok(
        &dir,
        &j[1..]
            .iter()
            .map(|n| format!("note {n}"))
            .collect::<Vec<_>>(),
    );
    let inc = dir.join("incidents").join(&id);
    assert!(inc.join("snapshot").is_file(), "the build made a snapshot");
    assert_eq!(
        segments(&inc).len(),
        1,
        "the build made one segment (the older generation's removed)"
    );
    let mut all = a;
    all.extend(b);
    all.extend(j.clone());
    Built {
        dir,
        id,
        backups: vec![b3, b1],
        all,
        journal_only: j,
    }
}

fn target_path(dir: &Path, id: &str, t: Target) -> PathBuf {
    let inc = dir.join("incidents").join(id);
    match t {
        Target::Journal => inc.join("journal"),
        Target::Segment => segments(&inc)[0].clone(),
        Target::Snapshot => inc.join("snapshot"),
        Target::DeviceKey => dir.join("device.key"),
        Target::Config => dir.join("config.json"),
    }
}

/// Damages `path`; `older` is the older copy to put back, if one differs.
fn damage(path: &Path, d: Damage, older: Option<Vec<u8>>) {
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    match d {
        Damage::Flip => {
            bytes[mid] ^= 0x01;
            fs::write(path, &bytes).unwrap();
        }
        Damage::Truncate => {
            bytes.truncate(mid);
            fs::write(path, &bytes).unwrap();
        }
        Damage::Delete => fs::remove_file(path).unwrap(),
        Damage::Zero => {
            let end = (mid + 16).min(bytes.len());
            bytes[mid.saturating_sub(16)..end].fill(0);
            fs::write(path, &bytes).unwrap();
        }
        Damage::Older => {
            // With no older copy that differs, the file stays as it is.
            if let Some(b) = older {
                fs::write(path, b).unwrap();
            }
        }
        Damage::Directory => {
            fs::remove_file(path).unwrap();
            fs::create_dir(path).unwrap();
            fs::write(path.join("stray"), b"not a file").unwrap();
        }
    }
}

/// One start: `open <id>`, `timeline --all`, `incidents`.
struct Start {
    code: i32,
    stderr: String,
    /// Notes reachable on the timeline.
    notes: Vec<String>,
    listed: bool,
    said: String,
}

fn start(dir: &Path, id: &str, all: &[String], extra: &[&str]) -> Start {
    let (replies, stderr, code) = if extra.is_empty() {
        script(
            dir,
            NAME,
            &[&format!("open {id}"), "timeline --all", "incidents"],
        )
    } else {
        let mut args = vec!["--offline"];
        args.extend(extra);
        let mut n = Node::spawn(&[], dir, NAME, &args);
        let r = vec![
            n.cmd(&format!("open {id}")),
            n.cmd("timeline --all"),
            n.cmd("incidents"),
        ];
        let stderr = n.stderr();
        let status = n.quit();
        (r, stderr, status.code().unwrap_or(-1))
    };
    if code == 2 || replies.len() < 3 {
        return Start {
            code,
            said: stderr.clone(),
            stderr,
            notes: Vec::new(),
            listed: false,
        };
    }
    let texts: Vec<String> = replies[1]["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["text"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let notes = all
        .iter()
        .filter(|n| texts.iter().any(|t| t.starts_with(&format!("note: {n}"))))
        .cloned()
        .collect();
    let listed = replies[2]["incidents"].as_array().is_some_and(|l| {
        l.iter()
            .any(|i| i["id"] == id && !i["title"].as_str().unwrap_or("").starts_with("(unreadable"))
    });
    Start {
        code,
        said: format!("{stderr}\n{}", replies[0]),
        stderr,
        notes,
        listed,
    }
}

/// Checks one start against the expectation; returns the problems found.
fn check(
    s: &Start,
    built: &Built,
    expect: &Expect,
    first: bool,
    report: &Report,
    file: &Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    let which = if first { "first start" } else { "second start" };
    if *expect == Expect::Refused {
        if s.code != 2 {
            problems.push(format!("{which}: not refused (exit {})", s.code));
        }
        if !(s.stderr.contains(&file.display().to_string()) && s.stderr.contains("--new-identity"))
        {
            problems.push(format!(
                "{which}: refusal does not name the file and the way on: {}",
                s.stderr
            ));
        }
        return problems;
    }
    if s.code != 0 {
        problems.push(format!("{which}: exit {}: {}", s.code, s.stderr));
        return problems;
    }
    if !s.listed {
        problems.push(format!("{which}: `incidents` does not list it readable"));
    }
    let lost: Vec<&String> = built.all.iter().filter(|n| !s.notes.contains(n)).collect();
    match expect {
        Expect::All if !lost.is_empty() => {
            problems.push(format!("{which}: lost {lost:?}"));
        }
        Expect::JournalOnlyMayBeLost => {
            let wrongly: Vec<_> = lost
                .iter()
                .filter(|n| !built.journal_only.contains(n))
                .collect();
            if !wrongly.is_empty() {
                problems.push(format!(
                    "{which}: lost notes other copies hold: {wrongly:?}"
                ));
            }
            // A note the journal still holds but that is not reachable must
            // be said to wait for a missing change.
            if !lost.is_empty() && *report == Report::NamesFile && first {
                let said_missing = s.said.contains("missing earlier change")
                    || s.said.contains("missing; a new, empty journal")
                    || s.said.contains("not a file")
                    || s.said.contains("torn record");
                if !said_missing {
                    problems.push(format!(
                        "{which}: lost {lost:?} without saying so: {}",
                        s.said
                    ));
                }
            }
        }
        _ => {}
    }
    if first {
        let reported = match report {
            Report::NamesFile => s.said.contains(&file.display().to_string()),
            Report::Says(t) => s.said.contains(t),
            Report::Nothing => true,
        };
        if !reported {
            problems.push(format!(
                "{which}: damage not reported ({report:?}): {}",
                s.said
            ));
        }
    } else if *expect == Expect::All && s.stderr.contains("warning:") {
        problems.push(format!("{which}: not clean after healing: {}", s.stderr));
    }
    problems
}

#[test]
fn every_file_by_every_damage() {
    // One test function: the variable is set before any process starts.
    std::env::set_var("DONTPANIC_COMPACT_AT_EXIT", "10");
    let tmp = tempfile::tempdir().unwrap();
    let built = build(tmp.path());
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for target in TARGETS {
        for d in DAMAGES {
            let case = format!("{target:?} × {d:?}");
            let dir = tmp.path().join(format!("case-{target:?}-{d:?}"));
            copy_dir(&built.dir, &dir);
            let file = target_path(&dir, &built.id, target);
            let current = fs::read(&file).unwrap();
            let older = built.backups.iter().find_map(|b| {
                let p = target_path_in_backup(b, &dir, &file);
                fs::read(p).ok().filter(|old| *old != current)
            });
            let (expect, report, outcome) = expect(target, d, older.is_some());
            damage(&file, d, older);
            let mut problems = Vec::new();
            let s1 = start(&dir, &built.id, &built.all, &[]);
            problems.extend(check(&s1, &built, &expect, true, &report, &file));
            let s2 = start(&dir, &built.id, &built.all, &[]);
            problems.extend(check(&s2, &built, &expect, false, &report, &file));
            if expect == Expect::Refused {
                // The way on that the refusal names keeps every note: the
                // old seal no longer holds, so the snapshot is rebuilt.
                let s3 = start(&dir, &built.id, &built.all, &["--new-identity"]);
                problems.extend(check(
                    &s3,
                    &built,
                    &Expect::All,
                    true,
                    &Report::Nothing,
                    &file,
                ));
                let s4 = start(&dir, &built.id, &built.all, &[]);
                problems.extend(check(
                    &s4,
                    &built,
                    &Expect::All,
                    false,
                    &Report::Nothing,
                    &file,
                ));
            }
            if expect == Expect::JournalOnlyMayBeLost && s2.notes.len() < s1.notes.len() {
                problems.push("the second start holds less than the first".into());
            }
            let kept = if expect == Expect::Refused {
                "refused".to_string()
            } else {
                format!("{}/{}", s2.notes.len(), built.all.len())
            };
            let verdict = if problems.is_empty() { "ok" } else { "FAIL" };
            rows.push(format!(
                "| {case:<26} | {kept:>7} | {verdict:<4} | {outcome} |"
            ));
            if !problems.is_empty() {
                failures.push(format!("{case}:\n  {}", problems.join("\n  ")));
            }
        }
    }
    println!("| case                       |    kept | ok   | outcome |");
    println!("|----------------------------|---------|------|---------|");
    for r in &rows {
        println!("{r}");
    }
    println!("{} cases, {} failed", rows.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The same file in a backup copy of the data directory.
/// A segment's older copy is the backup's segment, whatever its name
/// (each generation's segment has its own).
fn target_path_in_backup(backup: &Path, case_dir: &Path, file: &Path) -> PathBuf {
    let same = backup.join(file.strip_prefix(case_dir).expect("inside the case"));
    if file.extension().is_some_and(|x| x == "seg") {
        if let Some(older) = same.parent().and_then(|inc| segments(inc).pop()) {
            return older;
        }
    }
    same
}

/// `new` on a full disk leaves nothing behind: a data directory whose
/// incidents folder cannot take a new directory refuses `new` cleanly and
/// lists nothing afterwards.
#[test]
fn failed_new_leaves_no_incident() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let (_, _, code) = script(&dir, NAME, &["whoami"]);
    assert_eq!(code, 0);
    let incidents = dir.join("incidents");
    fs::set_permissions(&incidents, fs::Permissions::from_mode(0o500)).unwrap();
    let (replies, _, _) = script(&dir, NAME, &["new doomed", "incidents"]);
    fs::set_permissions(&incidents, fs::Permissions::from_mode(0o700)).unwrap();
    if replies[0]["ok"] == true {
        // Running as root: permissions do not stop the write; nothing to test.
        return;
    }
    assert_eq!(
        replies[1]["incidents"].as_array().unwrap().len(),
        0,
        "{replies:?}"
    );
    assert_eq!(fs::read_dir(&incidents).unwrap().count(), 0);
}

/// `new` on a full disk (a real one: a small tmpfs) is refused naming the
/// file, leaves no incident behind, and works once there is space.
#[test]
fn new_on_a_full_disk_leaves_no_incident() {
    if !support::can_mount("new_on_a_full_disk_leaves_no_incident") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = support::Tmpfs::mount(&tmp.path().join("disk"), "2m");
    let dir = disk.0.join("d");
    let (_, _, code) = script(&dir, NAME, &["whoami"]);
    assert_eq!(code, 0);
    let filler = disk.fill();
    let (replies, _, _) = script(&dir, NAME, &["new doomed", "incidents"]);
    assert_eq!(replies[0]["ok"], false, "{replies:?}");
    let err = replies[0]["error"].as_str().unwrap();
    assert!(err.contains("No space left"), "{err}");
    assert_eq!(
        replies[1]["incidents"].as_array().unwrap().len(),
        0,
        "{replies:?}"
    );
    let left: Vec<_> = fs::read_dir(dir.join("incidents")).unwrap().collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    fs::remove_file(filler).unwrap();
    let (replies, _, code) = script(&dir, NAME, &["new fine", "incidents"]);
    assert_eq!(code, 0, "{replies:?}");
    assert_eq!(replies[1]["incidents"].as_array().unwrap().len(), 1);
}
