//! Running parsed commands against the notebook, producing one [`Reply`]
//! each, in text and in JSON.

use std::sync::Arc;

use dontpanic_incident::evidence::{Ended, Record, Source};
use dontpanic_incident::{
    nudges, render, Edit, Evidence, Found, IncidentView, Kind, Nudge, Stopped,
};
use dontpanic_notebook::{NotebookError, NotebookHandle};
use serde_json::{json, Value};

use crate::command::{self, Command, UpdateMode};

/// What one command answered.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Whether the command succeeded.
    pub ok: bool,
    /// The text for a human.
    pub text: String,
    /// The JSON object for a script (always has `ok`; `error` when failed).
    pub json: Value,
    /// The command asked to leave.
    pub quit: bool,
}

impl Reply {
    fn done(text: impl Into<String>, mut json: Value) -> Reply {
        json["ok"] = Value::Bool(true);
        Reply {
            ok: true,
            text: text.into(),
            json,
            quit: false,
        }
    }

    /// A failed command.
    pub fn error(message: impl Into<String>) -> Reply {
        let message = message.into();
        Reply {
            ok: false,
            json: json!({ "ok": false, "error": message }),
            text: message,
            quit: false,
        }
    }
}

/// What the network offers the REPL; implemented by the binary over the
/// node, so this crate knows nothing of libp2p.
pub trait Network: Send + Sync {
    /// `peers`: rows for the table and the JSON.
    fn peers(&self) -> Result<Vec<PeerRow>, String>;
    /// `connect <addr>`.
    fn connect(&self, addr: &str) -> Result<String, String>;
    /// `unblock <peer>`: trust a rejected peer again; returns its peer id.
    fn unblock(&self, peer: &str) -> Result<String, String>;
    /// `invite`: the invite string for the open incident, valid for
    /// `valid_for`, for one joiner if `once`.
    fn invite(&self, valid_for: std::time::Duration, once: bool) -> Result<String, String>;
    /// `join <invite>`: returns the joined incident's id once it is stored.
    fn join(&self, invite: &str) -> Result<String, String>;
    /// The incident that is now open (after `new`/`open`), so the node syncs it.
    fn incident_opened(&self);
    /// A local edit was made in `incident`, so peers should hear of it.
    fn local_edit(&self, incident: &str);
    /// This node's peer id and dialable addresses.
    fn addresses(&self) -> (String, Vec<String>);
    /// How many members of `incident` other than us are connected now
    /// (never waits on the network).
    fn members_online(&self, incident: &str) -> usize;
}

/// Who else is here, for the prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Company {
    /// No networking in this session.
    Offline,
    /// Nobody else is on the roster.
    Alone,
    /// Members other than us on the roster, and how many are connected.
    Members {
        /// Connected now.
        online: usize,
        /// On the roster, us excluded.
        of: usize,
    },
}

impl std::fmt::Display for Company {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Company::Offline => f.write_str("offline"),
            Company::Alone => f.write_str("alone"),
            Company::Members { online: 0, .. } => f.write_str("no member reachable"),
            Company::Members { online, of } => write!(f, "{online}/{of} online"),
        }
    }
}

/// What the prompt shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptContext {
    /// Short incident id.
    pub incident: String,
    /// Status word.
    pub status: String,
    /// Who else is here.
    pub company: Company,
    /// A stakeholder update is due.
    pub update_due: bool,
}

/// One row of `peers`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerRow {
    /// Roster name, when known.
    pub name: String,
    /// libp2p peer id.
    pub peer_id: String,
    /// Address in use.
    pub address: String,
    /// mdns, manual, invite, relay, inbound.
    pub found_by: String,
    /// connected / discovered / rejected.
    pub state: String,
    /// direct or relayed.
    pub route: String,
    /// Seconds since the last sync message.
    pub last_sync_secs: Option<u64>,
    /// Ping round-trip time.
    pub rtt_ms: Option<f64>,
    /// Why the peer is not trusted, if it is not.
    pub problem: Option<String>,
}

/// Where the output of a command that `run` runs goes while it runs
/// (whole lines, as they come): the interactive prompt prints it; without
/// one (a script), the reply carries it.
pub type Live<'a> = dyn FnMut(&str) + 'a;

/// A REPL session: the notebook (through its handle) and, if running, the
/// network.
pub struct Session {
    notebook: NotebookHandle,
    network: Option<Arc<dyn Network>>,
    /// The nudges already said, and for which incident: each is said once,
    /// when it becomes true (again).
    said: std::sync::Mutex<(String, Vec<&'static str>)>,
}

impl Session {
    /// A session over a notebook, with or without a network.
    pub fn new(notebook: NotebookHandle, network: Option<Arc<dyn Network>>) -> Session {
        Session {
            notebook,
            network,
            said: Default::default(),
        }
    }

    /// The notebook's handle.
    pub fn notebook(&self) -> &NotebookHandle {
        &self.notebook
    }

    /// Waits for a notebook request from this (non-async) thread.
    fn ask<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, NotebookError>>,
    ) -> Result<T, String> {
        self.notebook.blocking(request).map_err(|e| e.to_string())
    }

    /// The prompt's context, from what the notebook published: never waits
    /// on the disk or the network.
    pub fn prompt_context(&self) -> Option<PromptContext> {
        let published = self.notebook.published();
        let current = published.current.as_ref()?;
        let me = self.notebook.device().key.to_string();
        let others = published
            .rosters
            .get(&current.id)
            .map(|r| r.iter().filter(|m| m.key != me).count())
            .unwrap_or(0);
        let company = match &self.network {
            None => Company::Offline,
            Some(_) if others == 0 => Company::Alone,
            Some(net) => Company::Members {
                online: net.members_online(&current.id),
                of: others,
            },
        };
        let update_due = nudges(&current.standing, dontpanic_notebook::now_ms())
            .iter()
            .any(|n| matches!(n, Nudge::UpdateDue { .. }));
        Some(PromptContext {
            incident: current.id.chars().take(5).collect(),
            status: current.status.clone(),
            company,
            update_due,
        })
    }

