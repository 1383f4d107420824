use super::*;
use crate::fixtures::alice;

fn fresh() -> Incident {
    Incident::create("checkout 500s", Severity::Sev2, &alice(), 1_000)
        .unwrap()
        .0
}

fn add(i: &mut Incident, edit: Edit) -> ItemId {
    i.apply(edit, &alice(), 2_000).unwrap().id.unwrap()
}

fn hypo(i: &mut Incident, text: &str) -> ItemId {
    add(i, Edit::AddHypothesis { text: text.into() })
}

fn test_of(i: &mut Incident, h: &ItemId) -> ItemId {
    add(
        i,
        Edit::AddTest {
            hypothesis: i.short(h),
            action: "dig @resolver".into(),
            rules_out_if: "answers correctly".into(),
        },
    )
}

fn hyp_field(i: &Incident, h: &ItemId, f: &str) -> String {
    i.view()
        .unwrap()
        .item(h.as_str())
        .unwrap()
        .get(f)
        .to_string()
}

#[test]
fn ruling_out_result_marks_hypothesis_and_names_the_test() {
    let mut i = fresh();
    let h = hypo(&mut i, "DNS");
    let t = test_of(&mut i, &h);
    let applied = i
        .apply(
            Edit::AddResult {
                test: t.to_string(),
                observation: "resolvers answer correctly".into(),
                verdict: Verdict::RulesOut,
            },
            &alice(),
            3_000,
        )
        .unwrap();
    assert_eq!(hyp_field(&i, &h, "status"), "ruled-out");
    assert_eq!(hyp_field(&i, &h, "ruled_out_by"), t.as_str());
    assert!(
        applied.summary.starts_with("ruled out"),
        "{}",
        applied.summary
    );
}

#[test]
fn other_verdicts_leave_the_hypothesis_open() {
    for verdict in [Verdict::DoesNotRuleOut, Verdict::Inconclusive] {
        let mut i = fresh();
        let h = hypo(&mut i, "DNS");
        let t = test_of(&mut i, &h);
        add(
            &mut i,
            Edit::AddResult {
                test: t.to_string(),
                observation: "timeouts".into(),
                verdict,
            },
        );
        assert_eq!(hyp_field(&i, &h, "status"), "open", "{verdict}");
    }
}

#[test]
fn confirm_needs_evidence() {
    let mut i = fresh();
    let h = hypo(&mut i, "bad deploy");
    let err = i
        .apply(
            Edit::Confirm {
                hypothesis: h.to_string(),
                evidence: "  ".into(),
            },
            &alice(),
            3_000,
        )
        .unwrap_err();
    assert!(matches!(err, RuleError::NoEvidence(_)));
    i.apply(
        Edit::Confirm {
            hypothesis: h.to_string(),
            evidence: "rollback stopped the errors".into(),
        },
        &alice(),
        3_000,
    )
    .unwrap();
    assert_eq!(hyp_field(&i, &h, "status"), "confirmed");
    assert_eq!(hyp_field(&i, &h, "evidence"), "rollback stopped the errors");
}

#[test]
fn confirm_by_test_records_the_test_and_checks_it_belongs() {
    let mut i = fresh();
    let h = hypo(&mut i, "bad deploy");
    let other = hypo(&mut i, "DNS");
    let t = test_of(&mut i, &h);
    let t_other = test_of(&mut i, &other);
    let err = i
        .apply(
            Edit::Confirm {
                hypothesis: h.to_string(),
                evidence: t_other.to_string(),
            },
            &alice(),
            3_000,
        )
        .unwrap_err();
    assert!(matches!(err, RuleError::TestOfOtherHypothesis { .. }));
    add_confirm(&mut i, &h, t.as_str());
    assert_eq!(hyp_field(&i, &h, "confirmed_by"), t.as_str());
}

fn add_confirm(i: &mut Incident, h: &ItemId, evidence: &str) {
    i.apply(
        Edit::Confirm {
            hypothesis: h.to_string(),
            evidence: evidence.into(),
        },
        &alice(),
        3_000,
    )
    .unwrap();
}

