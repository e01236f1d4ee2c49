//! Turns the runs recorded by `bench/run` into the side-by-side table, the
//! results JSON and the chart.
//!
//! Input: one JSON object per line, `{"server", "scenario", "label", "rep",
//! "exit", "result"}`, where `result` is the tool's final JSON line (or
//! null when it printed none). Each scenario has a fixed list of headline
//! metrics ([`METRICS`]); a cell is the median over repeats with the spread
//! (min–max), and each baseline column gets the ratio subject/baseline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::stats::{median, min_max};

mod metrics;

pub use metrics::METRICS;

/// One run as `bench/run` records it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Run {
    /// Server name (`switchboard`, `node-ws`, ...).
    pub server: String,
    /// Scenario id (`idle`, `cpu-10k`, ...).
    pub scenario: String,
    /// Scenario label for people.
    #[serde(default)]
    pub label: String,
    /// Repeat number.
    #[serde(default)]
    pub rep: u32,
    /// The tool's exit code.
    #[serde(default)]
    pub exit: i32,
    /// Measurements made (more than 1 when a disturbed one was redone).
    #[serde(default = "one")]
    pub attempts: u32,
    /// The tool's final JSON line.
    #[serde(default)]
    pub result: Option<Value>,
    /// For scenarios measured twice on the subject (`hooks-*`): `without`
    /// or `with` (hooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

fn one() -> u32 {
    1
}

/// Which chart a metric is drawn in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chart {
    /// Server CPU microseconds per delivered message.
    Cpu,
    /// Resident memory per connection.
    Rss,
}

/// A headline metric of a scenario.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    /// Scenario id.
    pub scenario: &'static str,
    /// Metric name.
    pub name: &'static str,
    /// JSON pointer into the tool's output.
    pub pointer: &'static str,
    /// Unit.
    pub unit: &'static str,
    /// Whether smaller values are better.
    pub lower_is_better: bool,
    /// Whether a null value counts as zero (e.g. no passing rate).
    pub null_as_zero: bool,
    /// Chart it appears in.
    pub chart: Option<Chart>,
    /// The subject measured without and with a feature (runs carry a
    /// [`Run::variant`]): the row compares the two variants, not servers.
    pub paired: bool,
}

/// The variants of a paired scenario, in column order.
pub const VARIANTS: [&str; 2] = ["without", "with"];
/// The ratio column of a paired row.
pub const PAIRED_RATIO: &str = "with/without";

const fn m(
    scenario: &'static str,
    name: &'static str,
    pointer: &'static str,
    unit: &'static str,
    lower_is_better: bool,
    chart: Option<Chart>,
) -> MetricDef {
    MetricDef {
        scenario,
        name,
        pointer,
        unit,
        lower_is_better,
        null_as_zero: false,
        chart,
        paired: false,
    }
}

const fn pm(
    scenario: &'static str,
    name: &'static str,
    pointer: &'static str,
    unit: &'static str,
    lower_is_better: bool,
) -> MetricDef {
    MetricDef {
        paired: true,
        ..m(scenario, name, pointer, unit, lower_is_better, None)
    }
}

/// One server's figure in a row.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Cell {
    /// Median over successful repeats.
    pub median: Option<f64>,
    /// Smallest value.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// Repeats with a value.
    pub n: usize,
    /// Repeats that failed (no result or an error).
    pub errors: usize,
}

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Scenario id.
    pub scenario: String,
    /// Scenario label.
    pub label: String,
    /// Metric name.
    pub metric: String,
    /// Unit.
    pub unit: String,
    /// `lower` or `higher`.
    pub better: &'static str,
    /// Figures by server.
    pub cells: BTreeMap<String, Cell>,
    /// Subject/baseline ratios of the medians, by baseline.
    pub ratios: BTreeMap<String, Option<f64>>,
    /// Highest tool CPU % seen in this scenario's runs.
    pub tool_cpu_pct_max: Option<f64>,
    /// Highest CPU % used by the rest of the machine in this scenario's runs.
    pub other_cpu_pct_max: Option<f64>,
    /// Chart, if any (not serialized).
    #[serde(skip)]
    pub chart: Option<Chart>,
    /// Cells are the subject's variants ([`VARIANTS`]), and the one ratio
    /// is [`PAIRED_RATIO`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paired: bool,
}

/// Parses JSON lines into runs, skipping blank lines.
pub fn parse_runs(text: &str) -> Result<Vec<Run>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("runs line {}: {e}", i + 1)))
        .collect()
}

