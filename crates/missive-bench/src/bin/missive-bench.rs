//! Runs the side-by-side benchmarks and prints the table.
//!
//! ```text
//! missive-bench [--quick] [--scenarios a,b] [--systems a,b] [--rounds N] [--duration-ms MS] [--burst N]
//!               [--json FILE] [--list]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use missive_bench::BenchOptions;

const USAGE: &str = "usage: missive-bench [--quick] [--scenarios a,b] [--systems a,b] [--rounds N] \
[--duration-ms MS] [--burst N] [--json FILE] [--list]";

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
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
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
    let report = missive_bench::run(&options)?;
    print!("{report}");
    Ok(())
}
