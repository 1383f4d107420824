//! The vocabulary of an incident: severities, states, verdicts and roles.

use std::fmt;
use std::str::FromStr;

use crate::RuleError;

macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[doc = $vdoc:literal])* $variant:ident => $word:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[doc = $vdoc])* $variant),+ }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// What the value means: its doc comment, the one place for
            /// that text (`help sev` shows it).
            pub fn meaning(self) -> &'static str {
                match self { $($name::$variant => concat!($($vdoc),*).trim()),+ }
            }

            /// The word stored in the document and typed at the prompt.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = RuleError;
            fn from_str(s: &str) -> Result<Self, RuleError> {
                match s.to_ascii_lowercase().as_str() {
                    $($word $(| $alias)* => Ok($name::$variant),)+
                    _ => Err(RuleError::BadValue {
                        what: $what,
                        value: s.to_string(),
                        expected: [$($word),+].join(", "),
                    }),
                }
            }
        }
    };
}

word_enum!(
    /// How bad it is: SEV1 is the worst.
    Severity, "severity" {
        /// Critical: total outage or data loss.
        Sev1 => "sev1" | "1",
        /// Major: a core function degraded for many.
        Sev2 => "sev2" | "2",
        /// Minor: limited impact.
        Sev3 => "sev3" | "3",
        /// Low: cosmetic or internal.
        Sev4 => "sev4" | "4",
    }
);

word_enum!(
    /// Where the response stands.
    Status, "status" {
        /// Symptoms are being captured and hypotheses tested.
        Investigating => "investigating" | "inv",
        /// The cause is known.
        Identified => "identified" | "id",
        /// Impact has stopped; the cause may still be present.
        Mitigated => "mitigated" | "mit",
        /// Over; only reopening changes it again.
        Resolved => "resolved" | "res",
    }
);

word_enum!(
    /// What is known of a hypothesis.
    HypothesisStatus, "hypothesis status" {
        /// Not ruled out yet.
        Open => "open",
        /// A test ruled it out.
        RuledOut => "ruled-out",
        /// Confirmed with evidence.
        Confirmed => "confirmed",
    }
);

word_enum!(
    /// What a test's result says about its hypothesis.
    Verdict, "verdict" {
        /// The outcome that rules the hypothesis out was observed.
        RulesOut => "rules-out" | "ruled-out",
        /// The hypothesis survives this test.
        DoesNotRuleOut => "does-not-rule-out" | "not-ruled-out",
        /// The test told nothing.
        Inconclusive => "inconclusive",
    }
);

word_enum!(
    /// A responder's job in the incident.
    Role, "role" {
        /// Runs the response and decides.
        Commander => "commander" | "ic",
        /// Keeps the record.
        Scribe => "scribe",
        /// Talks to stakeholders.
        Comms => "comms",
    }
);

word_enum!(
    /// Why dontpanic stopped a command it ran as evidence.
    Stopped, "reason a command was stopped" {
        /// Its timeout passed; its process group was killed.
        Timeout => "timeout",
        /// Ctrl-C at the prompt.
        Interrupt => "interrupt",
    }
);

impl Severity {
    /// `SEV1`…`SEV4`, as people write it.
    pub fn label(self) -> String {
        self.as_str().to_ascii_uppercase()
    }
}
