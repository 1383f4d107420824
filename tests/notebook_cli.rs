//! The notebook through the real binary: the method from symptom to report,
//! bad input, the lock, a SIGKILL mid-write, and damaged journals.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::{script, Node};

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

fn section<'a>(report: &'a str, heading: &str) -> &'a str {
    let start = report
        .find(&format!("## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}:\n{report}"));
    let rest = &report[start + heading.len() + 4..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// `secs` since the Unix epoch as RFC 3339 (UTC), as `--since` takes it.
fn rfc3339(secs: u64) -> String {
    // `2026-11-24 03:12:09 UTC` -> `2026-11-24T03:12:09Z`
    began_utc(secs).replacen(' ', "T", 1).replace(" UTC", "Z")
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn the_method_from_symptom_to_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("alice");
    // Impact began half an hour before the incident is opened.
    let began = now_secs() - 30 * 60;
    let mut n = Node::offline(&dir, "alice");
    n.ok("new \"checkout returns 500s\" --sev 2");
    n.ok(&format!("symptom \"HTTP 500 on /checkout\" --where eu-west --freq \"1 in 3 requests\" --impact \"customers cannot pay\" --since {}", rfc3339(began)));
    let dns = id(&n.ok("hypo \"DNS resolution failing\""));
    let deploy = id(&n.ok("hypo \"bad deploy of payments v42\""));
    let db = id(&n.ok("hypo \"database connection pool exhausted\""));
    n.ok("role commander alice");
    let t_dns = id(&n.ok(&format!("test {dns} \"dig @10.0.0.2 checkout.internal\" --rules-out-if \"resolvers answer correctly\"")));
    let t_db = id(&n.ok(&format!(
        "test {} \"check pool metrics\" --rules-out-if \"pool below 50%\"",
        &db[..5]
    ))); // a prefix is enough
    let t_dep = id(&n.ok(&format!(
        "test {deploy} \"roll back canary\" --rules-out-if \"errors continue on canary\""
    )));
    // What the test showed, as signed evidence (a real command, redacted).
    n.ok(&format!(
        "run {t_dns} -- echo 'checkout.internal. 30 IN A 10.0.4.17'; echo token=s3cr3t"
    ));
    n.ok(&format!(
        "result {t_dns} \"resolvers answer correctly\" --ruled-out"
    ));
    n.ok(&format!("result {t_db} \"pool at 97%\" --not-ruled-out"));
    n.ok(&format!("result {t_dep} \"canary noisy\" --inconclusive"));
    let brief = n.ok("brief")["text"].as_str().unwrap().to_string();
    assert!(
        brief.contains("Still open (2):") && brief.contains("bad deploy of payments v42"),
        "{brief}"
    );
    assert!(
        brief.contains("Ruled out (1):") && brief.contains("DNS resolution failing — by test"),
        "{brief}"
    );
    // First, do no harm: no fix before a cause is confirmed, unless a reason is given.
    let refused = n.cmd("fix \"restart payments\"");
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("--unconfirmed-because"),
        "{refused}"
    );
    n.ok("fix \"shed 10% of traffic\" --unconfirmed-because \"revenue loss 10k/min\"");
    n.ok(&format!("confirm {deploy} {t_dep}"));
    n.ok("status identified");
    n.ok("fix \"roll back payments to v41\"");
    n.ok("status mitigated");
    n.ok("status resolved");
    let closed = n.cmd("hypo \"one more idea\"");
    assert!(
        closed["error"].as_str().unwrap().contains("reopen"),
        "{closed}"
    );
    // Post-incident work: follow-ups with an owner and a due date, the
    // narrative and the lessons.
    let stranger = n.cmd("followup \"alert on checkout 5xx rate\" --owner mallory");
    assert!(
        stranger["error"]
            .as_str()
            .unwrap()
            .contains("`mallory` is not a member of this incident; the members are: alice"),
        "{stranger}"
    );
    n.ok("followup \"alert on checkout 5xx rate\" --owner alice --due 2030-01-31");
    n.ok("followup \"canary error budget\" --due 2w");
    n.ok("summary \"A bad deploy of payments v42 made checkout fail for a third of requests; rolling back fixed it.\"");
    n.ok("lesson \"canaries need an error-rate alert\"");
    let out = dir.join("pir.md");
    n.ok(&format!("report --out {}", out.display()));
    // An existing report is never overwritten by accident.
    fs::write(&out, "edited by hand").unwrap();
    let again = n.cmd(&format!("report --out {}", out.display()));
    assert_eq!(again["ok"], false);
    assert!(
        again["error"].as_str().unwrap().contains(&format!(
            "{} already exists; give --force to overwrite it",
            out.display()
        )),
        "{again}"
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), "edited by hand");
    n.ok(&format!("report --out {} --force", out.display()));
    let total = n.total();
    n.quit();

    let report = fs::read_to_string(&out).unwrap();
    assert!(report.starts_with("# Production Incident Report: checkout returns 500s"));
    let summary = section(&report, "Summary");
    assert!(
        summary.contains("Severity: SEV2") && summary.contains("Status: resolved"),
        "{summary}"
    );
    assert!(
        summary.contains("Root cause: bad deploy of payments v42")
            && summary.contains("commander: alice"),
        "{summary}"
    );
    // The impact window runs from --since to mitigation; every step took
    // the half hour since impact began (and a few seconds).
    let window = format!("- Impact: {} → ", began_utc(began));
    assert!(
        summary.contains(&window) && summary.contains(" (30m)\n"),
        "{summary}"
    );
    for step in ["detect", "identify", "mitigate", "resolve"] {
        assert!(
            summary.contains(&format!("- Time to {step}: 30m\n")),
            "{step}: {summary}"
        );
    }
    let order: Vec<usize> = [
        "- investigating:",
        "- identified:",
        "- mitigated:",
        "- resolved:",
    ]
    .iter()
    .map(|s| summary.find(s).unwrap_or_else(|| panic!("{s}: {summary}")))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{summary}");
    assert!(
        section(&report, "Narrative").contains("A bad deploy of payments v42 made checkout fail"),
    );
    let detection = section(&report, "Detection");
    assert!(
        detection.contains("alice opened the incident at ")
            && detection.contains(", 30m after impact began")
            && detection.contains("- HTTP 500 on /checkout — alice"),
        "{detection}"
    );
    assert!(section(&report, "Impact").contains("customers cannot pay"));
    let symptoms = section(&report, "Symptoms");
    assert!(
        symptoms.contains("HTTP 500 on /checkout; where: eu-west; how often: 1 in 3 requests"),
        "{symptoms}"
    );
    let hyps = section(&report, "Hypotheses");
    assert!(
        hyps.contains("DNS resolution failing — **ruled out** by the test “dig @10.0.0.2 checkout.internal”: resolvers answer correctly"),
        "{hyps}"
    );
    assert!(
        hyps.contains("bad deploy of payments v42 — **confirmed** by the test “roll back canary”"),
        "{hyps}"
    );
    assert!(
        hyps.contains("database connection pool exhausted — still open"),
        "{hyps}"
    );
    assert!(
        hyps.contains("does-not-rule-out") && hyps.contains("inconclusive"),
        "{hyps}"
    );
    // The evidence sits under its test, trimmed and redacted.
    let test_at = hyps.find("  - test: dig @10.0.0.2").expect("the DNS test");
    let under = hyps.get(test_at..).unwrap();
    let evidence = under
        .find("- evidence: ran `echo")
        .expect("evidence under the test");
    assert!(
        under.find("\n  - test:").is_none_or(|next| evidence < next),
        "the evidence is under the DNS test:\n{hyps}"
    );
    assert!(
        under.contains("10.0.4.17") && under.contains("2 secret(s) redacted"),
        "{hyps}"
    );
    assert!(!report.contains("s3cr3t"), "{report}");
    for id in [&dns, &t_dns, &t_dep] {
        assert!(!hyps.contains(&id[..4]), "internal id {id} in {hyps}");
    }
    assert!(section(&report, "Root cause").contains("bad deploy of payments v42"));
    let fix = section(&report, "Fixes");
    assert!(fix.contains("shed 10% of traffic — ⚠ made before the cause was confirmed, because: revenue loss 10k/min"), "{fix}");
    assert!(fix.contains("roll back payments to v41 (alice"), "{fix}");
    let followups = section(&report, "Follow-ups");
    assert!(
        followups.contains("- [ ] alert on checkout 5xx rate — owner: alice, due 2030-01-31")
            && followups.contains("- [ ] canary error budget — **no owner**, due 20"),
        "{followups}"
    );
    assert!(
        section(&report, "Lessons").contains("- canaries need an error-rate alert — alice"),
        "{report}"
    );
    assert!(section(&report, "Participants").contains("- alice — commander (key `"));
    let timeline = section(&report, "Timeline (UTC)");
    let entries: Vec<&str> = timeline.lines().filter(|l| l.starts_with("- ")).collect();
    assert_eq!(entries.len() as u64, total);
    let times: Vec<&str> = entries
        .iter()
        .filter_map(|l| l.split(" — ").next())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "the timeline is in time order: {timeline}"
    );
    assert!(timeline.contains(" UTC — alice — "), "{timeline}");

    // A second run on the same data directory finds everything again, verified.
    let (replies, _, code) = script(&dir, "alice", &["timeline --all", "log"]);
    assert_eq!(code, 0);
    assert_eq!(replies[0]["total"].as_u64().unwrap(), total);
    let changes = replies[1]["changes"].as_array().unwrap();
    assert_eq!(changes.len() as u64, total);
    assert!(changes
        .iter()
        .all(|c| c["verified"] == true && c["author"] == "alice"));
}