#[test]
fn fix_without_confirmed_cause_needs_a_reason_that_the_report_shows() {
    let mut i = fresh();
    let err = i
        .apply(
            Edit::AddFix {
                text: "restart pods".into(),
                unconfirmed_because: None,
            },
            &alice(),
            3_000,
        )
        .unwrap_err();
    assert_eq!(err, RuleError::FixWithoutCause);
    add(
        &mut i,
        Edit::AddFix {
            text: "restart pods".into(),
            unconfirmed_because: Some("revenue loss is 10k/min".into()),
        },
    );
    let report = render::report(&i.view().unwrap());
    assert!(report.contains("before the cause was confirmed, because: revenue loss is 10k/min"));
}

#[test]
fn fix_after_confirmation_needs_no_reason() {
    let mut i = fresh();
    let h = hypo(&mut i, "bad deploy");
    add_confirm(&mut i, &h, "rollback fixed canary");
    add(
        &mut i,
        Edit::AddFix {
            text: "roll back".into(),
            unconfirmed_because: None,
        },
    );
    assert!(!render::report(&i.view().unwrap()).contains("before the cause was confirmed"));
}

#[test]
fn resolved_incident_refuses_edits_until_reopened() {
    let mut i = fresh();
    add_status(&mut i, Status::Resolved);
    let refused = [
        Edit::AddHypothesis { text: "x".into() },
        Edit::SetStatus {
            status: Status::Investigating,
            because: None,
        },
        Edit::SetTitle("other".into()),
        Edit::SetSeverity(Severity::Sev1),
    ];
    for edit in refused {
        assert_eq!(
            i.apply(edit.clone(), &alice(), 4_000).unwrap_err(),
            RuleError::Resolved,
            "{edit:?}"
        );
    }
    // Post-incident work is allowed without reopening.
    add(
        &mut i,
        Edit::AddFollowUp {
            text: "add alert".into(),
            owner: None,
            due: None,
        },
    );
    i.apply(
        Edit::Reopen {
            reason: "errors are back".into(),
        },
        &alice(),
        5_000,
    )
    .unwrap();
    assert_eq!(i.status(), Status::Investigating);
    let v = i.view().unwrap();
    assert!(v
        .timeline
        .iter()
        .any(|e| e.text == "reopened: errors are back"));
}

fn add_status(i: &mut Incident, s: Status) {
    i.apply(
        Edit::SetStatus {
            status: s,
            because: Some("test".into()),
        },
        &alice(),
        3_000,
    )
    .unwrap();
}

#[test]
fn reopen_needs_a_resolved_incident() {
    let mut i = fresh();
    let err = i
        .apply(Edit::Reopen { reason: "x".into() }, &alice(), 3_000)
        .unwrap_err();
    assert_eq!(err, RuleError::NotResolved(Status::Investigating));
}

#[test]
fn ids_resolve_by_prefix_and_kind() {
    let mut i = fresh();
    let h = hypo(&mut i, "DNS");
    let short = i.short(&h);
    assert_eq!(short.len(), MIN_SHORT_LEN);
    assert_eq!(i.resolve(Kind::Hypothesis, &short).unwrap(), h);
    assert_eq!(
        i.resolve(Kind::Hypothesis, &short.to_uppercase()).unwrap(),
        h
    );
    let t = test_of(&mut i, &h);
    let cases: Vec<(String, &str)> = vec![
        (t.to_string(), "WrongKind"),
        ("hzzzzzzz".into(), "UnknownId"),
        ("h".into(), "AmbiguousOrUnique"),
    ];
    for (typed, want) in cases {
        let got = i.resolve(Kind::Hypothesis, &typed);
        match want {
            "WrongKind" => assert!(matches!(got, Err(RuleError::WrongKind { .. })), "{typed}"),
            "UnknownId" => assert!(matches!(got, Err(RuleError::UnknownId { .. })), "{typed}"),
            _ => assert_eq!(got.unwrap(), h),
        }
    }
}

