//! Instructions per message: a cost that does not move with the machine's load.
//!
//! Wall-clock rates on a shared machine move from one sitting to the next; the number of
//! instructions a program executes for the same work does not. For each system of a scenario,
//! this runs one *counted round* (the senders stop after a fixed number of messages instead of
//! at a deadline, and read no clock per message) in a child process under
//! `valgrind --tool=callgrind`, which counts every user-space instruction of both sides (the
//! client and the server thread of the round). It runs the round twice, with `N` and `2N`
//! messages, and reports `(I(2N) − I(N)) / N`: what the set-up costs (process start, runtimes,
//! certificates, handshakes, the first call) is in both counts and cancels out, and what is left
//! is the steady cost of one message, both sides and the harness's own work per message
//! included (making the payload and checking it, which is alike for every system).
//!
//! The kernel's work is not counted (callgrind sees user space only): a change that saves system
//! calls shows in the wall-clock ratios, not here. Counts are stable to a fraction of a percent
//! from run to run, not exact: how many messages one read returns depends on how the two
//! threads interleave.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let options = missive_bench::CountOptions::new(std::env::current_exe()?)
//!     .with_scenarios(vec!["queue".to_owned()])
//!     .with_messages(20_000);
//! print!("{}", missive_bench::count_instructions(&options)?);
//! # Ok(())
//! # }
//! ```
//!
//! The child is the benchmark program itself, started as
//! `<program> --counted-round <scenario> <entry> <messages> <burst>`, which calls
//! [`run_counted_round`].

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde::Serialize;

use crate::scenarios::{self, PAYLOAD};
use crate::{DEFAULT_BURST, RoundParams};

/// Messages of a 64-byte scenario's smaller count, unless told otherwise.
pub const DEFAULT_MESSAGES: u64 = 20_000;
/// Messages of the smaller count in the quick (CI) form.
pub const QUICK_MESSAGES: u64 = 1_000;
/// The fewest messages a counted round sends, whatever the scaling.
const MIN_MESSAGES: u64 = 8;
/// Upper bound on the count, so that a typo cannot start a run of days.
const MAX_COUNT: u64 = 100_000_000;
/// How long a counted round may take in the child (it runs some 50 times slower under valgrind).
const COUNTED_TIME_LIMIT: Duration = Duration::from_secs(300);
/// How long one child process may take, valgrind's start and exit included.
const CHILD_TIMEOUT: Duration = Duration::from_secs(420);
/// How often the parent looks whether the child has finished.
const CHILD_POLL: Duration = Duration::from_millis(20);
/// Scenarios whose metric is not a cost per message.
const NOT_COUNTED: &[&str] = &["idle-conns"];
/// The system every ratio is computed for.
const SUBJECT: &str = "missive";

/// What to count and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CountOptions {
    /// The benchmark program to run the counted rounds in (normally the running one).
    pub program: PathBuf,
    /// The valgrind program.
    pub valgrind: PathBuf,
    /// Names of the scenarios; empty: every scenario that can be counted.
    pub scenarios: Vec<String>,
    /// Names of the systems; empty: all of them.
    pub systems: Vec<String>,
    /// `N` for scenarios of 64-byte messages; scenarios of larger messages send as many bytes
    /// (at least 8 messages), dials a hundredth as many.
    pub messages: u64,
    /// Datagrams a one-way sender writes between two flushes.
    pub burst: usize,
    /// Where to write the JSON lines, if anywhere.
    pub json: Option<PathBuf>,
}

impl CountOptions {
    /// Counts every countable scenario with the default count, running rounds in `program`.
    pub fn new(program: PathBuf) -> Self {
        Self {
            program,
            valgrind: PathBuf::from("valgrind"),
            scenarios: Vec::new(),
            systems: Vec::new(),
            messages: DEFAULT_MESSAGES,
            burst: DEFAULT_BURST,
            json: None,
        }
    }

    /// Restricts the count to the named scenarios (empty: all that can be counted).
    pub fn with_scenarios(mut self, scenarios: Vec<String>) -> Self {
        self.scenarios = scenarios;
        self
    }

    /// Restricts the count to the named systems (empty: all).
    pub fn with_systems(mut self, systems: Vec<String>) -> Self {
        self.systems = systems;
        self
    }

    /// Sets `N`, the smaller count of a 64-byte scenario.
    pub fn with_messages(mut self, messages: u64) -> Self {
        self.messages = messages;
        self
    }

    /// Sets how many datagrams one-way senders write between two flushes.
    pub fn with_burst(mut self, burst: usize) -> Self {
        self.burst = burst;
        self
    }

