//! The responder's first hour at the prompt, through the real binary:
//! free text as typed, blocks of lines, current values, did-you-mean,
//! help, the roster rule for roles, and the `peers` table.

mod support;

use serde_json::Value;
use support::{script, script_text, Node};

fn texts(replies: &[Value]) -> Vec<String> {
    replies
        .iter()
        .map(|r| {
            r["summary"]
                .as_str()
                .or(r["error"].as_str())
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn free_text_is_taken_as_typed_and_a_block_is_one_note() {
    let tmp = tempfile::tempdir().unwrap();
    let (replies, stderr, code) = script(
        tmp.path(),
        "alice",
        &[
            "new payments don't settle --sev 2",
            "note don't restart the pods yet",
            "hypo the cache's TTL is too long",
            "fix roll back now --unconfirmed-because revenue loss, it can't wait",
            "note \"quoted text still works\"",
            "note",
            "here's the log:",
            "  ERR connection refused",
            ".",
            "symptom checkout's 500s --where eu-west 1 --impact can't pay",
            "timeline --all",
            "report",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let said = texts(&replies);
    assert!(
        said[1].ends_with("note: don't restart the pods yet"),
        "{said:?}"
    );
    assert!(said[2].contains("the cache's TTL is too long"), "{said:?}");
    assert!(said[3].contains("roll back now"), "{said:?}");
    assert!(
        said[4].ends_with("note: quoted text still works"),
        "{said:?}"
    );
    // The block: one reply, one entry, its lines kept.
    assert!(
        said[5].ends_with("note: here's the log:\n  ERR connection refused"),
        "{said:?}"
    );
    let entries = replies[7]["entries"].as_array().unwrap();
    let notes: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "note")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(notes.len(), 3, "{notes:?}");
    let fix = entries.iter().find(|e| e["kind"] == "fix").unwrap();
    assert!(
        fix["text"]
            .as_str()
            .unwrap()
            .contains("revenue loss, it can't wait"),
        "{fix}"
    );
    let symptom = entries.iter().find(|e| e["kind"] == "symptom").unwrap();
    assert!(
        symptom["text"]
            .as_str()
            .unwrap()
            .contains("checkout's 500s"),
        "{symptom}"
    );
    // In the report the block is a code block under its timeline item.
    let report = replies[8]["text"].as_str().unwrap();
    assert!(
        report.contains("note:\n  ```\n  here's the log:\n    ERR connection refused\n  ```"),
        "{report}"
    );
}

#[test]
fn a_block_left_open_at_the_end_of_a_script_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (replies, stderr, code) = script(
        tmp.path(),
        "alice",
        &["new outage", "note", "last words", "of the script"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        texts(&replies)[1].ends_with("note: last words\nof the script"),
        "{replies:?}"
    );
}

#[test]
fn a_block_through_a_running_node_answers_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = Node::offline(&tmp.path().join("a"), "alice");
    n.ok("new outage");
    for line in ["note", "one", "two", "."] {
        n.send_raw(line).unwrap();
    }
    let v = n.reply("the block");
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["summary"].as_str().unwrap().ends_with("note: one\ntwo"),
        "{v}"
    );
    assert_eq!(n.ok("status")["status"], "investigating");
}

#[test]
fn bare_status_sev_and_role_show_the_current_values() {
    let tmp = tempfile::tempdir().unwrap();
    let (r, stderr, code) = script(
        tmp.path(),
        "alice",
        &[
            "new checkout down --sev 2",
            "status",
            "sev",
            "role",
            "role commander alice",
            "role ic",
            "role commander bob",
            "role",
            "status identified",
            "status",
        ],
    );
    assert_eq!(code, 1, "only the non-member fails: {stderr}");
    assert_eq!(r[1]["status"], "investigating", "{}", r[1]);
    assert_eq!(r[2]["severity"], "sev2", "{}", r[2]);
    assert_eq!(r[3]["roles"]["commander"], Value::Null, "{}", r[3]);
    assert_eq!(r[4]["summary"], "commander: alice", "{}", r[4]);
    assert_eq!(
        r[5]["roles"],
        serde_json::json!({"commander": "alice"}),
        "{}",
        r[5]
    );
    let refused = r[6]["error"].as_str().unwrap();
    assert!(
        refused.contains("`bob` is not a member of this incident; the members are: alice"),
        "{refused}"
    );
    assert_eq!(
        r[7]["roles"]["commander"], "alice",
        "the commander was kept"
    );
    assert_eq!(r[9]["status"], "identified", "{}", r[9]);
    // And for a human:
    let (out, _, _) = script_text(tmp.path(), "alice", &["status", "sev", "role"]);
    assert!(out.contains("status: identified (since "), "{out}");
    assert!(
        out.contains("severity: SEV2 — Major: a core function degraded for many."),
        "{out}"
    );
    assert!(
        out.contains("commander  alice") && out.contains("scribe     (nobody)"),
        "{out}"
    );
}

#[test]
fn near_misses_get_a_did_you_mean_and_help_says_aliases_and_severities() {
    let tmp = tempfile::tempdir().unwrap();
    let (r, _, _) = script(
        tmp.path(),
        "alice",
        &[
            "new outage",
            "hypoo bad deploy",
            "status resolve",
            "sev sev5",
            "role comander alice",
            "result t1 saw it --ruled-ot",
            "help",
            "help sev",
            "help stauts",
        ],
    );
    let err = |i: usize| r[i]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        err(1).contains("unknown command `hypoo` (did you mean `hypo`?)"),
        "{}",
        err(1)
    );
    assert!(err(2).contains("did you mean `resolved`?"), "{}", err(2));
    assert!(err(3).contains("did you mean `sev1`?"), "{}", err(3));
    assert!(err(4).contains("did you mean `commander`?"), "{}", err(4));
    assert!(err(5).contains("did you mean `--ruled-out`?"), "{}", err(5));
    let help = r[6]["text"].as_str().unwrap();
    assert!(
        help.contains("(also: hypothesis, h)") && help.contains("free text needs no quotes"),
        "{help}"
    );
    let sev = r[7]["text"].as_str().unwrap();
    for line in [
        "SEV1",
        "Critical: total outage or data loss.",
        "SEV4",
        "Low: cosmetic or internal.",
    ] {
        assert!(sev.contains(line), "{sev}");
    }
    assert!(err(8).contains("did you mean `status`?"), "{}", err(8));
}

#[test]
fn join_at_the_prompt_says_what_was_joined_and_shows_the_brief() {
    let tmp = tempfile::tempdir().unwrap();
    let mut alice = Node::loopback(&tmp.path().join("alice"), "alice", &[]);
    alice.ok("new checkout returns 500s --sev 2");
    alice.ok("hypo bad deploy of payments v42");
    let invite = alice.invite();
    let mut bob = Node::loopback(&tmp.path().join("bob"), "bob", &[]);
    let own = bob.ok("new bob's own drill")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let joined = bob.ok(&format!("join {invite}"));
    assert_eq!(joined["title"], "checkout returns 500s", "{joined}");
    assert_eq!(joined["severity"], "sev2", "{joined}");
    assert_eq!(joined["status"], "investigating", "{joined}");
    assert_eq!(
        joined["members"],
        serde_json::json!(["alice", "bob"]),
        "{joined}"
    );
    assert_eq!(joined["switched_from"], own.as_str(), "{joined}");
    let brief = bob.brief();
    assert!(brief.contains("bad deploy of payments v42"), "{brief}");
    // `peers -v` answers with the same JSON rows as `peers`.
    let verbose = bob.ok("peers -v");
    let rows = verbose["peers"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|p| p["name"] == "alice" && p["peer_id"].is_string() && p["address"].is_string()),
        "{verbose}"
    );
    assert!(bob.cmd("peers -x")["error"]
        .as_str()
        .unwrap()
        .contains("unexpected argument `-x`"));
    // The same for a human: what, who, the switch, then the brief.
    let text = joined_text(&tmp.path().join("carol"), &alice.invite());
    assert!(
        text.contains("joined i") && text.contains(": checkout returns 500s"),
        "{text}"
    );
    assert!(
        text.contains("SEV2 · investigating · members: alice, bob, carol"),
        "{text}"
    );
    assert!(text.contains("bad deploy of payments v42"), "{text}");
}