#[test]
fn every_edit_lands_in_the_timeline_with_author_and_time() {
    let mut i = fresh();
    hypo(&mut i, "DNS");
    i.apply(
        Edit::SetRole {
            role: Role::Commander,
            name: "alice".into(),
        },
        &alice(),
        7_000,
    )
    .unwrap();
    let v = i.view().unwrap();
    assert_eq!(v.timeline.len(), 3);
    let last = v.timeline.last().unwrap();
    assert_eq!(
        (last.at, last.name.as_str(), last.by.as_str()),
        (7_000, "alice", alice().key.as_str())
    );
    assert_eq!(v.roles.get("commander").map(String::as_str), Some("alice"));
}

#[test]
fn roles_go_to_members_and_say_whom_they_replace() {
    let mut i = fresh();
    let role = |name: &str| Edit::SetRole {
        role: Role::Commander,
        name: name.into(),
    };
    let summary =
        |i: &mut Incident, name: &str| i.apply(role(name), &alice(), 1).map(|a| a.summary);
    assert_eq!(summary(&mut i, " ALICE ").unwrap(), "commander: alice");
    assert_eq!(
        summary(&mut i, "alice").unwrap(),
        "commander: alice (already held)"
    );
    let err = summary(&mut i, "bob").unwrap_err();
    assert!(
        matches!(&err, RuleError::UnknownMember { members, .. } if members == &["alice".to_string()]),
        "{err}"
    );
    assert!(err.to_string().contains("`bob` is not a member"), "{err}");
    let bob = "bb".repeat(32);
    i.apply(
        Edit::AddMember {
            key: bob.clone(),
            name: "Bob Smith".into(),
        },
        &alice(),
        1,
    )
    .unwrap();
    assert_eq!(
        summary(&mut i, "bob smith").unwrap(),
        "commander: Bob Smith (replaces alice)"
    );
    assert_eq!(
        summary(&mut i, "bbbbbb").unwrap(),
        "commander: Bob Smith (already held)",
        "a key prefix names the member too"
    );
    assert_eq!(
        i.view().unwrap().roles.get("commander").map(String::as_str),
        Some("Bob Smith")
    );
}

#[test]
fn empty_texts_are_refused() {
    let mut i = fresh();
    for edit in [
        Edit::AddHypothesis { text: " ".into() },
        Edit::AddNote { text: "".into() },
        Edit::SetTitle("".into()),
    ] {
        assert!(matches!(
            i.apply(edit, &alice(), 1).unwrap_err(),
            RuleError::Empty(_)
        ));
    }
}

#[test]
fn concurrent_edits_of_one_field_show_as_conflicts_and_resolve() {
    let mut a = fresh();
    let mut b = Incident::from_doc(a.doc().fork()).unwrap();
    a.apply(Edit::SetTitle("DNS outage".into()), &alice(), 2)
        .unwrap();
    b.apply(Edit::SetTitle("resolver outage".into()), &alice(), 2)
        .unwrap();
    a.doc_mut().merge(&mut b.doc().clone()).unwrap();
    let conflicts = a.conflicts();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].field, "title");
    assert_eq!(conflicts[0].values.len(), 2);
    a.apply(
        Edit::Resolve {
            field: "title".into(),
            value: "DNS outage".into(),
        },
        &alice(),
        3,
    )
    .unwrap();
    assert!(a.conflicts().is_empty());
    assert_eq!(a.view().unwrap().title, "DNS outage");
}

#[test]
fn concurrent_items_from_two_peers_never_collide() {
    let mut a = fresh();
    let mut b = Incident::from_doc(a.doc().fork()).unwrap();
    let ha: Vec<ItemId> = (0..50).map(|n| hypo(&mut a, &format!("a{n}"))).collect();
    let hb: Vec<ItemId> = (0..50).map(|n| hypo(&mut b, &format!("b{n}"))).collect();
    a.doc_mut().merge(&mut b.doc().clone()).unwrap();
    let v = a.view().unwrap();
    assert_eq!(v.items(Kind::Hypothesis).len(), 100);
    for id in ha.iter().chain(&hb) {
        assert!(v.item(id.as_str()).is_some());
    }
}

