//! Notebook benchmark: an incident with N timeline entries (default 100,000)
//! built through the real edit path (rules, Automerge commit, ed25519
//! signature, journal append with fdatasync), then opened in a fresh process
//! (journal read, CRC, batch signature verification, Automerge apply) and
//! rendered as a report. A bare-Automerge baseline (no signature, no disk)
//! is measured in the same run.
//!
//! `cargo run --release --example bench_notebook [-- --entries N]`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ObjType, ReadDoc, ROOT};
use dontpanic_incident::{render, Edit, Severity};
use dontpanic_notebook::Notebook;

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Child mode: open the incident alone and report timings and memory.
fn open_only(dir: &Path, id: &str) {
    let t = Instant::now();
    let mut nb = Notebook::open(dir, None).expect("open data dir");
    let warnings = nb.open_incident(id).expect("open incident");
    let open = t.elapsed();
    assert!(warnings.is_empty(), "{warnings:?}");
    let t = Instant::now();
    let view = nb.incident().unwrap().view().unwrap();
    let view_time = t.elapsed();
    let t = Instant::now();
    let report = render::report(&view);
    let report_time = t.elapsed();
    println!(
        "{} {} {} {} {} {}",
        open.as_micros(),
        view_time.as_micros(),
        report_time.as_micros(),
        report.len(),
        view.timeline.len(),
        peak_rss_kb()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--open-only") {
        return open_only(Path::new(&args[2]), &args[3]);
    }
    let entries: usize = args
        .iter()
        .position(|a| a == "--entries")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    // dontpanic: every entry through Notebook::edit (durable before it returns).
    let mut nb = Notebook::open(&dir, Some("bench")).unwrap();
    let created = nb.create("benchmark incident", Severity::Sev2).unwrap();
    let id = created.id.unwrap().to_string();
    let mut per_edit = Vec::with_capacity(entries);
    let start = Instant::now();
    for i in 1..entries {
        let t = Instant::now();
        nb.edit(Edit::AddNote {
            text: format!("observation {i}: p99 latency 2300 ms on checkout-api"),
        })
        .unwrap();
        per_edit.push(t.elapsed());
    }
    let build = start.elapsed();
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir.join("incidents").join(&id))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    let journal_bytes: u64 = files.iter().map(|(_, n)| n).sum();
    drop(nb);
    per_edit.sort();
    let mean = build / (entries as u32 - 1);

    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--open-only", dir.to_str().unwrap(), &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let (open, view, report, report_len, timeline, open_rss) = (
        Duration::from_micros(f[0]),
        Duration::from_micros(f[1]),
        Duration::from_micros(f[2]),
        f[3],
        f[4],
        f[5],
    );
    assert_eq!(timeline as usize, entries);

    // Baseline: bare Automerge, the same entries, no signature, no disk.
    let mut doc = automerge::Automerge::new();
    let mut timeline_obj = None;
    let t = Instant::now();
    for i in 0..entries {
        let text = format!("observation {i}: p99 latency 2300 ms on checkout-api");
        doc.transact_with(
            |_| CommitOptions::default().with_message(text.clone()),
            |tx| -> Result<(), automerge::AutomergeError> {
                let tl = match &timeline_obj {
                    Some(o) => o,
                    None => &tx.put_object(ROOT, "timeline", ObjType::List)?,
                };
                let tl = tl.clone();
                let n = tx.length(&tl);
                // The same representation dontpanic uses: one JSON string per entry.
                tx.insert(&tl, n, format!("{{\"at\":{i},\"text\":\"{text}\"}}"))?;
                timeline_obj = Some(tl);
                Ok(())
            },
        )
        .unwrap();
    }
    let base_build = t.elapsed();
    let saved = doc.save();
    let t = Instant::now();
    let loaded = automerge::Automerge::load(&saved).unwrap();
    let base_load = t.elapsed();
    assert_eq!(loaded.length(timeline_obj.as_ref().unwrap()), entries);
    // The floor for our own sealed snapshot: the same load without
    // Automerge re-hashing every change.
    let t = Instant::now();
    let unchecked = automerge::Automerge::load_with_options(
        &saved,
        automerge::LoadOptions::new().verification_mode(automerge::VerificationMode::DontCheck),
    )
    .unwrap();
    let base_load_unchecked = t.elapsed();
    assert_eq!(unchecked.length(timeline_obj.as_ref().unwrap()), entries);

    let verdict = |d: Duration, limit: Duration| if d < limit { "PASS" } else { "MISS" };
    println!("notebook benchmark: {entries} timeline entries");
    println!("| measure | dontpanic | bare Automerge baseline | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| time per edit, mean (commit+sign+fsync) | {} | {} | {:.1}× | |",
        ms(mean),
        ms(base_build / entries as u32),
        mean.as_secs_f64() / (base_build.as_secs_f64() / entries as f64)
    );
    println!(
        "| time per edit, p50 / p99 | {} / {} | | | |",
        ms(pct(&per_edit, 0.5)),
        ms(pct(&per_edit, 0.99))
    );
    println!(
        "| build all entries | {:.2} s | {:.2} s | | |",
        build.as_secs_f64(),
        base_build.as_secs_f64()
    );
    println!(
        "| open (fresh process: snapshot CRC + seal + Automerge load without re-hashing, segments scanned, journal tail verified) | {} | {} (load of saved doc) | {:.1}× | ≤ 0.3 s {} |",
        ms(open),
        ms(base_load),
        open.as_secs_f64() / base_load.as_secs_f64(),
        verdict(open, Duration::from_millis(300))
    );
    println!(
        "| bare load without hash check (DontCheck), in this process | | {} | | |",
        ms(base_load_unchecked)
    );
    println!("| view (hydrate) | {} | | | |", ms(view));
    println!(
        "| report render ({} KiB of Markdown) | {} | | | < 1 s {} |",
        report_len / 1024,
        ms(report),
        verdict(view + report, Duration::from_secs(1))
    );
    let disk_ratio = journal_bytes as f64 / saved.len() as f64;
    println!(
        "| on disk: snapshot + journal segments + journal | {:.1} MiB ({} B/entry) | {:.1} MiB saved doc | {:.1}× | ≤ 3× {} |",
        journal_bytes as f64 / 1048576.0,
        journal_bytes / entries as u64,
        saved.len() as f64 / 1048576.0,
        disk_ratio,
        if disk_ratio <= 3.0 { "PASS" } else { "MISS" }
    );
    for (name, len) in &files {
        println!("|   {name} | {:.2} MiB | | | |", *len as f64 / 1048576.0);
    }
    println!(
        "| peak memory, building process | {} MiB | | | |",
        peak_rss_kb() / 1024
    );
    println!(
        "| peak memory, opening process | {} MiB | | | |",
        open_rss / 1024
    );
}
