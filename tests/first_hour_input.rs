//! The responder's first hour at the prompt, through the real binary:
//! free text as typed, blocks of lines, current values, did-you-mean,
//! help, the roster rule for roles, and the `peers` table.

mod support;

use serde_json::Value;
use support::{script, Node};

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
        report.contains("note: here's the log:\n  ```\n    ERR connection refused\n  ```"),
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