/// `secs` as the report writes times: `2026-11-24 03:12:09 UTC`.
fn began_utc(secs: u64) -> String {
    dontpanic_incident::render::utc(secs as i64 * 1000)
}

#[test]
fn similar_lists_past_incidents_like_the_open_one_with_cause_and_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let mut n = Node::offline(&dir, "alice");
    // Three past incidents, each with its symptom, hypothesis and maybe a fix.
    let past: [(&str, &str, &str, Option<&str>); 3] = [
        (
            "checkout 500s after deploy",
            "HTTP 500 on checkout",
            "bad deploy of payments",
            Some("roll back payments"),
        ),
        (
            "disk full on db-3",
            "writes failing on db-3",
            "log rotation stopped",
            Some("rotate logs"),
        ),
        ("login slow", "login timeouts", "DNS resolver slow", None),
    ];
    let mut ids = Vec::new();
    for (title, symptom, hypo, fix) in past {
        ids.push(id(&n.ok(&format!("new \"{title}\""))));
        n.ok(&format!("symptom \"{symptom}\""));
        let h = id(&n.ok(&format!("hypo \"{hypo}\"")));
        if let Some(fix) = fix {
            n.ok(&format!("confirm {h} \"the fix worked\""));
            n.ok(&format!("fix \"{fix}\""));
            n.ok("status resolved");
        }
    }
    let open = id(&n.ok("new \"checkout errors\""));
    n.ok("symptom \"500 on checkout, payment timeouts\"");
    n.ok("hypo \"payments deploy\"");
    let found = n.ok("similar");
    let rows = found["similar"].as_array().unwrap();
    let listed: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    // The checkout incident first, the one sharing "timeouts" after it;
    // the disk incident shares nothing, the open one is not its own match.
    assert_eq!(listed, [ids[0].as_str(), ids[2].as_str()], "{found}");
    assert!(!listed.contains(&open.as_str()));
    assert_eq!(
        rows[0]["causes"],
        serde_json::json!(["bad deploy of payments"])
    );
    assert_eq!(rows[0]["fixes"], serde_json::json!(["roll back payments"]));
    assert!(rows[0]["score"].as_f64().unwrap() > rows[1]["score"].as_f64().unwrap());
    assert_eq!(rows[1]["shared"], serde_json::json!(["timeout"]));
    n.quit();
    // The same from a fresh start, where the past incidents load on demand.
    let (replies, _, code) = script(&dir, "alice", &["similar"]);
    assert_eq!(code, 0);
    assert_eq!(replies[0]["similar"], found["similar"]);
}