#[test]
fn remote_text_cannot_drive_the_terminal_or_forge_a_line() {
    use crate::render::{continued, one_line, terminal_safe};
    let cases: &[(&str, &str, &str)] = &[
        // (input, one line, continued under 4 columns)
        ("plain", "plain", "plain"),
        (
            "\x1b[2J\x1b[31mred",
            "\\u{1b}[2J\\u{1b}[31mred",
            "\\u{1b}[2J\\u{1b}[31mred",
        ),
        (
            "typo\n[alice] confirmed h1",
            "typo ⏎ [alice] confirmed h1",
            "typo\n    │ [alice] confirmed h1",
        ),
        ("cr\roverwrite", "cr\\u{d}overwrite", "cr\\u{d}overwrite"),
        (
            "bell\x07 del\x7f c1\u{9b}",
            "bell\\u{7} del\\u{7f} c1\\u{9b}",
            "bell\\u{7} del\\u{7f} c1\\u{9b}",
        ),
        (
            "rtl\u{202e}kcatta",
            "rtl\\u{202e}kcatta",
            "rtl\\u{202e}kcatta",
        ),
        (
            "tab\tok, é ünïcode",
            "tab\tok, é ünïcode",
            "tab\tok, é ünïcode",
        ),
    ];
    for (input, line, cont) in cases {
        assert_eq!(one_line(input), *line, "{input:?}");
        assert_eq!(continued(input, 4), *cont, "{input:?}");
        assert!(!one_line(input).contains('\n'));
        assert!(!terminal_safe(input).contains('\x1b'));
    }
}

fn run_record(output: &str) -> evidence::Record {
    evidence::Record {
        source: evidence::Source::Run {
            command: "dig example.com".into(),
            ended: evidence::Ended::Exit(3),
            stopped: None,
            timeout_ms: 120_000,
            duration_ms: 1_250,
        },
        output: output.into(),
        cut_bytes: 10,
        redactions: 2,
    }
}

#[test]
fn evidence_is_recorded_once_under_its_item_and_read_back() {
    let mut i = fresh();
    let h = hypo(&mut i, "DNS");
    let t = test_of(&mut i, &h);
    let applied = i
        .apply(
            Edit::AddEvidence {
                of: i.short(&t),
                record: run_record("line 1\nline 2\n"),
            },
            &alice(),
            3_000,
        )
        .unwrap();
    let e = applied.id.unwrap();
    assert_eq!(e.kind(), Kind::Evidence);
    assert!(
        applied
            .summary
            .contains("`dig example.com` exited 3 after 1.2 s")
            && applied.summary.contains("2 secret(s) redacted"),
        "{}",
        applied.summary
    );
    let v = i.view().unwrap();
    let got: Vec<&Evidence> = v.evidence_of(t.as_str()).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, e);
    assert_eq!(got[0].record, run_record("line 1\nline 2\n"));
    assert_eq!(got[0].by, alice().key);
    assert!(matches!(v.resolve(&got[0].short), Ok(Found::Evidence(_))));
    assert!(matches!(v.resolve(&i.short(&t)), Ok(Found::Item(_))));
    assert!(v.resolve("zzzz").is_err() && v.resolve("i").is_err());
    assert_eq!(v.timeline.last().unwrap().kind, "evidence");
    // A tested test, a resolved incident: evidence still comes.
    i.apply(
        Edit::AddResult {
            test: t.to_string(),
            observation: "answers".into(),
            verdict: Verdict::DoesNotRuleOut,
        },
        &alice(),
        4_000,
    )
    .unwrap();
    add_status(&mut i, Status::Resolved);
    i.apply(
        Edit::AddEvidence {
            of: h.to_string(),
            record: run_record("later"),
        },
        &alice(),
        5_000,
    )
    .unwrap();
    let err = i
        .apply(
            Edit::AddEvidence {
                of: "t0000000".into(),
                record: run_record("x"),
            },
            &alice(),
            6_000,
        )
        .unwrap_err();
    assert!(matches!(err, RuleError::UnknownId { .. }), "{err}");
}