    /// Writes the results as JSON lines to `path`.
    pub fn with_json(mut self, path: PathBuf) -> Self {
        self.json = Some(path);
        self
    }
}

/// The instructions of one system in one scenario.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct InstructionRow {
    /// Scenario name.
    pub scenario: String,
    /// System name.
    pub system: String,
    /// The metric of the system's timed entry (tells two entries of one system apart).
    pub metric: String,
    /// `N`: the messages of the smaller count (the larger sends twice as many).
    pub messages: u64,
    /// Payload bytes of one message (one call's body, one write of a bulk upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_bytes: Option<u64>,
    /// Instructions per message, both sides together; `None` when the count failed.
    pub instructions_per_message: Option<f64>,
    /// Why the count failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl InstructionRow {
    /// Instructions per payload byte, where a message has a payload.
    pub fn instructions_per_byte(&self) -> Option<f64> {
        Some(self.instructions_per_message? / self.message_bytes? as f64)
    }
}

/// The counts of a run: a table for people, JSON lines for scripts.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct InstructionReport {
    /// One row per scenario, system and metric.
    pub rows: Vec<InstructionRow>,
}

impl InstructionReport {
    /// missive's instructions per message divided by `row`'s (below 1: missive does less).
    pub fn ratio(&self, row: &InstructionRow) -> Option<f64> {
        if row.system == SUBJECT {
            return None;
        }
        let theirs = row.instructions_per_message.filter(|i| *i > 0.0)?;
        let ours = self
            .rows
            .iter()
            .find(|r| r.system == SUBJECT && r.scenario == row.scenario && r.metric == row.metric)?
            .instructions_per_message?;
        Some(ours / theirs)
    }

    /// The JSON lines: one object per row.
    pub fn json_lines(&self) -> anyhow::Result<String> {
        let mut out = String::new();
        for row in &self.rows {
            out.push_str(&serde_json::to_string(row)?);
            out.push('\n');
        }
        Ok(out)
    }
}

impl fmt::Display for InstructionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| scenario | system | metric | N | instructions/message | instructions/byte | missive ÷ |"
        )?;
        writeln!(f, "|---|---|---|---:|---:|---:|---:|")?;
        let dash = || "—".to_owned();
        for row in &self.rows {
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.scenario,
                row.system,
                row.metric,
                row.messages,
                row.instructions_per_message
                    .map_or_else(dash, |i| format!("{i:.0}")),
                row.instructions_per_byte().map_or_else(dash, per_byte),
                self.ratio(row).map_or_else(dash, |r| format!("{r:.2}×")),
            )?;
        }
        for row in &self.rows {
            if let Some(error) = &row.error {
                writeln!(
                    f,
                    "{} / {}: count failed: {error}",
                    row.scenario, row.system
                )?;
            }
        }
        Ok(())
    }
}

/// Instructions per byte with three significant digits at least (plain TCP's bulk costs a few
/// thousandths of an instruction per byte in user space).
fn per_byte(i: f64) -> String {
    if i >= 1.0 {
        format!("{i:.2}")
    } else {
        format!("{i:.4}")
    }
}

/// Payload bytes of one message of `scenario`, where its messages carry a payload.
pub(crate) fn message_bytes(scenario: &str) -> Option<u64> {
    if scenario.starts_with("dial") {
        None
    } else if scenario.starts_with("stream-bulk") {
        Some(scenarios::CHUNK as u64)
    } else if scenario == "rpc-bulk" {
        Some(scenarios::BULK as u64)
    } else {
        Some(PAYLOAD as u64)
    }
}

/// `N` for `scenario` when 64-byte scenarios send `base`: as many bytes for larger messages, a
/// hundredth for dials, at least [`MIN_MESSAGES`].
pub(crate) fn scaled_count(scenario: &str, base: u64) -> u64 {
    let n = match message_bytes(scenario) {
        None => base / 100,
        Some(bytes) => base.saturating_mul(PAYLOAD as u64) / bytes.max(1),
    };
    n.max(MIN_MESSAGES)
}

