//! The fuzz targets on stable Rust: every file of `fuzz/corpus/<target>/`
//! (the seeds and the regression inputs of fixed failures), then a short,
//! seeded run of mutations of them, per target. The bodies are the ones
//! `make fuzz` runs under libFuzzer (`osam_init::fuzzing`).
//!
//! `OSAM_FUZZ_CASES` sets the number of mutated cases per target (default
//! 800, four times that for the cheap binary parsers; 0 replays the corpus
//! only); `OSAM_FUZZ_SEED` changes the seed. A failing input is written to
//! `target/fuzz-failures/<target>-<hash>` to be replayed
//! (`OSAM_FUZZ_FILE=<file> cargo test -p osam-init --test fuzz_corpus
//! replay_one_file -- --nocapture`, or `cargo fuzz run <target> <file>`)
//! and kept in the corpus once fixed.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use osam_init::fuzzing::{self, Rng};

/// The mutated inputs' length cap (the corpus files are all smaller).
const MAX_LEN: usize = 16 * 1024;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Runs one input; on a panic saves it and fails with where it came from.
fn run_one(target: &fuzzing::Target, data: &[u8], origin: &str) {
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(data)));
    let took = started.elapsed();
    let save = || {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
        let _ = fs::create_dir_all(&dir);
        let path = dir.join(format!("{}-{:016x}", target.name, fnv(data)));
        let _ = fs::write(&path, data);
        path
    };
    if let Err(p) = outcome {
        let path = save();
        eprintln!(
            "fuzz target {} failed on {origin}, saved as {}\ninput: \"{}\"",
            target.name,
            path.display(),
            fuzzing::describe_input(data)
        );
        std::panic::resume_unwind(p);
    }
    // A hang shows as a slow case (debug build: generous).
    if took > Duration::from_secs(5) {
        let path = save();
        panic!(
            "fuzz target {} took {took:?} on {origin} (saved as {})",
            target.name,
            path.display()
        );
    }
}

/// Mutated cases for a target: `OSAM_FUZZ_CASES` (default 800) for the
/// planner targets (each case plans twice, in a debug build), four times
/// that for the parsers of single files.
fn cases(name: &str) -> usize {
    let base = std::env::var("OSAM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(800);
    let cheap = [
        "config_json",
        "modules_dep_alias",
        "cpio",
        "partition",
        "superblock",
    ];
    if cheap.contains(&name) {
        base * 4
    } else {
        base
    }
}

fn replay(name: &str) {
    let target = fuzzing::target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let seeds = corpus(name);
    assert!(!seeds.is_empty(), "{name}: the corpus is empty");
    for (file, data) in &seeds {
        run_one(target, data, &format!("fuzz/corpus/{name}/{file}"));
    }
    let seed = std::env::var("OSAM_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0u64);
    let mut rng = Rng::new(seed ^ fnv(name.as_bytes()));
    let mut pool: Vec<Vec<u8>> = seeds.into_iter().map(|(_, d)| d).collect();
    let started = Instant::now();
    let n = cases(name);
    for i in 0..n {
        let base = &pool[rng.below(pool.len())];
        let other = &pool[rng.below(pool.len())];
        let input = fuzzing::mutate(&mut rng, base, other, MAX_LEN);
        run_one(
            target,
            &input,
            &format!("mutation {i} (OSAM_FUZZ_SEED={seed})"),
        );
        // Mutations of mutations reach further; the pool stays small.
        if rng.chance(8) && pool.len() < 64 {
            pool.push(input);
        }
    }
    eprintln!(
        "{name}: corpus and {n} mutations in {:?}",
        started.elapsed()
    );
}

/// `OSAM_FUZZ_FILE=<target>-…` (a saved failure, or any file named after
/// its target) runs that one input, for debugging.
#[test]
fn replay_one_file() {
    let Ok(path) = std::env::var("OSAM_FUZZ_FILE") else {
        return;
    };
    let path = PathBuf::from(path);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let target = fuzzing::TARGETS
        .iter()
        .filter(|t| name.starts_with(t.name))
        .max_by_key(|t| t.name.len())
        .unwrap_or_else(|| panic!("{name}: no target of that name"));
    let data = fs::read(&path).unwrap();
    eprintln!("input: \"{}\"", fuzzing::describe_input(&data));
    (target.run)(&data);
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_test_and_a_corpus() {
            let tested = [$(stringify!($name)),*];
            for t in fuzzing::TARGETS {
                assert!(tested.contains(&t.name), "{} is not replayed here", t.name);
                let fuzz_target = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../fuzz/fuzz_targets")
                    .join(format!("{}.rs", t.name));
                assert!(fuzz_target.exists(), "{} missing", fuzz_target.display());
            }
            assert_eq!(tested.len(), fuzzing::TARGETS.len());
        }
    };
}

targets!(
    config_json,
    fstab,
    crypttab,
    storage_conf,
    ifcfg,
    keyfile,
    netplan,
    interfaces,
    networkd,
    udev,
    default_grub,
    grub_cfg,
    bls,
    grub_legacy,
    modules_dep_alias,
    cpio,
    partition,
    superblock,
);
