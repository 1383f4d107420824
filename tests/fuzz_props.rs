//! The fuzz targets (tests/fuzz/targets.rs) as bounded property tests on
//! stable: for each target, random byte strings and mutations of valid
//! inputs from a fixed seed. `DONTPANIC_FUZZ_CASES` raises the count per
//! target (default 2,000) and `DONTPANIC_FUZZ_SEED` changes the seed, for a
//! long run where no nightly compiler is at hand. `DONTPANIC_FUZZ_CORPUS=DIR`
//! also writes each target's valid inputs to `DIR/<target>/`, the seed
//! corpus for a cargo-fuzz run (fuzz/README.md).

#[path = "fuzz/targets.rs"]
mod targets;

use rand::{rngs::StdRng, Rng, SeedableRng};

fn cases() -> usize {
    std::env::var("DONTPANIC_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

fn seed() -> u64 {
    std::env::var("DONTPANIC_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed)
}

/// One mutation of `input`: flip, set, insert, delete, duplicate or cut.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>) {
    const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, 0x85, b'\n', b'#'];
    let at = |rng: &mut StdRng, v: &Vec<u8>| rng.gen_range(0..=v.len());
    match rng.gen_range(0..7) {
        0 if !input.is_empty() => {
            let i = rng.gen_range(0..input.len());
            input[i] ^= 1 << rng.gen_range(0..8);
        }
        1 if !input.is_empty() => {
            let i = rng.gen_range(0..input.len());
            input[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
        }
        2 => {
            let i = at(rng, input);
            input.insert(i, rng.gen());
        }
        3 if !input.is_empty() => {
            let i = rng.gen_range(0..input.len());
            input.remove(i);
        }
        4 if !input.is_empty() => {
            let a = rng.gen_range(0..input.len());
            let b = rng.gen_range(a..=input.len().min(a + 64));
            let piece = input[a..b].to_vec();
            let i = at(rng, input);
            input.splice(i..i, piece);
        }
        5 => {
            let i = at(rng, input);
            input.truncate(i);
        }
        _ if input.len() >= 4 => {
            // A big announced length where a length may be.
            let i = rng.gen_range(0..input.len() - 3);
            input[i..i + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
        }
        _ => input.push(rng.gen()),
    }
}

fn run(name: &str) {
    let target = targets::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("target")
        .1;
    let seeds = targets::seeds(name);
    if let Ok(dir) = std::env::var("DONTPANIC_FUZZ_CORPUS") {
        let dir = std::path::Path::new(&dir).join(name);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).expect("seed file");
        }
    }
    for s in &seeds {
        target(s);
    }
    let mut rng = StdRng::seed_from_u64(seed() ^ name.len() as u64);
    // Store targets touch the disk: fewer cases.
    let n = if name == "store_files" {
        cases() / 10
    } else {
        cases()
    };
    for _ in 0..n {
        let mut input = if seeds.is_empty() || rng.gen_ratio(1, 5) {
            let len = rng.gen_range(0..256);
            (0..len).map(|_| rng.gen()).collect()
        } else {
            seeds[rng.gen_range(0..seeds.len())].clone()
        };
        for _ in 0..rng.gen_range(1..6) {
            mutate(&mut rng, &mut input);
        }
        target(&input);
    }
}

#[test]
fn fuzz_envelope() {
    run("envelope");
}

#[test]
fn fuzz_invite() {
    run("invite");
}

#[test]
fn fuzz_sync_message() {
    run("sync_message");
}

#[test]
fn fuzz_automerge_message() {
    run("automerge_message");
}

#[test]
fn fuzz_store_files() {
    run("store_files");
}

#[test]
fn fuzz_validator() {
    run("validator");
}

/// Inputs cargo-fuzz found that once made Automerge panic where dontpanic
/// did not catch it (`sync_message`: an op counter past `u32` panicked in
/// `Change::try_from`) or where it did (`validator`, `automerge_message`: an
/// op naming an unlisted actor panics in `Change::decode`). Each must be
/// refused with an error, every time.
#[test]
fn past_findings_stay_fixed() {
    let findings: &[(&str, &[u8])] = &[
        (
            "sync_message",
            include_bytes!("fuzz/findings/sync_message-op-counter-overflow"),
        ),
        (
            "validator",
            include_bytes!("fuzz/findings/validator-unlisted-actor"),
        ),
        (
            "automerge_message",
            include_bytes!("fuzz/findings/automerge_message-unlisted-actor"),
        ),
    ];
    for (name, input) in findings {
        let target = targets::TARGETS
            .iter()
            .find(|(n, _)| n == name)
            .expect("target")
            .1;
        target(input);
    }
}
