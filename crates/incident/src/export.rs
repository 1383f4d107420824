//! `export`: the incident as a plain Automerge document for other tools.
//!
//! The copy holds the current state only, without history and without the
//! join secret: the secret is a capability to join, and history would keep
//! it even after a deletion, so an exported file must never be an invite.

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ReadDoc, Value, ROOT};

/// Root keys that never leave the device in an export.
const SECRET_KEYS: &[&str] = &["join_secret"];

/// Saves a history-free copy of `doc`'s current state without its secrets.
pub fn without_secrets(doc: &Automerge) -> Vec<u8> {
    let mut out = Automerge::new();
    let mut tx = out.transaction();
    copy_map(doc, &ROOT, &mut tx, &ROOT, true);
    tx.commit();
    out.save()
}

fn copy_map(
    doc: &Automerge,
    from: &ObjId,
    tx: &mut automerge::transaction::Transaction<'_>,
    to: &ObjId,
    root: bool,
) {
    for key in doc.keys(from) {
        if root && SECRET_KEYS.contains(&key.as_str()) {
            continue;
        }
        match doc.get(from, key.as_str()) {
            Ok(Some((Value::Scalar(s), _))) => {
                let _ = tx.put(to, key.as_str(), s.into_owned());
            }
            Ok(Some((Value::Object(kind), id))) => {
                if let Ok(child) = tx.put_object(to, key.as_str(), kind) {
                    copy_object(doc, &id, kind, tx, &child);
                }
            }
            _ => {}
        }
    }
}

fn copy_object(
    doc: &Automerge,
    from: &ObjId,
    kind: ObjType,
    tx: &mut automerge::transaction::Transaction<'_>,
    to: &ObjId,
) {
    match kind {
        ObjType::Map | ObjType::Table => copy_map(doc, from, tx, to, false),
        ObjType::List | ObjType::Text => {
            if kind == ObjType::Text {
                if let Ok(text) = doc.text(from) {
                    let _ = tx.splice_text(to, 0, 0, &text);
                }
                return;
            }
            for i in 0..doc.length(from) {
                match doc.get(from, i) {
                    Ok(Some((Value::Scalar(s), _))) => {
                        let _ = tx.insert(to, i, s.into_owned());
                    }
                    Ok(Some((Value::Object(k), id))) => {
                        if let Ok(child) = tx.insert_object(to, i, k) {
                            copy_object(doc, &id, k, tx, &child);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