fn cell_for(runs: &[&Run], def: &MetricDef) -> Cell {
    let mut vals = Vec::new();
    let mut errors = 0;
    for r in runs {
        let res = r.result.as_ref();
        let failed = r.exit != 0 || res.is_none_or(|v| v.get("error").is_some());
        if failed {
            errors += 1;
            continue;
        }
        match res.and_then(|v| v.pointer(def.pointer)) {
            Some(Value::Number(n)) => vals.extend(n.as_f64()),
            Some(Value::Null) | None if def.null_as_zero => vals.push(0.0),
            _ => errors += 1,
        }
    }
    let mm = min_max(&vals);
    Cell {
        median: median(&vals),
        min: mm.map(|x| x.0),
        max: mm.map(|x| x.1),
        n: vals.len(),
        errors,
    }
}

/// The subject/baseline ratio (`None` when a median is missing or the
/// baseline's is zero).
pub fn ratio(subject: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (subject, baseline) {
        (Some(s), Some(b)) if b != 0.0 => Some(s / b),
        _ => None,
    }
}

/// Builds the rows: one per headline metric of each scenario that has runs.
pub fn build_rows(runs: &[Run], subject: &str, servers: &[String]) -> Vec<Row> {
    let mut rows = Vec::new();
    for def in METRICS {
        let in_scenario: Vec<&Run> = runs.iter().filter(|r| r.scenario == def.scenario).collect();
        if in_scenario.is_empty() {
            continue;
        }
        let label = in_scenario
            .iter()
            .find(|r| r.server == subject)
            .or(in_scenario.first())
            .map(|r| r.label.clone())
            .unwrap_or_default();
        let mut cells = BTreeMap::new();
        let ratios = if def.paired {
            for v in VARIANTS {
                let mine: Vec<&Run> = in_scenario
                    .iter()
                    .copied()
                    .filter(|r| r.server == subject && r.variant.as_deref() == Some(v))
                    .collect();
                if !mine.is_empty() {
                    cells.insert(v.to_string(), cell_for(&mine, def));
                }
            }
            let med = |v: &str| cells.get(v).and_then(|c: &Cell| c.median);
            BTreeMap::from([(
                PAIRED_RATIO.to_string(),
                ratio(med(VARIANTS[1]), med(VARIANTS[0])),
            )])
        } else {
            for s in servers {
                let mine: Vec<&Run> = in_scenario
                    .iter()
                    .copied()
                    .filter(|r| &r.server == s)
                    .collect();
                if !mine.is_empty() {
                    cells.insert(s.clone(), cell_for(&mine, def));
                }
            }
            let subj = cells.get(subject).and_then(|c| c.median);
            servers
                .iter()
                .filter(|s| s.as_str() != subject)
                .map(|s| (s.clone(), ratio(subj, cells.get(s).and_then(|c| c.median))))
                .collect()
        };
        let max_over = |ptr: &str| {
            in_scenario
                .iter()
                .filter_map(|r| r.result.as_ref()?.pointer(ptr)?.as_f64())
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        };
        let tool_cpu_pct_max = max_over("/results/tool_cpu_pct");
        let other_cpu_pct_max = max_over("/results/other_cpu_pct");
        rows.push(Row {
            scenario: def.scenario.to_string(),
            label,
            metric: def.name.to_string(),
            unit: def.unit.to_string(),
            better: if def.lower_is_better {
                "lower"
            } else {
                "higher"
            },
            cells,
            ratios,
            tool_cpu_pct_max,
            other_cpu_pct_max,
            chart: def.chart,
            paired: def.paired,
        });
    }
    rows
}

/// Formats a number with precision suited to its size.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// A table cell: `median (min–max)`, with failed repeats noted.
pub fn fmt_cell(c: Option<&Cell>) -> String {
    let Some(c) = c else {
        return "–".into();
    };
    let mut s = match (c.median, c.min, c.max) {
        (Some(m), Some(lo), Some(hi)) if c.n > 1 && fmt_num(lo) != fmt_num(hi) => {
            format!("{} ({}–{})", fmt_num(m), fmt_num(lo), fmt_num(hi))
        }
        (Some(m), _, _) => fmt_num(m),
        _ => "error".into(),
    };
    if c.errors > 0 && c.median.is_some() {
        s.push_str(&format!(" [{} failed]", c.errors));
    }
    s
}

