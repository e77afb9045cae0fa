//! Paired rounds: two loads measured one window each per round, the side that goes first
//! alternating, and the median round's ratio, so the machine's drift touches both sides alike.

use std::sync::Arc;
use std::time::Duration;

use crate::BenchResult;
use crate::load::client::LoadSpec;
use crate::load::{PAIRED_ROUNDS, Phase, RATE_CONNECTIONS, Timing, measure_one};
use crate::servers::ChildServer;

/// A rate measured against a baseline in paired rounds: the median round's two windows, and
/// the subject's rate over the baseline's in every round, in the order measured.
pub struct PairedRounds {
    pub subject: Phase,
    pub baseline: Phase,
    pub round_ratios: Vec<f64>,
}

impl PairedRounds {
    /// Keeps the median round's windows of `rounds`, each (subject, baseline).
    pub fn from_rounds(rounds: Vec<(Phase, Phase)>) -> PairedRounds {
        let mut by_ratio: Vec<(f64, Phase, Phase)> = rounds
            .into_iter()
            .map(|(subject, baseline)| (round_ratio(&subject, &baseline), subject, baseline))
            .collect();
        let round_ratios = by_ratio.iter().map(|(ratio, _, _)| *ratio).collect();
        by_ratio.sort_by(|left, right| left.0.total_cmp(&right.0));
        let middle = by_ratio.len() / 2;
        let (_, subject, baseline) = by_ratio.swap_remove(middle);
        PairedRounds {
            subject,
            baseline,
            round_ratios,
        }
    }

    pub fn ratio(&self) -> f64 {
        median(&self.round_ratios)
    }

    pub fn rounds_text(&self) -> String {
        percentages_text(&self.round_ratios, 0)
    }
}

/// `PAIRED_ROUNDS` rounds of one window of each side, `first` going first in odd rounds and
/// `second` in even ones; each round as (first's window, second's window).
pub fn paired_rounds(
    label: &str,
    mut first: impl FnMut() -> BenchResult<Phase>,
    mut second: impl FnMut() -> BenchResult<Phase>,
) -> BenchResult<Vec<(Phase, Phase)>> {
    let mut rounds = Vec::new();
    for round in 1..=PAIRED_ROUNDS {
        let first_goes_first = round % 2 == 1;
        progress!(
            "{label}, round {round} of {PAIRED_ROUNDS}, {} side first",
            if first_goes_first { "one" } else { "other" }
        );
        let pair = if first_goes_first {
            let first_window = first()?;
            (first_window, second()?)
        } else {
            let second_window = second()?;
            (first()?, second_window)
        };
        progress!("    {:.0}/s and {:.0}/s", pair.0.rate(), pair.1.rate());
        rounds.push(pair);
    }
    Ok(rounds)
}

/// Paired rounds of two request sets on one server, each window at `RATE_CONNECTIONS`:
/// `first` (its name and requests) goes first in odd rounds.
pub fn paired_rate_rounds(
    client: &tokio::runtime::Runtime,
    server: &ChildServer,
    label: &str,
    first: (&str, &Arc<Vec<Vec<u8>>>),
    second: (&str, &Arc<Vec<Vec<u8>>>),
    timing: &Timing,
) -> BenchResult<Vec<(Phase, Phase)>> {
    let round_timing = round_timing(timing);
    let window = |(name, request_set): (&str, &Arc<Vec<Vec<u8>>>)| {
        rate_window(client, server, None, name, request_set, &round_timing)
    };
    paired_rounds(label, || window(first), || window(second))
}

/// Each window of a round is half the measured seconds (at least one), so a round takes as
/// long as one unpaired load.
pub fn round_timing(timing: &Timing) -> Timing {
    Timing {
        warmup: timing.warmup,
        measured: timing.measured.div_f64(2.0).max(Duration::from_secs(1)),
    }
}

/// One round's window: `request_set` at `RATE_CONNECTIONS` against `server`.
pub fn rate_window(
    client: &tokio::runtime::Runtime,
    server: &ChildServer,
    beside: Option<&ChildServer>,
    name: &str,
    request_set: &Arc<Vec<Vec<u8>>>,
    round_timing: &Timing,
) -> BenchResult<Phase> {
    measure_one(
        client,
        server,
        beside,
        LoadSpec {
            name: name.to_owned(),
            requests: Arc::clone(request_set),
            connections: RATE_CONNECTIONS,
        },
        round_timing,
    )
}

/// The subject's rate over the baseline's.
pub fn round_ratio(subject: &Phase, baseline: &Phase) -> f64 {
    subject.rate() / baseline.rate().max(1e-9)
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// The ratios as percentages with `decimals` places, comma-separated.
pub fn percentages_text(ratios: &[f64], decimals: usize) -> String {
    ratios
        .iter()
        .map(|ratio| format!("{:.decimals$}%", ratio * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}
