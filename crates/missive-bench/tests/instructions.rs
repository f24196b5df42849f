//! The instruction count runs the benchmark program under valgrind and sees each system's work.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use missive_bench::{CountOptions, count_instructions};

fn valgrind_here() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_queue_costs_more_instructions_per_datagram_than_writing_the_bytes_by_hand()
-> anyhow::Result<()> {
    if !valgrind_here() {
        // CI installs valgrind before this runs; elsewhere the count cannot be made.
        eprintln!("valgrind is not installed: the instruction count is not tested here");
        return Ok(());
    }
    let options = CountOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_missive-bench")))
        .with_scenarios(vec!["queue".to_owned()])
        .with_systems(vec!["missive".to_owned(), "raw".to_owned()])
        .with_messages(300);
    let report = count_instructions(&options)?;
    let cost = |system: &str| {
        report
            .rows
            .iter()
            .find(|r| r.system == system)
            .and_then(|r| r.instructions_per_message)
    };
    let (Some(missive), Some(raw)) = (cost("missive"), cost("raw")) else {
        anyhow::bail!("a count failed:\n{report}");
    };
    assert!(raw > 0.0, "{report}");
    assert!(missive > raw, "{report}");
    Ok(())
}

#[test]
fn an_unknown_or_uncounted_scenario_is_refused() {
    let program = PathBuf::from(env!("CARGO_BIN_EXE_missive-bench"));
    for scenario in ["nope", "idle-conns"] {
        let options = CountOptions::new(program.clone()).with_scenarios(vec![scenario.to_owned()]);
        assert!(count_instructions(&options).is_err(), "{scenario}");
    }
}
