//! What every benchmark of this directory shares: the statistics of a set of runs, the
//! Python comparison script's output, and a description of the machine.

#![allow(dead_code)] // each benchmark uses its own part of this

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Median, p10 and p90 of a set of runs, in the unit of the values given.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
}

impl Stats {
    /// The figures of `values` (in any order).
    pub fn of(mut values: Vec<f64>) -> Stats {
        values.sort_by(f64::total_cmp);
        Stats {
            n: values.len(),
            median: quantile(&values, 0.5),
            p10: quantile(&values, 0.1),
            p90: quantile(&values, 0.9),
        }
    }

    /// The figures of `samples`, in microseconds.
    pub fn of_micros(samples: &[Duration]) -> Stats {
        Stats::of(samples.iter().map(|d| d.as_secs_f64() * 1e6).collect())
    }

    /// The same figures divided by `k` (a batch's figures per item).
    pub fn per(self, k: usize) -> Stats {
        let k = k as f64;
        Stats {
            n: self.n,
            median: self.median / k,
            p10: self.p10 / k,
            p90: self.p90 / k,
        }
    }
}

/// Linear interpolation between closest ranks (the same as the Python scripts').
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// `num / den` of the medians, as `1.23x`; `n/a` when either is missing.
pub fn ratio(num: Option<Stats>, den: Option<Stats>) -> String {
    match (num, den) {
        (Some(a), Some(b)) => format!("{:.2}x", a.median / b.median),
        _ => "n/a".to_owned(),
    }
}

/// What a Python comparison script printed.
#[derive(Default)]
pub struct Python {
    /// Figures by key, in the script's unit.
    pub stats: HashMap<String, Stats>,
    /// `info` lines by key (`python_version`, ...).
    pub info: HashMap<String, String>,
}

/// Runs the Python script at `script` with `args`; its figures, or why there are none.
///
/// The script prints `key n median p10 p90` lines, `info key value...` lines, and
/// comments starting with `#`.
pub fn python(script: &str, args: &[&str]) -> Result<Python, String> {
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err(format!("{script} failed: {}", out.status));
    }
    let mut found = Python::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] => {}
            [first, ..] if first.starts_with('#') => {}
            ["info", key, value @ ..] => {
                found.info.insert((*key).to_owned(), value.join(" "));
            }
            [key, n, median, p10, p90] => {
                let num = |s: &str| {
                    s.parse::<f64>()
                        .map_err(|e| format!("bad number `{s}` in `{line}`: {e}"))
                };
                found.stats.insert(
                    (*key).to_owned(),
                    Stats {
                        n: n.parse()
                            .map_err(|e| format!("bad count `{n}` in `{line}`: {e}"))?,
                        median: num(median)?,
                        p10: num(p10)?,
                        p90: num(p90)?,
                    },
                );
            }
            _ => return Err(format!("unexpected line from the Python script: `{line}`")),
        }
    }
    Ok(found)
}

/// The running kernel's release.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The CPU's model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
