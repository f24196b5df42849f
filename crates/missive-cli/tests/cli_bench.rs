//! `missive bench`: the harness is a binary of its own; the tool says how to run it.

use std::process::Command;

#[test]
fn bench_points_to_the_harness_binary_and_fails() {
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .args(["bench", "--quick"])
        .output()
        .expect("run missive bench");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cargo run --release -p missive-bench -- --quick"),
        "{stderr}"
    );
}
