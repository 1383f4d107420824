//! The report, section by section: records built edit by edit at known
//! times, rendered, and each section checked for what it must and must not
//! say.

use crate::render::report;
use crate::{Edit, Editor, Incident, IncidentView, Role, Severity, Status, Verdict};

/// 2026-12-01 03:00:00 UTC.
const T0: i64 = 1_796_094_000_000;

use crate::fixtures::{alice, bob, MIN};

/// A record made edit by edit: (minutes after 03:00, who, what).
struct Record {
    incident: Incident,
}

impl Record {
    fn new() -> Record {
        let (incident, _) =
            Incident::create("checkout returns 500s", Severity::Sev2, &alice(), T0).unwrap();
        Record { incident }
    }

    /// Applies `edit` at `minute` after 03:00; returns the created id.
    fn at(&mut self, minute: i64, who: &Editor, edit: Edit) -> String {
        self.incident
            .apply(edit, who, T0 + minute * MIN)
            .unwrap_or_else(|e| panic!("{e}"))
            .id
            .map(|i| i.to_string())
            .unwrap_or_default()
    }

    fn view(&self) -> IncidentView {
        self.incident.view().unwrap()
    }
}

fn symptom(text: &str, impact: Option<&str>, since: Option<&str>) -> Edit {
    Edit::AddSymptom {
        text: text.into(),
        place: None,
        frequency: None,
        impact: impact.map(str::to_string),
        since: since.map(str::to_string),
    }
}

/// The walk-through of the method, with every section of the report fed.
fn full() -> IncidentView {
    let mut r = Record::new();
    let (a, b) = (&alice(), &bob());
    r.at(
        0,
        a,
        Edit::AddMember {
            key: bob().key,
            name: "bob".into(),
        },
    );
    r.at(
        0,
        a,
        Edit::SetRole {
            role: Role::Commander,
            name: "alice".into(),
        },
    );
    r.at(
        1,
        a,
        symptom(
            "HTTP 500 on /checkout",
            Some("customers cannot pay"),
            Some("02:45"),
        ),
    );
    r.at(2, b, symptom("payment timeouts", None, Some("02:41")));
    let dns = r.at(5, a, Edit::AddHypothesis { text: "DNS".into() });
    let deploy = r.at(
        5,
        b,
        Edit::AddHypothesis {
            text: "bad deploy".into(),
        },
    );
    r.at(
        6,
        b,
        Edit::AddHypothesis {
            text: "pool exhausted".into(),
        },
    );
    let t_dns = r.at(
        6,
        a,
        Edit::AddTest {
            hypothesis: dns,
            action: "dig @10.0.0.2".into(),
            rules_out_if: "resolvers answer".into(),
        },
    );
    let t_dep = r.at(
        7,
        b,
        Edit::AddTest {
            hypothesis: deploy.clone(),
            action: "roll back canary".into(),
            rules_out_if: "errors continue".into(),
        },
    );
    r.at(
        8,
        a,
        Edit::AddResult {
            test: t_dns,
            observation: "resolvers answer".into(),
            verdict: Verdict::RulesOut,
        },
    );
    r.at(
        10,
        b,
        Edit::AddFix {
            text: "shed 10% of traffic".into(),
            unconfirmed_because: Some("revenue loss 10k/min".into()),
        },
    );
    r.at(
        14,
        b,
        Edit::AddResult {
            test: t_dep.clone(),
            observation: "canary clean".into(),
            verdict: Verdict::DoesNotRuleOut,
        },
    );
    r.at(
        15,
        a,
        Edit::Confirm {
            hypothesis: deploy,
            evidence: t_dep,
        },
    );
    r.at(
        15,
        a,
        Edit::SetStatus {
            status: Status::Identified,
            because: None,
        },
    );
    r.at(
        20,
        a,
        Edit::AddFix {
            text: "roll back payments to v41".into(),
            unconfirmed_because: None,
        },
    );
    r.at(
        25,
        b,
        Edit::AddNote {
            text: "pasted log:\n```\n- ERROR pool\n## not a heading\n````".into(),
        },
    );
    r.at(
        30,
        a,
        Edit::SetStatus {
            status: Status::Mitigated,
            because: None,
        },
    );
    r.at(
        50,
        a,
        Edit::SetStatus {
            status: Status::Resolved,
            because: None,
        },
    );
    r.at(
        51,
        a,
        Edit::AddFollowUp {
            text: "alert on checkout 5xx".into(),
            owner: Some("BOB".into()),
            due: Some("2026-12-15".into()),
        },
    );
    r.at(
        52,
        b,
        Edit::AddFollowUp {
            text: "write the rollback runbook".into(),
            owner: None,
            due: Some("2w".into()),
        },
    );
    r.at(
        53,
        a,
        Edit::SetSummary("A bad deploy of payments v42 broke checkout.".into()),
    );
    r.at(
        54,
        b,
        Edit::AddLesson {
            text: "canaries need error-rate alerts".into(),
        },
    );
    // Written late, about minute 4: the timeline puts it in its place.
    r.at(
        55,
        b,
        Edit::AddNote {
            text: "late: the pager fired at 02:59".into(),
        },
    );
    let mut v = r.view();
    let late = v.timeline.pop().unwrap();
    v.timeline.push(crate::TimelineEntry {
        at: T0 + 4 * MIN,
        ..late
    });
    v
}

