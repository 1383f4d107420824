//! Nudges: things the method says should happen now, computed from where
//! the incident stands and the time. Pure: the caller reads the clock and
//! decides when to say them (the REPL says each once, when it becomes true;
//! `brief` lists them all).

use std::fmt;

use crate::render::{one_line, span};
use crate::{Severity, Standing, Status};

/// One thing the responders should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nudge {
    /// A SEV1 or SEV2 runs with nobody in command.
    NoCommander {
        /// The severity.
        severity: Severity,
    },
    /// Fixes were made before the cause was confirmed, and it still is not.
    FixBeforeCause {
        /// Short ids of those fixes.
        fixes: Vec<String>,
    },
    /// Follow-ups nobody owns (a follow-up without an owner tends not to
    /// get done).
    FollowUpWithoutOwner {
        /// The text of the oldest.
        first: String,
        /// How many there are.
        count: usize,
    },
    /// A stakeholder update is due: the last one (or the opening) is older
    /// than the interval.
    UpdateDue {
        /// How long ago the last update was posted, or the incident opened
        /// if none was (ms).
        since_ms: i64,
        /// Whether an update was ever posted.
        posted_before: bool,
        /// The interval (s).
        every_s: i64,
    },
}

impl Nudge {
    /// A stable name, for scripts and for saying each nudge once.
    pub fn kind(&self) -> &'static str {
        match self {
            Nudge::NoCommander { .. } => "no-commander",
            Nudge::FixBeforeCause { .. } => "fix-before-cause",
            Nudge::FollowUpWithoutOwner { .. } => "follow-up-without-owner",
            Nudge::UpdateDue { .. } => "update-due",
        }
    }
}

impl fmt::Display for Nudge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nudge::NoCommander { severity } => write!(
                f,
                "{} with no commander: `role commander <name>`",
                severity.label()
            ),
            Nudge::FixBeforeCause { fixes } => write!(
                f,
                "fix {} came before a confirmed cause: confirm it (`confirm`) or rule hypotheses out",
                fixes.join(", ")
            ),
            Nudge::FollowUpWithoutOwner { first, count } => write!(
                f,
                "follow-up \"{}\"{} has no owner: agree who takes it (`followup <text> --owner <name> --due <date>`)",
                one_line(first),
                match count {
                    0 | 1 => String::new(),
                    n => format!(" and {} more", n - 1),
                }
            ),
            Nudge::UpdateDue {
                since_ms,
                posted_before,
                every_s,
            } => write!(
                f,
                "stakeholder update due: {} {} ago (every {}); `update` drafts one",
                if *posted_before {
                    "last one"
                } else {
                    "none since opening"
                },
                span(*since_ms),
                span(every_s * 1000)
            ),
        }
    }
}

/// What the responders should be reminded of at `now_ms`, in a fixed order.
/// Once the incident is resolved, only follow-ups without an owner (they
/// are mostly written then).
pub fn nudges(standing: &Standing, now_ms: i64) -> Vec<Nudge> {
    let mut out = Vec::new();
    if let Some(first) = standing.followups_without_owner.first() {
        out.push(Nudge::FollowUpWithoutOwner {
            first: first.clone(),
            count: standing.followups_without_owner.len(),
        });
    }
    if standing.status == Some(Status::Resolved) {
        return out;
    }
    if let Some(severity @ (Severity::Sev1 | Severity::Sev2)) = standing.severity {
        if !standing.commander {
            out.push(Nudge::NoCommander { severity });
        }
    }
    if !standing.fixes_before_cause.is_empty() {
        out.push(Nudge::FixBeforeCause {
            fixes: standing.fixes_before_cause.clone(),
        });
    }
    if let Some(every_s) = standing.update_every {
        let last = standing.last_update_at.unwrap_or(standing.opened_at);
        let since_ms = now_ms.saturating_sub(last);
        if since_ms >= every_s.saturating_mul(1000) {
            out.push(Nudge::UpdateDue {
                since_ms,
                posted_before: standing.last_update_at.is_some(),
                every_s,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn base() -> Standing {
        Standing {
            severity: Some(Severity::Sev3),
            status: Some(Status::Investigating),
            opened_at: 0,
            ..Default::default()
        }
    }

    #[test]
    fn nudges_follow_the_standing_and_the_clock() {
        let every30 = Some(30 * 60);
        let cases: Vec<(&str, Standing, i64, Vec<&str>)> = vec![
            ("a quiet SEV3", base(), 600 * MIN, vec![]),
            (
                "SEV1 without commander",
                Standing {
                    severity: Some(Severity::Sev1),
                    ..base()
                },
                0,
                vec!["no-commander"],
            ),
            (
                "SEV2 with a commander",
                Standing {
                    severity: Some(Severity::Sev2),
                    commander: true,
                    ..base()
                },
                0,
                vec![],
            ),
            (
                "a fix before the cause",
                Standing {
                    fixes: 1,
                    fixes_before_cause: vec!["f2k3".into()],
                    ..base()
                },
                0,
                vec!["fix-before-cause"],
            ),
            (
                "update not yet due",
                Standing {
                    update_every: every30,
                    ..base()
                },
                29 * MIN,
                vec![],
            ),
            (
                "update due from the opening",
                Standing {
                    update_every: every30,
                    ..base()
                },
                30 * MIN,
                vec!["update-due"],
            ),
            (
                "update posted recently",
                Standing {
                    update_every: every30,
                    last_update_at: Some(40 * MIN),
                    ..base()
                },
                60 * MIN,
                vec![],
            ),
            (
                "update due again",
                Standing {
                    update_every: every30,
                    last_update_at: Some(40 * MIN),
                    ..base()
                },
                71 * MIN,
                vec!["update-due"],
            ),
            (
                "everything at once, in order",
                Standing {
                    severity: Some(Severity::Sev1),
                    fixes_before_cause: vec!["f2k3".into()],
                    update_every: every30,
                    ..base()
                },
                31 * MIN,
                vec!["no-commander", "fix-before-cause", "update-due"],
            ),
            (
                "resolved: nothing",
                Standing {
                    severity: Some(Severity::Sev1),
                    status: Some(Status::Resolved),
                    fixes_before_cause: vec!["f2k3".into()],
                    update_every: every30,
                    ..base()
                },
                300 * MIN,
                vec![],
            ),
        ];
        for (what, standing, now, want) in cases {
            let got: Vec<&str> = nudges(&standing, now).iter().map(Nudge::kind).collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn an_update_due_says_since_when() {
        let standing = Standing {
            update_every: Some(15 * 60),
            last_update_at: Some(0),
            ..base()
        };
        let text = nudges(&standing, 42 * MIN)[0].to_string();
        assert!(text.contains("last one 42m ago (every 15m)"), "{text}");
    }
}
