//! `dontpanic`: a peer-to-peer incident notebook. This binary parses flags,
//! opens the notebook, starts the node and runs the REPL (or a script); the
//! work is done by the crates under `crates/`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dontpanic_net::{Multiaddr, NodeConfig};
use dontpanic_notebook::{Notebook, NotebookHandle};
use dontpanic_repl::{Network, Notice, PeerRow, Session};
use dontpanic_sync::Replicator;

mod relay;

/// A peer-to-peer incident notebook: stay calm, capture symptoms, rule
/// hypotheses out, write it up.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Data directory (default: the platform's data dir, or $DONTPANIC_HOME).
    #[arg(long, global = true, env = "DONTPANIC_HOME")]
    data_dir: Option<PathBuf>,
    /// Your display name; asked once interactively if not given on first run.
    #[arg(long, global = true)]
    name: Option<String>,
    /// Answer every command with one JSON line (for scripts).
    #[arg(long, global = true)]
    json: bool,
    /// Address to listen on (repeatable); default: all interfaces, TCP and
    /// QUIC, on the port used last time (a free one the first time).
    #[arg(long, global = true, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// Do not discover peers on the LAN with mDNS.
    #[arg(long, global = true)]
    no_mdns: bool,
    /// Relay to reach peers beyond the LAN (repeatable; remembered).
    #[arg(long, global = true, value_name = "MULTIADDR")]
    relay: Vec<Multiaddr>,
    /// No networking at all: a local notebook only.
    #[arg(long, global = true)]
    offline: bool,
    /// Start a new device identity on purpose although this data directory
    /// holds history signed by another key (the old key file is kept aside).
    /// Without it, a missing or replaced device.key stops the start.
    #[arg(long, global = true)]
    new_identity: bool,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Print this device's name and key.
    Whoami,
    /// Join an incident from an invite, then open the REPL on it.
    Join {
        /// The invite string (dpinv1…).
        invite: String,
    },
    /// Verify every stored file, repair what this device can, list what
    /// must come from members; no networking. Exit status 0 when nothing
    /// is left to repair or to fetch, 1 otherwise.
    Doctor,
    /// Run a circuit relay for responders beyond the LAN (listens on
    /// --listen, default /ip4/0.0.0.0/tcp/4001 and QUIC on udp/4001).
    Relay,
}

fn data_dir(cli: &Cli) -> Result<PathBuf> {
    if let Some(d) = &cli.data_dir {
        return Ok(d.clone());
    }
    let dirs = directories::ProjectDirs::from("", "", "dontpanic")
        .context("cannot find a home directory for the default data directory; give --data-dir")?;
    Ok(dirs.data_dir().to_path_buf())
}

fn ask_name() -> Result<String> {
    let mut stdin = std::io::stdin().lock();
    loop {
        print!("First run on this device. Your name (as teammates will see it): ");
        std::io::stdout().flush()?;
        let mut name = String::new();
        if stdin.read_line(&mut name)? == 0 {
            // End of input: nobody is there to answer.
            println!();
            bail!("no name given (end of input): a name is needed to sign your edits; run again and type one, or give --name");
        }
        let name = name.trim();
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        println!("A name is needed to sign your edits; type one (Ctrl-D to stop).");
    }
}

fn open_notebook(cli: &Cli) -> Result<Notebook> {
    let dir = data_dir(cli)?;
    let name = match &cli.name {
        Some(n) => Some(n.clone()),
        // With incidents stored, a missing key is refused by the notebook
        // (it is never replaced silently), not taken for a first run.
        None if !Notebook::has_device(&dir) && !cli.new_identity && !holds_incidents(&dir) => {
            if std::io::stdin().is_terminal() {
                Some(ask_name()?)
            } else {
                bail!(
                    "no device key in {} yet: give --name <your name> on first run",
                    dir.display()
                );
            }
        }
        None => None,
    };
    let mut nb = Notebook::open_with(&dir, name.as_deref(), cli.new_identity)?;
    for w in nb.start_warnings() {
        eprintln!("warning: {w}");
    }
    // Settings are not history: damaged ones are set aside, never fatal.
    let (config, warning) = nb.data().check_config();
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    if let Some(current) = config.current {
        match nb.open_incident(&current) {
            Ok(warnings) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
            }
            Err(e) => eprintln!(
                "warning: could not reopen incident {current} (named in {}): {e}",
                nb.data().path().join("config.json").display()
            ),
        }
    }
    Ok(nb)
}

