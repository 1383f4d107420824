//! Automerge sync messages that carry the signatures of their changes.
