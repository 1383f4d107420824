//! Real swarms on loopback (mDNS off): a link that goes silent is noticed
//! within 10 s and a redial by id brings the peer back; a circuit address
//! dials the peer at its end; a dial into a black hole fails in ~5 s; the
//! node reports the addresses it learns.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dontpanic_net::node::{self, NodeEvent};
use dontpanic_net::relay::{self, RelayEvent};
use dontpanic_net::{FoundBy, Multiaddr, NodeConfig, NodeHandle, PeerId, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn start(
    seed: u8,
    relays: Vec<Multiaddr>,
) -> (NodeHandle, mpsc::Receiver<NodeEvent>, Multiaddr) {
    let (node, mut events) = node::start(NodeConfig {
        seed: [seed; 32],
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        relays,
        agent: "liveness-test".into(),
    })
    .await
    .expect("node starts");
    let e = next(&mut events, Duration::from_secs(5), |e| {
        matches!(e, NodeEvent::Listening { .. })
    })
    .await;
    let NodeEvent::Listening { address } = e else {
        unreachable!()
    };
    let address = address.with(Protocol::P2p(node.peer_id()));
    (node, events, address)
}

/// The first event matching `want` within `limit`; others are skipped.
async fn next(
    events: &mut mpsc::Receiver<NodeEvent>,
    limit: Duration,
    want: impl Fn(&NodeEvent) -> bool,
) -> NodeEvent {
    tokio::time::timeout(limit, async {
        loop {
            let e = events.recv().await.expect("node still running");
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no awaited event within {limit:?}"))
}

fn tcp_port(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a tcp address")
}

/// A TCP forwarder with a switch: once `dark` is set it stops forwarding
/// in both directions and holds every socket open, like a network that
/// drops packets without a word; new connections are accepted and held.
async fn proxy(upstream: u16) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dark = Arc::new(AtomicBool::new(false));
    let d = dark.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (inbound, _) = listener.accept().await.unwrap();
            if d.load(Ordering::SeqCst) {
                held.push(inbound);
                continue;
            }
            let up = SocketAddr::from(([127, 0, 0, 1], upstream));
            let outbound = TcpStream::connect(up).await.unwrap();
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pump(ri, wo, d.clone()));
            tokio::spawn(pump(ro, wi, d.clone()));
        }
    });
    (port, dark)
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dark: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if dark.load(Ordering::SeqCst) {
            break;
        }
        // Wake now and then to notice the switch even with no traffic.
        let n = match tokio::time::timeout(Duration::from_millis(50), from.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        if dark.load(Ordering::SeqCst) || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    // Hold both halves open and silent for the rest of the test.
    std::future::pending::<()>().await;
    drop((from, to));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_is_declared_dead_within_10_s_and_a_redial_by_id_reconnects() {
    logs();
    let (a, mut a_events, _) = start(1, vec![]).await;
    let (b, _b_events, b_addr) = start(2, vec![]).await;
    let (port, dark) = proxy(tcp_port(&b_addr)).await;
    let via_proxy: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", b.peer_id())
        .parse()
        .unwrap();

    assert_eq!(
        a.dial(via_proxy.clone(), FoundBy::Manual).await.unwrap(),
        b.peer_id()
    );
    let connected = next(&mut a_events, Duration::from_secs(5), |e| {
        matches!(e, NodeEvent::Connected { .. })
    })
    .await;
    assert!(
        matches!(&connected, NodeEvent::Connected { peer, address, relayed: false }
            if *peer == b.peer_id() && *address == via_proxy),
        "{connected:?}"
    );
    // Identify tells A where B really listens, though A came in by the proxy.
    next(&mut a_events, Duration::from_secs(5), |e| {
        matches!(e, NodeEvent::Addresses { peer, addresses, source: FoundBy::Identify }
            if *peer == b.peer_id() && addresses.contains(&b_addr))
    })
    .await;
    // A few healthy pings first: silence must come from the link alone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a
        .peers()
        .await
        .iter()
        .any(|p| p.peer == b.peer_id() && p.connected));

    dark.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    let gone = next(&mut a_events, Duration::from_secs(15), |e| {
        matches!(e, NodeEvent::Disconnected { .. })
    })
    .await;
    let took = t0.elapsed();
    println!("dead link noticed after {took:?}: {gone:?}");
    let NodeEvent::Disconnected { peer, reason } = gone else {
        unreachable!()
    };
    assert_eq!(peer, b.peer_id());
    assert!(reason.contains("ping"), "{reason}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        !a.peers().await.iter().any(|p| p.peer == b.peer_id()),
        "a disconnected peer not found by mDNS leaves the table"
    );

    // The link heals: B's real address (as an address book would give it)
    // lets a dial by id reconnect while the proxy path stays dark.
    a.add_addresses(b.peer_id(), vec![b_addr.clone()], FoundBy::Manual);
    let t1 = Instant::now();
    a.dial_peer(b.peer_id());
    let back = next(&mut a_events, Duration::from_secs(10), |e| {
        matches!(
            e,
            NodeEvent::Connected { .. } | NodeEvent::DialFailed { .. }
        )
    })
    .await;
    println!("redial by id: {back:?} after {:?}", t1.elapsed());
    assert!(
        matches!(&back, NodeEvent::Connected { peer, .. } if *peer == b.peer_id()),
        "{back:?}"
    );
    // No second Disconnected for the dead connection once its close ends.
    tokio::time::sleep(Duration::from_secs(3)).await;
    while let Ok(e) = a_events.try_recv() {
        assert!(!matches!(e, NodeEvent::Disconnected { .. }), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_into_a_black_hole_fails_within_about_5_s() {
    logs();
    let (a, mut a_events, _) = start(3, vec![]).await;
    let (b, _b_events, b_addr) = start(4, vec![]).await;
    let (port, dark) = proxy(tcp_port(&b_addr)).await;
    dark.store(true, Ordering::SeqCst);
    let hole: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", b.peer_id())
        .parse()
        .unwrap();

    let t0 = Instant::now();
    let err = a.dial(hole.clone(), FoundBy::Manual).await.unwrap_err();
    let took = t0.elapsed();
    println!("dial by address into a black hole failed after {took:?}: {err}");
    assert!(err.to_string().contains(&b.peer_id().to_string()), "{err}");
    assert!(took < Duration::from_secs(7), "took {took:?}");

    a.add_addresses(b.peer_id(), vec![hole], FoundBy::Manual);
    let t1 = Instant::now();
    a.dial_peer(b.peer_id());
    let failed = next(&mut a_events, Duration::from_secs(10), |e| {
        matches!(
            e,
            NodeEvent::DialFailed { .. } | NodeEvent::Connected { .. }
        )
    })
    .await;
    println!(
        "dial by id into a black hole: {failed:?} after {:?}",
        t1.elapsed()
    );
    assert!(
        matches!(&failed, NodeEvent::DialFailed { peer, .. } if *peer == b.peer_id()),
        "{failed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_address_dials_the_peer_at_its_end_through_an_unconnected_relay() {
    logs();
    let (relay_id, mut relay_events) =
        relay::serve([9; 32], vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()])
            .await
            .unwrap();
    let relay_addr = loop {
        match relay_events.recv().await.unwrap() {
            RelayEvent::Listening(a) => break a,
            _ => continue,
        }
    };
    let (b, _b_events, _) = start(6, vec![relay_addr.clone()]).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = relay_events.recv().await {
            if matches!(e, RelayEvent::Reservation(p) if p == b.peer_id()) {
                return;
            }
        }
    })
    .await
    .expect("b reserves on the relay");
    let (a, mut a_events, _) = start(5, vec![]).await;

    let circuit = relay_addr
        .clone()
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(b.peer_id()));
    let target = a.dial(circuit.clone(), FoundBy::Manual).await.unwrap();
    assert_eq!(
        target,
        b.peer_id(),
        "the last /p2p is the target, not {relay_id}"
    );
    next(
        &mut a_events,
        Duration::from_secs(5),
        |e| matches!(e, NodeEvent::Connected { peer, relayed: true, .. } if *peer == b.peer_id()),
    )
    .await;
    let info = a.peers().await;
    assert!(
        info.iter()
            .any(|p| p.peer == b.peer_id() && p.connected && p.relayed),
        "{info:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_that_connects_reports_the_address_that_worked() {
    logs();
    let (a, mut a_events, _) = start(7, vec![]).await;
    let (b, _b_events, b_addr) = start(8, vec![]).await;
    let bare: Multiaddr = b_addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    // Dialed without the peer id: the report still ends in /p2p/B.
    assert_eq!(a.dial(bare, FoundBy::Invite).await.unwrap(), b.peer_id());
    let e = next(
        &mut a_events,
        Duration::from_secs(5),
        |e| matches!(e, NodeEvent::Addresses { peer, .. } if *peer == b.peer_id()),
    )
    .await;
    let NodeEvent::Addresses {
        addresses, source, ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!(addresses, vec![b_addr.clone()]);
    assert_eq!(source, FoundBy::Invite);
    assert!(addresses[0].iter().last() == Some(Protocol::P2p(b.peer_id())));
    // Identify repeats that address: nothing new, no second report.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Ok(e) = a_events.try_recv() {
        assert!(!matches!(e, NodeEvent::Addresses { .. }), "repeated: {e:?}");
    }
    let _: PeerId = a.peer_id();
}