fn holds_incidents(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir.join("incidents")).is_ok_and(|mut d| d.next().is_some())
}

/// The REPL's view of the network, over the replicator.
struct War(Replicator, tokio::runtime::Handle);

impl Network for War {
    fn peers(&self) -> Result<Vec<PeerRow>, String> {
        Ok(self
            .0
            .peers()
            .into_iter()
            .map(|p| PeerRow {
                name: p.name,
                peer_id: p.peer.to_string(),
                address: p.address,
                found_by: p.found_by.into(),
                state: p.state.into(),
                route: p.route.into(),
                last_sync_secs: p.last_sync_secs,
                rtt_ms: p.rtt_ms,
                problem: p.problem,
            })
            .collect())
    }
    fn connect(&self, addr: &str) -> Result<String, String> {
        self.0
            .connect(addr)
            .map(|p| format!("connected to {p}"))
            .map_err(|e| e.to_string())
    }
    fn unblock(&self, peer: &str) -> Result<String, String> {
        self.0
            .unblock(peer)
            .map(|p| p.to_string())
            .map_err(|e| e.to_string())
    }
    fn invite(&self, valid_for: std::time::Duration, once: bool) -> Result<String, String> {
        self.0
            .invite(valid_for, once)
            .map(|i| i.to_string())
            .map_err(|e| e.to_string())
    }
    fn join(&self, invite: &str) -> Result<String, String> {
        self.0.join(invite).map_err(|e| e.to_string())
    }
    fn incident_opened(&self) {
        self.0.incident_opened();
    }
    fn local_edit(&self, incident: &str) {
        self.0.local_edit(incident);
    }
    fn members_online(&self, incident: &str) -> usize {
        self.0.members_online(incident)
    }
    fn addresses(&self) -> (String, Vec<String>) {
        let node = self.0.node().clone();
        let addrs = self.1.block_on(node.addresses());
        (
            node.peer_id().to_string(),
            addrs.iter().map(|a| a.to_string()).collect(),
        )
    }
}

