//! The fuzz targets: each takes arbitrary bytes, feeds them to one decoder
//! of remote or on-disk input, and must return (an error is fine) without
//! panicking, hanging or allocating from an announced length. Shared by
//! `fuzz/` (cargo-fuzz, nightly) and `tests/fuzz_props.rs` (stable, seeded
//! inputs and mutations of valid ones, in every `cargo test`).

#![allow(dead_code)]

use std::str::FromStr;

use dontpanic_net::wire::{
    from_cbor, to_cbor, Envelope, JoinRequest, JoinResponse, SignedSync, SyncRequest, SyncResponse,
};
use dontpanic_net::Invite;
use dontpanic_notebook::sync::{changes_in, decode_changes, SignedSyncMessage};

/// For cargo-fuzz only: libfuzzer-sys aborts on every panic, also one that
/// dontpanic catches on purpose (Automerge's parsers panic on some input;
/// `notebook::sync` catches that and refuses the input). With the default
/// hook back, a caught panic is only printed; an uncaught one still reaches
/// libfuzzer-sys's own `catch_unwind` and aborts, so it is still a finding.
pub fn report_only_uncaught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::panic::take_hook();
    });
}

/// A stream's bytes read as each message type of both protocols, and as
/// parts put back together.
pub fn envelope(data: &[u8]) {
    let _ = from_cbor::<Envelope<SyncRequest>>(data);
    let _ = from_cbor::<Envelope<SyncResponse>>(data);
    let _ = from_cbor::<Envelope<JoinRequest>>(data);
    let _ = from_cbor::<Envelope<JoinResponse>>(data);
    let _ = dontpanic_net::wire::assemble::<SyncRequest>(data, 64 << 20);
}

/// Invite strings as pasted.
pub fn invite(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Invite::from_str(s);
    }
}

/// Opening a signed sync message: the envelope, Automerge's message, every
/// change inside (documents included), within the limits.
pub fn sync_message(data: &[u8]) {
    if let Ok(signed) = SignedSyncMessage::decode(data) {
        if let Ok(msg) = automerge::sync::Message::decode(&signed.message) {
            let _ = changes_in(&msg);
        }
    }
    // The joining history uses the same chunk reader.
    let _ = decode_changes(data);
}

/// Automerge sync message bytes alone (most mutations of a whole signed
/// message die in the envelope).
pub fn automerge_message(data: &[u8]) {
    if let Ok(msg) = automerge::sync::Message::decode(data) {
        let _ = changes_in(&msg);
    }
}

/// Reading a journal and a snapshot file.
pub fn store_files(data: &[u8]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("journal");
    std::fs::write(&journal, data).expect("write");
    let _ = dontpanic_store::Journal::open(&journal);

    let store = dontpanic_store::DataDir::open(&dir.path().join("data")).expect("data dir");
    let inc = store.incident_dir("i1");
    std::fs::create_dir_all(&inc).expect("dir");
    std::fs::write(inc.join("snapshot"), data).expect("write");
    let key = dontpanic_identity::SecretKey::generate();
    let _ = store.read_snapshot("i1", &key.public());
    let _ = store.peek_snapshot("i1");
}

/// A change given to the schema validator against a small incident, as
/// changes reach it: through the notebook's change decoder.
pub fn validator(data: &[u8]) {
    let Ok(change) = dontpanic_notebook::sync::decode_change(data) else {
        return;
    };
    let doc = base_doc();
    let _ = dontpanic_incident::validate::validate(doc, &change, &"aa".repeat(32));
}

/// An incident with one member and one symptom, made once.
pub fn base_doc() -> &'static automerge::Automerge {
    use std::sync::OnceLock;
    static DOC: OnceLock<automerge::Automerge> = OnceLock::new();
    DOC.get_or_init(|| {
        let alice = dontpanic_incident::Editor {
            key: "aa".repeat(32),
            name: "alice".into(),
        };
        let (mut i, _) = dontpanic_incident::Incident::create(
            "DNS down",
            dontpanic_incident::Severity::Sev2,
            &alice,
            0,
        )
        .expect("create");
        i.apply(
            dontpanic_incident::Edit::AddSymptom {
                text: "timeouts".into(),
                place: None,
                frequency: None,
                impact: None,
                since: None,
            },
            &alice,
            1,
        )
        .expect("symptom");
        i.doc().clone()
    })
}

