//! The results of a run: a table for people, JSON lines for scripts.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::scenarios::Entry;
use crate::{Sample, median};

/// The system every ratio is computed for.
const SUBJECT: &str = "missive";

/// All rows of a run, in the order they were measured.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Report {
    /// One row per scenario, system and metric.
    pub rows: Vec<Row>,
}

/// The result of one system in one scenario.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Row {
    /// Scenario name, as in the scenario table.
    pub scenario: String,
    /// System name (`missive`, `raw`, `framed`, `connect`, …).
    pub system: String,
    /// What was measured, e.g. `datagrams_per_s`.
    pub metric: String,
    /// Unit of the metric, e.g. `1/s`.
    pub unit: String,
    /// Median over the successful rounds (0 when none succeeded).
    pub median: f64,
    /// Smallest value over the successful rounds.
    pub min: f64,
    /// Largest value over the successful rounds.
    pub max: f64,
    /// Number of successful rounds.
    pub rounds: usize,
    /// Fraction of the messages sent that did not arrive intact and in order, for systems whose
    /// deliveries are counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<f64>,
    /// Messages sent over all rounds, where counted.
    #[serde(skip)]
    pub sent: Option<u64>,
    /// Messages delivered over all rounds, where counted.
    #[serde(skip)]
    pub delivered: Option<u64>,
    /// Why rounds failed, if any did (the warm-up included).
    #[serde(skip)]
    pub errors: Vec<String>,
}

impl Row {
    pub(crate) fn from_samples(
        scenario: &str,
        entry: &Entry,
        samples: &[Sample],
        errors: Vec<String>,
    ) -> Self {
        let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
        let sum = |f: fn(&Sample) -> Option<u64>| -> Option<u64> {
            samples
                .iter()
                .map(f)
                .try_fold(0u64, |acc, n| Some(acc.saturating_add(n?)))
        };
        let sent = if samples.is_empty() {
            None
        } else {
            sum(|s| s.sent)
        };
        let delivered = if samples.is_empty() {
            None
        } else {
            sum(|s| s.delivered)
        };
        let lost = match (sent, delivered) {
            (Some(s), Some(d)) if s > 0 => Some(s.saturating_sub(d) as f64 / s as f64),
            _ => None,
        };
        Self {
            scenario: scenario.to_owned(),
            system: entry.system.to_owned(),
            metric: entry.metric.to_owned(),
            unit: entry.unit.to_owned(),
            median: median(&values).unwrap_or(0.0),
            min: values.iter().copied().reduce(f64::min).unwrap_or(0.0),
            max: values.iter().copied().reduce(f64::max).unwrap_or(0.0),
            rounds: values.len(),
            lost,
            sent,
            delivered,
            errors,
        }
    }
}

impl Report {
    /// missive's median divided by `row`'s median in the same scenario and metric, if both exist.
    pub fn ratio(&self, row: &Row) -> Option<f64> {
        if row.system == SUBJECT || row.rounds == 0 || row.median <= 0.0 {
            return None;
        }
        let subject = self.rows.iter().find(|r| {
            r.system == SUBJECT && r.scenario == row.scenario && r.metric == row.metric
        })?;
        (subject.rounds > 0).then(|| subject.median / row.median)
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

    /// Writes the JSON lines to `path`, replacing the file.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let lines = self.json_lines()?;
        let mut file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        file.write_all(lines.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| scenario | system | metric | median | min | max | rounds | lost | missive ÷ |"
        )?;
        writeln!(f, "|---|---|---|---:|---:|---:|---:|---:|---:|")?;
        for row in &self.rows {
            let lost = row
                .lost
                .map_or_else(|| "—".to_owned(), |l| format!("{:.2}%", l * 100.0));
            let ratio = self
                .ratio(row)
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.scenario,
                row.system,
                row.metric,
                human(row.median),
                human(row.min),
                human(row.max),
                row.rounds,
                lost,
                ratio
            )?;
        }
        for row in &self.rows {
            if let (Some(sent), Some(delivered)) = (row.sent, row.delivered)
                && sent != delivered
            {
                writeln!(
                    f,
                    "{} / {}: {delivered} of {sent} messages delivered intact and in order",
                    row.scenario, row.system
                )?;
            }
            for error in &row.errors {
                writeln!(
                    f,
                    "{} / {}: round failed: {error}",
                    row.scenario, row.system
                )?;
            }
        }
        Ok(())
    }
}

/// A number with three significant digits and a k/M/G suffix.
fn human(x: f64) -> String {
    let (v, suffix) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    if v >= 100.0 {
        format!("{v:.0}{suffix}")
    } else if v >= 10.0 {
        format!("{v:.1}{suffix}")
    } else {
        format!("{v:.2}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, median: f64) -> Row {
        Row {
            scenario: "queue".to_owned(),
            system: system.to_owned(),
            metric: "datagrams_per_s".to_owned(),
            unit: "1/s".to_owned(),
            median,
            min: median,
            max: median,
            rounds: 3,
            lost: None,
            sent: None,
            delivered: None,
            errors: Vec::new(),
        }
    }

    #[test]
    fn json_line_has_the_documented_fields() -> anyhow::Result<()> {
        let report = Report {
            rows: vec![row("framed", 2.0)],
        };
        let line = report.json_lines()?;
        let value: serde_json::Value = serde_json::from_str(line.trim())?;
        assert_eq!(value["scenario"], "queue");
        assert_eq!(value["system"], "framed");
        assert_eq!(value["metric"], "datagrams_per_s");
        assert_eq!(value["unit"], "1/s");
        assert_eq!(value["median"], 2.0);
        assert_eq!(value["min"], 2.0);
        assert_eq!(value["max"], 2.0);
        assert_eq!(value["rounds"], 3);
        assert!(value.get("lost").is_none());
        Ok(())
    }

    #[test]
    fn ratio_divides_missive_by_the_other_system() {
        let report = Report {
            rows: vec![row("missive", 3.0), row("framed", 2.0)],
        };
        assert_eq!(report.ratio(&report.rows[1]), Some(1.5));
        assert_eq!(report.ratio(&report.rows[0]), None);
    }

    #[test]
    fn human_numbers_have_suffixes() {
        assert_eq!(human(1_234_567.0), "1.23M");
        assert_eq!(human(310_000.0), "310k");
        assert_eq!(human(12.0), "12.0");
    }
}
