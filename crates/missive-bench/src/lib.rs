//! Side-by-side benchmarks of missive against the systems it replaces.
//!
//! Performance is claimed only as a ratio measured in one run on one machine: the runner executes
//! every system of a scenario back to back, alternating (A B C A B C …) for several rounds, and
//! reports the median, minimum and maximum per system together with missive's ratio to each other
//! system. Every round uses two threads, one per side, each with its own single-threaded runtime,
//! and talks over loopback only.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let options = missive_bench::BenchOptions::default()
//!     .with_quick(true)
//!     .with_scenarios(vec!["queue".to_owned()]);
//! let report = missive_bench::run(&options)?;
//! println!("{report}");
//! # Ok(())
//! # }
//! ```
//!
//! Scenarios live in `scenarios/`, one file per family, and are listed in one registry.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

mod instructions;
mod report;
mod scenarios;
mod tls;

pub use instructions::{
    CountOptions, DEFAULT_MESSAGES, InstructionReport, InstructionRow, QUICK_MESSAGES,
    count_instructions, run_counted_round,
};
pub use report::{Report, Row};

/// Rounds per system in a normal run.
const DEFAULT_ROUNDS: usize = 5;
/// Rounds per system in a quick run.
const QUICK_ROUNDS: usize = 3;
/// Time one system gets per round in a normal run.
const DEFAULT_DURATION: Duration = Duration::from_secs(1);
/// Time one system gets per round in a quick run.
const QUICK_DURATION: Duration = Duration::from_millis(150);
/// Datagrams a sender writes between two flushes, unless told otherwise.
const DEFAULT_BURST: usize = 64;
/// Upper bound on rounds, so that a typo cannot start a run of days.
const MAX_ROUNDS: usize = 1_000;
/// Upper bound on the time per round.
const MAX_DURATION: Duration = Duration::from_secs(600);

/// What to run and how long.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BenchOptions {
    /// Short smoke run (fewer, shorter rounds) for CI.
    pub quick: bool,
    /// Names of the scenarios to run; empty runs all of them.
    pub scenarios: Vec<String>,
    /// Names of the systems to run (`missive`, `framed`, …); empty runs all of them. Useful for
    /// profiling one system; ratios need missive and the others in the same run.
    pub systems: Vec<String>,
    /// Rounds per system; `None` picks the default of the mode.
    pub rounds: Option<usize>,
    /// Time one system gets per round; `None` picks the default of the mode.
    pub duration: Option<Duration>,
    /// Datagrams written between two flushes by one-way senders; `None` picks 64.
    pub burst: Option<usize>,
    /// Where to write the JSON lines, if anywhere.
    pub json: Option<PathBuf>,
}

impl BenchOptions {
    /// Selects the short smoke mode.
    pub fn with_quick(mut self, quick: bool) -> Self {
        self.quick = quick;
        self
    }

    /// Restricts the run to the named scenarios (empty: all).
    pub fn with_scenarios(mut self, scenarios: Vec<String>) -> Self {
        self.scenarios = scenarios;
        self
    }

    /// Restricts the run to the named systems (empty: all).
    pub fn with_systems(mut self, systems: Vec<String>) -> Self {
        self.systems = systems;
        self
    }

    /// Sets the number of rounds per system.
    pub fn with_rounds(mut self, rounds: usize) -> Self {
        self.rounds = Some(rounds);
        self
    }

    /// Sets the time one system gets per round.
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Sets how many datagrams one-way senders write between two flushes.
    pub fn with_burst(mut self, burst: usize) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Writes the results as JSON lines to `path`.
    pub fn with_json(mut self, path: PathBuf) -> Self {
        self.json = Some(path);
        self
    }
}

/// Names of all scenarios, in the order they run.
pub fn scenario_names() -> Vec<&'static str> {
    scenarios::registry().iter().map(|s| s.name).collect()
}

/// Runs the selected scenarios and returns their report; writes the JSON file if one was asked for.
pub fn run(options: &BenchOptions) -> anyhow::Result<Report> {
    let params = RoundParams::from_options(options)?;
    let rounds = options.rounds.unwrap_or(if options.quick {
        QUICK_ROUNDS
    } else {
        DEFAULT_ROUNDS
    });
    if rounds == 0 || rounds > MAX_ROUNDS {
        bail!("rounds must be between 1 and {MAX_ROUNDS}, not {rounds}");
    }
    let registry = scenarios::registry();
    for wanted in &options.scenarios {
        if !registry.iter().any(|s| s.name == wanted) {
            bail!(
                "unknown scenario {wanted:?}; known: {}",
                scenario_names().join(", ")
            );
        }
    }
    let selected: Vec<_> = registry
        .into_iter()
        .filter(|s| options.scenarios.is_empty() || options.scenarios.iter().any(|w| w == s.name))
        .map(|mut s| {
            s.entries.retain(|e| {
                options.systems.is_empty() || options.systems.iter().any(|w| w == e.system)
            });
            s
        })
        .filter(|s| !s.entries.is_empty())
        .collect();
    if selected.is_empty() {
        bail!("no scenario has the systems asked for");
    }

    let mut report = Report::default();
    for scenario in &selected {
        report.rows.extend(run_scenario(scenario, rounds, &params));
    }
    if let Some(path) = &options.json {
        report.write_json(path)?;
    }
    Ok(report)
}

