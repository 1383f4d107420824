//! Evidence through the real binary: `run` with real shell processes (exit
//! status, interleaved output, timeouts that kill the whole group, the cap,
//! redaction), `attach` with real files, `show`, the report, and a second
//! node on loopback that receives it.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::Node;

/// An offline node with one hypothesis and one test whose action is
/// `action`; returns the node and the test's id.
fn with_test(dir: &std::path::Path, action: &str) -> (Node, String) {
    let mut n = Node::offline(dir, "alice");
    n.ok("new \"resolver answers slowly\" --sev 2");
    let h = n.ok("hypo \"the resolver's cache is cold\"")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = n.ok(&format!(
        "test {h} '{action}' --rules-out-if \"answers under 10 ms\""
    ))["id"]
        .as_str()
        .unwrap()
        .to_string();
    (n, t)
}

fn evidence_of(n: &mut Node, id: &str) -> Vec<Value> {
    n.ok(&format!("show {id}"))["evidence"]
        .as_array()
        .expect("evidence")
        .clone()
}

#[test]
fn run_records_the_action_its_exit_status_and_interleaved_output() {
    let tmp = tempfile::tempdir().unwrap();
    // The secrets are put together by the shell, so only the output holds them.
    let action = "echo to-stdout; echo to-stderr >&2; echo pass\"\"word=hun\"\"ter2; echo AKIA\"\"IOSFODNN7EXAMPLE; exit 3";
    let (mut n, t) = with_test(tmp.path(), action);
    let reply = n.ok(&format!("run {t}"));
    let r = &reply["evidence"];
    assert_eq!(r["kind"], "run", "{r}");
    assert_eq!(r["command"], action, "{r}");
    assert_eq!(r["exit"], 3, "{r}");
    assert_eq!(r["signal"], Value::Null, "{r}");
    assert_eq!(r["stopped"], Value::Null, "{r}");
    assert_eq!(r["of"], t.as_str(), "{r}");
    assert_eq!(r["name"], "alice", "{r}");
    assert_eq!(
        r["output"], "to-stdout\nto-stderr\npassword=[REDACTED]\n[REDACTED]\n",
        "stdout and stderr in the order written, secrets redacted: {r}"
    );
    assert_eq!(r["redactions"], 2, "{r}");
    assert_eq!(r["cut_bytes"], 0, "{r}");
    assert!(r["duration_ms"].as_i64().unwrap() < 10_000, "{r}");
    assert_eq!(r["timeout_ms"], 120_000, "{r}");
    let summary = reply["summary"].as_str().unwrap();
    assert!(
        summary.contains("exited 3") && summary.contains("2 secret(s) redacted"),
        "{summary}"
    );
    assert!(
        !reply.to_string().contains("hunter2") && !reply.to_string().contains("AKIAIOSF"),
        "{reply}"
    );

    // `-- <command>` is taken as typed: quotes and pipes reach the shell.
    let r = &n.ok(&format!("run {t} -- echo explicit 'a  b' | tr a-z A-Z"))["evidence"];
    assert_eq!(r["command"], "echo explicit 'a  b' | tr a-z A-Z", "{r}");
    assert_eq!(r["output"], "EXPLICIT A  B\n", "{r}");
    assert_eq!(r["exit"], 0, "{r}");

    // A test with a result still takes evidence.
    n.ok(&format!("result {t} \"answers in 80 ms\" --not-ruled-out"));
    n.ok(&format!("run {t} -- true"));
    assert_eq!(evidence_of(&mut n, &t).len(), 3);
    let entries = n.timeline().1;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.starts_with("evidence "))
            .count(),
        3,
        "one timeline entry per evidence: {entries:?}"
    );
    // Nothing of the secrets reached the disk either (where the test's
    // action, which holds them split in two, can be read).
    let stored: Vec<Vec<u8>> = std::fs::read_dir(tmp.path().join("incidents"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| std::fs::read(f.unwrap().path()).unwrap_or_default())
        .collect();
    let on_disk = |s: &[u8]| stored.iter().any(|b| b.windows(s.len()).any(|w| w == s));
    assert!(
        on_disk(b"IOSFODNN7EXAMPLE"),
        "the journal is not readable as expected"
    );
    assert!(
        !on_disk(b"hunter2") && !on_disk(b"AKIAIOSF"),
        "a secret was stored"
    );
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_children() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut n, t) = with_test(tmp.path(), "true");
    let marker = tmp.path().join("child-still-alive");
    let reply = n.ok(&format!(
        "run {t} --timeout 1s -- (sleep 3; touch {}) & echo started; sleep 30",
        marker.display()
    ));
    let r = &reply["evidence"];
    assert_eq!(r["stopped"], "timeout", "{r}");
    assert_eq!(r["signal"], 9, "{r}");
    assert_eq!(r["exit"], Value::Null, "{r}");
    assert_eq!(r["output"], "started\n", "{r}");
    let ms = r["duration_ms"].as_i64().unwrap();
    assert!((1_000..10_000).contains(&ms), "{r}");
    assert!(
        reply["summary"]
            .as_str()
            .unwrap()
            .contains("timed out after 1.0 s"),
        "{r}"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !marker.exists(),
        "a child of the timed-out command outlived it"
    );
    // The REPL goes on.
    n.ok(&format!("show {t}"));
}

