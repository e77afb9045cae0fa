//! Sign-ins against the argon2 limit in paired rounds: a window of sign-ins and one of the
//! limit per round, the side that goes first alternating, and the median round's ratio, so
//! that the machine's drift (its speed moves by a tenth within minutes) touches both alike.

use std::sync::Arc;

use latchkey::auth::password::HashCost;

use crate::BenchResult;
use crate::load::client::LoadSpec;
use crate::load::paired::{median, percentages_text, round_timing};
use crate::load::{
    Argon2Limit, PAIRED_ROUNDS, Phase, SIGN_IN_CONNECTIONS, Timing, argon2_limit, measure_one,
};
use crate::servers::ChildServer;

/// Every round's sign-in window and limit, in the order measured.
pub struct SignInRounds {
    rounds: Vec<(Phase, Argon2Limit)>,
}

impl SignInRounds {
    pub fn from_rounds(rounds: Vec<(Phase, Argon2Limit)>) -> SignInRounds {
        SignInRounds { rounds }
    }

    /// Each round's sign-ins per second over its limit, in the order measured.
    pub fn ratios(&self) -> Vec<f64> {
        self.rounds
            .iter()
            .map(|(sign_ins, limit)| sign_ins.rate() / limit.hashes_per_second.max(1e-9))
            .collect()
    }

    /// The median round's ratio.
    pub fn ratio(&self) -> f64 {
        median(&self.ratios())
    }

    pub fn rounds_text(&self) -> String {
        percentages_text(&self.ratios(), 0)
    }

    /// The median round's sign-in window.
    pub fn sign_ins(&self) -> &Phase {
        &self.median_round().0
    }

    /// The median round's limit.
    pub fn limit(&self) -> &Argon2Limit {
        &self.median_round().1
    }

    fn median_round(&self) -> &(Phase, Argon2Limit) {
        let ratios = self.ratios();
        let mut order: Vec<usize> = (0..self.rounds.len()).collect();
        order.sort_by(|left, right| ratios[*left].total_cmp(&ratios[*right]));
        &self.rounds[order[order.len() / 2]]
    }
}

/// `PAIRED_ROUNDS` rounds on `server`: `name`'s sign-ins (`requests` at
/// `SIGN_IN_CONNECTIONS`) first in odd rounds, the limit (`argon2_cost`) first in even ones,
/// each window half the measured seconds.
pub fn measure_sign_in_rounds(
    client: &tokio::runtime::Runtime,
    server: &ChildServer,
    name: &str,
    requests: &Arc<Vec<Vec<u8>>>,
    argon2_cost: (HashCost, usize),
    timing: &Timing,
) -> BenchResult<SignInRounds> {
    let round_timing = round_timing(timing);
    let sign_ins = || {
        measure_one(
            client,
            server,
            None,
            LoadSpec {
                name: name.to_owned(),
                requests: Arc::clone(requests),
                connections: SIGN_IN_CONNECTIONS,
            },
            &round_timing,
        )
    };
    let limit = || argon2_limit(argon2_cost.0, argon2_cost.1, round_timing.measured);
    let mut rounds = Vec::new();
    for round in 1..=PAIRED_ROUNDS {
        let (sign_in_window, limit_window) = if round % 2 == 1 {
            let sign_in_window = sign_ins()?;
            (sign_in_window, limit()?)
        } else {
            let limit_window = limit()?;
            (sign_ins()?, limit_window)
        };
        progress!(
            "    round {round} of {PAIRED_ROUNDS}: {:.1} sign-ins/s against {:.1} hashes/s",
            sign_in_window.rate(),
            limit_window.hashes_per_second
        );
        rounds.push((sign_in_window, limit_window));
    }
    Ok(SignInRounds::from_rounds(rounds))
}