/// Counts the instructions per message of the selected scenarios and systems.
pub fn count_instructions(options: &CountOptions) -> anyhow::Result<InstructionReport> {
    if options.messages == 0 || options.messages > MAX_COUNT {
        bail!("the count must be between 1 and {MAX_COUNT}");
    }
    let registry = scenarios::registry();
    for wanted in &options.scenarios {
        match registry.iter().find(|s| s.name == wanted) {
            None => bail!(
                "unknown scenario {wanted:?}; known: {}",
                crate::scenario_names().join(", ")
            ),
            Some(s) if NOT_COUNTED.contains(&s.name) => {
                bail!("{wanted} measures memory, not a cost per message")
            }
            Some(_) => {}
        }
    }
    let version = Command::new(&options.valgrind)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !version.is_ok_and(|s| s.success()) {
        bail!(
            "{} is needed to count instructions (apt-get install valgrind)",
            options.valgrind.display()
        );
    }
    let mut report = InstructionReport::default();
    for scenario in &registry {
        let wanted = if options.scenarios.is_empty() {
            !NOT_COUNTED.contains(&scenario.name)
        } else {
            options.scenarios.iter().any(|w| w == scenario.name)
        };
        if !wanted {
            continue;
        }
        let messages = scaled_count(scenario.name, options.messages);
        for (index, entry) in scenario.entries.iter().enumerate() {
            if !options.systems.is_empty() && !options.systems.iter().any(|w| w == entry.system) {
                continue;
            }
            let counted = per_message(options, scenario.name, index, messages);
            report.rows.push(InstructionRow {
                scenario: scenario.name.to_owned(),
                system: entry.system.to_owned(),
                metric: entry.metric.to_owned(),
                messages,
                message_bytes: message_bytes(scenario.name),
                instructions_per_message: counted.as_ref().ok().copied(),
                error: counted.err().map(|e| format!("{e:#}")),
            });
        }
    }
    if report.rows.is_empty() {
        bail!("no scenario has the systems asked for");
    }
    if let Some(path) = &options.json {
        let lines = report.json_lines()?;
        std::fs::File::create(path)
            .and_then(|mut f| f.write_all(lines.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// `(I(2N) − I(N)) / N` for entry `index` of `scenario`.
fn per_message(
    options: &CountOptions,
    scenario: &str,
    index: usize,
    messages: u64,
) -> anyhow::Result<f64> {
    let once = instructions_of_round(options, scenario, index, messages)?;
    let twice = instructions_of_round(options, scenario, index, 2 * messages)?;
    steady_cost(once, twice, messages)
}

/// The cost of one message from the counts of a round of `messages` and one of twice as many.
pub(crate) fn steady_cost(once: u64, twice: u64, messages: u64) -> anyhow::Result<f64> {
    if twice <= once || messages == 0 {
        bail!(
            "{} messages counted {twice} instructions, not more than the {once} of {messages}",
            2 * messages
        );
    }
    Ok((twice - once) as f64 / messages as f64)
}

/// The instructions of one counted round in a child process under callgrind.
fn instructions_of_round(
    options: &CountOptions,
    scenario: &str,
    index: usize,
    messages: u64,
) -> anyhow::Result<u64> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stem = format!(
        "missive-bench-callgrind-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let out = std::env::temp_dir().join(format!("{stem}.out"));
    let log = std::env::temp_dir().join(format!("{stem}.log"));
    let mut command = Command::new(&options.valgrind);
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--log-file={}", log.display()))
        // Threads take turns in a fixed order, so that both sides' interleaving (and with it
        // how many messages one read returns) is the same from run to run.
        .arg("--fair-sched=yes")
        .arg(&options.program)
        .arg("--counted-round")
        .arg(scenario)
        .arg(index.to_string())
        .arg(messages.to_string())
        .arg(options.burst.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let result = run_child(command, &out, &log);
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&log);
    result.with_context(|| format!("{scenario}, entry {index}, {messages} messages"))
}

fn run_child(mut command: Command, out: &Path, log: &Path) -> anyhow::Result<u64> {
    let mut child = command.spawn().context("starting valgrind")?;
    let deadline = Instant::now() + CHILD_TIMEOUT;
    // The child writes its errors (a few lines) to stderr; valgrind writes to its log file.
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the counted round did not finish within {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(CHILD_POLL);
    };
    let output = child.wait_with_output()?;
    if !status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let valgrind_said = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<_> = valgrind_said.lines().rev().take(5).collect();
        bail!(
            "the counted round failed ({status}): {} {}",
            said.trim(),
            tail.into_iter().rev().collect::<Vec<_>>().join("; ")
        );
    }
    let text = std::fs::read_to_string(out).context("reading callgrind's output")?;
    callgrind_total(&text)
}

/// The total instruction count in a callgrind output file (its `totals:` or `summary:` line).
pub(crate) fn callgrind_total(text: &str) -> anyhow::Result<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| text.lines().find(|l| l.starts_with("summary:")))
        .context("callgrind's output has no totals line")?;
    let (_, counts) = line.split_once(':').unwrap_or_default();
    counts
        .split_whitespace()
        .next()
        .context("callgrind's totals line is empty")?
        .parse()
        .context("callgrind's total is not a number")
}

/// The child's side: runs entry `index` of `scenario` once, its senders stopping after
/// `messages`, and checks that they did.
pub fn run_counted_round(
    scenario: &str,
    index: usize,
    messages: u64,
    burst: usize,
) -> anyhow::Result<()> {
    let registry = scenarios::registry();
    let found = registry
        .iter()
        .find(|s| s.name == scenario)
        .with_context(|| format!("unknown scenario {scenario:?}"))?;
    let entry = found
        .entries
        .get(index)
        .with_context(|| format!("{scenario} has no entry {index}"))?;
    if burst == 0 || burst > 65_536 {
        bail!("the burst must be between 1 and 65536 datagrams, not {burst}");
    }
    let params = RoundParams {
        duration: COUNTED_TIME_LIMIT,
        burst,
        quick: false,
        messages: Some(messages),
    };
    let sample = (entry.run)(&params)?;
    if sample.sent != Some(messages) {
        return Err(anyhow!(
            "{scenario} / {} sent {:?} messages, not the {messages} asked for: it does not stop \
             at a count",
            entry.system,
            sample.sent
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_read_from_callgrinds_totals_line() -> anyhow::Result<()> {
        let text = "version: 1\ncmd: x\nevents: Ir\nsummary: 1234\nfn=main\n1 5\ntotals: 1234\n";
        assert_eq!(callgrind_total(text)?, 1234);
        assert_eq!(callgrind_total("events: Ir\nsummary: 99\n")?, 99);
        assert!(callgrind_total("events: Ir\n").is_err());
        assert!(callgrind_total("totals: many\n").is_err());
        Ok(())
    }

    #[test]
    fn the_steady_cost_leaves_the_set_up_out() -> anyhow::Result<()> {
        // 5,000,000 of set-up, 300 per message.
        let once = 5_000_000 + 300 * 1_000;
        let twice = 5_000_000 + 300 * 2_000;
        assert_eq!(steady_cost(once, twice, 1_000)?, 300.0);
        assert!(steady_cost(twice, once, 1_000).is_err());
        Ok(())
    }

    #[test]
    fn larger_messages_are_counted_by_the_bytes_and_dials_by_the_hundred() {
        assert_eq!(scaled_count("queue", 20_000), 20_000);
        assert_eq!(
            scaled_count("stream-bulk", 2_048_000),
            2_048_000 * 64 / scenarios::CHUNK as u64
        );
        assert_eq!(scaled_count("rpc-bulk", 1_000), MIN_MESSAGES);
        assert_eq!(scaled_count("dial", 20_000), 200);
        assert_eq!(message_bytes("dial-quic"), None);
    }

    #[test]
    fn every_bulk_scenario_has_its_message_size() {
        for scenario in scenarios::registry() {
            if scenario.entries.iter().any(|e| e.unit == "B/s") {
                assert!(
                    message_bytes(scenario.name).is_some_and(|b| b > PAYLOAD as u64),
                    "{}",
                    scenario.name
                );
            }
        }
    }

    #[test]
    fn a_counted_round_stops_at_its_count() -> anyhow::Result<()> {
        // Natively, without valgrind: each family's senders stop at the count (the child
        // checks that the round reports exactly that many messages sent).
        for (scenario, systems) in [
            ("queue", 4),
            ("raw", 2),
            ("stream-echo", 3),
            ("stream-bulk", 3),
            ("rr-64", 2),
            ("rpc-16x1", 5),
            ("dial", 2),
            ("stream-echo-quic", 2),
            ("stream-bulk-quic", 2),
            ("rr-seq-quic", 2),
            ("dial-quic", 2),
        ] {
            for index in 0..systems {
                run_counted_round(scenario, index, 37, 8)
                    .with_context(|| format!("{scenario} / {index}"))?;
            }
        }
        Ok(())
    }

    #[test]
    fn the_ratio_divides_missives_count_by_the_others() {
        let row = |system: &str, i| InstructionRow {
            scenario: "queue".to_owned(),
            system: system.to_owned(),
            metric: "datagrams_per_s".to_owned(),
            messages: 10,
            message_bytes: Some(64),
            instructions_per_message: Some(i),
            error: None,
        };
        let report = InstructionReport {
            rows: vec![row("missive", 600.0), row("framed", 800.0)],
        };
        assert_eq!(report.ratio(&report.rows[1]), Some(0.75));
        assert_eq!(report.ratio(&report.rows[0]), None);
        assert_eq!(report.rows[0].instructions_per_byte(), Some(600.0 / 64.0));
    }
}