#[test]
fn long_output_keeps_its_head_and_tail_and_says_what_was_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut n, t) = with_test(tmp.path(), "seq 1 100000");
    let r = &n.ok(&format!("run {t}"))["evidence"];
    // `seq 1 100000` prints 588,895 bytes; 16 KiB are kept at each end.
    assert_eq!(r["cut_bytes"], 588_895 - 2 * 16_384, "{r:.200}");
    let out = r["output"].as_str().unwrap();
    assert!(out.starts_with("1\n2\n3\n"), "{out:.100}");
    assert!(out.ends_with("99999\n100000\n"), "…{}", out.len());
    assert!(out.contains(&format!("… {} bytes cut …", 588_895 - 2 * 16_384)));
    assert!(out.len() < 2 * 16_384 + 100, "{}", out.len());
    // On screen, trimmed, with the way to see it all.
    let shown = n.ok(&format!("show {t}"));
    let text = shown["text"].as_str().unwrap();
    let e = shown["evidence"][0]["short"].as_str().unwrap();
    assert!(
        text.contains(&format!("more line(s): `show {e} --full` prints them all")),
        "{text:.2000}"
    );
    assert!(
        text.contains("│ 10\n") && !text.contains("│ 3000\n"),
        "{text:.2000}"
    );
    let full = n.ok(&format!("show {e} --full"));
    let full = full["text"].as_str().unwrap();
    assert!(
        full.contains("│ 3000\n") && full.contains("│ 100000\n"),
        "{full:.200}"
    );
}

#[test]
fn attach_records_a_text_file_and_refuses_what_is_not_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut n, t) = with_test(tmp.path(), "true");
    let notes = tmp.path().join("resolver.log");
    let content = "02:41 timeout talking to 10.0.0.2\nAuthorization: Bearer abcdefghijklmnop\n";
    std::fs::write(&notes, content).unwrap();
    let h = n.ok(&format!("show {t}"))["fields"]["hypothesis"]
        .as_str()
        .unwrap()
        .to_string();
    let r = &n.ok(&format!("attach {h} {}", notes.display()))["evidence"];
    assert_eq!(r["kind"], "file", "{r}");
    assert_eq!(r["of"], h.as_str(), "{r}");
    assert_eq!(r["file"], notes.display().to_string(), "{r}");
    assert_eq!(r["bytes"], content.len(), "{r}");
    assert_eq!(
        r["output"], "02:41 timeout talking to 10.0.0.2\nAuthorization: Bearer [REDACTED]\n",
        "{r}"
    );
    assert_eq!(r["redactions"], 1, "{r}");

    let binary = tmp.path().join("core.dump");
    std::fs::write(&binary, b"ELF\x00\x01\x02").unwrap();
    let latin1 = tmp.path().join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9\n").unwrap();
    let big = tmp.path().join("huge.log");
    std::fs::write(&big, "x".repeat(1024 * 1024 + 1)).unwrap();
    let missing = tmp.path().join("no-such.log");
    let before = n.total();
    for (path, want) in [
        (&missing, "No such file"),
        (&binary, "is not a text file (a NUL byte at byte 3)"),
        (&latin1, "is not a text file (invalid UTF-8 at byte 3)"),
        (&big, "files over 1048576 bytes are not attached"),
        (&tmp.path().to_path_buf(), "is a directory, not a file"),
    ] {
        let r = n.cmd(&format!("attach {h} {}", path.display()));
        let e = r["error"].as_str().unwrap_or_default();
        assert_eq!(r["ok"], false, "{r}");
        assert!(
            e.contains(want) && e.contains(&path.display().to_string()),
            "{path:?}: {e}"
        );
    }
    assert_eq!(n.total(), before, "a refused file recorded something");
    assert_eq!(evidence_of(&mut n, &h).len(), 1);
    let r = n.cmd(&format!("attach zzzz {}", notes.display()));
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("no item has id `zzzz`"),
        "{r}"
    );
}

