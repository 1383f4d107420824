//! `dontpanic relay`: runs a circuit relay and prints what responders need.

use std::path::PathBuf;

use anyhow::{Context, Result};
use dontpanic_net::relay::{serve, RelayEvent};
use dontpanic_net::Multiaddr;

/// Runs until Ctrl-C.
pub async fn run(dir: PathBuf, listen: Vec<Multiaddr>) -> Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The relay has its own key, so its address stays the same across restarts.
    let path = dir.join("relay.key");
    let key = match dontpanic_store::read_key(&path)? {
        Some(k) => k,
        None => dontpanic_store::create_key(&path)?,
    };
    let listen = if listen.is_empty() {
        vec![
            "/ip4/0.0.0.0/tcp/4001".parse()?,
            "/ip4/0.0.0.0/udp/4001/quic-v1".parse()?,
        ]
    } else {
        listen
    };
    let (id, mut events) = serve(key.to_bytes(), listen).await?;
    println!("relay {id} running; it forwards encrypted streams and stores nothing.");
    println!("responders start dontpanic with --relay <one of the addresses below>:");
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Some(RelayEvent::Listening(a)) => println!("listening {a}"),
                Some(RelayEvent::Reservation(p)) => println!("reservation by {p}"),
                Some(RelayEvent::CircuitOpened(a, b)) => println!("circuit {a} -> {b} opened"),
                Some(RelayEvent::CircuitClosed(a, b)) => println!("circuit {a} -> {b} closed"),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}
