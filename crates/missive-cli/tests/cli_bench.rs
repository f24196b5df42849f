//! `missive bench` in a build without the benchmark harness: it says where the harness is.
#![cfg(not(feature = "bench"))]

use std::process::Command;

#[test]
fn bench_without_the_feature_points_to_the_harness_and_fails() {
    let out = Command::new(env!("CARGO_BIN_EXE_missive"))
        .args(["bench", "--quick"])
        .output()
        .expect("run missive bench");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cargo run --release -p missive-bench"),
        "{stderr}"
    );
}
