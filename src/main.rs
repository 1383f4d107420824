//! `dontpanic`: a peer-to-peer incident notebook. This binary parses flags,
//! opens the notebook and runs the REPL (or a script); the work is done by
//! the crates under `crates/`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use dontpanic_notebook::Notebook;
use dontpanic_repl::Session;

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
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Print this device's name and key.
    Whoami,
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
    print!("First run on this device. Your name (as teammates will see it): ");
    std::io::stdout().flush()?;
    let mut name = String::new();
    std::io::stdin().lock().read_line(&mut name)?;
    let name = name.trim().to_string();
    if name.is_empty() {
        bail!("a name is needed to sign your edits; run again and type one, or give --name");
    }
    Ok(name)
}

fn open_notebook(cli: &Cli) -> Result<Notebook> {
    let dir = data_dir(cli)?;
    let name = match &cli.name {
        Some(n) => Some(n.clone()),
        None if !Notebook::has_device(&dir) => {
            if std::io::stdin().is_terminal() {
                Some(ask_name()?)
            } else {
                bail!("no device key in {} yet: give --name <your name> on first run", dir.display());
            }
        }
        None => None,
    };
    let mut nb = Notebook::open(&dir, name.as_deref())?;
    if let Some(current) = nb.data().config()?.current {
        match nb.open_incident(&current) {
            Ok(warnings) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
            }
            Err(e) => eprintln!("warning: could not reopen incident {current}: {e}"),
        }
    }
    Ok(nb)
}

fn run(cli: Cli) -> Result<bool> {
    let nb = open_notebook(&cli)?;
    let history = nb.data().history_path();
    let session = Session::new(Arc::new(Mutex::new(nb)), None);
    let (_notify, notices) = std::sync::mpsc::channel();
    if let Some(Mode::Whoami) = cli.mode {
        let reply = session.run(dontpanic_repl::Command::Whoami);
        println!("{}", if cli.json { reply.json.to_string() } else { reply.text });
        return Ok(true);
    }
    if std::io::stdin().is_terminal() && !cli.json {
        dontpanic_repl::interactive(&session, &history, notices).map_err(anyhow::Error::msg)?;
        Ok(true)
    } else {
        let failed = dontpanic_repl::script(&session, std::io::stdin().lock(), cli.json, notices);
        Ok(failed == 0)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