    /// The nudges of the incident at the prompt that were not true when
    /// last asked (from what the notebook published and the clock: never
    /// waits). Each is said once until it stops being true.
    pub fn fresh_nudges(&self) -> Vec<Nudge> {
        let published = self.notebook.published();
        let Some(current) = published.current.as_ref() else {
            return Vec::new();
        };
        let now = nudges(&current.standing, dontpanic_notebook::now_ms());
        let mut said = self.said.lock().unwrap_or_else(|p| p.into_inner());
        if said.0 != current.id {
            *said = (current.id.clone(), Vec::new());
        }
        let fresh = now
            .iter()
            .filter(|n| !said.1.contains(&n.kind()))
            .cloned()
            .collect();
        said.1 = now.iter().map(Nudge::kind).collect();
        fresh
    }

    /// What the prompt completes: the notebook's incidents, items and
    /// conflicts, and the members of the incident at the prompt (from what
    /// the notebook published).
    pub fn completions(&self) -> crate::Offer {
        let published = self.notebook.published();
        let members = published
            .current
            .as_ref()
            .and_then(|c| published.rosters.get(&c.id))
            .map(|r| r.iter().map(|m| m.name.clone()).collect())
            .unwrap_or_default();
        crate::Offer {
            notebook: self.ask(self.notebook.completions()).unwrap_or_default(),
            members,
        }
    }

    /// Parses and runs one line; `None` for blank lines and comments.
    pub fn run_line(&self, line: &str) -> Option<Reply> {
        self.run_line_live(line, None)
    }

    /// [`run_line`](Self::run_line), with a command's output shown as it
    /// comes when `live` is given.
    pub fn run_line_live(&self, line: &str, live: Option<&mut Live<'_>>) -> Option<Reply> {
        match command::parse(line) {
            Ok(None) => None,
            Ok(Some(cmd)) => Some(self.run_live(cmd, live)),
            Err(e) => Some(Reply::error(e.to_string())),
        }
    }

    /// Runs one command.
    pub fn run(&self, cmd: Command) -> Reply {
        self.run_live(cmd, None)
    }

    /// Runs one command, showing a `run`'s output through `live` if given.
    pub fn run_live(&self, cmd: Command, live: Option<&mut Live<'_>>) -> Reply {
        let name = command_name(&cmd);
        let brief = matches!(cmd, Command::Brief);
        let reply = match cmd {
            Command::Run {
                test,
                command,
                timeout,
            } => self.run_evidence(&test, command, timeout, live),
            cmd => self.dispatch(cmd),
        };
        let mut reply = reply.unwrap_or_else(Reply::error);
        if reply.ok {
            // `brief` lists every nudge itself.
            let fresh = self.fresh_nudges();
            if !brief && !fresh.is_empty() {
                for n in &fresh {
                    reply.text.push_str(&format!("\n! {n}"));
                }
                reply.json["nudges"] = fresh
                    .iter()
                    .map(|n| json!({ "kind": n.kind(), "text": n.to_string() }))
                    .collect();
            }
        }
        // Replies show other members' text: it must not drive the terminal.
        reply.text = render::terminal_safe(&reply.text);
        reply.json["command"] = Value::String(name.into());
        reply
    }

    fn edit(&self, edit: Edit) -> Result<Reply, String> {
        let done = self.ask(self.notebook.edit(edit))?;
        if let Some(net) = &self.network {
            net.local_edit(&done.incident);
        }
        let (applied, short) = (done.applied, done.short);
        let mut j = json!({ "summary": applied.summary });
        if let Some(id) = &applied.id {
            j["id"] = json!(id.as_str());
            j["short"] = json!(short);
        }
        // A block's further lines are indented under it, as in `timeline`.
        Ok(Reply::done(render::continued(&applied.summary, 2), j))
    }

    /// `run`: runs the test's action (or `command`) and records what it did
    /// as evidence on the test.
    fn run_evidence(
        &self,
        test: &str,
        command: Option<String>,
        timeout: std::time::Duration,
        live: Option<&mut Live<'_>>,
    ) -> Result<Reply, String> {
        let view = self.view()?;
        let test = match view.resolve(test).map_err(|e| e.to_string())? {
            Found::Item(i) if i.id.kind() == Kind::Test => i,
            other => {
                return Err(dontpanic_incident::RuleError::WrongKind {
                    id: test.to_string(),
                    got: other.id().kind().noun(),
                    want: Kind::Test.noun(),
                }
                .to_string())
            }
        };
        let command = command.unwrap_or_else(|| test.get("action").to_string());
        let streamed = live.is_some();
        // Ctrl-C while the command runs stops it (its group gets SIGINT),
        // not dontpanic; the notebook and the network go on meanwhile.
        let interrupt = dontpanic_evidence::Interrupt::install().ok();
        let ran = match live {
            Some(print) => {
                print(&format!(
                    "running `{}` (timeout {}; Ctrl-C stops it)\n",
                    render::one_line(&command),
                    dontpanic_incident::evidence::duration_text(timeout.as_millis() as i64)
                ));
                let mut at_line_start = true;
                let ran = dontpanic_evidence::run(&command, timeout, interrupt, &mut |text| {
                    at_line_start = text.ends_with('\n');
                    print(text)
                });
                // The reply starts on a line of its own.
                if !at_line_start {
                    print("\n");
                }
                ran
            }
            None => dontpanic_evidence::run(&command, timeout, interrupt, &mut |_| {}),
        }
        .map_err(|e| e.to_string())?;
        let record = Record {
            source: Source::Run {
                command: ran.command,
                ended: match ran.ended {
                    dontpanic_evidence::Ended::Exit(c) => Ended::Exit(c.into()),
                    dontpanic_evidence::Ended::Signal(s) => Ended::Signal(s.into()),
                },
                stopped: ran.stopped.map(|s| match s {
                    dontpanic_evidence::Stopped::Timeout => Stopped::Timeout,
                    dontpanic_evidence::Stopped::Interrupt => Stopped::Interrupt,
                }),
                timeout_ms: ran.timeout.as_millis() as i64,
                duration_ms: ran.duration.as_millis() as i64,
            },
            output: ran.output.text,
            cut_bytes: ran.output.cut_bytes as i64,
            redactions: (ran.output.redactions + ran.command_redactions) as i64,
        };
        self.record_evidence(test.id.to_string(), record, !streamed)
    }

