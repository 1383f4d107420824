//! Editors shared by the crate's tests.

use crate::Editor;

/// A minute, in ms.
pub(crate) const MIN: i64 = 60_000;

/// The first member of every test incident.
pub(crate) fn alice() -> Editor {
    Editor {
        key: "aa".repeat(32),
        name: "alice".into(),
    }
}

/// A second member.
pub(crate) fn bob() -> Editor {
    Editor {
        key: "bb".repeat(32),
        name: "bob".into(),
    }
}