#[test]
fn evidence_shows_in_show_and_under_its_test_in_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut n, t) = with_test(tmp.path(), "printf \"answer 1\\nanswer 2\\n\"; exit 1");
    n.ok(&format!("run {t}"));
    let shown = n.ok(&format!("show {t}"));
    let text = shown["text"].as_str().unwrap();
    assert!(
        text.contains("  rules_out_if: answers under 10 ms\n")
            && text.contains("(the resolver's cache is cold)\n")
            && text.contains("  │ answer 2\n")
            && text.contains("exited 1 after"),
        "all the fields and the evidence: {text}"
    );
    let v: Vec<Value> = evidence_of(&mut n, &t);
    assert_eq!(v[0]["output"], "answer 1\nanswer 2\n");
    assert_eq!(v[0]["exit"], 1);

    let report = n.report();
    let test_line = report
        .lines()
        .position(|l| l.starts_with("  - test: "))
        .unwrap_or_else(|| panic!("no test in:\n{report}"));
    let rest: Vec<&str> = report.lines().skip(test_line + 1).take(5).collect();
    assert!(
        rest[0].starts_with("    - evidence: ran `printf")
            && rest[0].contains("exited 1 after")
            && rest[0].contains("(alice, "),
        "{report}"
    );
    assert_eq!(rest[1], "      ```", "{report}");
    assert_eq!(rest[2], "      answer 1", "{report}");
    assert_eq!(rest[3], "      answer 2", "{report}");
    assert_eq!(rest[4], "      ```", "{report}");
}

#[test]
fn evidence_reaches_another_member_and_shows_there() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Node::loopback(&tmp.path().join("alice"), "alice", &[]);
    alice.ok("new \"dns down\" --sev 2");
    let h = alice.ok("hypo resolver")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t = alice.ok(&format!(
        "test {h} 'echo from alice' --rules-out-if answers"
    ))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let invite = alice.invite();
    let mut bob = Node::loopback_join(&tmp.path().join("bob"), "bob", &invite);
    let e = alice.ok(&format!("run {t} -- printf 'seen by alice\\n\\033[2J'"));
    let id = e["id"].as_str().unwrap().to_string();
    support::wait_until("bob has the evidence", support::CONVERGE, || {
        bob.cmd(&format!("show {id}"))["ok"] == true
    });
    let shown = bob.ok(&format!("show {id}"));
    assert_eq!(shown["evidence"][0]["name"], "alice", "{shown}");
    assert_eq!(shown["evidence"][0]["of"], t.as_str(), "{shown}");
    // Another member's output passes through the terminal safety helpers.
    let text = shown["text"].as_str().unwrap();
    assert!(text.contains("│ seen by alice\n"), "{text}");
    assert!(
        !text.contains('\x1b') && text.contains("\\u{1b}[2J"),
        "{text}"
    );
    let report = bob.report();
    assert!(report.contains("- evidence: ran `printf"), "{report}");
    assert!(!report.contains('\x1b'), "{report}");
}
