//! Two real nodes on loopback exchange messages far larger than one stream
//! may carry: the request and its answer both travel in parts and arrive
//! whole, and no stream carries more than `MAX_ENVELOPE`.

use std::time::Duration;

use dontpanic_net::wire::{SignedSync, SyncRequest, SyncResponse, MAX_ENVELOPE, PART_BYTES};
use dontpanic_net::{FoundBy, NodeConfig, NodeEvent};

fn config(seed: u8) -> NodeConfig {
    NodeConfig {
        seed: [seed; 32],
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        relays: vec![],
        agent: "parts-test".into(),
    }
}

fn message(len: usize, fill: u8) -> SignedSync {
    SignedSync {
        automerge: (0..len)
            .map(|i| (i as u8) ^ fill)
            .collect::<Vec<u8>>()
            .into(),
        signatures: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_and_its_large_answer_travel_in_parts() {
    let (a, _a_events) = dontpanic_net::node::start(config(1)).await.unwrap();
    let (b, mut b_events) = dontpanic_net::node::start(config(2)).await.unwrap();
    let addr = loop {
        match tokio::time::timeout(Duration::from_secs(10), b_events.recv())
            .await
            .expect("b listens")
        {
            Some(NodeEvent::Listening { address }) => break address,
            Some(_) => {}
            None => panic!("b stopped"),
        }
    };
    let b_peer = b.peer_id();
    a.dial(
        addr.with(dontpanic_net::Protocol::P2p(b_peer)),
        FoundBy::Manual,
    )
    .await
    .unwrap();
    // Bigger than several parts, not a multiple of a part.
    let asked = message(5 * PART_BYTES + 12_345, 0x5a);
    let answer = message(3 * PART_BYTES + 7, 0xa5);
    let served = answer.clone();
    let responder = b.clone();
    let got = tokio::spawn(async move {
        loop {
            match b_events.recv().await {
                Some(NodeEvent::Sync { request, token, .. }) => {
                    responder.answer_sync(
                        token,
                        SyncResponse::Sync {
                            message: Some(served.clone()),
                        },
                    );
                    return request;
                }
                Some(_) => {}
                None => panic!("b stopped"),
            }
        }
    });
    let request = SyncRequest::Sync {
        incident: "i3k".into(),
        message: asked.clone(),
    };
    let reply = tokio::time::timeout(Duration::from_secs(30), a.sync(b_peer, request))
        .await
        .expect("answered in time")
        .expect("answered");
    assert_eq!(
        reply,
        SyncResponse::Sync {
            message: Some(answer)
        }
    );
    match got.await.unwrap() {
        SyncRequest::Sync { incident, message } => {
            assert_eq!(incident, "i3k");
            assert_eq!(message, asked, "the request arrived whole");
        }
        other => panic!("{other:?}"),
    }
    const { assert!(MAX_ENVELOPE < 1 << 20) };
}
