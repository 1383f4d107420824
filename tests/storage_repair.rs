//! Damage healed from peers, `doctor`, and the background scrub, through the
//! real binary: a record lost in the middle of a journal comes back from a
//! member (verified like any remote change) and the records that waited for
//! it apply and stay; `doctor` names file and offset of every problem.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{bin, converge, wait_until, Node};

const CONVERGE: Duration = Duration::from_secs(30);

/// The only incident's directory under a data directory.
fn incident_dir(data: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = fs::read_dir(data.join("incidents"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.pop().unwrap()
}

/// Flips a byte inside the payload of journal record `index`; returns the
/// record's offset.
fn damage_record(journal: &Path, index: usize) -> usize {
    let mut bytes = fs::read(journal).unwrap();
    let offsets = support::record_offsets(&bytes);
    assert!(index + 2 < offsets.len(), "a middle record: {offsets:?}");
    let at = offsets[index];
    bytes[at + 12 + 40] ^= 0xff;
    fs::write(journal, bytes).unwrap();
    at
}

/// Flips a byte inside the payload of the journal record whose change
/// holds `text`.
fn damage_record_of(journal: &Path, text: &str) {
    let bytes = fs::read(journal).unwrap();
    let offsets = support::record_offsets(&bytes);
    let index = offsets
        .iter()
        .position(|&at| {
            let end = offsets
                .iter()
                .find(|&&o| o > at)
                .copied()
                .unwrap_or(bytes.len());
            bytes[at..end]
                .windows(text.len())
                .any(|w| w == text.as_bytes())
        })
        .unwrap_or_else(|| panic!("no record holds {text:?}"));
    let mut bytes = bytes;
    bytes[offsets[index] + 12 + 40] ^= 0xff;
    fs::write(journal, bytes).unwrap();
}

/// `dontpanic --data-dir DIR --json doctor`: (report, exit code).
fn doctor(dir: &Path) -> (Value, i32) {
    let out = Command::new(bin())
        .args(["--data-dir", dir.to_str().unwrap(), "--json", "doctor"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "doctor: not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code().unwrap_or(-1))
}

fn missing(report: &Value) -> u64 {
    report["missing"].as_u64().expect("missing")
}

#[test]
fn a_damaged_middle_record_comes_back_from_a_member_and_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::loopback(&tmp.path().join("a"), "alice", &[]);
    a.ok("new \"queue backlog\"");
    let inv = a.invite();
    let b_dir = tmp.path().join("b");
    let b = Node::loopback_join(&b_dir, "bob", &inv);
    b.quit();
    // Alice writes while bob is away: they reach him as one batch, covered
    // by the signature of her latest (docs/security.md, "Signatures per run").
    let mut expected = Vec::new();
    for i in 1..=6 {
        let n = format!("alice note {i}");
        a.ok(&format!("note \"{n}\""));
        expected.push(n);
    }
    let mut b = Node::loopback(&b_dir, "bob", &[]);
    b.ok(&format!("connect {}", a.address()));
    a.ok("note \"alice note 7\"");
    b.ok("note \"bob note\"");
    expected.push("alice note 7".into());
    expected.push("bob note".into());
    let want: Vec<&str> = expected.iter().map(String::as_str).collect();
    converge(
        "alice and bob share the notes",
        &mut [&mut a, &mut b],
        &want,
    );
    b.quit();

    // Alice's third note, on which every later note of hers builds.
    let journal = incident_dir(&b_dir).join("journal");
    damage_record_of(&journal, "alice note 3");
    // Bob forgets where alice is, so the damage can be looked at before a
    // member repairs it (alice's redials go to bob's old port).
    let _ = fs::remove_file(b_dir.join("addresses.json"));

    let mut b = Node::loopback(&b_dir, "bob", &[]);
    let brief = b.brief();
    assert!(
        brief.contains("waiting for 1 damaged change(s) from members"),
        "{brief}\nstderr:\n{}",
        b.stderr()
    );
    let peers = b.ok("peers");
    assert!(
        peers["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("waiting for 1 damaged change(s)")),
        "{peers}"
    );
    let stderr = b.stderr();
    assert!(
        stderr.contains("journal") && stderr.contains("checksum mismatch"),
        "{stderr}"
    );
    let report = b.ok("doctor");
    assert_eq!(missing(&report), 1, "{report}");
    let texts = b.texts();
    assert!(
        !texts.iter().any(|t| t.contains("alice note 3")),
        "{texts:?}"
    );

    let a_addr = a.address();
    b.ok(&format!("connect {a_addr}"));
    converge(
        "the damaged change comes back",
        &mut [&mut a, &mut b],
        &want,
    );
    wait_until("nothing left to fetch", CONVERGE, || {
        missing(&b.ok("doctor")) == 0 && !b.brief().contains("damaged change")
    });
    let report = b.ok("doctor");
    assert_eq!(report["clean"], true, "{report}");
    b.quit();

    // Durable: everything is there after another restart, from disk alone.
    let mut b = Node::offline(&b_dir, "bob");
    let texts = b.texts();
    for n in &expected {
        assert!(
            texts.iter().any(|t| t.contains(n.as_str())),
            "{n}: {texts:?}"
        );
    }
    assert!(!b.stderr().contains("damaged change"), "{}", b.stderr());
    assert_eq!(b.ok("doctor")["clean"], true);
    b.quit();
}

#[test]
fn doctor_names_file_and_offset_repairs_and_lists_what_peers_must_send() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let mut lines = vec!["new \"disk alarms\"".to_string()];
    lines.extend((1..=6).map(|i| format!("note \"n{i}\"")));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (_, stderr, code) = support::script(&dir, "alice", &lines);
    assert_eq!(code, 0, "{stderr}");
    let journal = incident_dir(&dir).join("journal");
    let offset = damage_record(&journal, 3);

    let (report, code) = doctor(&dir);
    assert_eq!(code, 1, "changes must come from members: {report}");
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{report}");
    let p = &problems[0];
    assert_eq!(p["file"].as_str().unwrap(), journal.to_str().unwrap());
    assert_eq!(p["offset"].as_u64().unwrap(), offset as u64, "{report}");
    assert!(p["problem"].as_str().unwrap().contains("checksum"), "{p}");
    assert_eq!(p["repaired"], true, "{p}");
    assert_eq!(missing(&report), 1, "{report}");
    let hash = report["from_peers"][0]["changes"][0].as_str().unwrap();
    assert_eq!(hash.len(), 64, "{report}");

    // Repaired: the journal verifies now, the original is kept aside, and
    // the records after the damage are kept, still waiting.
    let (again, code) = doctor(&dir);
    assert!(again["problems"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(missing(&again), 1, "{again}");
    assert_eq!(code, 1);
    assert_eq!(
        support::record_offsets(&fs::read(&journal).unwrap()).len(),
        6
    );
    assert!(fs::read_dir(journal.parent().unwrap()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("journal.damaged-")));
}

#[test]
fn the_background_scrub_notices_a_damaged_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    // A snapshot and a segment from a few edits.
    let mut child = Command::new(bin())
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--name",
            "alice",
            "--json",
            "--offline",
        ])
        .env("DONTPANIC_COMPACT_AT_EXIT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "new \"scrub\"").unwrap();
        writeln!(stdin, "note \"one\"").unwrap();
        writeln!(stdin, "note \"two\"").unwrap();
    }
    assert!(child.wait().unwrap().success());
    let inc = incident_dir(&dir);
    let segment = fs::read_dir(&inc)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment");

    // Every node of this test binary scrubs every second (harmless for
    // the other tests, which never damage a segment).
    std::env::set_var("DONTPANIC_SCRUB_SECS", "1");
    let mut n = Node::offline(&dir, "alice");
    assert!(!n.brief().contains("background check"));
    // A segment is a sealed saved document: a flipped byte fails its
    // checksum, reported for the file as a whole (offset 0).
    let mut bytes = fs::read(&segment).unwrap();
    bytes[8 + 12 + 40] ^= 0xff;
    fs::write(&segment, bytes).unwrap();
    wait_until("the scrub notices", CONVERGE, || {
        n.brief().contains("background check")
    });
    let brief = n.brief();
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(
        brief.contains(name) && brief.contains("at byte 0"),
        "{brief}"
    );
    let report = n.ok("doctor");
    let p = &report["problems"][0];
    assert_eq!(
        p["file"].as_str().unwrap(),
        segment.to_str().unwrap(),
        "{report}"
    );
    assert_eq!(p["offset"], 0, "{report}");
    assert_eq!(p["repaired"], true, "{report}");
    assert!(!n.brief().contains("background check"));
    let texts = n.texts();
    assert!(
        texts.iter().any(|t| t.contains("one")) && texts.iter().any(|t| t.contains("two")),
        "{texts:?}"
    );
    n.quit();
}
