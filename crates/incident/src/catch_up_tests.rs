//! What a responder reads to catch up and to tell others: the brief, the
//! stakeholder update, the nudges, and the timeline's order after a merge.

use super::*;

/// 2026-11-24 02:00:00 UTC.
const T0: i64 = 1_795_485_600_000;

use crate::fixtures::{alice, bob, MIN};

fn at(i: &mut Incident, who: &Editor, minutes: i64, edit: Edit) -> Option<ItemId> {
    i.apply(edit, who, T0 + minutes * MIN).unwrap().id
}

/// A SEV1 an hour in: one hypothesis ruled out, one under test by bob, a
/// fix made before the cause was known.
fn checkout() -> Incident {
    let (mut i, _) = Incident::create("checkout 500s", Severity::Sev1, &alice(), T0).unwrap();
    at(
        &mut i,
        &alice(),
        1,
        Edit::AddMember {
            key: bob().key,
            name: "bob".into(),
        },
    );
    at(
        &mut i,
        &alice(),
        2,
        Edit::AddSymptom {
            text: "HTTP 500 on /checkout".into(),
            place: Some("eu-west".into()),
            frequency: None,
            impact: Some("customers cannot pay".into()),
            since: None,
        },
    );
    let dns = at(
        &mut i,
        &alice(),
        3,
        Edit::AddHypothesis {
            text: "DNS failing".into(),
        },
    )
    .unwrap();
    let deploy = at(
        &mut i,
        &bob(),
        4,
        Edit::AddHypothesis {
            text: "bad deploy v42".into(),
        },
    )
    .unwrap();
    let t = at(
        &mut i,
        &alice(),
        5,
        Edit::AddTest {
            hypothesis: dns.to_string(),
            action: "dig checkout.internal".into(),
            rules_out_if: "resolvers answer".into(),
        },
    )
    .unwrap();
    at(
        &mut i,
        &alice(),
        10,
        Edit::AddResult {
            test: t.to_string(),
            observation: "resolvers answer".into(),
            verdict: Verdict::RulesOut,
        },
    );
    at(
        &mut i,
        &bob(),
        12,
        Edit::AddTest {
            hypothesis: deploy.to_string(),
            action: "roll back the canary".into(),
            rules_out_if: "errors continue".into(),
        },
    );
    at(
        &mut i,
        &alice(),
        20,
        Edit::AddFix {
            text: "shed 10% of traffic".into(),
            unconfirmed_because: Some("revenue loss".into()),
        },
    );
    i
}

#[test]
fn the_update_draft_is_can_from_the_record() {
    let i = checkout();
    let v = i.view().unwrap();
    let want = "\
Status update: checkout 500s — SEV1, investigating (as of 2026-11-24 03:12:00 UTC)

Conditions
- Impact: customers cannot pay
- SEV1, investigating; open for 1h 12m (since 2026-11-24 02:00:00 UTC)
- Cause: not confirmed yet
- Ruled out: DNS failing (resolvers answer)

Actions
- Testing: roll back the canary (checking: bad deploy v42), by bob
- Applied at 02:20:00: shed 10% of traffic, by alice, before the cause was confirmed

Needs
- [fill in what you need from stakeholders, or \"nothing\"]
";
    assert_eq!(render::update_draft(&v, T0 + 72 * MIN, None), want);
    let with_needs = render::update_draft(&v, T0 + 72 * MIN, Some("a DBA on call"));
    assert!(
        with_needs.ends_with("Needs\n- a DBA on call\n"),
        "{with_needs}"
    );
}

#[test]
fn posted_updates_and_the_interval_drive_the_update_nudge() {
    let mut i = checkout();
    let kinds = |i: &Incident, minutes: i64| -> Vec<&'static str> {
        nudges(&i.view().unwrap().standing, T0 + minutes * MIN)
            .iter()
            .map(Nudge::kind)
            .collect()
    };
    // SEV1: 30 minutes by default, counted from the opening.
    assert_eq!(kinds(&i, 29), ["no-commander", "fix-before-cause"]);
    assert_eq!(
        kinds(&i, 30),
        ["no-commander", "fix-before-cause", "update-due"]
    );
    at(
        &mut i,
        &bob(),
        31,
        Edit::PostUpdate {
            text: "we are on it".into(),
        },
    );
    assert_eq!(kinds(&i, 60), ["no-commander", "fix-before-cause"]);
    at(
        &mut i,
        &alice(),
        32,
        Edit::SetUpdateInterval {
            every_s: Some(15 * 60),
        },
    );
    assert!(kinds(&i, 46).contains(&"update-due"));
    at(
        &mut i,
        &alice(),
        33,
        Edit::SetUpdateInterval { every_s: None },
    );
    assert!(!kinds(&i, 600).contains(&"update-due"));
    at(
        &mut i,
        &alice(),
        34,
        Edit::SetRole {
            role: Role::Commander,
            name: "alice".into(),
        },
    );
    assert_eq!(kinds(&i, 600), ["fix-before-cause"]);
    let v = i.view().unwrap();
    let ups = v.items(Kind::Update);
    assert_eq!(ups.len(), 1);
    assert_eq!(
        (ups[0].get("text"), ups[0].by.as_str()),
        ("we are on it", bob().key.as_str())
    );
    assert!(v
        .timeline
        .iter()
        .any(|e| e.kind == "update" && e.text.contains("we are on it")));
}