/// `dontpanic join <invite>` without `--json`, quitting right after: what it printed.
fn joined_text(dir: &std::path::Path, invite: &str) -> String {
    let out = std::process::Command::new(support::bin())
        .args(["--data-dir", dir.to_str().unwrap(), "--name", "carol"])
        .args(support::LOOPBACK)
        .args(["join", invite])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_key_is_shown_in_one_fingerprint_format_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let (r, stderr, code) = script(
        tmp.path(),
        "alice",
        &[
            "new outage",
            "whoami",
            "log",
            "report",
            "remove 0000:1111 typo",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    let fp = r[1]["fingerprint"].as_str().unwrap().to_string();
    let key = r[1]["key"].as_str().unwrap();
    let grouped: Vec<String> = key
        .chars()
        .take(16)
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect())
        .collect();
    assert_eq!(fp, grouped.join(":"), "four groups of four hex digits");
    assert_eq!(r[2]["changes"][0]["fingerprint"], fp.as_str(), "{}", r[2]);
    let report = r[3]["text"].as_str().unwrap();
    assert!(report.contains(&format!("alice (key `{fp}`)")), "{report}");
    // A fingerprint as shown is accepted where a key prefix is.
    assert!(
        r[4]["error"]
            .as_str()
            .unwrap()
            .contains("`0000:1111` is not a member"),
        "{}",
        r[4]
    );
    let (own, _, _) = script(tmp.path(), "alice", &[&format!("remove {fp} me")]);
    assert!(
        own[0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot remove yourself"),
        "{}",
        own[0]
    );
}

#[test]
fn connect_errors_say_what_was_wrong_in_words() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = Node::loopback(&tmp.path().join("a"), "alice", &[]);
    let err = |n: &mut Node, addr: &str| {
        let v = n.cmd(&format!("connect {addr}"));
        assert_eq!(v["ok"], false, "{v}");
        v["error"].as_str().unwrap().to_string()
    };
    let cases = [
        (
            "127.0.0.1:4001",
            "it looks like host:port; type /ip4/127.0.0.1/tcp/4001",
        ),
        (
            "/ip4/127.0.0.1/tcp/1",
            "nothing is listening there (connection refused)",
        ),
        (
            "/ip4/127.0.0.1/tcp/1/ws",
            "is not an address this node can dial (use /ip4/",
        ),
        ("hello", "`hello` is not an address this node can dial"),
    ];
    for (addr, want) in cases {
        let e = err(&mut n, addr);
        assert!(e.contains(want), "{addr}: {e}");
        assert!(!e.contains("Multiaddr is not supported"), "{addr}: {e}");
    }
}
