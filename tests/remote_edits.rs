//! A verified remote edit is shown before this node's own journal append
//! (its origin already holds it durably), and an edit shown that then could
//! not be stored is said: the notebook actor's `RemoteEvent`s, with the
//! receiving notebook on a real full disk (a small tmpfs; needs root, like
//! the other full-disk tests).

mod support;

use std::time::Duration;

use dontpanic_notebook::actor::RemoteEvent;
use dontpanic_notebook::incident::{Edit, Severity};
use dontpanic_notebook::{Notebook, NotebookError, NotebookHandle};

/// Alice's incident, with bob (on `bob_dir`) admitted and in sync.
fn pair(
    alice_dir: &std::path::Path,
    bob_dir: &std::path::Path,
) -> (NotebookHandle, NotebookHandle, String) {
    let a = NotebookHandle::spawn(Notebook::open(alice_dir, Some("alice")).unwrap());
    let b = NotebookHandle::spawn(Notebook::open(bob_dir, Some("bob")).unwrap());
    let id = a
        .blocking(a.create("disk".into(), Severity::Sev2))
        .unwrap()
        .incident;
    let bob = b.device().key.to_string();
    let history = a
        .blocking(a.admit(id.clone(), bob, "bob".into(), None))
        .unwrap();
    assert_eq!(b.blocking(b.adopt(history)).unwrap(), id);
    sync(&a, &b, &id).unwrap();
    (a, b, id)
}

/// Runs the sync dialogue between `a` and `b` until neither has anything
/// to say; the first error of `b` is returned.
fn sync(a: &NotebookHandle, b: &NotebookHandle, id: &str) -> Result<(), NotebookError> {
    let (ka, kb) = (a.device().key.to_string(), b.device().key.to_string());
    for _ in 0..20 {
        let to_b = a
            .blocking(a.sync_message_for(id.into(), kb.clone()))
            .unwrap();
        if let Some(m) = &to_b {
            b.blocking(b.receive_sync(id.into(), ka.clone(), m.clone(), false))?;
        }
        let to_a = b
            .blocking(b.sync_message_for(id.into(), ka.clone()))
            .unwrap();
        if let Some(m) = &to_a {
            a.blocking(a.receive_sync(id.into(), kb.clone(), m.clone(), false))
                .unwrap();
        }
        if to_a.is_none() && to_b.is_none() {
            return Ok(());
        }
    }
    panic!("no convergence in 20 rounds");
}

fn next(rx: &mut tokio::sync::broadcast::Receiver<RemoteEvent>) -> Option<RemoteEvent> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match rx.try_recv() {
            Ok(e) => return Some(e),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => return None,
        }
    }
}

/// Bob's disk is full: alice's note is verified and shown on bob's side
/// (so before the append, which fails), then said not stored, and the
/// sender gets a local-fault answer (not blamed). Once there is space the
/// note is stored and shown again.
#[test]
fn a_remote_edit_is_shown_before_the_append_and_a_failed_append_is_said() {
    if !support::can_mount("a_remote_edit_is_shown_before_the_append_and_a_failed_append_is_said") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let disk = support::Tmpfs::mount(&tmp.path().join("disk"), "4m");
    let (a, b, id) = pair(&tmp.path().join("alice"), &disk.0.join("bob"));
    let mut events = b.remote_events();
    let filler = disk.fill();
    // Bigger than a page, so the append needs space the disk does not have.
    let text = format!("written while bob's disk was full {}", "x".repeat(16 << 10));
    a.blocking(a.edit(Edit::AddNote { text: text.clone() }))
        .unwrap();

    let err = sync(&a, &b, &id).unwrap_err();
    assert!(
        !err.blames_sender(),
        "a full disk is not alice's fault: {err}"
    );
    assert!(err.to_string().contains("No space left"), "{err}");
    match next(&mut events) {
        Some(RemoteEvent::Shown { incident, edits }) => {
            assert_eq!(incident, id);
            assert_eq!(edits.len(), 1, "{edits:?}");
            assert_eq!(edits[0].author, "alice");
        }
        other => panic!("the verified edit was not shown first: {other:?}"),
    }
    match next(&mut events) {
        Some(RemoteEvent::NotStored {
            incident,
            edits,
            error,
        }) => {
            assert_eq!(incident, id);
            assert_eq!(edits.len(), 1, "{edits:?}");
            assert!(error.contains("No space left"), "{error}");
        }
        other => panic!("the failed append was not said: {other:?}"),
    }
    let (view, _) = b.blocking(b.view()).unwrap();
    assert!(
        !view
            .timeline
            .iter()
            .any(|e| e.text.contains("disk was full")),
        "memory never runs ahead of the disk"
    );

    // Space again: the dialogue starts afresh (as the replicator does after
    // a local fault) and the note is stored, and shown once more.
    std::fs::remove_file(filler).unwrap();
    b.peer_gone(a.device().key.to_string());
    sync(&a, &b, &id).unwrap();
    assert!(matches!(next(&mut events), Some(RemoteEvent::Shown { .. })));
    let (view, _) = b.blocking(b.view()).unwrap();
    assert!(view
        .timeline
        .iter()
        .any(|e| e.text.contains("disk was full")));
    b.blocking(b.shutdown()).unwrap();
    a.blocking(a.shutdown()).unwrap();
}

/// On a disk with space, each remote edit is shown exactly once, before
/// the answer to the message that brought it, and nothing is said of a
/// failure.
#[test]
fn a_stored_remote_edit_is_shown_once_and_nothing_else_is_said() {
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, id) = pair(ta.path(), tb.path());
    let mut events = b.remote_events();
    a.blocking(a.edit(Edit::AddNote {
        text: "a plain note".into(),
    }))
    .unwrap();
    sync(&a, &b, &id).unwrap();
    // Sent before the answer: already there when the dialogue is over.
    match events.try_recv() {
        Ok(RemoteEvent::Shown { edits, .. }) => {
            assert_eq!(edits.len(), 1);
            assert_eq!(edits[0].summary, "note: a plain note");
        }
        other => panic!("not shown: {other:?}"),
    }
    assert!(events.try_recv().is_err(), "said once, and nothing else");
}