#[test]
fn resolving_without_a_fix_needs_a_reason_in_the_record() {
    let (mut i, _) = Incident::create("flaky alarm", Severity::Sev3, &alice(), T0).unwrap();
    let resolve = |because: Option<&str>| Edit::SetStatus {
        status: Status::Resolved,
        because: because.map(str::to_string),
    };
    let err = i.apply(resolve(None), &alice(), T0 + MIN).unwrap_err();
    assert_eq!(err, RuleError::ResolveWithoutFix);
    assert!(err.to_string().contains("--because"), "{err}");
    i.apply(resolve(Some("false alarm")), &alice(), T0 + MIN)
        .unwrap();
    let v = i.view().unwrap();
    assert!(v
        .timeline
        .iter()
        .any(|e| e.text
            == "status investigating -> resolved (no fix recorded, because: false alarm)"));
    // A stakeholder update may still go out once resolved.
    at(
        &mut i,
        &alice(),
        2,
        Edit::PostUpdate {
            text: "resolved".into(),
        },
    );
    // With a fix recorded, resolving needs no reason.
    let mut fixed = checkout();
    at(&mut fixed, &alice(), 40, resolve(None));
}

#[test]
fn the_brief_fits_one_screen_however_big_the_incident() {
    let mut i = checkout();
    let mut hyps = Vec::new();
    for n in 0..30 {
        hyps.push(
            at(
                &mut i,
                &alice(),
                21,
                Edit::AddHypothesis {
                    text: format!("hypothesis number {n}"),
                },
            )
            .unwrap(),
        );
    }
    for n in 0..40 {
        at(
            &mut i,
            &bob(),
            22,
            Edit::AddTest {
                hypothesis: hyps[n % 30].to_string(),
                action: format!("check thing {n}"),
                rules_out_if: "it is fine".into(),
            },
        );
    }
    for n in 0..200 {
        at(
            &mut i,
            &alice(),
            23,
            Edit::AddNote {
                text: format!("note {n}"),
            },
        );
    }
    for n in 0..5 {
        at(
            &mut i,
            &alice(),
            24,
            Edit::AddFollowUp {
                text: format!("follow-up {n}"),
                owner: None,
                due: None,
            },
        );
    }
    let long = "x".repeat(1_900);
    at(&mut i, &bob(), 25, Edit::AddNote { text: long.clone() });
    let v = i.view().unwrap();
    let warnings = vec!["background check: something".to_string()];
    let brief = render::brief(&v, T0 + 72 * MIN, &warnings);
    let lines: Vec<&str> = brief.lines().collect();
    assert!(
        lines.len() <= render::BRIEF_LINES,
        "{} lines:\n{brief}",
        lines.len()
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 100), "{brief}");
    for want in [
        "! background check: something",
        "[SEV1] checkout 500s — investigating",
        "(1h 12m ago)",
        "last update: none posted (due every 30m)",
        "! SEV1 with no commander",
        "came before a confirmed cause",
        "! stakeholder update due",
        "Still open (31):",
        "Tests under way (41):",
        " by bob: roll back the canary",
        "Ruled out (1):",
        "DNS failing — by test",
        "Fixes applied (1):",
        "shed 10% of traffic — alice 02:20:00 (before the cause was confirmed)",
        "Open follow-ups (5):",
        "more (see `report`)",
        "earlier (see `timeline`)",
        "02:25:00 bob: note: xxx",
    ] {
        assert!(brief.contains(want), "no {want:?} in:\n{brief}");
    }
    assert!(!brief.contains(&long), "the long note is trimmed");
    assert!(lines.last().unwrap().ends_with('…'), "{brief}");
}