    /// `attach`: records a text file as evidence on an item.
    fn attach(&self, item: &str, path: &str) -> Result<Reply, String> {
        let view = self.view()?;
        let item = match view.resolve(item).map_err(|e| e.to_string())? {
            Found::Item(i) => i.id.to_string(),
            Found::Evidence(e) => {
                return Err(format!(
                    "{} is an evidence; attach to the item it is about",
                    e.short
                ))
            }
        };
        let file = dontpanic_evidence::read_text_file(std::path::Path::new(path))
            .map_err(|e| e.to_string())?;
        let record = Record {
            source: Source::File {
                name: path.to_string(),
                bytes: file.bytes as i64,
            },
            output: file.output.text,
            cut_bytes: file.output.cut_bytes as i64,
            redactions: file.output.redactions as i64,
        };
        self.record_evidence(item, record, true)
    }

    /// Records evidence on `of`; the reply shows it (trimmed) when
    /// `with_output`, and its JSON carries every field.
    fn record_evidence(
        &self,
        of: String,
        record: Record,
        with_output: bool,
    ) -> Result<Reply, String> {
        let done = self.ask(self.notebook.edit(Edit::AddEvidence { of, record }))?;
        if let Some(net) = &self.network {
            net.local_edit(&done.incident);
        }
        let applied = done.applied;
        let view = self.view()?;
        let id = applied.id.map(|i| i.to_string()).unwrap_or_default();
        let Some(e) = view.evidence.iter().find(|e| e.id.as_str() == id) else {
            return Ok(Reply::done(
                applied.summary.clone(),
                json!({ "summary": applied.summary, "id": id }),
            ));
        };
        let text = if with_output {
            render::evidence_text(&view, e, false)
        } else {
            applied.summary.clone()
        };
        // Nested: `command` at the top of a reply names the REPL command.
        let j = json!({
            "id": e.id.as_str(),
            "short": e.short,
            "summary": applied.summary,
            "evidence": evidence_json(&view, e),
        });
        Ok(Reply::done(text.trim_end().to_string(), j))
    }

    fn network(&self) -> Result<&Arc<dyn Network>, String> {
        self.network
            .as_ref()
            .ok_or_else(|| "networking is off in this session (started with --offline)".to_string())
    }

