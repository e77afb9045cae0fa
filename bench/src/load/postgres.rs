//! PostgreSQL beside redb (issue #22): the small store seeded into a fresh PostgreSQL database
//! on this machine, its server (`latchkey serve` with `LATCHKEY_STORE__BACKEND=postgres`) loaded
//! with the token checks in paired rounds against the redb server over the small store, both
//! running (the ratio is the median round's), then with sign-ins, in paired rounds against
//! the argon2 limit. The cluster's processes count as the server's in every CPU figure of
//! its phases.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use latchkey::Config;
use latchkey::auth::password::HashCost;

use crate::load::client::LoadSpec;
use crate::load::paired::{PairedRounds, paired_rounds, rate_window, round_timing};
use crate::load::sign_in_rounds::{SignInRounds, measure_sign_in_rounds};
use crate::load::{
    Argon2Limit, LATENCY_CONNECTIONS, Phase, Priming, Requests, SIGN_IN_CONNECTIONS, Timing,
    TokenCheck, measure_one, prime,
};
use crate::postgres::{DatabaseFacts, FreshDatabase, PostgresServer};
use crate::servers::ChildServer;
use crate::{BenchResult, Paths};

/// The token checks measured on PostgreSQL, in the order they run: `GET /user/current` with
/// either credential (two statements: the credential's context, then the user's second-factor
/// summary). `GET /auth/session` is left out to keep the whole run under ten minutes.
pub const POSTGRES_TOKEN_CHECKS: [TokenCheck; 2] = [
    TokenCheck::UserCurrentSigned,
    TokenCheck::UserCurrentApiToken,
];

/// The phase names' prefixes: the PostgreSQL server's, and the redb server's windows beside it.
pub const POSTGRES_PREFIX: &str = "PostgreSQL: ";
pub const REDB_BESIDE_POSTGRES_PREFIX: &str = "redb, beside PostgreSQL: ";

/// The environment variable that sets the server's pool, as `--server-env` may give it.
const POOL_SIZE_VARIABLE: &str = "LATCHKEY_STORE__POSTGRES_POOL_SIZE";

/// What the PostgreSQL part measured.
pub struct PostgresResults {
    pub facts: DatabaseFacts,
    /// The most connections the server's pool held open.
    pub pool_size: usize,
    pub first_start: Duration,
    /// `GET /user/current` with signed tokens: PostgreSQL (the subject) against redb.
    pub signed: PairedRounds,
    /// `GET /user/current` with API tokens: PostgreSQL against redb.
    pub api: PairedRounds,
    pub signed_latency: Phase,
    pub api_latency: Phase,
    pub priming: Vec<Priming>,
    /// Sign-ins in rounds paired with the argon2 limit.
    pub sign_in_rounds: SignInRounds,
    pub database_bytes: u64,
    /// Whether the cluster's postmaster was found, so that its processes' CPU counts as the
    /// server's; otherwise it shows under other processes.
    pub database_cpu_counted: bool,
}

impl PostgresResults {
    /// A token check's paired rounds, PostgreSQL against redb.
    pub fn rates(&self, check: TokenCheck) -> &PairedRounds {
        match check {
            TokenCheck::UserCurrentApiToken => &self.api,
            TokenCheck::UserCurrentSigned | TokenCheck::SessionSigned => &self.signed,
        }
    }

    /// A token check's latency phase on PostgreSQL, at `LATENCY_CONNECTIONS`.
    pub fn latency(&self, check: TokenCheck) -> &Phase {
        match check {
            TokenCheck::UserCurrentApiToken => &self.api_latency,
            TokenCheck::UserCurrentSigned | TokenCheck::SessionSigned => &self.signed_latency,
        }
    }

    /// The median round's sign-in window.
    pub fn sign_ins(&self) -> &Phase {
        self.sign_in_rounds.sign_ins()
    }

    /// The median round's argon2 limit.
    pub fn argon2_limit(&self) -> &Argon2Limit {
        self.sign_in_rounds.limit()
    }

    /// Sign-ins per second over the limit, in the median round.
    pub fn sign_in_ratio(&self) -> f64 {
        self.sign_in_rounds.ratio()
    }

    /// The phases, in the order they ran (each median round's redb window first).
    pub fn phases(&self) -> Vec<&Phase> {
        vec![
            &self.signed.baseline,
            &self.signed.subject,
            &self.signed_latency,
            &self.api.baseline,
            &self.api.subject,
            &self.api_latency,
            self.sign_ins(),
        ]
    }
}

/// The PostgreSQL side of the part: its server, the run's database there, the data dir its
/// latchkey server gets, and the requests made from that database's seeding.
pub struct PostgresSide<'a> {
    pub server: &'a PostgresServer,
    pub database: &'a FreshDatabase,
    pub data_dir: &'a Path,
    pub requests: &'a Requests,
}