#[test]
fn bad_input_is_refused_clearly_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let (setup, _, code) = script(&dir, "bob", &["new outage", "hypo dns", "hypo disk"]);
    assert_eq!(code, 0);
    let h = id(&setup[1]);
    let cases: &[(&str, &str)] = &[
        ("frobnicate", "unknown command `frobnicate`"),
        ("hypo 'unbalanced", "unbalanced quotes"),
        (
            "test hzzzzzzz dig --rules-out-if ok",
            "no hypothesis has id `hzzzzzzz`",
        ),
        ("test h dig --rules-out-if ok", "ambiguous"),
        ("result nothing saw --ruled-out", "no test has id `nothing`"),
        (
            &format!("result {h} saw --ruled-out"),
            "is a hypothesis, but a test is needed",
        ),
        (&format!("test {h} dig"), "missing --rules-out-if"),
        ("status sideways", "`sideways` is not a status"),
        ("open inothere", "no incident matches `inothere`"),
        (
            "symptom slow --since 25:00",
            "`25:00` is not a time: give HH:MM (UTC, today; a time later than now means yesterday) or RFC 3339",
        ),
        ("followup alert --due soon", "`soon` is not a due date: give YYYY-MM-DD"),
    ];
    let lines: Vec<&str> = cases
        .iter()
        .map(|(l, _)| *l)
        .chain(["timeline --all"])
        .collect();
    let (replies, stderr, code) = script(&dir, "bob", &lines);
    assert_eq!(code, 1, "a failed command makes the exit status non-zero");
    for ((line, want), reply) in cases.iter().zip(&replies) {
        assert_eq!(reply["ok"], false, "{line}");
        let err = reply["error"].as_str().unwrap();
        assert!(err.contains(want), "`{line}`: got `{err}`, want `{want}`");
        assert!(stderr.contains(want), "`{line}`: stderr lacks `{want}`");
    }
    assert_eq!(
        replies.len(),
        cases.len() + 1,
        "exactly one JSON line per command"
    );
    assert_eq!(replies.last().unwrap()["total"], 3, "nothing was lost");
}