/// Valid inputs to mutate, per target.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "envelope" => {
            let sync = SyncRequest::Sync {
                incident: "ip57fstq".into(),
                message: SignedSync {
                    automerge: vec![0x42, 1, 2, 3].into(),
                    signatures: vec![],
                },
            };
            vec![
                to_cbor(&Envelope::Whole(sync)),
                to_cbor(&Envelope::<SyncResponse>::Next {
                    transfer: 7,
                    index: 1,
                }),
                to_cbor(&Envelope::<JoinResponse>::Whole(JoinResponse::Denied {
                    reason: "wrong invite".into(),
                })),
            ]
        }
        "invite" => {
            let inv = Invite {
                incident: "ip57fstq".into(),
                secret: [7; 32],
                expires_ms: 1_900_000_000_000,
                once: true,
                nonce: [3; 16],
                inviter: dontpanic_net::PeerId::random(),
                addresses: vec!["/ip4/127.0.0.1/tcp/4001".parse().expect("addr")],
            };
            vec![inv.to_string().into_bytes()]
        }
        "sync_message" | "automerge_message" | "validator" => {
            use automerge::sync::SyncDoc;
            let doc = base_doc();
            let changes: Vec<automerge::Change> = doc.get_changes(&[]).into_iter().collect();
            let mut out: Vec<Vec<u8>> = changes.iter().map(|c| c.raw_bytes().to_vec()).collect();
            if target == "validator" {
                return out;
            }
            // A first sync message ships the whole document.
            let mut state = automerge::sync::State::new();
            let mut peer = automerge::sync::State::new();
            let empty = automerge::Automerge::new();
            let mut round = Vec::new();
            for _ in 0..3 {
                if let Some(m) = empty.generate_sync_message(&mut peer) {
                    let mut d = doc.clone();
                    let _ = d.receive_sync_message(&mut state, m);
                }
                if let Some(m) = doc.generate_sync_message(&mut state) {
                    round.push(m.encode());
                }
            }
            let key = dontpanic_identity::SecretKey::generate();
            let sigs: Vec<_> = changes
                .iter()
                .map(|c| dontpanic_identity::ChangeSignature::sign(&key, c.hash()))
                .collect();
            let mut msg = automerge::sync::Message {
                heads: vec![],
                need: vec![],
                have: vec![],
                changes: automerge::sync::ChunkList::from(doc.save()),
                flags: None,
                version: automerge::sync::MessageVersion::V2,
            };
            round.push(msg.clone().encode());
            msg.changes = automerge::sync::ChunkList::from(
                changes
                    .iter()
                    .flat_map(|c| c.raw_bytes().to_vec())
                    .collect::<Vec<u8>>(),
            );
            round.push(msg.encode());
            if target == "automerge_message" {
                return round;
            }
            for m in round {
                out.push(
                    SignedSyncMessage {
                        message: m,
                        signatures: sigs.clone(),
                    }
                    .encode(),
                );
            }
            let signed: Vec<_> = changes
                .iter()
                .map(|c| {
                    dontpanic_identity::SignedChange::from_parts(
                        c.clone(),
                        key.public(),
                        dontpanic_identity::ChangeSignature::sign(&key, c.hash()).signature,
                    )
                })
                .collect();
            let signed: dontpanic_identity::SignedRuns = signed.into();
            out.push(dontpanic_notebook::sync::encode_changes(&signed));
            out
        }
        "store_files" => {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("journal");
            let key = dontpanic_identity::SecretKey::generate();
            let signed: Vec<_> =
                base_doc()
                    .get_changes(&[])
                    .into_iter()
                    .map(|c| {
                        let s = dontpanic_identity::ChangeSignature::sign(&key, c.hash()).signature;
                        dontpanic_store::Stored::signed(
                            &dontpanic_identity::SignedChange::from_parts(c, key.public(), s),
                        )
                    })
                    .collect();
            let _ = dontpanic_store::Journal::create(&path).map(|mut j| j.append(&signed));
            vec![std::fs::read(&path).unwrap_or_default()]
        }
        _ => Vec::new(),
    }
}

/// A fuzz target: a name and a function that must not panic on any input.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name.
pub const TARGETS: &[Target] = &[
    ("envelope", envelope),
    ("invite", invite),
    ("sync_message", sync_message),
    ("automerge_message", automerge_message),
    ("store_files", store_files),
    ("validator", validator),
];