/// Starts both servers, primes every request set on each, runs the paired rounds and the
/// latencies, stops the redb server, then runs the sign-ins in rounds paired with the argon2
/// limit.
pub fn measure_postgres(
    client: &tokio::runtime::Runtime,
    paths: &Paths,
    redb_dir: &Path,
    redb_requests: &Requests,
    postgres: &PostgresSide<'_>,
    timing: &Timing,
    argon2_cost: (HashCost, usize),
) -> BenchResult<PostgresResults> {
    let facts = postgres.server.facts()?;
    let pool_size = pool_size(paths)?;
    std::fs::create_dir_all(postgres.data_dir)?;
    let mut postgres_server = ChildServer::start_latchkey_with(
        paths,
        postgres.data_dir,
        &[
            ("LATCHKEY_STORE__BACKEND", "postgres"),
            (
                "LATCHKEY_STORE__POSTGRES_URL",
                postgres.database.url.as_str(),
            ),
        ],
    )?;
    let first_start = postgres_server.wait_ready()?;
    postgres_server.database_postmaster_pid = postgres.server.postmaster_pid();
    let database_cpu_counted = postgres_server.database_postmaster_pid.is_some();
    if !database_cpu_counted {
        progress!(
            "(#22) PostgreSQL's postmaster is not a process of this machine: its CPU counts as \
             other processes'"
        );
    }
    progress!(
        "(#22) PostgreSQL {} ({}): server pid {} ready in {:.0} ms, pool of {pool_size}",
        facts.version,
        if facts.fsync == "on" {
            "fsync on"
        } else {
            "fsync off"
        },
        postgres_server.pid,
        first_start.as_secs_f64() * 1e3
    );
    let mut redb_server = ChildServer::start_latchkey(paths, redb_dir)?;
    redb_server.wait_ready()?;

    let mut priming = Vec::new();
    for check in POSTGRES_TOKEN_CHECKS {
        for (prefix, server, requests) in [
            (REDB_BESIDE_POSTGRES_PREFIX, &redb_server, redb_requests),
            (POSTGRES_PREFIX, &postgres_server, postgres.requests),
        ] {
            let request_set = requests.token_check(check);
            let (took, failures) = prime(client, server, request_set)?;
            progress!(
                "(#22) {prefix}{}: first pass over {} requests, {:.0}/s, {failures} failures",
                check.name(),
                request_set.len(),
                request_set.len() as f64 / took.as_secs_f64().max(1e-9)
            );
            priming.push(Priming {
                name: format!("{prefix}{}", check.name()),
                requests: request_set.len(),
                took,
                failures,
            });
        }
    }

    let round_timing = round_timing(timing);
    let mut pairs = Vec::new();
    let mut latencies = Vec::new();
    for check in POSTGRES_TOKEN_CHECKS {
        let (redb_set, postgres_set) = (
            redb_requests.token_check(check),
            postgres.requests.token_check(check),
        );
        let rounds = paired_rounds(
            &format!("(#22) {}, redb and PostgreSQL", check.name()),
            || {
                rate_window(
                    client,
                    &redb_server,
                    Some(&postgres_server),
                    &format!("{REDB_BESIDE_POSTGRES_PREFIX}{}", check.name()),
                    redb_set,
                    &round_timing,
                )
            },
            || {
                rate_window(
                    client,
                    &postgres_server,
                    Some(&redb_server),
                    &format!("{POSTGRES_PREFIX}{}", check.name()),
                    postgres_set,
                    &round_timing,
                )
            },
        )?;
        pairs.push(PairedRounds::from_rounds(
            rounds
                .into_iter()
                .map(|(redb, postgres)| (postgres, redb))
                .collect(),
        ));
        progress!(
            "(#22) {POSTGRES_PREFIX}{}, {LATENCY_CONNECTIONS} connections",
            check.name()
        );
        latencies.push(measure_one(
            client,
            &postgres_server,
            Some(&redb_server),
            LoadSpec {
                name: format!("{POSTGRES_PREFIX}{}", check.name()),
                requests: Arc::clone(postgres_set),
                connections: LATENCY_CONNECTIONS,
            },
            timing,
        )?);
    }
    redb_server.stop()?;

    progress!(
        "(#22) {POSTGRES_PREFIX}sign-ins, {SIGN_IN_CONNECTIONS} connections, in rounds paired \
         with the argon2id limit"
    );
    let sign_in_rounds = measure_sign_in_rounds(
        client,
        &postgres_server,
        &format!("{POSTGRES_PREFIX}sign-in"),
        &postgres.requests.sign_in,
        argon2_cost,
        timing,
    )?;
    postgres_server.stop()?;
    let database_bytes = postgres.server.database_bytes(postgres.database)?;

    let mut pairs = pairs.into_iter();
    let mut next_pair = || pairs.next().ok_or("a paired rate is missing");
    let mut latencies = latencies.into_iter();
    let mut next_latency = || latencies.next().ok_or("a latency phase is missing");
    Ok(PostgresResults {
        facts,
        pool_size,
        first_start,
        signed: next_pair()?,
        api: next_pair()?,
        signed_latency: next_latency()?,
        api_latency: next_latency()?,
        priming,
        sign_in_rounds,
        database_bytes,
        database_cpu_counted,
    })
}

/// The server's pool size: `--server-env`'s if it sets one, else the default configuration's.
fn pool_size(paths: &Paths) -> BenchResult<usize> {
    match paths
        .server_env
        .iter()
        .find(|(name, _)| name == POOL_SIZE_VARIABLE)
    {
        Some((_, value)) => Ok(value
            .parse()
            .map_err(|_| format!("--server-env {POOL_SIZE_VARIABLE}={value}: not a number"))?),
        None => Ok(Config::default().store.postgres_pool_size),
    }
}