#[test]
fn one_process_per_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let mut first = Node::offline(&dir, "carol");
    first.ok("whoami");
    let (_, stderr, code) = script(&dir, "carol", &["whoami"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("is in use by another dontpanic process")
            && stderr.contains(&first.pid().to_string()),
        "{stderr}"
    );
    first.quit();
    let (replies, _, code) = script(&dir, "carol", &["whoami"]);
    assert_eq!(code, 0);
    let key = replies[0]["key"].as_str().unwrap();
    assert_eq!(key.len(), 64);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn first_run_without_a_name_and_without_a_terminal_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(support::bin())
        .args([
            "--data-dir",
            tmp.path().join("x").to_str().unwrap(),
            "--offline",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --name"));
}

#[test]
fn export_writes_a_document_automerge_can_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let file = tmp.path().join("incident.automerge");
    let (r, _, code) = script(
        &dir,
        "dan",
        &[
            "new export me",
            "note one",
            &format!("export --out {}", file.display()),
        ],
    );
    assert_eq!(code, 0, "{r:?}");
    use automerge::ReadDoc;
    let doc = automerge::Automerge::load(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc.get_changes(&[]).len(), 1, "the state, not the history");
    let title = doc.get(automerge::ROOT, "title").unwrap().unwrap().0;
    assert_eq!(title.to_string(), "\"export me\"");
    assert!(doc.get(automerge::ROOT, "timeline").unwrap().is_some());
    assert!(
        doc.get(automerge::ROOT, "join_secret").unwrap().is_none(),
        "an exported file must not be an invite"
    );
}

/// Every edit the process acknowledged survives SIGKILL, at several kill points.
#[test]
fn acknowledged_edits_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let (_, _, code) = script(&dir, "erin", &["new crash test"]);
    assert_eq!(code, 0);
    let mut acked: Vec<String> = Vec::new();
    for round in 0..4 {
        let mut n = Node::offline(&dir, "erin");
        for i in 0..(5 + round * 7) {
            acked.push(id(&n.ok(&format!("hypo round{round}-{i}"))));
        }
        // Fire more edits without waiting, then kill while they are being written.
        let stdin_burst: Vec<String> = (0..50).map(|i| format!("note burst{round}-{i}")).collect();
        for line in &stdin_burst {
            let _ = n.send_raw(line);
        }
        std::thread::sleep(Duration::from_millis(round as u64 * 3));
        // Whatever was printed was durable: those count as acknowledged too.
        acked.extend(
            n.kill()
                .iter()
                .filter_map(|r| r["id"].as_str().map(String::from)),
        );
    }
    let (replies, stderr, code) = script(&dir, "erin", &["timeline --all"]);
    assert_eq!(code, 0, "{stderr}");
    let items: Vec<&str> = replies[0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["item"].as_str())
        .collect();
    for a in &acked {
        assert!(
            items.contains(&a.as_str()),
            "acknowledged {a} is missing after SIGKILL"
        );
    }
}

fn journal_of(dir: &Path) -> PathBuf {
    let incidents = dir.join("incidents");
    let inc = fs::read_dir(&incidents)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    inc.join("journal")
}