fn run(cli: Cli) -> Result<bool> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Some(Mode::Relay) = &cli.mode {
        let dir = data_dir(&cli)?;
        return runtime
            .block_on(relay::run(dir, cli.listen.clone()))
            .map(|_| true);
    }
    if let Some(Mode::Doctor) = &cli.mode {
        return doctor(&cli);
    }
    let nb = open_notebook(&cli)?;
    let history = nb.data().history_path();
    // Relays given now come first: per relay peer only the first address is used.
    let mut relays: Vec<String> = cli.relay.iter().map(|r| r.to_string()).collect();
    for r in nb.data().config()?.relays {
        if !relays.contains(&r) {
            relays.push(r);
        }
    }
    if !cli.relay.is_empty() {
        let mut cfg = nb.data().config()?;
        cfg.relays = relays.clone();
        nb.data().save_config(&cfg)?;
    }
    let port = if cli.listen.is_empty() && !cli.offline {
        Some(listen_port(&nb)?)
    } else {
        None
    };
    let seed = nb.device().key.to_bytes();
    let notebook = NotebookHandle::spawn(nb);
    let (notify, notices) = std::sync::mpsc::sync_channel::<Notice>(64);
    let replicator = if cli.offline {
        None
    } else {
        let config = NodeConfig {
            seed,
            listen: cli.listen.clone(),
            mdns: !cli.no_mdns,
            relays: relays.iter().filter_map(|r| r.parse().ok()).collect(),
            agent: format!("dontpanic/{}", env!("CARGO_PKG_VERSION")),
        };
        let (node, events) = start_node(&runtime, config, port)?;
        let (replicator, rx) =
            Replicator::start(notebook.clone(), node, events, runtime.handle().clone());
        std::thread::spawn(move || {
            for n in rx {
                if notify
                    .send(Notice {
                        text: n.text,
                        json: n.json,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
        Some(replicator)
    };
    let network: Option<Arc<dyn Network>> = replicator
        .clone()
        .map(|r| Arc::new(War(r, runtime.handle().clone())) as Arc<dyn Network>);
    let session = Session::new(notebook.clone(), network);
    let ok = match &cli.mode {
        Some(Mode::Whoami) => {
            print_reply(&cli, session.run(dontpanic_repl::Command::Whoami));
            true
        }
        Some(Mode::Join { invite }) => {
            let reply = session.run(dontpanic_repl::Command::Join(invite.clone()));
            if !reply.ok {
                bail!("{}", reply.text);
            }
            print_reply(&cli, reply);
            repl(&cli, &session, &history, notices)?
        }
        _ => repl(&cli, &session, &history, notices)?,
    };
    if let Some(r) = &replicator {
        r.flush(Duration::from_secs(3));
    }
    // Sync states are saved and a snapshot is left behind so the next
    // start opens fast.
    if let Err(e) = notebook.blocking(notebook.shutdown()) {
        eprintln!("warning: could not write a snapshot: {e}");
    }
    if let Some(r) = &replicator {
        runtime.block_on(r.node().shutdown());
    }
    Ok(ok)
}

/// The port this node listens on by default: last run's, so members that
/// remember our address find us again; a free one the first time.
fn listen_port(nb: &Notebook) -> Result<u16> {
    let mut cfg = nb.data().config()?;
    if let Some(p) = cfg.port {
        return Ok(p);
    }
    let port = std::net::TcpListener::bind(("0.0.0.0", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .context("cannot find a free TCP port to listen on")?;
    cfg.port = Some(port);
    nb.data().save_config(&cfg)?;
    Ok(port)
}

/// Starts the node; with no `--listen`, on `port` (TCP and QUIC), or on any
/// port if that one is taken now.
fn start_node(
    runtime: &tokio::runtime::Runtime,
    mut config: NodeConfig,
    port: Option<u16>,
) -> Result<(
    dontpanic_net::NodeHandle,
    tokio::sync::mpsc::Receiver<dontpanic_net::NodeEvent>,
)> {
    let Some(port) = port else {
        return Ok(runtime.block_on(dontpanic_net::node::start(config))?);
    };
    let on = NodeConfig::listen_everywhere;
    config.listen = on(port);
    match runtime.block_on(dontpanic_net::node::start(config.clone())) {
        Ok(started) => Ok(started),
        Err(e) => {
            eprintln!(
                "warning: {e}; listening on another port, members will learn it when we dial them"
            );
            config.listen = on(0);
            Ok(runtime.block_on(dontpanic_net::node::start(config))?)
        }
    }
}

/// `dontpanic doctor`: the data directory is opened but no incident is
/// loaded first, so the damage is seen as it is on disk before loading
/// repairs it.
fn doctor(cli: &Cli) -> Result<bool> {
    let dir = data_dir(cli)?;
    let mut nb = Notebook::open_with(&dir, cli.name.as_deref(), cli.new_identity)?;
    for w in nb.start_warnings() {
        eprintln!("warning: {w}");
    }
    let report = nb.doctor()?;
    let left = !report.is_clean() && !report.problems.iter().all(|p| p.repaired)
        || report.from_peers.iter().any(|(_, h)| !h.is_empty());
    if cli.json {
        let mut j = dontpanic_repl::doctor_json(&report);
        j["ok"] = serde_json::Value::Bool(true);
        j["command"] = serde_json::Value::String("doctor".into());
        println!("{j}");
    } else {
        println!("{}", dontpanic_repl::doctor_text(&report));
    }
    Ok(!left)
}

fn print_reply(cli: &Cli, reply: dontpanic_repl::Reply) {
    println!(
        "{}",
        if cli.json {
            reply.json.to_string()
        } else {
            reply.text
        }
    );
}

fn repl(
    cli: &Cli,
    session: &Session,
    history: &std::path::Path,
    notices: std::sync::mpsc::Receiver<Notice>,
) -> Result<bool> {
    if std::io::stdin().is_terminal() && !cli.json {
        dontpanic_repl::interactive(session, history, notices).map_err(anyhow::Error::msg)?;
        Ok(true)
    } else {
        let failed = dontpanic_repl::script(session, std::io::stdin().lock(), cli.json, notices);
        Ok(failed == 0)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
