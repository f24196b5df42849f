//! `missive bench`: the side-by-side comparisons of missive-bench, when built with the `bench`
//! feature; otherwise it says how to run them.

use std::path::PathBuf;
use std::process::ExitCode;
#[cfg(feature = "bench")]
use std::time::Duration;

use clap::Args;
#[cfg(feature = "bench")]
use missive_bench::BenchOptions;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Short smoke run (fewer, shorter rounds).
    #[arg(long)]
    quick: bool,
    /// Scenarios to run, comma-separated (default: all; see --list).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Systems to run, comma-separated (default: all). Ratios need missive and a peer.
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
    /// Rounds per system.
    #[arg(long)]
    rounds: Option<usize>,
    /// Milliseconds one system gets per round.
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Datagrams written between two flushes by one-way senders.
    #[arg(long)]
    burst: Option<usize>,
    /// Also write one JSON object per scenario and system to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

/// Without the `bench` feature: the harness is not linked in; it says where it is.
#[cfg(not(feature = "bench"))]
pub(crate) fn run(_: BenchArgs) -> anyhow::Result<ExitCode> {
    eprintln!(
        "missive: this build has no benchmarks (they link every system they compare against).\n\
         Run them from the source tree with `cargo run --release -p missive-bench -- --quick`\n\
         (same options as here), or build this tool with `--features bench`."
    );
    Ok(ExitCode::from(2))
}

/// Runs outside any async runtime: the harness builds one runtime per side itself.
#[cfg(feature = "bench")]
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        for name in missive_bench::scenario_names() {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut options = BenchOptions::default()
        .with_quick(args.quick)
        .with_scenarios(args.scenarios)
        .with_systems(args.systems);
    if let Some(rounds) = args.rounds {
        options = options.with_rounds(rounds);
    }
    if let Some(ms) = args.duration_ms {
        options = options.with_duration(Duration::from_millis(ms));
    }
    if let Some(burst) = args.burst {
        options = options.with_burst(burst);
    }
    if let Some(path) = args.json {
        options = options.with_json(path);
    }
    let report = missive_bench::run(&options)?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}