/// The knobs every round of every scenario sees.
#[derive(Debug, Clone)]
pub(crate) struct RoundParams {
    /// How long the measured part of one round lasts.
    pub(crate) duration: Duration,
    /// Datagrams a one-way sender writes between two flushes.
    pub(crate) burst: usize,
    /// Whether this is the short smoke run, which only shows that every system works: a family
    /// with many entries may shorten its rounds further or do less outside the measured time.
    pub(crate) quick: bool,
    /// In a counted round, the messages the senders send before they stop (and `duration` is
    /// only the time limit); `None` in a timed round.
    pub(crate) messages: Option<u64>,
}

impl RoundParams {
    fn from_options(options: &BenchOptions) -> anyhow::Result<Self> {
        let duration = options.duration.unwrap_or(if options.quick {
            QUICK_DURATION
        } else {
            DEFAULT_DURATION
        });
        if duration.is_zero() || duration > MAX_DURATION {
            bail!("the duration per round must be above zero and at most {MAX_DURATION:?}");
        }
        let burst = options.burst.unwrap_or(DEFAULT_BURST);
        if burst == 0 || burst > 65_536 {
            bail!("the burst must be between 1 and 65536 datagrams, not {burst}");
        }
        Ok(Self {
            duration,
            burst,
            quick: options.quick,
            messages: None,
        })
    }

    /// When the senders of a round stop.
    pub(crate) fn limit(&self) -> scenarios::Limit {
        scenarios::Limit {
            duration: self.duration,
            messages: self.messages,
        }
    }

    /// The parameters of the unmeasured warm-up round.
    fn warm_up(&self) -> Self {
        Self {
            duration: (self.duration / 4).max(Duration::from_millis(20)),
            burst: self.burst,
            quick: self.quick,
            messages: self.messages,
        }
    }
}

/// The outcome of one round of one system.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    /// The measured value, in the unit of the entry.
    pub(crate) value: f64,
    /// Messages handed to the system by the sender, where counted.
    pub(crate) sent: Option<u64>,
    /// Messages that arrived intact and in order, where counted.
    pub(crate) delivered: Option<u64>,
}

/// Runs one scenario: a warm-up round per system, then `rounds` alternating rounds.
fn run_scenario(scenario: &scenarios::Scenario, rounds: usize, params: &RoundParams) -> Vec<Row> {
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scenario.entries.len()];
    let mut errors: Vec<Vec<String>> = vec![Vec::new(); scenario.entries.len()];
    let warm_up = params.warm_up();
    for (i, entry) in scenario.entries.iter().enumerate() {
        if let Err(e) = (entry.run)(&warm_up) {
            errors[i].push(format!("warm-up: {e:#}"));
        }
    }
    for _ in 0..rounds {
        for (i, entry) in scenario.entries.iter().enumerate() {
            match (entry.run)(params) {
                Ok(sample) => samples[i].push(sample),
                Err(e) => errors[i].push(format!("{e:#}")),
            }
        }
    }
    scenario
        .entries
        .iter()
        .zip(samples)
        .zip(errors)
        .map(|((entry, samples), errors)| Row::from_samples(scenario.name, entry, &samples, errors))
        .collect()
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_count_is_middle_value() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    }

    #[test]
    fn median_of_even_count_is_mean_of_middle_values() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn median_of_nothing_is_none() {
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn unknown_scenario_is_refused() {
        let options = BenchOptions::default().with_scenarios(vec!["nope".to_owned()]);
        assert!(run(&options).is_err());
    }

    #[test]
    fn quick_mode_reaches_the_rounds_and_their_warm_up() -> anyhow::Result<()> {
        let params = RoundParams::from_options(&BenchOptions::default().with_quick(true))?;
        assert!(params.quick);
        assert!(params.warm_up().quick);
        assert_eq!(params.duration, QUICK_DURATION);
        let params = RoundParams::from_options(&BenchOptions::default())?;
        assert!(!params.quick);
        Ok(())
    }

    #[test]
    fn zero_rounds_are_refused() {
        let options = BenchOptions::default()
            .with_scenarios(vec!["raw".to_owned()])
            .with_rounds(0);
        assert!(run(&options).is_err());
    }
}