/// The section under `## heading`, up to the next one.
fn section<'a>(report: &'a str, heading: &str) -> &'a str {
    let head = format!("\n## {heading}\n");
    let start = report
        .find(&head)
        .unwrap_or_else(|| panic!("no section {heading}:\n{report}"))
        + head.len();
    let rest = report.get(start..).unwrap_or_default();
    rest.get(..rest.find("\n## ").unwrap_or(rest.len()))
        .unwrap_or_default()
}

/// Each row: a section, what it must contain, what it must not.
type Want<'a> = &'a [(&'a str, &'a [&'a str], &'a [&'a str])];

fn check(v: &IncidentView, want: Want<'_>) {
    let md = report(v);
    let mut failures = Vec::new();
    for (heading, has, lacks) in want {
        let s = section(&md, heading);
        for h in *has {
            if !s.contains(h) {
                failures.push(format!("{heading}: lacks {h:?}"));
            }
        }
        for l in *lacks {
            if s.contains(l) {
                failures.push(format!("{heading}: has {l:?}"));
            }
        }
    }
    // No bare headings: every section says something.
    for part in md.split("\n## ").skip(1) {
        let body = part.split_once('\n').map(|(_, b)| b.trim()).unwrap_or("");
        if body.is_empty() {
            failures.push(format!("bare heading: {part:?}"));
        }
    }
    assert!(failures.is_empty(), "{}\n\n{md}", failures.join("\n"));
}

#[test]
fn a_full_record_fills_every_section() {
    check(
        &full(),
        &[
            (
                "Summary",
                &[
                    "- Impact: 2026-12-01 02:41:00 UTC → 2026-12-01 03:30:00 UTC (49m)",
                    "- Time to detect: 19m",
                    "- Time to identify: 34m",
                    "- Time to mitigate: 49m",
                    "- Time to resolve: 1h 09m",
                    "- investigating: 2026-12-01 03:00:00 UTC\n- identified: 2026-12-01 03:15:00 UTC\n- mitigated: 2026-12-01 03:30:00 UTC\n- resolved: 2026-12-01 03:50:00 UTC",
                    "- commander: alice",
                    "- Root cause: bad deploy",
                ],
                &[],
            ),
            (
                "Narrative",
                &["A bad deploy of payments v42 broke checkout."],
                &["summary <text>"],
            ),
            (
                "Detection",
                &[
                    "alice opened the incident at 2026-12-01 03:00:00 UTC, 19m after impact began (2026-12-01 02:41:00 UTC).",
                    "- HTTP 500 on /checkout — alice, 2026-12-01 03:01:00 UTC",
                    "- payment timeouts — bob, 2026-12-01 03:02:00 UTC",
                ],
                &[],
            ),
            ("Impact", &["customers cannot pay (HTTP 500 on /checkout)"], &[]),
            (
                "Symptoms",
                &["payment timeouts; since 2026-12-01 02:41:00 UTC — bob"],
                &["`s"],
            ),
            (
                "Hypotheses",
                &[
                    "- DNS — **ruled out** by the test “dig @10.0.0.2”: resolvers answer",
                    "- bad deploy — **confirmed** by the test “roll back canary”",
                    "  - test: roll back canary (rules it out if: errors continue) — planned by bob",
                    "    - result: canary clean — does-not-rule-out (bob, 2026-12-01 03:14:00 UTC)",
                    "- pool exhausted — still open",
                ],
                // Ids are for the prompt, not for the reader.
                &["`h", "`t", "`r"],
            ),
            ("Root cause", &["bad deploy"], &["No hypothesis"]),
            (
                "Fixes",
                &[
                    "- shed 10% of traffic — ⚠ made before the cause was confirmed, because: revenue loss 10k/min (bob",
                    "- roll back payments to v41 (alice, 2026-12-01 03:20:00 UTC)",
                ],
                &["roll back payments to v41 — ⚠"],
            ),
            (
                "Follow-ups",
                &[
                    "- [ ] alert on checkout 5xx — owner: bob, due 2026-12-15",
                    "- [ ] write the rollback runbook — **no owner**, due 2026-12-15",
                ],
                &[],
            ),
            ("Lessons", &["- canaries need error-rate alerts — bob"], &["lesson <text>"]),
            (
                "Participants",
                &["- alice — commander (key `aaaa:aaaa:aaaa:aaaa`)", "- bob (key"],
                &[],
            ),
            (
                "Timeline (UTC)",
                &[
                    // In time order, the late note in its place.
                    "03:02:00 UTC — bob — symptom: payment timeouts (since",
                    // Ids give way to what the items say.
                    "— alice — ruled out “DNS” by test “dig @10.0.0.2”: resolvers answer",
                    "— alice — confirmed “bad deploy”: test “roll back canary”",
                    "— bob — result of test “roll back canary” on “bad deploy”: canary clean",
                    "— alice — test of “DNS”: dig @10.0.0.2; rules it out if resolvers answer",
                    "\n- 2026-12-01 03:04:00 UTC — bob — note: late: the pager fired at 02:59\n- 2026-12-01 03:05:00 UTC — alice — hypothesis",
                    // A pasted log stays inside its item, as a code block
                    // whose fence no line of it can close.
                    "— bob — note:\n  `````\n  pasted log:\n  ```\n  - ERROR pool\n  ## not a heading\n  ````\n  `````\n- ",
                ],
                &["\n## not a heading", "\n- ERROR"],
            ),
        ],
    );
}

#[test]
fn an_empty_record_says_so_section_by_section() {
    check(
        &Record::new().view(),
        &[
            (
                "Summary",
                &[
                    "- Impact: impact start not recorded (`symptom <text> --since HH:MM` records it)",
                    "- Time to detect, identify, mitigate and resolve: unknown (no impact start)",
                    "- Root cause: not confirmed",
                ],
                &[],
            ),
            ("Narrative", &["No narrative was written yet: `summary <text>`"], &[]),
            (
                "Detection",
                &["alice opened the incident at 2026-12-01 03:00:00 UTC.", "No symptom was recorded."],
                &["after impact began"],
            ),
            ("Impact", &["No impact was recorded."], &[]),
            ("Symptoms", &["No symptoms were recorded."], &[]),
            ("Hypotheses", &["No hypotheses were recorded."], &[]),
            ("Root cause", &["No hypothesis was confirmed."], &[]),
            ("Fixes", &["No fix was recorded."], &[]),
            ("Follow-ups", &["No follow-ups were recorded."], &[]),
            ("Lessons", &["No lessons were recorded yet: `lesson <text>`"], &[]),
        ],
    );
}

#[test]
fn impact_start_is_the_earliest_since_and_ends_at_mitigation_or_resolution() {
    let mut r = Record::new();
    let a = &alice();
    assert_eq!(r.view().impact_start(), None);
    r.at(1, a, symptom("errors", None, Some("02:50")));
    r.at(2, a, symptom("more errors", None, None));
    r.at(
        3,
        a,
        symptom("first errors", None, Some("2026-12-01T02:30:00Z")),
    );
    assert_eq!(r.view().impact_start(), Some(T0 - 30 * MIN));
    check(
        &r.view(),
        &[(
            "Summary",
            &[
                "- Impact: 2026-12-01 02:30:00 UTC → not mitigated yet",
                "- Time to mitigate: not reached",
            ],
            &[],
        )],
    );
    // Resolved without passing through mitigated: impact ends there.
    r.at(
        40,
        a,
        Edit::SetStatus {
            status: Status::Resolved,
            because: Some("recovered by itself".into()),
        },
    );
    check(
        &r.view(),
        &[(
            "Summary",
            &[
                "→ 2026-12-01 03:40:00 UTC (1h 10m)",
                "- Time to resolve: 1h 10m",
            ],
            &[],
        )],
    );
}

#[test]
fn a_bad_since_names_the_value_and_loses_nothing() {
    let mut r = Record::new();
    let before = r.view().timeline.len();
    let err = r
        .incident
        .apply(symptom("errors", None, Some("25:00")), &alice(), T0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`25:00` is not a time: give HH:MM"), "{err}");
    assert_eq!(r.view().timeline.len(), before);
}

#[test]
fn a_follow_up_owner_must_be_a_member() {
    let mut r = Record::new();
    let err = r
        .incident
        .apply(
            Edit::AddFollowUp {
                text: "alert".into(),
                owner: Some("mallory".into()),
                due: None,
            },
            &alice(),
            T0,
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "`mallory` is not a member of this incident; the members are: alice"
    );
}

#[test]
fn the_owner_nudge_names_follow_ups_nobody_owns() {
    let mut r = Record::new();
    let a = &alice();
    let owner_nudge = |r: &Record| {
        let v = r.view();
        crate::nudges(&v.standing, 0)
            .into_iter()
            .find(|n| n.kind() == "follow-up-without-owner")
            .map(|n| n.to_string())
    };
    assert_eq!(owner_nudge(&r), None);
    let followup = |text: &str, owner: Option<&str>| Edit::AddFollowUp {
        text: text.into(),
        owner: owner.map(str::to_string),
        due: None,
    };
    r.at(1, a, followup("owned", Some("alice")));
    assert_eq!(owner_nudge(&r), None);
    r.at(2, a, followup("alert on 5xx\n\x1b[2Jsneaky", None));
    r.at(3, a, followup("runbook", None));
    let nudge = owner_nudge(&r).unwrap();
    assert!(
        nudge.starts_with("follow-up \"alert on 5xx ⏎ \\u{1b}[2Jsneaky\" and 1 more has no owner"),
        "{nudge}"
    );
    // Follow-ups come mostly at the end: the nudge stays after resolving.
    r.at(
        4,
        a,
        Edit::SetStatus {
            status: crate::Status::Resolved,
            because: Some("done".into()),
        },
    );
    assert!(owner_nudge(&r).is_some());
}

#[test]
fn a_concurrent_summary_is_a_conflict_and_the_report_says_so() {
    let mut a = Record::new();
    let mut b = Incident::from_doc(a.incident.doc().fork()).unwrap();
    a.at(1, &alice(), Edit::SetSummary("DNS broke".into()));
    b.apply(
        Edit::SetSummary("a deploy broke".into()),
        &alice(),
        T0 + MIN,
    )
    .unwrap();
    a.incident.doc_mut().merge(&mut b.doc().clone()).unwrap();
    let v = a.view();
    assert!(
        v.conflicts.iter().any(|c| c.field == "summary"),
        "{:?}",
        v.conflicts
    );
    check(
        &v,
        &[(
            "Narrative",
            &["written concurrently by several members"],
            &[],
        )],
    );
}

#[test]
fn a_forged_impact_start_cannot_break_the_report() {
    let mut v = full();
    for since in [i64::MIN, i64::MAX, -1] {
        let symptoms = v.items.get_mut(&crate::Kind::Symptom).unwrap();
        symptoms[0].fields.insert("since".into(), since.to_string());
        // Renders, whatever the times say.
        assert!(report(&v).contains("## Timeline (UTC)"));
    }
}
