//! Replays every seed (`seeds/<target>/`) and every crash found so far
//! (`regressions/<target>/`) through its harness, without libFuzzer: plain `cargo test` on
//! stable. scripts/fuzz-smoke replays them through the fuzz binaries as well.

use std::fs;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `[[bin]]` names of Cargo.toml: the fuzz targets.
fn targets() -> Vec<String> {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("Cargo.toml");
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(v) = line.strip_prefix("name = ") {
            out.push(v.trim_matches('"').to_owned());
        }
    }
    out
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.is_file()
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.') || n == "README.md")
    });
    files.sort();
    files
}

#[test]
fn every_target_has_a_harness_and_seeds() {
    let targets = targets();
    assert!(!targets.is_empty());
    for t in &targets {
        assert!(
            roomcast_fuzz::run_target(t, &[]),
            "no harness for target {t} in run_target"
        );
        assert!(
            !inputs(&fuzz_dir().join("seeds").join(t)).is_empty(),
            "target {t} has no seeds in seeds/{t}/"
        );
    }
}

#[test]
fn seeds_and_regressions_pass() {
    let mut failed = Vec::new();
    for t in targets() {
        for kind in ["seeds", "regressions"] {
            for file in inputs(&fuzz_dir().join(kind).join(&t)) {
                let data = fs::read(&file).expect("input");
                let result = std::panic::catch_unwind(|| roomcast_fuzz::run_target(&t, &data));
                if result.is_err() {
                    failed.push(format!("{t}: {}", file.display()));
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "inputs that panic (see fuzz/regressions/README.md):\n{}",
        failed.join("\n")
    );
}

#[test]
fn whole_fixtures_pass_flv_reader() {
    for file in inputs(&fuzz_dir().join("../tests/fixtures")) {
        if file.extension().is_some_and(|x| x == "flv") {
            let data = fs::read(&file).expect("fixture");
            roomcast_fuzz::media::flv_reader(&data);
        }
    }
}
