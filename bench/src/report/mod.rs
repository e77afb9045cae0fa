//! The report, BENCHMARKS.md: the facts of the run (command, commit, machine), one row per
//! target with its verdict (`build_rows`), the rendered Markdown (`render`) and, for each
//! missed target, the measurements that explain it (`explain`).

mod explain;
mod postgres;
pub mod render;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use latchkey::auth::password::HashCost;
use latchkey::model::now_unix_seconds;

use crate::load::postgres::PostgresResults;
use crate::load::{
    Argon2Limit, FORWARD_AUTH_NAME, IDLE_AFTER_LOAD, LATENCY_CONNECTIONS, LargeResults,
    RATE_CONNECTIONS, RESTARTS, SIGN_IN_CONNECTIONS, SmallResults, TokenCheck,
};
use crate::procfs::{Mapping, kib_to_mib, proc_field};
use crate::{Args, BackendChoice, Paths};

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Met,
    Missed,
    Info,
}

/// What a row of the results table measures: the letter of the target list it sits under,
/// and the measurements that explain it when its target is missed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RowKind {
    /// (a) the argon2 limit itself.
    Argon2Limit,
    /// (a) sign-ins against that limit.
    SignIns,
    /// (b) the hello server's rate beside the signed-token median round.
    HelloRate,
    /// (b) and (c) a token check's rate on the small store.
    TokenRate(TokenCheck),
    /// (b) and (c) a token check's latency on the small store.
    TokenLatency(TokenCheck),
    /// Forward auth's rate against `GET /user/current` (API.md section 9).
    ForwardAuthRate,
    /// (d) signed-token checks beside sign-ins.
    LatencyBesideSignIns,
    /// (e) idle memory before the load.
    IdleBeforeLoad,
    /// (e) idle memory after the load.
    IdleAfterLoad,
    /// (e) idle memory after a load with the caches kept.
    IdleWithCachesKept,
    /// (e) the small store's server's peak memory.
    PeakMemory,
    /// (f) a token check's rate on the large store, against the small store's.
    LargeTokenRate(TokenCheck),
    /// (f) a token check's latency on the large store.
    LargeTokenLatency(TokenCheck),
    /// (f) the large store's server's peak memory.
    LargePeakMemory,
    /// (f) the large store's file.
    LargeFileSize,
    /// (f) the small store's file.
    SmallFileSize,
    /// (g) the small store's starts.
    SmallStart,
    /// (g) the large store's starts.
    LargeStart,
    /// Signed-token checks with the metrics recorded, against without (issue #21).
    MetricsOverhead,
    /// (h) the sign-in page's rate against the signed-token check's.
    SignInPage,
    /// (#22) a token check's rate on PostgreSQL against redb's, in paired rounds.
    PostgresTokenRate(TokenCheck),
    /// (#22) a token check's latency on PostgreSQL.
    PostgresTokenLatency(TokenCheck),
    /// (#22) sign-ins on PostgreSQL against the argon2 limit.
    PostgresSignIns,
    /// (#22) the PostgreSQL database's size.
    PostgresDatabaseSize,
    /// The whole run's length.
    WholeRun,
}

impl RowKind {
    /// The letter of the list of targets that the table's first column shows.
    pub fn letter(self) -> &'static str {
        match self {
            RowKind::Argon2Limit | RowKind::SignIns => "a",
            RowKind::HelloRate
            | RowKind::TokenRate(TokenCheck::UserCurrentSigned)
            | RowKind::TokenLatency(TokenCheck::UserCurrentSigned) => "b",
            RowKind::TokenRate(_) | RowKind::TokenLatency(_) => "c",
            RowKind::LatencyBesideSignIns => "d",
            RowKind::IdleBeforeLoad
            | RowKind::IdleAfterLoad
            | RowKind::IdleWithCachesKept
            | RowKind::PeakMemory => "e",
            RowKind::LargeTokenRate(_)
            | RowKind::LargeTokenLatency(_)
            | RowKind::LargePeakMemory
            | RowKind::LargeFileSize
            | RowKind::SmallFileSize => "f",
            RowKind::SmallStart | RowKind::LargeStart => "g",
            RowKind::MetricsOverhead => "#21",
            RowKind::SignInPage => "h",
            // Not one of issue #8's letters: the target is API.md section 9's.
            RowKind::ForwardAuthRate => "§9",
            RowKind::PostgresTokenRate(_)
            | RowKind::PostgresTokenLatency(_)
            | RowKind::PostgresSignIns
            | RowKind::PostgresDatabaseSize => "#22",
            RowKind::WholeRun => "",
        }
    }
}

