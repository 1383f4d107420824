//! The responder's first hour through the real binary: stakeholder updates
//! (draft, post, write, list, the room's interval), the nudges said once,
//! and resolving with no fix.

mod support;

use std::fs;
use std::time::Duration;

use serde_json::Value;
use support::Node;

/// The kinds of the nudges a reply carries.
fn nudged(reply: &Value) -> Vec<String> {
    reply["nudges"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n["kind"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn text(reply: &Value) -> String {
    reply["text"].as_str().unwrap_or_default().to_string()
}

fn updates(n: &mut Node) -> Vec<Value> {
    n.ok("updates")["updates"]
        .as_array()
        .expect("updates")
        .clone()
}

#[test]
fn an_update_is_drafted_from_the_record_posted_written_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = Node::offline(&tmp.path().join("carol"), "carol");
    n.ok("new \"checkout 500s\" --sev 3");
    n.ok("symptom \"HTTP 500 on /checkout\" --impact \"customers cannot pay\"");
    let h = n.ok("hypo \"bad deploy v42\"")["id"]
        .as_str()
        .unwrap()
        .to_string();
    n.ok(&format!(
        "test {h} \"roll back the canary\" --rules-out-if \"errors continue\""
    ));

    let draft = n.ok("update");
    assert_eq!(draft["posted"], false);
    let d = text(&draft);
    for want in [
        "Status update: checkout 500s — SEV3, investigating",
        "Conditions\n- Impact: customers cannot pay\n",
        "- Cause: not confirmed yet",
        "Actions\n- Testing: roll back the canary (checking: bad deploy v42), by carol\n",
        "Needs\n- [fill in what you need",
    ] {
        assert!(d.contains(want), "no {want:?} in the draft:\n{d}");
    }
    assert!(updates(&mut n).is_empty(), "a draft is not recorded");

    // Posted as drafted, with the Needs given.
    n.ok("update --needs \"a DBA on call\" --post");
    // Posted as edited: the text given instead of the draft.
    n.ok("update --post all clear expected by 04:00");
    let posted = updates(&mut n);
    assert_eq!(posted.len(), 2, "{posted:?}");
    let first = posted[0]["text"].as_str().unwrap();
    assert!(
        first.starts_with("Status update: checkout 500s")
            && first.ends_with("Needs\n- a DBA on call"),
        "{first}"
    );
    assert_eq!(posted[1]["text"], "all clear expected by 04:00");
    assert_eq!(posted[1]["name"], "carol");
    let (_, timeline) = n.timeline();
    assert!(
        timeline
            .iter()
            .any(|t| t.contains("posted:\nall clear expected by 04:00")),
        "{timeline:?}"
    );
    let list = text(&n.ok("updates"));
    assert!(
        list.lines().count() == 2 && list.contains("carol      all clear expected by 04:00"),
        "{list}"
    );
    assert!(text(&n.ok("updates --all")).contains("Needs\n- a DBA on call"));

    // Written for a status page: the draft, never over an existing file
    // unless forced.
    let out = tmp.path().join("update.txt");
    let out_s = out.display().to_string();
    n.ok(&format!("update --out {out_s}"));
    assert!(fs::read_to_string(&out).unwrap().contains("Conditions\n"));
    fs::write(&out, "keep me").unwrap();
    let refused = n.cmd(&format!("update --out {out_s}"));
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"].as_str().unwrap().contains("--force"),
        "{refused}"
    );
    let refused = n.cmd(&format!("update --post not this one --out {out_s}"));
    assert_eq!(refused["ok"], false);
    assert_eq!(fs::read_to_string(&out).unwrap(), "keep me");
    assert_eq!(updates(&mut n).len(), 2, "a refused file posts nothing");
    n.ok(&format!("update --out {out_s} --force"));
    assert!(fs::read_to_string(&out)
        .unwrap()
        .starts_with("Status update:"));
    // The last posted one, as posted.
    let last = tmp.path().join("last.txt");
    n.ok(&format!("update --last --out {}", last.display()));
    assert_eq!(
        fs::read_to_string(&last).unwrap(),
        "all clear expected by 04:00\n"
    );
    n.quit();
}

#[test]
fn an_update_falls_due_after_the_interval_and_is_said_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = Node::offline(&tmp.path().join("carol"), "carol");
    n.ok("new \"slow search\" --sev 3");
    assert!(
        n.brief().contains("last update: none posted (no reminder"),
        "SEV3 has no default interval"
    );
    let set = n.ok("update --every 1s");
    assert!(
        text(&set).contains("every 1s") || set["summary"].as_str().unwrap().contains("every 1s")
    );
    std::thread::sleep(Duration::from_millis(1_500));
    let due = n.ok("note still slow");
    assert_eq!(nudged(&due), ["update-due"], "{due}");
    assert!(
        due["nudges"][0]["text"]
            .as_str()
            .unwrap()
            .contains("stakeholder update due"),
        "{due}"
    );
    assert!(nudged(&n.ok("note again")).is_empty(), "said once");
    let brief = n.brief();
    assert!(
        brief.contains("! stakeholder update due: none since opening"),
        "{brief}"
    );
    n.ok("update --post search is slow, we are on it");
    assert!(n
        .brief()
        .contains("last update: 0s ago by carol (due every 1s)"));
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        nudged(&n.ok("note later")),
        ["update-due"],
        "due again once a new interval has passed"
    );
    n.ok("update --every off");
    assert!(!n.brief().contains("update due"));
    assert!(n.brief().contains("no reminder"));
    n.quit();
}

#[test]
fn a_sev1_without_commander_is_nudged_once_and_a_fix_before_the_cause_too() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = Node::offline(&tmp.path().join("alice"), "alice");
    let opened = n.ok("new \"payments down\" --sev 1");
    assert_eq!(nudged(&opened), ["no-commander"], "{opened}");
    assert!(nudged(&n.ok("symptom \"all payments fail\"")).is_empty());
    assert!(nudged(&n.ok("hypo \"card processor outage\"")).is_empty());
    let fix = n.ok(
        "fix \"fail over to the backup processor\" --unconfirmed-because \"no payments at all\"",
    );
    assert_eq!(nudged(&fix), ["fix-before-cause"], "{fix}");
    assert!(nudged(&n.ok("note waiting")).is_empty());
    let brief = n.brief();
    assert!(
        brief.contains("! SEV1 with no commander")
            && brief.contains("came before a confirmed cause"),
        "{brief}"
    );
    n.ok("role commander alice");
    assert!(!n.brief().contains("no commander"));
    n.quit();
}

#[test]
fn resolving_with_no_fix_recorded_needs_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = Node::offline(&tmp.path().join("alice"), "alice");
    n.ok("new \"disk alarm\" --sev 4");
    let refused = n.cmd("status resolved");
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("status resolved --because <reason>"),
        "{refused}"
    );
    n.ok("status resolved --because \"false alarm: a test host\"");
    let (_, timeline) = n.timeline();
    assert!(
        timeline.iter().any(|t| t
            == "status investigating -> resolved (no fix recorded, because: false alarm: a test host)"),
        "{timeline:?}"
    );
    n.quit();
}