    fn dispatch(&self, cmd: Command) -> Result<Reply, String> {
        match cmd {
            Command::New { title, severity } => {
                let applied = self.ask(self.notebook.create(title, severity))?.applied;
                if let Some(net) = &self.network {
                    net.incident_opened();
                }
                let id = applied.id.map(|i| i.to_string()).unwrap_or_default();
                Ok(Reply::done(
                    applied.summary.clone(),
                    json!({ "id": id, "summary": applied.summary }),
                ))
            }
            Command::Incidents => {
                let list = self.ask(self.notebook.incidents())?;
                let text = if list.is_empty() {
                    "no incidents yet: `new <title>` starts one".to_string()
                } else {
                    list.iter()
                        .map(|i| {
                            let title = render::one_line(&i.title);
                            format!("{}  {:<5} {:<13} {title}", i.id, i.severity, i.status)
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let rows: Vec<Value> = list
                    .iter()
                    .map(|i| json!({"id": i.id, "title": i.title, "severity": i.severity, "status": i.status}))
                    .collect();
                Ok(Reply::done(text, json!({ "incidents": rows })))
            }
            Command::Open(id) => {
                let (warnings, view) = self.ask(self.notebook.open(id))?;
                if let Some(net) = &self.network {
                    net.incident_opened();
                }
                let mut text = warnings
                    .iter()
                    .map(|w| format!("warning: {w}\n"))
                    .collect::<String>();
                text.push_str(&format!(
                    "opened {} [{}] {}",
                    view.id,
                    view.status.map(|s| s.to_string()).unwrap_or_default(),
                    view.title
                ));
                Ok(Reply::done(
                    text,
                    json!({ "id": view.id, "title": view.title, "warnings": warnings }),
                ))
            }
            Command::Symptom {
                text,
                place,
                frequency,
                impact,
                since,
            } => self.edit(Edit::AddSymptom {
                text,
                place,
                frequency,
                impact,
                since,
            }),
            Command::Hypo(text) => self.edit(Edit::AddHypothesis { text }),
            Command::Test {
                hypothesis,
                action,
                rules_out_if,
            } => self.edit(Edit::AddTest {
                hypothesis,
                action,
                rules_out_if,
            }),
            Command::Result {
                test,
                observation,
                verdict,
            } => self.edit(Edit::AddResult {
                test,
                observation,
                verdict,
            }),
            Command::Confirm {
                hypothesis,
                evidence,
            } => self.edit(Edit::Confirm {
                hypothesis,
                evidence,
            }),
            Command::Fix {
                text,
                unconfirmed_because,
            } => self.edit(Edit::AddFix {
                text,
                unconfirmed_because,
            }),
            Command::Note(text) => self.edit(Edit::AddNote { text }),
            Command::Status {
                status: Some(status),
                because,
            } => self.edit(Edit::SetStatus { status, because }),
            Command::Status { status: None, .. } => {
                let view = self.view()?;
                let status = view
                    .status
                    .unwrap_or(dontpanic_incident::Status::Investigating);
                let since = view
                    .status_times
                    .get(status.as_str())
                    .map(|t| format!(" (since {})", render::utc(*t)))
                    .unwrap_or_default();
                Ok(Reply::done(
                    format!(
                        "status: {status}{since}
  change it with `status <{}>`",
                        words(dontpanic_incident::Status::ALL)
                    ),
                    json!({ "status": status.as_str(), "since": view.status_times.get(status.as_str()) }),
                ))
            }
            Command::Reopen(reason) => self.edit(Edit::Reopen { reason }),
            Command::Role {
                role: Some(role),
                name: Some(name),
            } => self.edit(Edit::SetRole { role, name }),
            Command::Role { role, name: _ } => {
                let view = self.view()?;
                let shown: Vec<dontpanic_incident::Role> = match role {
                    Some(r) => vec![r],
                    None => dontpanic_incident::Role::ALL.to_vec(),
                };
                let holder = |r: dontpanic_incident::Role| view.roles.get(r.as_str()).cloned();
                let mut text: Vec<String> = shown
                    .iter()
                    .map(|r| {
                        format!(
                            "{:<10} {}",
                            r.as_str(),
                            holder(*r).unwrap_or_else(|| "(nobody)".into())
                        )
                    })
                    .collect();
                text.push(format!(
                    "  give one with `role <{}> <member>`; members: {}",
                    words(dontpanic_incident::Role::ALL),
                    view.members
                        .iter()
                        .filter(|m| view.removal_of(&m.key).is_none())
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                let roles: serde_json::Map<String, Value> = shown
                    .iter()
                    .map(|r| (r.as_str().to_string(), json!(holder(*r))))
                    .collect();
                Ok(Reply::done(text.join("\n"), json!({ "roles": roles })))
            }
            Command::Title(t) => self.edit(Edit::SetTitle(t)),
            Command::Severity(Some(s)) => self.edit(Edit::SetSeverity(s)),
            Command::Severity(None) => {
                let view = self.view()?;
                let sev = view.severity.unwrap_or(dontpanic_incident::Severity::Sev3);
                Ok(Reply::done(
                    format!(
                        "severity: {} — {}\n  change it with `sev <1-4>`; `help sev` defines them",
                        sev.label(),
                        sev.meaning()
                    ),
                    json!({ "severity": sev.as_str() }),
                ))
            }
            Command::FollowUp { text, owner, due } => {
                self.edit(Edit::AddFollowUp { text, owner, due })
            }
            Command::Summary(text) => self.edit(Edit::SetSummary(text)),
            Command::Lesson(text) => self.edit(Edit::AddLesson { text }),
            Command::Similar => {
                let found = self.ask(self.notebook.similar())?;
                Ok(Reply::done(similar_text(&found), similar_json(&found)))
            }
            Command::Resolve { field, value } => self.edit(Edit::Resolve { field, value }),
            Command::Run { .. } => Err("`run` runs through Session::run_live".into()),
            Command::Attach { item, path } => self.attach(&item, &path),
            Command::Show { id, full } => {
                let view = self.view()?;
                let found = view.resolve(&id).map_err(|e| e.to_string())?;
                let text = render::show(&view, found, full);
                let j = match found {
                    Found::Evidence(e) => {
                        json!({ "evidence": [evidence_json(&view, e)], "id": e.id.as_str() })
                    }
                    Found::Item(i) => json!({
                        "id": i.id.as_str(),
                        "short": i.short,
                        "kind": i.id.kind().noun(),
                        "by": i.by,
                        "name": view.name_of(&i.by),
                        "at": i.at,
                        "fields": i.fields,
                        "evidence": view.evidence_of(i.id.as_str()).map(|e| evidence_json(&view, e)).collect::<Vec<_>>(),
                    }),
                };
                let mut j = j;
                j["text"] = json!(text);
                Ok(Reply::done(text.trim_end().to_string(), j))
            }
            Command::Update {
                mode,
                needs,
                out,
                force,
            } => self.update(mode, needs, out, force),
            Command::Updates { all } => {
                let view = self.view()?;
                let ups = view.items(Kind::Update);
                let text = if ups.is_empty() {
                    "no update posted yet: `update` drafts one, `update --post` records it".into()
                } else {
                    ups.iter()
                        .map(|u| {
                            let who = render::one_line(&view.name_of(&u.by));
                            if all {
                                format!(
                                    "— {} {who}\n{}\n",
                                    render::utc(u.at),
                                    render::terminal_safe(u.get("text")).trim_end()
                                )
                            } else {
                                let first = u.get("text").lines().next().unwrap_or("");
                                format!(
                                    "{}  {who:<10} {}",
                                    render::utc(u.at),
                                    render::trimmed(first, 80)
                                )
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                let rows: Vec<Value> = ups
                    .iter()
                    .map(|u| json!({"id": u.id.as_str(), "at": u.at, "by": u.by, "name": view.name_of(&u.by), "text": u.get("text")}))
                    .collect();
                Ok(Reply::done(
                    text.trim_end().to_string(),
                    json!({ "updates": rows, "text": text }),
                ))
            }
            Command::Brief => {
                let (view, bad) = self.ask(self.notebook.view())?;
                let mut warnings = self.storage_warnings();
                if bad > 0 {
                    warnings.push(format!(
                        "{bad} stored change signature(s) failed re-verification: see `log`"
                    ));
                }
                let text = render::brief(&view, dontpanic_notebook::now_ms(), &warnings);
                Ok(Reply::done(
                    text.trim_end().to_string(),
                    json!({ "text": text, "conflicts": view.conflicts.len(), "storage": warnings }),
                ))
            }
            Command::Timeline { last } => {
                let view = self.view()?;
                let start = last
                    .map(|n| view.timeline.len().saturating_sub(n))
                    .unwrap_or(0);
                let entries = &view.timeline[start..];
                let text = entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{}  {:<10} {}",
                            render::utc(e.at),
                            render::one_line(&e.name),
                            render::continued(&e.text, 4)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let rows: Vec<Value> = entries
                    .iter()
                    .map(|e| json!({"at": e.at, "by": e.by, "name": e.name, "kind": e.kind, "item": e.item, "text": e.text}))
                    .collect();
                Ok(Reply::done(
                    text,
                    json!({ "entries": rows, "total": view.timeline.len() }),
                ))
            }
            Command::Report { out, force } => {
                let view = self.view()?;
                let md = render::report(&view);
                match out {
                    Some(path) => {
                        write_out(&path, md.as_bytes(), force)?;
                        Ok(Reply::done(
                            format!("report written to {path}"),
                            json!({ "path": path }),
                        ))
                    }
                    None => Ok(Reply::done(
                        md.trim_end().to_string(),
                        json!({ "text": md }),
                    )),
                }
            }
            Command::Export { out } => {
                let (id, bytes) = self.ask(self.notebook.export())?;
                let path = out.unwrap_or_else(|| format!("{id}.automerge"));
                write_file(&path, &bytes)?;
                Ok(Reply::done(
                    format!("exported {} bytes to {path}", bytes.len()),
                    json!({ "path": path, "bytes": bytes.len() }),
                ))
            }
            Command::Conflicts => {
                let view = self.view()?;
                let names = self.ask(self.notebook.actor_names())?;
                let mut text = String::new();
                let mut rows = Vec::new();
                for c in &view.conflicts {
                    text.push_str(&format!("{}:\n", c.field));
                    let mut values = Vec::new();
                    for (value, actor) in &c.values {
                        let who = names
                            .iter()
                            .find(|(a, _)| a == actor)
                            .map(|(_, n)| n.clone())
                            .unwrap_or_else(|| actor.chars().take(8).collect());
                        text.push_str(&format!("  {value:?}  ({who})\n"));
                        values.push(json!({"value": value, "author": who}));
                    }
                    rows.push(json!({"field": c.field, "values": values}));
                }
                if rows.is_empty() {
                    text.push_str("no conflicts");
                } else {
                    text.push_str("settle one with `resolve <field> <value>`");
                }
                Ok(Reply::done(text, json!({ "conflicts": rows })))
            }
            Command::Log => {
                let entries = self.ask(self.notebook.log())?;
                let text = entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {} {:<10} {} {}  {}",
                            e.hash.to_string().chars().take(12).collect::<String>(),
                            render::utc(e.time * 1000),
                            e.name
                                .as_deref()
                                .map_or("(non-member)".into(), render::one_line),
                            e.signer.fingerprint(),
                            if e.verified {
                                "verified"
                            } else {
                                "BAD SIGNATURE"
                            },
                            render::one_line(&e.message)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let rows: Vec<Value> = entries
                    .iter()
                    .map(|e| json!({"hash": e.hash.to_string(), "time": e.time, "author": e.name, "key": e.signer.to_string(), "fingerprint": e.signer.fingerprint(), "verified": e.verified, "message": e.message}))
                    .collect();
                Ok(Reply::done(text, json!({ "changes": rows })))
            }
            Command::Whoami => {
                let d = self.notebook.device();
                let key = d.key;
                let mut text = format!(
                    "{}\nkey {}\nfingerprint {}\ndata {}",
                    d.name,
                    key,
                    key.fingerprint(),
                    d.data_dir.display()
                );
                let mut j = json!({ "name": d.name, "key": key.to_string(), "fingerprint": key.fingerprint(), "data_dir": d.data_dir });
                if let Some(net) = &self.network {
                    let (peer_id, addrs) = net.addresses();
                    text.push_str(&format!("\npeer {peer_id}"));
                    for a in &addrs {
                        text.push_str(&format!("\nlistening {a}"));
                    }
                    j["peer_id"] = json!(peer_id);
                    j["addresses"] = json!(addrs);
                }
                Ok(Reply::done(text, j))
            }
            Command::Doctor => {
                let report = self.ask(self.notebook.doctor())?;
                Ok(Reply::done(doctor_text(&report), doctor_json(&report)))
            }
            Command::Peers { verbose } => {
                let rows = self.network()?.peers()?;
                let waiting = self.waiting_for_damaged();
                let text = if rows.is_empty() {
                    "no peers yet".to_string()
                } else {
                    peers_table(&rows, verbose)
                };
                let text = match &waiting {
                    Some(line) => format!("{text}\n{line}"),
                    None => text,
                };
                Ok(Reply::done(
                    text,
                    json!({ "peers": rows, "waiting": waiting }),
                ))
            }
            Command::Unblock(peer) => {
                let peer = self.network()?.unblock(&peer)?;
                Ok(Reply::done(
                    format!("{peer} is trusted again"),
                    json!({ "peer": peer }),
                ))
            }
            Command::Connect(addr) => {
                let msg = self.network()?.connect(&addr)?;
                Ok(Reply::done(msg, json!({ "address": addr })))
            }
            Command::Invite { expires, once } => {
                let invite = self.network()?.invite(expires, once)?;
                Ok(Reply::done(
                    invite.clone(),
                    json!({ "invite": invite, "once": once, "expires_in_s": expires.as_secs() }),
                ))
            }
            Command::Remove { member, reason } => self.edit(Edit::RemoveMember { member, reason }),
            Command::Join(invite) => {
                let before = self
                    .notebook
                    .published()
                    .current
                    .as_ref()
                    .map(|c| c.id.clone());
                let id = self.network()?.join(&invite)?;
                if let Some(net) = &self.network {
                    net.incident_opened();
                }
                self.joined(id, before)
            }
            Command::Help(topic) => {
                let text = command::help(topic.as_deref()).map_err(|e| e.to_string())?;
                Ok(Reply::done(
                    text.trim_end().to_string(),
                    json!({ "text": text }),
                ))
            }
            Command::Quit => {
                let mut r = Reply::done("bye", json!({}));
                r.quit = true;
                Ok(r)
            }
        }
    }

    /// What `join` answers: what was joined (title, severity, status,
    /// members), whether the open incident changed, then the brief.
    fn joined(&self, id: String, before: Option<String>) -> Result<Reply, String> {
        let (view, _) = self.ask(self.notebook.view())?;
        let mut members: Vec<&str> = view
            .members
            .iter()
            .filter(|m| view.removal_of(&m.key).is_none())
            .map(|m| m.name.as_str())
            .collect();
        members.sort_by_key(|n| n.to_lowercase());
        let severity = view.severity.map(|s| s.label()).unwrap_or_default();
        let status = view.status.map(|s| s.to_string()).unwrap_or_default();
        let mut text = format!(
            "joined {id}: {}\n  {severity} · {status} · members: {}",
            view.title,
            members.join(", ")
        );
        let switched = before.as_ref().filter(|b| **b != view.id);
        if let Some(b) = switched {
            text.push_str(&format!(
                "\n  the open incident is now this one (was {b}: `open {}` goes back)",
                b.chars().take(5).collect::<String>()
            ));
        }
        text.push_str("\n\n");
        text.push_str(render::brief(&view, dontpanic_notebook::now_ms(), &[]).trim_end());
        Ok(Reply::done(
            text,
            json!({
                "id": id,
                "title": view.title,
                "severity": view.severity.map(|s| s.as_str()),
                "status": status,
                "members": members,
                "switched_from": switched,
            }),
        ))
    }

    /// "waiting for N damaged changes from members", for the incident at
    /// the prompt, from what the notebook published.
    pub fn waiting_for_damaged(&self) -> Option<String> {
        let published = self.notebook.published();
        let id = &published.current.as_ref()?.id;
        let n = *published.waiting.get(id)?;
        Some(format!(
            "waiting for {n} damaged change(s) from members (their only copy here was damaged; see `doctor`)"
        ))
    }

    /// Storage warnings for `brief`: damaged changes awaited, and what the
    /// background scrub found.
    fn storage_warnings(&self) -> Vec<String> {
        let published = self.notebook.published();
        let mut out: Vec<String> = self.waiting_for_damaged().into_iter().collect();
        if let Some(found) = published
            .current
            .as_ref()
            .and_then(|c| published.scrub.get(&c.id))
        {
            out.extend(
                found
                    .iter()
                    .map(|f| format!("background check: {f}; run `doctor` to repair")),
            );
        }
        out
    }

    /// `update`: the draft, posting it (or a text instead), the last one
    /// posted, or the room's interval.
    fn update(
        &self,
        mode: UpdateMode,
        needs: Option<String>,
        out: Option<String>,
        force: bool,
    ) -> Result<Reply, String> {
        if let Some(path) = out.as_deref().filter(|_| !force) {
            // Before posting: a refused file must not leave a posted update
            // behind an error.
            if std::path::Path::new(path).exists() {
                return Err(format!(
                    "{path} already exists; give --force to overwrite it, or another --out"
                ));
            }
        }
        let (mut reply, text) = match mode {
            UpdateMode::Every(every) => {
                return self.edit(Edit::SetUpdateInterval {
                    every_s: every.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                })
            }
            UpdateMode::Draft => {
                let view = self.view()?;
                let draft =
                    render::update_draft(&view, dontpanic_notebook::now_ms(), needs.as_deref());
                (
                    Reply::done(draft.trim_end().to_string(), json!({ "posted": false })),
                    draft,
                )
            }
            UpdateMode::Last => {
                let view = self.view()?;
                let last = view.items(Kind::Update).last().ok_or(
                    "no update posted yet: `update` drafts one, `update --post` records it",
                )?;
                let text = format!("{}\n", last.get("text").trim_end());
                let head = format!(
                    "posted {} by {}:\n",
                    render::utc(last.at),
                    view.name_of(&last.by)
                );
                (
                    Reply::done(
                        format!("{head}{}", text.trim_end()),
                        json!({ "posted": true, "id": last.id.as_str() }),
                    ),
                    text,
                )
            }
            UpdateMode::Post(given) => {
                let text = match given {
                    Some(t) => t,
                    None => render::update_draft(
                        &self.view()?,
                        dontpanic_notebook::now_ms(),
                        needs.as_deref(),
                    ),
                };
                let text = text.trim_end().to_string();
                let mut reply = self.edit(Edit::PostUpdate { text: text.clone() })?;
                reply.json["posted"] = json!(true);
                (reply, format!("{text}\n"))
            }
        };
        reply.json["text"] = json!(text);
        if let Some(path) = out {
            write_out(&path, text.as_bytes(), force)?;
            reply.text = if reply.json["summary"].is_string() {
                // Posted: say what was recorded, then where it went.
                format!("{}\nwritten to {path}", reply.text)
            } else {
                format!("update written to {path}")
            };
            reply.json["path"] = json!(path);
        }
        Ok(reply)
    }

    fn view(&self) -> Result<dontpanic_incident::IncidentView, String> {
        self.ask(self.notebook.view()).map(|(view, _)| view)
    }
}

/// `doctor`'s report for a human: each problem with file and offset,
/// then what must come from members.
pub fn doctor_text(report: &dontpanic_notebook::Report) -> String {
    let mut lines = Vec::new();
    for p in &report.problems {
        lines.push(format!(
            "{}: at byte {}: {} — {}",
            p.file.display(),
            p.offset,
            p.problem,
            if p.repaired {
                "repaired"
            } else {
                "NOT repaired"
            }
        ));
    }
    for (id, hashes) in &report.from_peers {
        lines.push(format!(
            "incident {id}: waiting for {} damaged change(s) from members:",
            hashes.len()
        ));
        lines.extend(hashes.iter().map(|h| format!("  {h}")));
    }
    if report.is_clean() {
        lines.push(format!(
            "{} incident(s) checked: every file verifies, nothing to fetch from members",
            report.incidents
        ));
    } else if report.from_peers.iter().all(|(_, h)| h.is_empty()) {
        lines.push("nothing to fetch from members".into());
    }
    lines.join("\n")
}

/// `doctor`'s report for a script: `problems` (`file`, `offset`,
/// `problem`, `repaired`), `from_peers` (incident and change hashes).
pub fn doctor_json(report: &dontpanic_notebook::Report) -> Value {
    json!({
        "incidents": report.incidents,
        "problems": report.problems.iter().map(|p| json!({
            "incident": p.incident,
            "file": p.file,
            "offset": p.offset,
            "problem": p.problem,
            "repaired": p.repaired,
        })).collect::<Vec<_>>(),
        "from_peers": report.from_peers.iter().map(|(id, hashes)| json!({
            "incident": id,
            "changes": hashes.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "missing": report.from_peers.iter().map(|(_, h)| h.len()).sum::<usize>(),
        "notes": report.notes,
        "clean": report.is_clean(),
    })
}

/// Writes a file the user asked for, refusing to replace one that exists
/// (an earlier report, perhaps edited by hand) unless `force`.
fn write_out(path: &str, bytes: &[u8], force: bool) -> Result<(), String> {
    if force {
        return write_file(path, bytes);
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("{path} already exists; give --force to overwrite it, or another --out")
            }
            _ => format!("cannot write {path}: {e}"),
        })?;
    std::io::Write::write_all(&mut file, bytes).map_err(|e| format!("cannot write {path}: {e}"))
}

/// One evidence for a script: every field of the record.
fn evidence_json(view: &IncidentView, e: &Evidence) -> Value {
    let mut j = e.record.to_json();
    j["id"] = json!(e.id.as_str());
    j["short"] = json!(e.short);
    j["of"] = json!(e.of);
    j["by"] = json!(e.by);
    j["name"] = json!(view.name_of(&e.by));
    j["at"] = json!(e.at);
    j["outcome"] = json!(e.record.outcome());
    j
}

/// Columns of `peers` (the last, `note`, takes what is left of 100).
const PEER_COLUMNS: [(&str, usize); 5] = [
    ("name", 14),
    ("state", 11),
    ("route", 8),
    ("rtt", 8),
    ("last sync", 10),
];

/// The `peers` table: a header and one row per peer in 100 columns; with
/// `verbose`, the peer id, address, how it was found and any problem under
/// each row.
fn peers_table(rows: &[PeerRow], verbose: bool) -> String {
    let used: usize = PEER_COLUMNS.iter().map(|(_, w)| w + 1).sum();
    let note_width = 100 - used;
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for ((_, w), cell) in PEER_COLUMNS.iter().zip(cells) {
            out.push_str(&format!("{:<w$} ", render::trimmed(cell, *w)));
        }
        out.push_str(&render::trimmed(cells[5], note_width));
        out.trim_end().to_string()
    };
    let mut out = vec![line(["name", "state", "route", "rtt", "last sync", "note"])];
    for p in rows {
        let rtt = p
            .rtt_ms
            .map(|r| format!("{r:.1}ms"))
            .unwrap_or_else(|| "-".into());
        let sync = p
            .last_sync_secs
            .map(|s| format!("{s}s ago"))
            .unwrap_or_else(|| "never".into());
        let note = match (&p.problem, verbose) {
            (Some(_), false) => "rejected: see `peers -v`".to_string(),
            (Some(_), true) => "rejected".to_string(),
            (None, _) => String::new(),
        };
        let name = if p.name.is_empty() { "?" } else { &p.name };
        out.push(line([name, &p.state, &p.route, &rtt, &sync, &note]));
        if verbose {
            out.push(format!("    peer     {}", p.peer_id));
            out.push(format!("    address  {}", p.address));
            out.push(format!("    found by {}", p.found_by));
            if let Some(problem) = &p.problem {
                out.push(format!("    problem  {}", render::one_line(problem)));
            }
        }
    }
    out.join("\n")
}

/// `a|b|c` from a word enum's values.
fn words<T: Copy + std::fmt::Display>(all: &[T]) -> String {
    all.iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("|")
}

fn write_file(path: &str, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {path}: {e}"))
}

/// Past incidents shown most alike first, at most this many.
const SIMILAR_SHOWN: usize = 10;

/// `similar` for a human: one block per past incident, with why it was
/// offered (the shared words), its cause and its fix.
fn similar_text(found: &[dontpanic_incident::similar::Resemblance]) -> String {
    if found.is_empty() {
        return "no past incident on this device shares words with this one".to_string();
    }
    let mut out = Vec::new();
    for r in found.iter().take(SIMILAR_SHOWN) {
        let date = render::utc(r.opened_at)
            .chars()
            .take(10)
            .collect::<String>();
        out.push(format!(
            "{}  {date}  {:.2}  {}",
            r.id,
            r.score,
            render::one_line(&r.title)
        ));
        out.push(format!("    shared: {}", r.shared.join(", ")));
        let list = |items: &[String], none: &str| {
            if items.is_empty() {
                none.to_string()
            } else {
                items
                    .iter()
                    .map(|i| render::one_line(i))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        };
        out.push(format!("    cause: {}", list(&r.causes, "none confirmed")));
        out.push(format!(
            "    fixed by: {}",
            list(&r.fixes, "no fix recorded")
        ));
    }
    if found.len() > SIMILAR_SHOWN {
        out.push(format!("({} more less alike)", found.len() - SIMILAR_SHOWN));
    }
    out.join("\n")
}

/// `similar` for a script: every match, most alike first.
fn similar_json(found: &[dontpanic_incident::similar::Resemblance]) -> Value {
    json!({
        "similar": found.iter().map(|r| json!({
            "id": r.id,
            "title": r.title,
            "opened_at": r.opened_at,
            "score": r.score,
            "shared": r.shared,
            "causes": r.causes,
            "fixes": r.fixes,
        })).collect::<Vec<_>>(),
    })
}

fn command_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::New { .. } => "new",
        Command::Incidents => "incidents",
        Command::Open(_) => "open",
        Command::Symptom { .. } => "symptom",
        Command::Hypo(_) => "hypo",
        Command::Test { .. } => "test",
        Command::Result { .. } => "result",
        Command::Confirm { .. } => "confirm",
        Command::Fix { .. } => "fix",
        Command::Note(_) => "note",
        Command::Status { .. } => "status",
        Command::Reopen(_) => "reopen",
        Command::Role { .. } => "role",
        Command::Title(_) => "title",
        Command::Severity(_) => "sev",
        Command::FollowUp { .. } => "followup",
        Command::Summary(_) => "summary",
        Command::Lesson(_) => "lesson",
        Command::Similar => "similar",
        Command::Update { .. } => "update",
        Command::Updates { .. } => "updates",
        Command::Run { .. } => "run",
        Command::Attach { .. } => "attach",
        Command::Show { .. } => "show",
        Command::Brief => "brief",
        Command::Timeline { .. } => "timeline",
        Command::Report { .. } => "report",
        Command::Export { .. } => "export",
        Command::Conflicts => "conflicts",
        Command::Resolve { .. } => "resolve",
        Command::Log => "log",
        Command::Doctor => "doctor",
        Command::Whoami => "whoami",
        Command::Peers { .. } => "peers",
        Command::Connect(_) => "connect",
        Command::Unblock(_) => "unblock",
        Command::Invite { .. } => "invite",
        Command::Remove { .. } => "remove",
        Command::Join(_) => "join",
        Command::Help(_) => "help",
        Command::Quit => "quit",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, state: &str, problem: Option<&str>) -> PeerRow {
        PeerRow {
            name: name.into(),
            peer_id: "12D3KooWLongPeerIdThatWouldMakeTheRowWrapOnANarrowTerminal1234".into(),
            address: "/ip4/192.168.100.200/udp/40123/quic-v1/p2p/12D3KooWRelay/p2p-circuit".into(),
            found_by: "mdns".into(),
            state: state.into(),
            route: "relayed".into(),
            last_sync_secs: Some(12_345),
            rtt_ms: Some(1234.5),
            problem: problem.map(str::to_string),
        }
    }

    #[test]
    fn the_peers_table_fits_100_columns_with_details_under_v() {
        let rows = [
            row("alice", "connected", None),
            row("a-very-long-responder-name", "discovered", None),
            row(
                "",
                "rejected",
                Some("sent a change signed by a non-member\x1b[2J"),
            ),
        ];
        // (verbose, line, what it must hold)
        let cases: &[(bool, usize, &str)] = &[
            (
                false,
                0,
                "name           state       route    rtt      last sync  note",
            ),
            (
                false,
                1,
                "alice          connected   relayed  1234.5ms 12345s ago",
            ),
            (false, 2, "a-very-long-r… discovered"),
            (
                false,
                3,
                "?              rejected    relayed  1234.5ms 12345s ago rejected: see `peers -v`",
            ),
            (true, 2, "    peer     12D3KooWLongPeerId"),
            (true, 3, "    address  /ip4/192.168.100.200/"),
            (true, 4, "    found by mdns"),
            (
                true,
                13,
                "    problem  sent a change signed by a non-member\\u{1b}[2J",
            ),
        ];
        for (verbose, n, want) in cases {
            let table = peers_table(&rows, *verbose);
            let lines: Vec<&str> = table.lines().collect();
            assert!(lines[*n].starts_with(want), "line {n} of\n{table}");
            if !verbose {
                assert!(lines.iter().all(|l| l.chars().count() <= 100), "{table}");
            }
        }
    }
}