#[test]
fn the_timeline_is_in_time_order_after_a_merge_of_offline_edits() {
    let base = checkout();
    let mut one = Incident::from_doc(base.doc().fork()).unwrap();
    let mut two = Incident::from_doc(base.doc().fork()).unwrap();
    for (fork, who, minutes) in [(&mut one, alice(), 30), (&mut two, bob(), 31)] {
        for k in 0..3 {
            at(
                fork,
                &who,
                minutes + 2 * k,
                Edit::AddNote {
                    text: format!("offline {} at {}", who.name, minutes + 2 * k),
                },
            );
        }
    }
    let mut merged = Incident::from_doc(one.doc().fork()).unwrap();
    merged.doc_mut().merge(&mut two.doc().fork()).unwrap();
    let v = merged.view().unwrap();
    let times: Vec<i64> = v.timeline.iter().map(|e| e.at).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    let last: Vec<&str> = v
        .timeline
        .iter()
        .rev()
        .take(6)
        .rev()
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(
        last,
        [
            "note: offline alice at 30",
            "note: offline bob at 31",
            "note: offline alice at 32",
            "note: offline bob at 33",
            "note: offline alice at 34",
            "note: offline bob at 35",
        ]
    );
    let brief = render::brief(&v, T0 + 40 * MIN, &[]);
    let a = brief.find("offline alice at 34").unwrap();
    let b = brief.find("offline bob at 35").unwrap();
    assert!(a < b, "{brief}");
}

#[test]
fn intervals_set_concurrently_are_a_conflict_settled_by_resolve() {
    let base = checkout();
    let mut one = Incident::from_doc(base.doc().fork()).unwrap();
    let mut two = Incident::from_doc(base.doc().fork()).unwrap();
    for (fork, secs) in [(&mut one, 600), (&mut two, 900)] {
        at(
            fork,
            &alice(),
            30,
            Edit::SetUpdateInterval {
                every_s: Some(secs),
            },
        );
    }
    let mut merged = Incident::from_doc(one.doc().fork()).unwrap();
    merged.doc_mut().merge(&mut two.doc().fork()).unwrap();
    assert!(merged.conflicts().iter().any(|c| c.field == "update_every"));
    let bad = merged.apply(
        Edit::Resolve {
            field: "update_every".into(),
            value: "soon".into(),
        },
        &bob(),
        T0 + 31 * MIN,
    );
    assert!(matches!(bad, Err(RuleError::BadValue { .. })), "{bad:?}");
    let before = merged.doc().fork();
    let settled = merged
        .apply(
            Edit::Resolve {
                field: "update_every".into(),
                value: "900".into(),
            },
            &bob(),
            T0 + 31 * MIN,
        )
        .unwrap();
    validate(&before, &settled.change, &bob().key).unwrap();
    assert!(merged.conflicts().is_empty());
    assert_eq!(merged.standing().update_every, Some(900));
}

/// Impact that began before the incident was opened is said in the brief
/// and in the stakeholder update, from the earliest `--since`.
#[test]
fn the_brief_and_the_update_say_when_impact_began() {
    let mut i = checkout();
    at(
        &mut i,
        &bob(),
        5,
        Edit::AddSymptom {
            text: "payments queue backs up".into(),
            place: None,
            frequency: None,
            impact: None,
            since: Some("01:41".into()),
        },
    );
    let v = i.view().unwrap();
    let now = T0 + 72 * MIN;
    let brief = render::brief(&v, now, &[]);
    assert!(
        brief.contains("impact since 01:41:00 UTC (1h 31m ago)"),
        "{brief}"
    );
    assert!(brief.lines().all(|l| l.chars().count() <= 100), "{brief}");
    let draft = render::update_draft(&v, now, None);
    assert!(
        draft.contains("- Impact began 2026-11-24 01:41:00 UTC (1h 31m ago)"),
        "{draft}"
    );
}
