//! Figures and the one table the run prints: percentiles of latency samples, rates, and a
//! row per comparison with the ratio dispatch/peer and, in words, who wins and by how much.

use std::fmt::Write as _;
use std::time::Duration;

/// Latency samples, sorted once.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// Sorts `samples`; there must be at least one.
    pub fn new(mut samples: Vec<Duration>) -> Latencies {
        assert!(!samples.is_empty(), "a latency figure needs samples");
        samples.sort();
        Latencies(samples)
    }

    /// The `p`-quantile (0.5: median), nearest rank.
    pub fn quantile(&self, p: f64) -> Duration {
        self.0[((self.0.len() - 1) as f64 * p).round() as usize]
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// What a figure measures, which decides which way is better.
#[derive(Clone, Copy)]
pub enum Unit {
    /// A latency in microseconds: lower is better.
    Micros,
    /// A rate per second: higher is better.
    PerSecond,
}

/// A measured figure.
#[derive(Clone, Copy)]
pub struct Figure {
    /// The value, in `unit`.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
}

impl Figure {
    /// A latency.
    pub fn latency(d: Duration) -> Figure {
        Figure { value: d.as_secs_f64() * 1e6, unit: Unit::Micros }
    }

    /// A rate: `count` things in `elapsed`.
    pub fn rate(count: usize, elapsed: Duration) -> Figure {
        Figure { value: count as f64 / elapsed.as_secs_f64(), unit: Unit::PerSecond }
    }

    fn show(self) -> String {
        match self.unit {
            Unit::Micros if self.value >= 10_000.0 => format!("{:.1} ms", self.value / 1000.0),
            Unit::Micros if self.value >= 100.0 => format!("{:.0} µs", self.value),
            Unit::Micros => format!("{:.1} µs", self.value),
            Unit::PerSecond => format!("{} /s", thousands(self.value)),
        }
    }
}

fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line of the table.
pub struct Row {
    /// What is compared.
    pub figure: String,
    /// Dispatch's figure.
    pub dispatch: Figure,
    /// The peer's name and figure, if the peer ran.
    pub peer: Option<(String, Figure)>,
}

/// The table, filled as the run goes, plus notes printed under it.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    /// Adds a comparison (`peer` is `None` when it did not run or has no counterpart).
    pub fn row(&mut self, figure: impl Into<String>, dispatch: Figure, peer: Option<(&str, Figure)>) {
        let peer = peer.map(|(name, f)| (name.to_string(), f));
        let row = Row { figure: figure.into(), dispatch, peer };
        println!("  {}", render(&row).join(" | "));
        self.rows.push(row);
    }

    /// Adds a note (correctness checks, agreement counts, what each side pays).
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  note: {note}");
        self.notes.push(note);
    }

    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| figure | dispatch | peer | peer's figure | dispatch/peer | who wins |\n|---|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", render(row).join(" | "));
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }
}

fn render(row: &Row) -> Vec<String> {
    let mut cells = vec![row.figure.clone(), row.dispatch.show()];
    match &row.peer {
        None => cells.extend(["—".into(), "—".into(), "—".into(), "—".into()]),
        Some((name, peer)) => {
            let ratio = row.dispatch.value / peer.value;
            let dispatch_better = match row.dispatch.unit {
                Unit::Micros => ratio < 1.0,
                Unit::PerSecond => ratio > 1.0,
            };
            let factor = if ratio >= 1.0 { ratio } else { 1.0 / ratio };
            let wins =
                if dispatch_better { format!("dispatch, {factor:.1}×") } else { format!("**{name}**, {factor:.1}×") };
            cells.extend([name.clone(), peer.show(), format!("{ratio:.3}"), wins]);
        }
    }
    cells
}