/// The table as Markdown: servers side by side, then (when there are
/// paired rows) the subject without and with hooks.
pub fn markdown_table(rows: &[Row], subject: &str, servers: &[String]) -> String {
    let (paired, rows): (Vec<Row>, Vec<Row>) = rows.iter().cloned().partition(|r| r.paired);
    let mut out = String::new();
    if !rows.is_empty() || paired.is_empty() {
        out.push_str(&servers_table(&rows, subject, servers));
    }
    if !paired.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&paired_table(&paired, subject));
    }
    out
}

fn fmt_pct(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.0}"))
}

fn fmt_ratio(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{}×", fmt_num(v)))
}

fn metric_label(r: &Row) -> String {
    let unit = if r.unit.is_empty() {
        String::new()
    } else {
        format!(", {}", r.unit)
    };
    format!("{}{unit} ({} is better)", r.metric, r.better)
}

/// The paired rows: the subject without and with hooks, and the ratio.
fn paired_table(rows: &[Row], subject: &str) -> String {
    let mut out = format!(
        "| scenario | metric | {subject} without hooks | {subject} with hooks | with/without | tool CPU % (max) | other load % (max) |\n|---|---|---:|---:|---:|---:|---:|\n"
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.label,
            metric_label(r),
            fmt_cell(r.cells.get(VARIANTS[0])),
            fmt_cell(r.cells.get(VARIANTS[1])),
            fmt_ratio(r.ratios.get(PAIRED_RATIO).copied().flatten()),
            fmt_pct(r.tool_cpu_pct_max),
            fmt_pct(r.other_cpu_pct_max)
        ));
    }
    out
}

fn servers_table(rows: &[Row], subject: &str, servers: &[String]) -> String {
    let baselines: Vec<&String> = servers.iter().filter(|s| s.as_str() != subject).collect();
    let mut out = String::new();
    out.push_str("| scenario | metric | ");
    for s in servers {
        out.push_str(&format!("{s} | "));
    }
    for b in &baselines {
        out.push_str(&format!("{subject}/{b} | "));
    }
    out.push_str("tool CPU % (max) | other load % (max) |\n|---|---|");
    for _ in 0..servers.len() + baselines.len() + 2 {
        out.push_str("---:|");
    }
    out.push('\n');
    for r in rows {
        let unit = if r.unit.is_empty() {
            String::new()
        } else {
            format!(", {}", r.unit)
        };
        out.push_str(&format!(
            "| {} | {}{unit} ({} is better) | ",
            r.label, r.metric, r.better
        ));
        for s in servers {
            out.push_str(&format!("{} | ", fmt_cell(r.cells.get(s))));
        }
        for b in &baselines {
            let txt = r
                .ratios
                .get(*b)
                .copied()
                .flatten()
                .map_or("–".to_string(), |v| format!("{}×", fmt_num(v)));
            out.push_str(&format!("{txt} | "));
        }
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
        out.push_str(&format!(
            "{} | {} |\n",
            pct(r.tool_cpu_pct_max),
            pct(r.other_cpu_pct_max)
        ));
    }
    out
}

/// The results document written to `bench/results/*.json`.
pub fn results_json(
    rows: &[Row],
    runs: &[Run],
    subject: &str,
    servers: &[String],
    meta: Value,
) -> Value {
    // To keep the file small, parameters are stored once per scenario and
    // server (they are the same for every repeat), without the URLs (their
    // ports change on every run).
    let mut params: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            let res = r.result.as_ref();
            if let Some(p) = res.and_then(|v| v.get("params")) {
                let mut p = p.clone();
                if let Some(o) = p.as_object_mut() {
                    o.remove("url");
                    o.remove("http_url");
                }
                params
                    .entry(r.scenario.clone())
                    .or_default()
                    .entry(match &r.variant {
                        Some(v) => format!("{}/{v}", r.server),
                        None => r.server.clone(),
                    })
                    .or_insert(p);
            }
            let mut run = json!({
                "server": r.server, "scenario": r.scenario, "rep": r.rep, "exit": r.exit,
                "attempts": r.attempts,
                "results": res.and_then(|v| v.get("results")),
                "error": res.and_then(|v| v.get("error")),
            });
            if let (Some(v), Some(o)) = (&r.variant, run.as_object_mut()) {
                o.insert("variant".into(), json!(v));
            }
            run
        })
        .collect();
    json!({
        "meta": meta,
        "subject": subject,
        "servers": servers,
        "table": rows,
        "params": params,
        "runs": runs,
    })
}

#[cfg(test)]
mod tests;