/// Each case damages the journal of a 10-note incident and says which
/// entries (0 = the incident's creation, 1..=10 the notes) stay visible.
/// Every local change depends on the one before (Automerge's hash chain), so
/// when a middle record is lost the later ones are kept in the journal but
/// wait, reported, for a peer to supply the missing change.
#[test]
fn damaged_journals_are_reported_and_valid_history_kept() {
    type Damage = fn(&mut Vec<u8>, &[usize]);
    let cases: Vec<(&str, Damage, Vec<usize>, usize)> = vec![
        (
            "torn tail",
            |b, o| b.truncate(o[10] + 20),
            (0..10).collect(),
            10,
        ),
        (
            "flipped byte in a middle record",
            |b, o| b[o[5] + 60] ^= 0x55,
            (0..5).collect(),
            10,
        ),
        (
            "garbage over a record header",
            |b, o| b[o[3]..o[3] + 12].copy_from_slice(b"garbagegarba"),
            (0..3).collect(),
            10,
        ),
        (
            "garbage appended",
            |b, _| b.extend_from_slice(&[0xAB; 300]),
            (0..11).collect(),
            11,
        ),
    ];
    for (name, damage, survivors, records_kept) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let mut lines = vec!["new damage test".to_string()];
        lines.extend((1..=10).map(|i| format!("note n{i}")));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (_, _, code) = script(&dir, "fay", &refs);
        assert_eq!(code, 0);
        let journal = journal_of(&dir);
        let mut bytes = fs::read(&journal).unwrap();
        let offsets = support::record_offsets(&bytes);
        assert_eq!(offsets.len(), 11, "{name}");
        damage(&mut bytes, &offsets);
        fs::write(&journal, &bytes).unwrap();

        let (replies, stderr, code) = script(&dir, "fay", &["timeline --all"]);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(
            stderr.contains("warning:") && stderr.contains(&journal.display().to_string()),
            "{name}: {stderr}"
        );
        let kept: Vec<&str> = replies[0]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["text"].as_str().unwrap())
            .collect();
        let want: Vec<String> = survivors
            .iter()
            .map(|i| {
                if *i == 0 {
                    "opened incident".to_string()
                } else {
                    format!("note: n{i}")
                }
            })
            .collect();
        assert_eq!(kept.len(), want.len(), "{name}: {kept:?}");
        for (k, w) in kept.iter().zip(&want) {
            assert!(k.starts_with(w.as_str()), "{name}: {k} vs {w}");
        }
        let repaired = fs::read(&journal).unwrap();
        assert_eq!(
            support::record_offsets(&repaired).len(),
            records_kept,
            "{name}: every valid record is kept"
        );
        if records_kept > survivors.len() {
            assert!(
                stderr.contains("missing earlier change"),
                "{name}: {stderr}"
            );
        }
        let aside: Vec<PathBuf> = fs::read_dir(journal.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("journal.damaged-")
            })
            .collect();
        assert_eq!(aside.len(), 1, "{name}");
        assert_eq!(
            fs::read(&aside[0]).unwrap(),
            bytes,
            "{name}: the damaged original is kept whole"
        );
        let (_, stderr, code) = script(&dir, "fay", &["note after repair"]);
        assert_eq!(code, 0);
        assert!(
            !stderr.contains(" at byte "),
            "{name}: the repaired journal has no damage: {stderr}"
        );
    }
}

#[test]
fn unreadable_settings_and_loose_keys_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let (_, _, code) = script(&dir, "gus", &["new x"]);
    assert_eq!(code, 0);
    fs::write(dir.join("config.json"), "{not json").unwrap();
    // Settings are not history: named, set aside, and the start goes on.
    let (_, stderr, code) = script(&dir, "gus", &["whoami"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("config.json") && stderr.contains("config.json.damaged-"),
        "{stderr}"
    );
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.join("device.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let (_, stderr, code) = script(&dir, "gus", &["whoami"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("device.key") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}

#[test]
fn a_line_that_is_not_utf8_is_refused_and_the_script_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(support::bin())
        .args([
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--name",
            "alice",
        ])
        .args(["--json", "--offline"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"new \"outage\"\nnote \"caf\xe9 latin-1\"\n")
            .unwrap();
        stdin
            .write_all(b"note \"\x1b[2Jcleared?\"\ntimeline\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let replies: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 4, "one reply per line: {replies:?}");
    assert_eq!(replies[1]["ok"], false);
    let err = replies[1]["error"].as_str().unwrap();
    assert!(err.contains("line 2") && err.contains("UTF-8"), "{err}");
    assert_eq!(replies[2]["ok"], true, "the line after still ran");
    assert_eq!(out.status.code(), Some(1));
    // The same timeline as text shows the escape, it does not obey it.
    let (text, _, _) = {
        let o = std::process::Command::new(support::bin())
            .args(["--data-dir", tmp.path().to_str().unwrap(), "--offline"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b"timeline\n")?;
                c.wait_with_output()
            })
            .unwrap();
        (String::from_utf8(o.stdout).unwrap(), o.stderr, o.status)
    };
    assert!(text.contains("\\u{1b}[2Jcleared?"), "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
}