pub struct Row {
    pub kind: RowKind,
    pub measurement: String,
    pub value: String,
    pub target: String,
    pub verdict: Verdict,
}

pub struct Report {
    pub command: String,
    pub date: String,
    pub commit: String,
    pub machine: String,
    pub config_note: String,
    pub seed_notes: Vec<String>,
    pub phases: Vec<(String, Duration)>,
    pub rows: Vec<Row>,
    pub total: Duration,
    pub args: Args,
}

pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

pub fn rate_text(rate: f64) -> String {
    if rate >= 100.0 {
        format!("{}/s", thousands(rate.round() as u64))
    } else {
        format!("{rate:.1}/s")
    }
}

fn command_output(program: &str, arguments: &[&str], directory: &Path) -> Option<String> {
    let output = Command::new(program)
        .args(arguments)
        .current_dir(directory)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl Report {
    pub fn new(args: &Args, paths: &Paths) -> Report {
        let mut command = "cargo run --release -p latchkey-bench".to_owned();
        let mut flags = Vec::new();
        if args.skip_large {
            flags.push("--skip-large".to_owned());
        } else {
            if args.large_users != 1_000_000 {
                flags.push(format!("--large-users {}", args.large_users));
            }
            if args.large_sessions != 5_000_000 {
                flags.push(format!("--large-sessions {}", args.large_sessions));
            }
        }
        match args.backend {
            BackendChoice::Both => {}
            BackendChoice::Redb => flags.push("--backend redb".to_owned()),
            BackendChoice::Postgres => flags.push("--backend postgres".to_owned()),
        }
        if args.postgres_over_unix_socket {
            flags.push("--postgres-over-unix-socket".to_owned());
        }
        if args.seconds != 5 {
            flags.push(format!("--seconds {}", args.seconds));
        }
        if args.warmup_seconds != 1 {
            flags.push(format!("--warmup-seconds {}", args.warmup_seconds));
        }
        for variable in &args.server_env {
            flags.push(format!("--server-env {variable}"));
        }
        if !flags.is_empty() {
            command = format!("{command} -- {}", flags.join(" "));
        }
        let commit = command_output(
            "git",
            &["rev-parse", "--short", "HEAD"],
            &paths.workspace_dir,
        )
        .unwrap_or_else(|| "unknown".to_owned());
        // The report this run replaces does not count as a change to what was measured.
        let own_report = paths
            .output
            .strip_prefix(&paths.workspace_dir)
            .ok()
            .map(|path| path.to_string_lossy().into_owned());
        let dirty = command_output(
            "git",
            &["diff", "--name-only", "HEAD"],
            &paths.workspace_dir,
        )
        .is_some_and(|changed| {
            changed
                .lines()
                .any(|path| Some(path) != own_report.as_deref())
        });
        let commit = if dirty {
            format!("{commit} (with uncommitted changes in tracked files)")
        } else {
            commit
        };
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let memory = proc_field("/proc/meminfo", "MemTotal")
            .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
            .map_or_else(
                || "unknown".to_owned(),
                |kib| format!("{:.1} GiB", kib as f64 / MIB),
            );
        let model =
            proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_owned())
            .unwrap_or_default();
        Report {
            command,
            date: latchkey::rfc3339::format_rfc3339(now_unix_seconds()),
            commit,
            machine: format!("{cores} cores ({model}), {memory} memory, Linux {kernel}"),
            config_note: String::new(),
            seed_notes: Vec::new(),
            phases: Vec::new(),
            rows: Vec::new(),
            total: Duration::ZERO,
            args: args.clone(),
        }
    }

    pub fn phase(&mut self, label: &str, took: Duration) {
        self.phases.push((label.to_owned(), took));
    }

    fn row(
        &mut self,
        kind: RowKind,
        measurement: String,
        value: String,
        target: &str,
        verdict: Verdict,
    ) {
        self.rows.push(Row {
            kind,
            measurement,
            value,
            target: target.to_owned(),
            verdict,
        });
    }

    pub fn build_rows(
        &mut self,
        argon2: &Argon2Limit,
        small: &SmallResults,
        small_file_bytes: u64,
        postgres: Option<&PostgresResults>,
        large: Option<&LargeResults>,
        cost: HashCost,
    ) {
        let check = |met: bool| if met { Verdict::Met } else { Verdict::Missed };
        self.row(
            RowKind::Argon2Limit,
            format!(
                "argon2id limit: {} threads hashing (m={} KiB, t={}, p={}) for {} s in the benchmark",
                argon2.threads,
                cost.memory_kib,
                cost.iterations,
                cost.parallelism,
                self.args.seconds
            ),
            format!(
                "{:.1} hashes/s ({} hashes)",
                argon2.hashes_per_second,
                thousands(argon2.hashes)
            ),
            "—",
            Verdict::Info,
        );
        let limit = (argon2.hashes_per_second + small.argon2_after.hashes_per_second) / 2.0;
        let ratio = small.sign_ins.rate() / limit;
        self.row(
            RowKind::SignIns,
            format!("sign-ins/s, POST /auth/sign-in, {SIGN_IN_CONNECTIONS} connections"),
            format!(
                "{} ({:.0}% of the limit's mean, {:.1} before and {:.1} hashes/s right after)",
                rate_text(small.sign_ins.rate()),
                ratio * 100.0,
                argon2.hashes_per_second,
                small.argon2_after.hashes_per_second
            ),
            "≥ 90% of the argon2 limit",
            check(ratio >= 0.9),
        );
        let hello = small.tokens.signed_pair.hello.rate();
        self.row(
            RowKind::HelloRate,
            format!(
                "hello hyper server, same client and requests, {RATE_CONNECTIONS} connections \
                 (the window paired with the signed-token median round)"
            ),
            rate_text(hello),
            "—",
            Verdict::Info,
        );
        for token_check in TokenCheck::ALL {
            let label = match token_check {
                TokenCheck::UserCurrentSigned | TokenCheck::UserCurrentApiToken => {
                    format!("token checks: {}", token_check.name())
                }
                TokenCheck::SessionSigned => token_check.name().to_owned(),
            };
            let (phase, pair, latency) = (
                small.tokens.rate(token_check),
                small.tokens.pair(token_check),
                small.tokens.latency(token_check),
            );
            let rate = phase.rate();
            self.row(
                RowKind::TokenRate(token_check),
                format!("{label}, 10,000 sessions, {RATE_CONNECTIONS} connections"),
                format!(
                    "{} ({:.0}% of hello; rounds {})",
                    rate_text(rate),
                    pair.ratio() * 100.0,
                    pair.rounds_text()
                ),
                "≥ 50% of hello and ≥ 20,000/s",
                check(pair.ratio() >= 0.5 && rate >= 20_000.0),
            );
            self.row(
                RowKind::TokenLatency(token_check),
                format!("{label}, latency at {LATENCY_CONNECTIONS} connections"),
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms",
                    latency.outcome.percentile_ms(50.0),
                    latency.p99()
                ),
                "p99 ≤ 2 ms",
                check(latency.p99() <= 2.0),
            );
        }
        let forward = &small.forward_auth;
        self.row(
            RowKind::ForwardAuthRate,
            format!(
                "forward auth: {FORWARD_AUTH_NAME}, {RATE_CONNECTIONS} connections, in rounds \
                 alternating with GET /user/current, signed token"
            ),
            format!(
                "{} ({:.0}% of GET /user/current's {} in the median round; rounds {})",
                rate_text(forward.subject.rate()),
                forward.ratio() * 100.0,
                rate_text(forward.baseline.rate()),
                forward.rounds_text()
            ),
            "≥ 90% of GET /user/current",
            check(forward.ratio() >= 0.9),
        );
        self.row(
            RowKind::LatencyBesideSignIns,
            format!(
                "token checks (signed) at {LATENCY_CONNECTIONS} connections beside {SIGN_IN_CONNECTIONS} sign-in connections"
            ),
            format!(
                "p50 {:.2} ms, p99 {:.2} ms ({} checks, {} sign-ins)",
                small.mixed_tokens.outcome.percentile_ms(50.0),
                small.mixed_tokens.p99(),
                rate_text(small.mixed_tokens.rate()),
                rate_text(small.mixed_sign_ins.rate())
            ),
            "p99 ≤ 20 ms",
            check(small.mixed_tokens.p99() <= 20.0),
        );
        let overhead = &small.metrics_overhead;
        self.row(
            RowKind::MetricsOverhead,
            format!(
                "token checks (signed) with [metrics] listen set, against without, \
                 {RATE_CONNECTIONS} connections, {} paired rounds (median)",
                overhead.rounds.len()
            ),
            format!(
                "{:.1}% ({} against {}; rounds {}; {} requests recorded)",
                overhead.ratio() * 100.0,
                overhead
                    .median_round()
                    .map_or_else(String::new, |(_, on)| rate_text(on.rate())),
                overhead
                    .median_round()
                    .map_or_else(String::new, |(off, _)| rate_text(off.rate())),
                overhead.rounds_text(),
                thousands(overhead.recorded_requests)
            ),
            "≥ 97% of the rate without",
            check(overhead.ratio() >= 0.97 && overhead.recorded_requests > 0),
        );
        let page = &small.sign_in_page;
        self.row(
            RowKind::SignInPage,
            format!(
                "GET /sign-in (the hosted page, a first visit) against GET /user/current \
                 (signed token), {RATE_CONNECTIONS} connections each, in paired rounds"
            ),
            format!(
                "{} ({:.0}% of the token check's {}; rounds {})",
                rate_text(page.subject.rate()),
                page.ratio() * 100.0,
                rate_text(page.baseline.rate()),
                page.rounds_text()
            ),
            "≥ 50% of GET /user/current",
            check(page.ratio() >= 0.5),
        );
        let mib = kib_to_mib;
        self.row(
            RowKind::IdleBeforeLoad,
            "idle RSS of the server before the load".to_owned(),
            format!("{:.1} MiB", mib(small.idle_before.rss_kib)),
            "≤ 15 MiB",
            check(mib(small.idle_before.rss_kib) <= 15.0),
        );
        self.row(
            RowKind::IdleAfterLoad,
            format!("idle RSS {} s after the load", IDLE_AFTER_LOAD.as_secs()),
            format!("{:.1} MiB", mib(small.idle_after.rss_kib)),
            "≤ 15 MiB",
            check(mib(small.idle_after.rss_kib) <= 15.0),
        );
        self.row(
            RowKind::IdleWithCachesKept,
            format!(
                "idle RSS {} s after a signed-token load with both caches kept (redb's at \
                 32 MiB, the verified tokens never freed): what the defaults free",
                IDLE_AFTER_LOAD.as_secs()
            ),
            format!(
                "{:.1} MiB (that load: {})",
                mib(small.idle_after_with_caches_kept.rss_kib),
                rate_text(small.caches_kept_load.rate())
            ),
            "—",
            Verdict::Info,
        );
        self.row(
            RowKind::PeakMemory,
            "peak RSS (VmHWM) through (a) to (e)".to_owned(),
            format!("{:.1} MiB", mib(small.peak.hwm_kib)),
            "≤ 64 MiB",
            check(mib(small.peak.hwm_kib) <= 64.0),
        );
        if let Some(postgres) = postgres {
            self.postgres_rows(postgres);
        }
        if let Some(large) = large {
            let results = &large.results;
            let counts = format!(
                "{} users / {} sessions",
                thousands(self.args.large_users),
                thousands(self.args.large_sessions)
            );
            for token_check in TokenCheck::ALL {
                let label = token_check.name();
                let (phase, latency, pair) = (
                    results.tokens.rate(token_check),
                    results.tokens.latency(token_check),
                    results.tokens.pair(token_check),
                );
                let (small_phase, small_pair) = (
                    small.tokens.rate(token_check),
                    small.tokens.pair(token_check),
                );
                // Minutes of seeding separate the two stores' windows, so each is taken as a
                // share of the hello server measured beside it; the raw ratio is shown too.
                let ratio = pair.ratio() / small_pair.ratio().max(1e-9);
                let raw_ratio = phase.rate() / small_phase.rate().max(1e-9);
                self.row(
                    RowKind::LargeTokenRate(token_check),
                    format!("{counts}: {label}, {RATE_CONNECTIONS} connections"),
                    format!(
                        "{} ({:.0}% of hello against the small store's {:.0}%: {:.0}%; raw rates {:.0}%)",
                        rate_text(phase.rate()),
                        pair.ratio() * 100.0,
                        small_pair.ratio() * 100.0,
                        ratio * 100.0,
                        raw_ratio * 100.0
                    ),
                    "≥ 80% of the small store",
                    check(ratio >= 0.8),
                );
                self.row(
                    RowKind::LargeTokenLatency(token_check),
                    format!("{counts}: {label}, latency at {LATENCY_CONNECTIONS} connections"),
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
                RowKind::LargePeakMemory,
                format!("{counts}: peak RSS (VmHWM) of that server"),
                format!("{:.1} MiB", mib(results.peak.hwm_kib)),
                "≤ 64 MiB",
                check(mib(results.peak.hwm_kib) <= 64.0),
            );
            self.row(
                RowKind::LargeFileSize,
                format!("{counts}: store file size"),
                format!("{:.0} MiB", large.file_bytes as f64 / MIB),
                "—",
                Verdict::Info,
            );
        }
        self.row(
            RowKind::SmallFileSize,
            "small store file size".to_owned(),
            format!("{:.1} MiB", small_file_bytes as f64 / MIB),
            "—",
            Verdict::Info,
        );
        let median_ms = |times: &[Duration]| -> f64 {
            let mut millis: Vec<f64> = times.iter().map(|time| time.as_secs_f64() * 1e3).collect();
            millis.sort_by(f64::total_cmp);
            millis.get(millis.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let list_ms = |times: &[Duration]| -> String {
            times
                .iter()
                .map(|time| format!("{:.0}", time.as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let small_start = median_ms(&small.restarts);
        self.row(
            RowKind::SmallStart,
            format!("start to first answered GET /health, small store, after SIGTERM (median of {RESTARTS})"),
            format!("{small_start:.0} ms (runs: {} ms)", list_ms(&small.restarts)),
            "≤ 200 ms",
            check(small_start <= 200.0),
        );
        if let Some(large) = large {
            let large_start = median_ms(&large.results.restarts);
            self.row(
                RowKind::LargeStart,
                format!("start to first answered GET /health, large store, after SIGTERM (median of {RESTARTS})"),
                format!("{large_start:.0} ms (runs: {} ms)", list_ms(&large.results.restarts)),
                "≤ 200 ms",
                check(large_start <= 200.0),
            );
        }
        self.row(
            RowKind::WholeRun,
            "whole benchmark run".to_owned(),
            format!("{:.0} s", self.total.as_secs_f64()),
            "< 10 min",
            check(self.total < Duration::from_secs(600)),
        );
    }
}

/// How many hasher buffers (`memory_kib` of argon2 blocks, mmapped with one page of malloc
/// header) an anonymous mapping's resident size amounts to: adjacent ones merge into one.
pub fn hasher_buffers_in(mapping: &Mapping, memory_kib: u64) -> u64 {
    let one = memory_kib + 4;
    if mapping.name != "[anonymous]" || one == 4 {
        return 0;
    }
    let count = mapping.rss_kib / one;
    if count > 0 && mapping.rss_kib - count * one < 512 {
        count
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::client::{ConnectionStats, LoadOutcome};
    use crate::load::metrics_overhead::MetricsOverhead;
    use crate::load::paired::{PairedRounds, median};
    use crate::load::sign_in_rounds::SignInRounds;
    use crate::load::{HelloPair, LargeMeasured, Phase, Priming, TokenLoads};
    use crate::postgres::DatabaseFacts;
    use crate::procfs::{CpuUse, MemoryStatus};
    use crate::servers::Stopped;
    use std::os::unix::process::ExitStatusExt as _;

    /// A fixed run, every figure made up: every target missed (with the large store, a what-if
    /// variable and busy neighbours) or every target met (small store only), so that the
    /// report's every sentence and branch is rendered.
    struct Fixture {
        report: Report,
        argon2: Argon2Limit,
        small: SmallResults,
        postgres: PostgresResults,
        large: Option<LargeResults>,
        cost: HashCost,
    }

    fn cpu(cores: f64, user_cores: f64, threads: &[(&str, f64)]) -> CpuUse {
        CpuUse {
            cores,
            user_cores,
            threads: threads
                .iter()
                .map(|(name, cores)| ((*name).to_owned(), *cores))
                .collect(),
        }
    }

    fn memory(rss_mib: u64, hwm_mib: u64) -> MemoryStatus {
        MemoryStatus {
            rss_kib: rss_mib * 1024 + 100,
            hwm_kib: hwm_mib * 1024 + 200,
            anon_kib: rss_mib * 512,
            file_kib: rss_mib * 512 + 100,
            threads: 7,
        }
    }

    fn mappings(buffers: u64) -> Vec<Mapping> {
        let one_buffer = 19_456 + 4;
        vec![
            Mapping {
                name: "[anonymous]".to_owned(),
                size_kib: 70_000,
                rss_kib: buffers * one_buffer + 100,
            },
            Mapping {
                name: "[heap]".to_owned(),
                size_kib: 9_000,
                rss_kib: 8_123,
            },
            Mapping {
                name: "/usr/local/bin/latchkey".to_owned(),
                size_kib: 6_000,
                rss_kib: 4_321,
            },
            Mapping {
                name: "[anonymous]".to_owned(),
                size_kib: 2_048,
                rss_kib: 1_500,
            },
        ]
    }

    /// `answers` answers in a 1 s window, latencies from `base_us` up, `non_200` of them 401.
    fn load_phase(
        name: &str,
        connections: usize,
        answers: u64,
        base_us: u32,
        non_200: u64,
        busy: bool,
    ) -> Phase {
        let mut outcome = LoadOutcome::new(name.to_owned(), Duration::from_secs(1));
        let mut stats = ConnectionStats::default();
        for index in 0..answers {
            stats
                .latencies_us
                .push(base_us + u32::try_from(index % 1_000).unwrap());
        }
        stats.statuses.insert(200, answers - non_200);
        if non_200 > 0 {
            stats.statuses.insert(401, non_200);
        }
        stats.failed = u64::from(busy);
        outcome.add(stats);
        outcome.finish();
        Phase {
            name: name.to_owned(),
            connections,
            outcome,
            server: Some(cpu(
                1.1,
                0.6,
                &[("latchkey-runtim", 1.05), ("latchkey-hasher", 0.05)],
            )),
            client: Some(cpu(0.7, 0.5, &[])),
            server_reads: Some(answers / 3),
            server_memory_after: Some(memory(18, if busy { 70 } else { 50 })),
            server_mappings_after: mappings(2),
            others: Some(if busy { 0.45 } else { 0.02 }),
            quiet_wait: Duration::from_millis(if busy { 2_500 } else { 0 }),
            attempts: if busy { 3 } else { 1 },
        }
    }

    fn token_loads(missed: bool, prefix: &str, ratio_scale: f64) -> TokenLoads {
        let (rate_answers, base_us) = if missed {
            (18_000, 1_500)
        } else {
            (76_000, 100)
        };
        let named = |name: &str| format!("{prefix}{name}");
        let hello = |answers| HelloPair {
            hello: load_phase("hello server (same requests)", 64, answers, 400, 0, false),
            round_ratios: [0.79, 0.65, 0.56, 0.75, 0.76]
                .iter()
                .map(|ratio| ratio * ratio_scale)
                .collect(),
        };
        TokenLoads {
            signed_rate: load_phase(
                &named("GET /user/current, signed token"),
                64,
                rate_answers,
                700,
                0,
                missed,
            ),
            signed_latency: load_phase(
                &named("GET /user/current, signed token"),
                8,
                66_000,
                base_us,
                0,
                false,
            ),
            api_rate: load_phase(
                &named("GET /user/current, API token"),
                64,
                rate_answers,
                800,
                0,
                false,
            ),
            api_latency: load_phase(
                &named("GET /user/current, API token"),
                8,
                64_000,
                base_us,
                0,
                false,
            ),
            sessions_rate: load_phase(
                &named("GET /auth/session, signed token"),
                64,
                rate_answers,
                900,
                0,
                false,
            ),
            sessions_latency: load_phase(
                &named("GET /auth/session, signed token"),
                8,
                60_000,
                base_us,
                0,
                false,
            ),
            priming: vec![Priming {
                name: named("GET /user/current, signed token"),
                requests: 10_000,
                took: Duration::from_millis(420),
                failures: 0,
            }],
            signed_pair: hello(if missed { 100_000 } else { 103_000 }),
            api_pair: HelloPair {
                round_ratios: if missed {
                    vec![0.30, 0.20, 0.40]
                } else {
                    vec![0.60, 0.59, 0.58]
                }
                .iter()
                .map(|ratio| ratio * ratio_scale)
                .collect(),
                ..hello(102_000)
            },
            sessions_pair: hello(101_000),
        }
    }

    fn fixture(missed: bool) -> Fixture {
        let cost = HashCost {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        };
        let argon2 = |hashes| Argon2Limit {
            others_cores: Some(0.01),
            threads: 2,
            hashes,
            hashes_per_second: hashes as f64 / 5.0,
            seconds_per_hash: 0.0172,
        };
        let status = std::process::ExitStatus::from_raw(0);
        let small = SmallResults {
            first_start: Duration::from_millis(45),
            idle_before: memory(if missed { 16 } else { 9 }, 9),
            idle_before_mappings: mappings(0),
            sign_ins: load_phase(
                "sign-in",
                16,
                if missed { 80 } else { 110 },
                160_000,
                u64::from(missed) * 3,
                false,
            ),
            argon2_after: argon2(560),
            tokens: token_loads(missed, "", 1.0),
            mixed_tokens: load_phase(
                "GET /user/current, signed token, while signing in",
                8,
                44_000,
                if missed { 25_000 } else { 140 },
                0,
                false,
            ),
            mixed_sign_ins: load_phase(
                "sign-in, beside the token checks",
                16,
                28,
                160_000,
                u64::from(missed),
                false,
            ),
            idle_after: memory(if missed { 19 } else { 12 }, if missed { 70 } else { 50 }),
            idle_after_mappings: mappings(2),
            peak: memory(19, if missed { 70 } else { 50 }),
            stop: Stopped {
                took: Duration::from_millis(12),
                status,
            },
            restarts: if missed {
                vec![
                    Duration::from_millis(253),
                    Duration::from_millis(242),
                    Duration::from_millis(237),
                ]
            } else {
                vec![
                    Duration::from_millis(53),
                    Duration::from_millis(42),
                    Duration::from_millis(37),
                ]
            },
            restart_peaks: vec![30_000, 30_100, 30_200],
            caches_kept_load: load_phase(
                "GET /user/current, signed token, caches kept",
                64,
                52_000,
                700,
                0,
                false,
            ),
            idle_after_with_caches_kept: memory(12, 40),
            sign_in_page: PairedRounds {
                subject: load_phase(
                    "GET /sign-in (the hosted page)",
                    64,
                    if missed { 20_000 } else { 52_000 },
                    900,
                    0,
                    false,
                ),
                baseline: load_phase(
                    "GET /user/current, signed token, beside the sign-in page",
                    64,
                    74_000,
                    700,
                    0,
                    false,
                ),
                round_ratios: if missed {
                    vec![0.27, 0.28, 0.26, 0.30, 0.25]
                } else {
                    vec![0.70, 0.71, 0.69, 0.72, 0.68]
                },
            },
            forward_auth: PairedRounds {
                baseline: load_phase("GET /user/current, signed token", 64, 76_000, 700, 0, false),
                subject: load_phase(
                    FORWARD_AUTH_NAME,
                    64,
                    if missed { 60_000 } else { 72_000 },
                    if missed { 900 } else { 720 },
                    0,
                    false,
                ),
                round_ratios: if missed {
                    vec![0.80, 0.78, 0.82, 0.79, 0.81]
                } else {
                    vec![0.95, 0.93, 0.96, 0.94, 0.97]
                },
            },
            metrics_overhead: MetricsOverhead {
                rounds: [(52_000, 51_500), (51_000, 50_000), (50_000, 49_800)]
                    .into_iter()
                    .map(|(off, on)| {
                        let on = if missed { on * 9 / 10 } else { on };
                        let phase =
                            |name: &str, answers| load_phase(name, 64, answers, 700, 0, false);
                        (
                            phase("GET /user/current, signed token, metrics off", off),
                            phase("GET /user/current, signed token, metrics on", on),
                        )
                    })
                    .collect(),
                recorded_requests: 1_234_567,
            },
        };
        let large = missed.then(|| LargeResults {
            seeded_bytes: 2_000 << 20,
            file_bytes: 2_129 << 20,
            results: LargeMeasured {
                first_start: Duration::from_millis(60),
                idle_before: memory(10, 10),
                tokens: token_loads(true, "large: ", 0.5),
                peak: memory(20, 70),
                peak_mappings: mappings(0),
                stop: Stopped {
                    took: Duration::from_millis(15),
                    status,
                },
                restarts: vec![
                    Duration::from_millis(239),
                    Duration::from_millis(237),
                    Duration::from_millis(234),
                ],
            },
        });
        let args = Args {
            large_users: 1_000_000,
            large_sessions: 5_000_000,
            skip_large: !missed,
            seconds: 5,
            warmup_seconds: 1,
            server: None,
            output: None,
            no_write: false,
            server_env: if missed {
                vec!["LATCHKEY_STORE__CACHE_SIZE_MIB=4".to_owned()]
            } else {
                Vec::new()
            },
            only_metrics_overhead: false,
            pages_only: false,
            forward_auth_only: false,
            backend: BackendChoice::Both,
            postgres_url: None,
            postgres_over_unix_socket: false,
            hello_server: None,
        };
        let mut report = Report {
            command: "cargo run --release -p latchkey-bench".to_owned(),
            date: "2026-12-02T08:02:45Z".to_owned(),
            commit: "7aac6ff".to_owned(),
            machine: "2 cores (AMD EPYC), 23.5 GiB memory, Linux 6.18.44".to_owned(),
            config_note: "argon2id m=19456 KiB, t=2, p=1; 2 hasher threads".to_owned(),
            seed_notes: vec!["small store: 16 sign-in users and 2,000 users".to_owned()],
            phases: vec![
                (
                    "build check of the server binary".to_owned(),
                    Duration::from_millis(300),
                ),
                ("seed the small store".to_owned(), Duration::from_secs(4)),
                ("  small: 2,000 users".to_owned(), Duration::from_secs(1)),
                (
                    "  small: 10,000 sessions".to_owned(),
                    Duration::from_secs(2),
                ),
                (
                    "small store: loads, idle wait, restarts".to_owned(),
                    Duration::from_secs(200),
                ),
            ],
            rows: Vec::new(),
            total: Duration::from_secs(if missed { 700 } else { 458 }),
            args,
        };
        let argon2_before = argon2(567);
        let postgres = postgres_results(missed, argon2);
        report.build_rows(
            &argon2_before,
            &small,
            8_600_000,
            Some(&postgres),
            large.as_ref(),
            cost,
        );
        Fixture {
            report,
            argon2: argon2_before,
            small,
            postgres,
            large,
            cost,
        }
    }

    /// PostgreSQL's part: token checks at 18-22% of redb's rate and sign-ins at 68-71% of the
    /// limit when `missed`, else at 31-40% and 95-98%.
    fn postgres_results(missed: bool, argon2: impl Fn(u64) -> Argon2Limit) -> PostgresResults {
        let on_postgres = |mut phase: Phase| {
            phase.server = Some(cpu(
                1.5,
                0.9,
                &[("latchkey-runtim", 0.7), ("postgres", 0.8)],
            ));
            phase
        };
        let pair = |name: &str, ratios: [f64; 5]| {
            let redb_answers = 76_000;
            let median = median(&ratios);
            PairedRounds {
                subject: on_postgres(load_phase(
                    &format!("PostgreSQL: {name}"),
                    64,
                    (redb_answers as f64 * median) as u64,
                    2_500,
                    0,
                    false,
                )),
                baseline: load_phase(
                    &format!("redb, beside PostgreSQL: {name}"),
                    64,
                    redb_answers,
                    700,
                    0,
                    false,
                ),
                round_ratios: ratios.to_vec(),
            }
        };
        let (signed_ratios, api_ratios) = if missed {
            (
                [0.21, 0.20, 0.22, 0.19, 0.18],
                [0.20, 0.22, 0.21, 0.19, 0.20],
            )
        } else {
            (
                [0.31, 0.33, 0.35, 0.32, 0.34],
                [0.38, 0.36, 0.40, 0.37, 0.39],
            )
        };
        PostgresResults {
            facts: DatabaseFacts {
                origin: "a throwaway cluster".to_owned(),
                version: "15.18 (Debian 15.18-0+deb12u1)".to_owned(),
                fsync: "on".to_owned(),
                synchronous_commit: "on".to_owned(),
                shared_buffers: "128MB".to_owned(),
            },
            pool_size: 16,
            first_start: Duration::from_millis(85),
            signed: pair("GET /user/current, signed token", signed_ratios),
            api: pair("GET /user/current, API token", api_ratios),
            signed_latency: on_postgres(load_phase(
                "PostgreSQL: GET /user/current, signed token",
                8,
                30_000,
                250,
                0,
                false,
            )),
            api_latency: on_postgres(load_phase(
                "PostgreSQL: GET /user/current, API token",
                8,
                31_000,
                240,
                0,
                false,
            )),

            priming: vec![Priming {
                name: "PostgreSQL: GET /user/current, signed token".to_owned(),
                requests: 10_000,
                took: Duration::from_millis(900),
                failures: 0,
            }],
            sign_in_rounds: SignInRounds::from_rounds(
                [(77, 555), (76, 549), (78, 560), (75, 552), (79, 558)]
                    .into_iter()
                    .map(|(sign_ins, hashes)| {
                        let sign_ins = if missed { sign_ins } else { sign_ins + 30 };
                        (
                            on_postgres(load_phase(
                                "PostgreSQL: sign-in",
                                16,
                                sign_ins,
                                160_000,
                                0,
                                false,
                            )),
                            argon2(hashes),
                        )
                    })
                    .collect(),
            ),
            database_bytes: 14 << 20,
            database_cpu_counted: !missed,
        }
    }

    /// The report of a fixed run, rendered, against the text committed beside it: the
    /// benchmark's output format stays as it is unless that text changes with it.
    /// `LATCHKEY_BENCH_WRITE_EXPECTED=1` rewrites the expected text.
    fn check_rendered(missed: bool, file: &str) {
        let fixture = fixture(missed);
        let rendered = fixture.report.render(
            &fixture.argon2,
            &fixture.small,
            Some(&fixture.postgres),
            fixture.large.as_ref(),
            fixture.cost,
        );
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/report/expected")
            .join(file);
        if std::env::var_os("LATCHKEY_BENCH_WRITE_EXPECTED").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &rendered).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        for (line, (rendered_line, expected_line)) in
            rendered.lines().zip(expected.lines()).enumerate()
        {
            assert_eq!(
                rendered_line,
                expected_line,
                "line {} of {}",
                line + 1,
                path.display()
            );
        }
        assert_eq!(rendered, expected);
    }

    #[test]
    fn a_run_that_misses_every_target_renders_as_before() {
        check_rendered(true, "every-target-missed.md");
    }

    #[test]
    fn a_run_that_meets_every_target_renders_as_before() {
        check_rendered(false, "every-target-met.md");
    }
}
