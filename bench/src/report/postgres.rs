//! PostgreSQL's part of the report (issue #22): its rows in the results table, and the
//! section that sets it beside redb: where the database ran and how it was set up, and the
//! two backends' token checks and sign-ins side by side.

use std::fmt::Write as _;

use crate::load::postgres::{POSTGRES_TOKEN_CHECKS, PostgresResults};
use crate::load::{
    Argon2Limit, LATENCY_CONNECTIONS, PAIRED_ROUNDS, Phase, RATE_CONNECTIONS, SIGN_IN_CONNECTIONS,
    SmallResults,
};
use crate::report::{MIB, Report, RowKind, Verdict, rate_text, thousands};
use crate::seed::TOKEN_SESSIONS;

/// PostgreSQL's token checks must reach this share of redb's rate, measured in the same run.
pub const POSTGRES_TOKEN_RATE_TARGET: f64 = 0.25;
/// Sign-ins on either backend must reach this share of the argon2 limit.
pub const SIGN_IN_TARGET: f64 = 0.9;

impl Report {
    /// The rows of PostgreSQL's part: each token check's rate against redb's and its latency,
    /// the sign-ins against the argon2 limit, and the database's size.
    pub fn postgres_rows(&mut self, postgres: &PostgresResults) {
        let check = |met: bool| if met { Verdict::Met } else { Verdict::Missed };
        for token_check in POSTGRES_TOKEN_CHECKS {
            let pair = postgres.rates(token_check);
            self.row(
                RowKind::PostgresTokenRate(token_check),
                format!(
                    "PostgreSQL token checks: {}, {} sessions, {RATE_CONNECTIONS} connections, \
                     in paired rounds with redb",
                    token_check.name(),
                    thousands(TOKEN_SESSIONS)
                ),
                format!(
                    "{} ({:.0}% of redb's {} in the median round; rounds {})",
                    rate_text(pair.subject.rate()),
                    pair.ratio() * 100.0,
                    rate_text(pair.baseline.rate()),
                    pair.rounds_text()
                ),
                &format!("≥ {:.0}% of redb", POSTGRES_TOKEN_RATE_TARGET * 100.0),
                check(pair.ratio() >= POSTGRES_TOKEN_RATE_TARGET),
            );
            let latency = postgres.latency(token_check);
            self.row(
                RowKind::PostgresTokenLatency(token_check),
                format!(
                    "PostgreSQL: {}, latency at {LATENCY_CONNECTIONS} connections",
                    token_check.name()
                ),
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms",
                    latency.outcome.percentile_ms(50.0),
                    latency.p99()
                ),
                "—",
                Verdict::Info,
            );
        }
        self.row(
            RowKind::PostgresSignIns,
            format!("PostgreSQL sign-ins/s, POST /auth/sign-in, {SIGN_IN_CONNECTIONS} connections"),
            format!(
                "{} ({:.0}% of the limit in the median round, {:.1} hashes/s; rounds {})",
                rate_text(postgres.sign_ins().rate()),
                postgres.sign_in_ratio() * 100.0,
                postgres.argon2_limit().hashes_per_second,
                postgres.sign_in_rounds.rounds_text()
            ),
            &format!("≥ {:.0}% of the argon2 limit", SIGN_IN_TARGET * 100.0),
            check(postgres.sign_in_ratio() >= SIGN_IN_TARGET),
        );
        self.row(
            RowKind::PostgresDatabaseSize,
            "PostgreSQL database size, small store, after its loads".to_owned(),
            format!("{:.1} MiB", postgres.database_bytes as f64 / MIB),
            "—",
            Verdict::Info,
        );
    }

    /// The section "PostgreSQL beside redb": the setup in words, then both backends side by
    /// side; `small` (a full run's small store and its first argon2 limit) adds redb's own
    /// latency and sign-ins.
    pub fn postgres_section(
        &self,
        postgres: &PostgresResults,
        small: Option<(&SmallResults, &Argon2Limit)>,
    ) -> String {
        let facts = &postgres.facts;
        let mut text = String::from("## PostgreSQL beside redb (issue #22)\n\n");
        let _ = writeln!(
            text,
            "PostgreSQL {} on this machine: {}; `fsync` {}, `synchronous_commit` {}, \
             `shared_buffers` {}. The small store's plan ({} token sessions and their users, \
             the same sign-in users) is seeded through the `Store` API into a fresh database \
             there, and `target/release/latchkey serve` runs on it with \
             `LATCHKEY_STORE__BACKEND=postgres` and `LATCHKEY_STORE__POSTGRES_URL` naming it, \
             its pool holding at most {} connections (the configured default unless a what-if \
             says otherwise); it answered its first `GET /health` {:.0} ms after it started, \
             migrations included.",
            facts.version,
            facts.origin,
            facts.fsync,
            facts.synchronous_commit,
            facts.shared_buffers,
            thousands(TOKEN_SESSIONS),
            postgres.pool_size,
            postgres.first_start.as_secs_f64() * 1e3
        );
        let _ = writeln!(
            text,
            "\nThe token checks run with both servers up: {PAIRED_ROUNDS} rounds per request \
             set, each a window on the redb server over the small store and one on the \
             PostgreSQL server, half the measured seconds each (redb first in odd rounds, \
             PostgreSQL first in even ones); the ratio is the median round's, and every round's \
             is listed. Then the redb server stops, and the PostgreSQL server's sign-ins are \
             measured in {PAIRED_ROUNDS} rounds paired with the argon2 limit (a window of each, \
             half the measured seconds, sign-ins first in odd rounds): the ratio is the median \
             round's ({}), and every round's is listed.{}",
            postgres.sign_in_rounds.rounds_text(),
            if postgres.database_cpu_counted {
                " On PostgreSQL the server's CPU is the latchkey process's and every cluster \
                 process's (the postmaster and its children: one backend per pooled connection, \
                 the writers and launchers), the latter listed as `postgres` among the server's \
                 threads."
            } else {
                " The cluster's processes were not found on this machine, so their CPU shows \
                 under other processes' cores."
            }
        );
        let _ = writeln!(
            text,
            "\n| measurement | redb | PostgreSQL | PostgreSQL / redb | target | result |\n\
             |---|---|---|---|---|---|"
        );
        let verdict = |met: bool| if met { "met" } else { "**missed**" };
        for check in POSTGRES_TOKEN_CHECKS {
            let pair = postgres.rates(check);
            let (redb, on_postgres) = (&pair.baseline, &pair.subject);
            let _ = writeln!(
                text,
                "| {}, {RATE_CONNECTIONS} connections, the median round | {} | {} | {:.0}% \
                 (rounds {}) | ≥ {:.0}% | {} |",
                check.name(),
                rate_text(redb.rate()),
                rate_text(on_postgres.rate()),
                pair.ratio() * 100.0,
                pair.rounds_text(),
                POSTGRES_TOKEN_RATE_TARGET * 100.0,
                verdict(pair.ratio() >= POSTGRES_TOKEN_RATE_TARGET)
            );
            let _ = writeln!(
                text,
                "| that round's server CPU per answer, µs (user + kernel); server cores \
                 (threads) | {}; {} | {}; {} | {:.1}× the CPU per answer |  |  |",
                redb.cpu_per_answer_text(),
                redb.cores_texts()[0],
                on_postgres.cpu_per_answer_text(),
                on_postgres.cores_texts()[0],
                cpu_ratio(on_postgres, redb)
            );
            let redb_latency = small.map_or_else(
                || "—".to_owned(),
                |(small, _)| latency_text(small.tokens.latency(check)),
            );
            let _ = writeln!(
                text,
                "| {}, latency at {LATENCY_CONNECTIONS} connections | {redb_latency} | {} |  | \
                 — |  |",
                check.name(),
                latency_text(postgres.latency(check))
            );
        }
        let redb_sign_ins = small.map_or_else(
            || "—".to_owned(),
            |(small, argon2)| {
                let limit = (argon2.hashes_per_second + small.argon2_after.hashes_per_second) / 2.0;
                format!(
                    "{} ({:.0}% of its limit, {:.1} hashes/s)",
                    rate_text(small.sign_ins.rate()),
                    small.sign_ins.rate() / limit.max(1e-9) * 100.0,
                    limit
                )
            },
        );
        let _ = writeln!(
            text,
            "| sign-ins, POST /auth/sign-in, {SIGN_IN_CONNECTIONS} connections, against the \
             argon2 limit | {redb_sign_ins} | {} ({:.0}% of its limit, {:.1} hashes/s, in the \
             median paired round) |  | ≥ {:.0}% of the limit | {} |",
            rate_text(postgres.sign_ins().rate()),
            postgres.sign_in_ratio() * 100.0,
            postgres.argon2_limit().hashes_per_second,
            SIGN_IN_TARGET * 100.0,
            verdict(postgres.sign_in_ratio() >= SIGN_IN_TARGET)
        );
        text
    }
}

fn latency_text(phase: &Phase) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms ({})",
        phase.outcome.percentile_ms(50.0),
        phase.p99(),
        rate_text(phase.rate())
    )
}

/// The subject's server CPU per answer over the baseline's.
fn cpu_ratio(subject: &Phase, baseline: &Phase) -> f64 {
    match (subject.cpu_per_answer_us(), baseline.cpu_per_answer_us()) {
        (Some((subject, _)), Some((baseline, _))) => subject / baseline.max(1e-9),
        _ => f64::NAN,
    }
}
