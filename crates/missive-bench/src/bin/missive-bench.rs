//! Runs the side-by-side benchmarks and prints the table.
//!
//! ```text
//! missive-bench [--quick] [--scenarios a,b] [--systems a,b] [--rounds N] [--duration-ms MS] [--burst N]
//!               [--json FILE] [--list]
//! missive-bench --instructions [--quick] [--messages N] [--scenarios a,b] [--systems a,b] [--burst N]
//!               [--json FILE]
//! ```
//!
//! `--instructions` counts instructions per message under valgrind instead of timing rounds
//! (see `missive_bench::count_instructions`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use missive_bench::{BenchOptions, CountOptions};

const USAGE: &str =
    "usage: missive-bench [--quick] [--scenarios a,b] [--systems a,b] [--rounds N] \
[--duration-ms MS] [--burst N] [--json FILE] [--list]
       missive-bench --instructions [--quick] [--messages N] [--scenarios a,b] [--systems a,b] \
[--burst N] [--json FILE]
  --instructions  instructions per message (valgrind's callgrind, rounds of N and 2N messages)
  --messages N    N for 64-byte scenarios (default 20000; 1000 with --quick)";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("missive-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut options = BenchOptions::default();
    let mut instructions = false;
    let mut messages = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--counted-round" => {
                // The child of `--instructions`: one counted round, run under valgrind.
                let scenario = value("--counted-round")?;
                let entry = value("--counted-round")?.parse()?;
                let count = value("--counted-round")?.parse()?;
                let burst = value("--counted-round")?.parse()?;
                return missive_bench::run_counted_round(&scenario, entry, count, burst);
            }
            "--instructions" => instructions = true,
            "--messages" => messages = Some(value("--messages")?.parse()?),
            "--quick" => options = options.with_quick(true),
            "--scenarios" => {
                let list = value("--scenarios")?;
                options = options.with_scenarios(
                    list.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            "--systems" => {
                let list = value("--systems")?;
                options = options.with_systems(
                    list.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            "--rounds" => options = options.with_rounds(value("--rounds")?.parse()?),
            "--duration-ms" => {
                let ms: u64 = value("--duration-ms")?.parse()?;
                options = options.with_duration(Duration::from_millis(ms));
            }
            "--burst" => options = options.with_burst(value("--burst")?.parse()?),
            "--json" => options = options.with_json(PathBuf::from(value("--json")?)),
            "--list" => {
                for name in missive_bench::scenario_names() {
                    println!("{name}");
                }
                return Ok(());
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if instructions {
        let program = std::env::current_exe().context("finding this program")?;
        let default = if options.quick {
            missive_bench::QUICK_MESSAGES
        } else {
            missive_bench::DEFAULT_MESSAGES
        };
        let mut count = CountOptions::new(program)
            .with_scenarios(options.scenarios.clone())
            .with_systems(options.systems.clone())
            .with_messages(messages.unwrap_or(default));
        if let Some(burst) = options.burst {
            count = count.with_burst(burst);
        }
        if let Some(json) = options.json.clone() {
            count = count.with_json(json);
        }
        print!("{}", missive_bench::count_instructions(&count)?);
        return Ok(());
    }
    if messages.is_some() {
        bail!("--messages only goes with --instructions\n{USAGE}");
    }
    let report = missive_bench::run(&options)?;
    print!("{report}");
    Ok(())
}