#[test]
fn two_first_evidences_made_apart_both_survive_the_merge() {
    let mut i = fresh();
    let h = hypo(&mut i, "DNS");
    let mut other = Incident::from_doc(i.doc().fork()).unwrap();
    for (inc, out) in [(&mut i, "mine"), (&mut other, "theirs")] {
        inc.apply(
            Edit::AddEvidence {
                of: h.to_string(),
                record: run_record(out),
            },
            &alice(),
            3_000,
        )
        .unwrap();
    }
    i.doc_mut().merge(&mut other.doc().fork()).unwrap();
    let v = i.view().unwrap();
    let mut outputs: Vec<&str> = v
        .evidence_of(h.as_str())
        .map(|e| e.record.output.as_str())
        .collect();
    outputs.sort();
    assert_eq!(outputs, ["mine", "theirs"]);
}

#[test]
fn evidence_shows_trimmed_and_quotes_safely_in_the_report() {
    let mut i = fresh();
    let h = hypo(&mut i, "DNS");
    let t = test_of(&mut i, &h);
    let lines: Vec<String> = (1..=50).map(|n| format!("line {n}")).collect();
    let output = format!("```\n\x1b[31m## not a heading\n{}", lines.join("\n"));
    i.apply(
        Edit::AddEvidence {
            of: t.to_string(),
            record: run_record(&output),
        },
        &alice(),
        3_000,
    )
    .unwrap();
    let v = i.view().unwrap();
    let e = v.evidence_of(t.as_str()).next().unwrap();
    let shown = render::evidence_text(&v, e, false);
    assert!(
        shown.contains("│ line 1\n") && shown.contains("│ line 50\n"),
        "{shown}"
    );
    assert!(!shown.contains("line 30\n"), "{shown}");
    assert!(
        shown.contains("--full") && !shown.contains('\x1b'),
        "{shown}"
    );
    let full = render::evidence_text(&v, e, true);
    assert!(
        full.contains("│ line 30\n") && !full.contains("--full"),
        "{full}"
    );

    let report = render::report(&v);
    let at = report
        .find("- evidence: ran `dig example.com` — exited 3")
        .unwrap();
    let block = report.get(at..).unwrap();
    // Indented under the test, fenced by more backticks than the output holds.
    assert!(block.contains("\n      ````\n      ```\n"), "{report}");
    assert!(block.contains("… 36 more line(s) …"), "{report}");
    assert!(!report.contains('\x1b'), "{report}");
}

#[test]
fn completions_say_which_items_are_still_open() {
    let mut i = fresh();
    let dns = add(
        &mut i,
        Edit::AddHypothesis {
            text: "DNS\nfailing".into(),
        },
    );
    let deploy = add(
        &mut i,
        Edit::AddHypothesis {
            text: "bad deploy".into(),
        },
    );
    let test = |h: &ItemId, action: &str| Edit::AddTest {
        hypothesis: h.to_string(),
        action: action.into(),
        rules_out_if: "ok".into(),
    };
    let t_dns = add(&mut i, test(&dns, "dig"));
    let t_deploy = add(&mut i, test(&deploy, "roll back canary"));
    add(
        &mut i,
        Edit::AddResult {
            test: t_dns.to_string(),
            observation: "answers".into(),
            verdict: Verdict::RulesOut,
        },
    );
    let found = i.completions();
    let open = |id: &ItemId| {
        let c = found
            .iter()
            .find(|c| id.as_str().starts_with(&c.id))
            .unwrap();
        (c.label.as_str(), c.open)
    };
    assert_eq!(open(&dns), ("DNS ⏎ failing", false));
    assert_eq!(open(&deploy), ("bad deploy", true));
    assert_eq!(open(&t_dns), ("dig", false));
    assert_eq!(open(&t_deploy), ("roll back canary", true));
}
