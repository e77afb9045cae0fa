//! The measurements behind a missed target, in words: for each row kind, what the report
//! says under "Missed targets".

use std::fmt::Write as _;
use std::time::Duration;

use latchkey::Config;

use crate::load::postgres::PostgresResults;
use crate::load::{Argon2Limit, LargeResults, Phase, SmallResults, TokenCheck};
use crate::procfs::{Mapping, MemoryStatus, kib_to_mib};
use crate::report::{MIB, Report, Row, RowKind, hasher_buffers_in, rate_text, thousands};

impl Report {
    /// The measurement behind a missed target, in words.
    pub fn why(
        &self,
        row: &Row,
        argon2: &Argon2Limit,
        small: &SmallResults,
        postgres: Option<&PostgresResults>,
        large: Option<&LargeResults>,
    ) -> String {
        let cpu = |phase: &Phase| -> String {
            let [server, client, others] = phase.cores_texts();
            format!("server {server} cores, client {client} cores, other processes {others} cores")
        };
        let per_request = |phase: &Phase| -> f64 {
            phase
                .cpu_per_answer_us()
                .map_or(f64::NAN, |(total, _)| total)
        };
        let latency = |phase: &Phase| -> String {
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} answers; {}.",
                phase.outcome.percentile_ms(50.0),
                phase.p99(),
                phase.outcome.max_ms(),
                thousands(phase.outcome.completed()),
                cpu(phase)
            )
        };
        let buffer_kib = u64::from(self.memory_kib());
        let peak = |phases: Vec<&Phase>, final_peak: u64| -> String {
            let setter = phases.into_iter().find(|phase| {
                phase
                    .server_memory_after
                    .as_ref()
                    .is_some_and(|memory| memory.hwm_kib + 256 >= final_peak)
            });
            match setter.and_then(|phase| Some((phase, phase.server_memory_after.as_ref()?))) {
                Some((phase, memory)) => format!(
                    "VmHWM reached {:.1} MiB by the end of the phase \"{}\" ({} \
                     connections; see the last column of Load phases). Right after it: {}",
                    kib_to_mib(memory.hwm_kib),
                    phase.name,
                    phase.connections,
                    memory_breakdown(memory, &phase.server_mappings_after, buffer_kib)
                ),
                None => "no phase snapshot shows the peak; see Memory.".to_owned(),
            }
        };
        match row.kind {
            RowKind::Argon2Limit | RowKind::SignIns => format!(
                "during the sign-in load: {}. The limit was measured with {} hashing threads \
                 (before, and again right after: {:.1} and {:.1} hashes/s) while other processes \
                 used {} cores. Besides its hash, every sign-in parses and answers HTTP, signs a \
                 token and commits a durable write, and the client shares the cores.",
                cpu(&small.sign_ins),
                argon2.threads,
                argon2.hashes_per_second,
                small.argon2_after.hashes_per_second,
                argon2
                    .others_cores
                    .map_or_else(|| "?".to_owned(), |cores| format!("{cores:.2}"))
            ),
            RowKind::TokenRate(check) => {
                let (phase, pair) = (small.tokens.rate(check), small.tokens.pair(check));
                format!(
                    "in the median round the server spent {} µs of CPU (user + kernel) per answer \
                     against the hello server's {} µs; {} (its hello window: {}).",
                    phase.cpu_per_answer_text(),
                    pair.hello.cpu_per_answer_text(),
                    cpu(phase),
                    cpu(&pair.hello)
                )
            }
            RowKind::SignInPage => {
                let pair = &small.sign_in_page;
                format!(
                    "in the median round the server spent {} µs of CPU (user + kernel) per page \
                     against {} µs per token check; {} (the token check's window: {}).",
                    pair.subject.cpu_per_answer_text(),
                    pair.baseline.cpu_per_answer_text(),
                    cpu(&pair.subject),
                    cpu(&pair.baseline)
                )
            }
            RowKind::TokenLatency(check) => latency(small.tokens.latency(check)),
            RowKind::ForwardAuthRate => {
                let pair = &small.forward_auth;
                format!(
                    "in the median round the server spent {} µs of CPU (user + kernel) per \
                     forward answer against {} µs per GET /user/current; {} (the GET \
                     /user/current window: {}).",
                    pair.subject.cpu_per_answer_text(),
                    pair.baseline.cpu_per_answer_text(),
                    cpu(&pair.subject),
                    cpu(&pair.baseline)
                )
            }
            RowKind::LatencyBesideSignIns => latency(&small.mixed_tokens),
            RowKind::IdleBeforeLoad => {
                memory_breakdown(&small.idle_before, &small.idle_before_mappings, buffer_kib)
            }
            RowKind::IdleAfterLoad => {
                let mut why =
                    memory_breakdown(&small.idle_after, &small.idle_after_mappings, buffer_kib);
                let _ = write!(
                    why,
                    " The same store after a signed-token load with both caches kept \
                     (redb's at 32 MiB, the verified tokens never freed) idles at {:.1} MiB: \
                     the difference is what the defaults free or never hold (a small store \
                     gets a 1 MiB redb cache, and 10,000 verified tokens are freed after 5 \
                     idle seconds).",
                    kib_to_mib(small.idle_after_with_caches_kept.rss_kib)
                );
                why
            }
            RowKind::PeakMemory => peak(small.latchkey_phases(), small.peak.hwm_kib),
            RowKind::LargePeakMemory => match large {
                Some(large) => peak(large.results.latchkey_phases(), large.results.peak.hwm_kib),
                None => peak(Vec::new(), 0),
            },
            RowKind::LargeTokenRate(check) => match large {
                Some(large) => {
                    let (phase, small_phase) =
                        (large.results.tokens.rate(check), small.tokens.rate(check));
                    let reads = |phase: &Phase| {
                        phase.server_reads.map_or(f64::NAN, |reads| {
                            reads as f64 / phase.outcome.completed().max(1) as f64
                        })
                    };
                    format!(
                        "{:.0} µs of server CPU and {:.2} read system calls per answer, against \
                         {:.0} µs and {:.2} on the small store; the file is {:.0} MiB and redb's \
                         cache {:.0} MiB; {}.",
                        per_request(phase),
                        reads(phase),
                        per_request(small_phase),
                        reads(small_phase),
                        large.file_bytes as f64 / MIB,
                        Config::default().store.cache_size_bytes(large.file_bytes) as f64 / MIB,
                        cpu(phase)
                    )
                }
                None => String::new(),
            },
            RowKind::MetricsOverhead => {
                let rounds: Vec<String> = small
                    .metrics_overhead
                    .rounds
                    .iter()
                    .map(|(off, on)| {
                        format!(
                            "off {} ({}), on {} ({})",
                            rate_text(off.rate()),
                            off.cpu_per_answer_text(),
                            rate_text(on.rate()),
                            on.cpu_per_answer_text()
                        )
                    })
                    .collect();
                format!(
                    "server CPU per answer (user + kernel, µs) by round, in order: {}. The two \
                     servers run side by side on copies of one store, so a window's neighbour \
                     is the other server, idle.",
                    rounds.join("; ")
                )
            }
            RowKind::SmallStart | RowKind::LargeStart => format!(
                "one argon2id hash takes {:.1} ms on one core, and the server makes its dummy hash \
                 before it answers; see Starts and stops.",
                argon2.seconds_per_hash * 1e3
            ),
            RowKind::PostgresTokenRate(check) => match postgres {
                Some(postgres) => {
                    let pair = postgres.rates(check);
                    format!(
                        "in the median round the PostgreSQL server spent {} µs of CPU (user + \
                         kernel, the cluster's processes included) per answer against the redb \
                         server's {} µs; PostgreSQL: {}; redb: {}. The pool holds at most {} \
                         connections; each such check takes {} over loopback.",
                        pair.subject.cpu_per_answer_text(),
                        pair.baseline.cpu_per_answer_text(),
                        cpu(&pair.subject),
                        cpu(&pair.baseline),
                        postgres.pool_size,
                        if check == TokenCheck::SessionSigned {
                            "two statements, one round trip each (the session's context, \
                             then the user's live sessions)"
                        } else {
                            "one statement, one round trip (the credential's context with the \
                             user's second-factor summary)"
                        }
                    )
                }
                None => String::new(),
            },
            RowKind::PostgresSignIns => match postgres {
                Some(postgres) => format!(
                    "during the median round's sign-in window: {}. The limit was measured \
                     with {} hashing threads in each round (that round's: {:.1} hashes/s; \
                     rounds {}). Besides its hash, every sign-in parses and answers HTTP, \
                     signs a token and commits a write under the cluster-wide writer lock \
                     (`fsync` {}).",
                    cpu(postgres.sign_ins()),
                    postgres.argon2_limit().threads,
                    postgres.argon2_limit().hashes_per_second,
                    postgres.sign_in_rounds.rounds_text(),
                    postgres.facts.fsync
                ),
                None => String::new(),
            },
            // These rows inform and have no target, so they are never missed.
            RowKind::PostgresTokenLatency(_)
            | RowKind::PostgresDatabaseSize
            | RowKind::HelloRate
            | RowKind::IdleWithCachesKept
            | RowKind::LargeTokenLatency(_)
            | RowKind::LargeFileSize
            | RowKind::SmallFileSize => String::new(),
            RowKind::WholeRun => {
                let longest = |nested: bool| -> Vec<String> {
                    let mut phases: Vec<&(String, Duration)> = self
                        .phases
                        .iter()
                        .filter(|(label, _)| label.starts_with("  ") == nested)
                        .collect();
                    phases.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
                    phases
                        .iter()
                        .take(3)
                        .map(|(label, took)| {
                            format!("{} {:.0} s", label.trim(), took.as_secs_f64())
                        })
                        .collect()
                };
                format!(
                    "the longest parts of the run: {}; within the seeding: {}. See Where the \
                     time went.",
                    longest(false).join("; "),
                    longest(true).join("; ")
                )
            }
        }
    }

    fn memory_kib(&self) -> u32 {
        Config::default().password.memory_kib
    }
}

/// What a memory snapshot holds, in words: the hasher buffers and the rest.
fn memory_breakdown(status: &MemoryStatus, mappings: &[Mapping], buffer_kib: u64) -> String {
    let buffers: u64 = mappings
        .iter()
        .map(|mapping| hasher_buffers_in(mapping, buffer_kib))
        .sum();
    let other_anonymous: u64 = mappings
        .iter()
        .filter(|mapping| {
            mapping.name == "[anonymous]" && hasher_buffers_in(mapping, buffer_kib) == 0
        })
        .map(|mapping| mapping.rss_kib)
        .sum();
    let heap: u64 = mappings
        .iter()
        .filter(|mapping| mapping.name == "[heap]")
        .map(|mapping| mapping.rss_kib)
        .sum();
    format!(
        "VmRSS {:.1} MiB = {:.1} MiB anonymous + {:.1} MiB file-backed (mostly the binary's own \
         pages). Resident argon2 hasher buffers ({} KiB each): {buffers}, {:.1} MiB. Other large \
         anonymous mappings: {:.1} MiB, plus {:.1} MiB of `[heap]` (malloc's heap and per-thread \
         arenas, which hold redb's page cache and whatever the allocator keeps after a burst). \
         The largest mappings are listed under Memory.",
        kib_to_mib(status.rss_kib),
        kib_to_mib(status.anon_kib),
        kib_to_mib(status.file_kib),
        thousands(buffer_kib + 4),
        kib_to_mib(buffers * (buffer_kib + 4)),
        kib_to_mib(other_anonymous),
        kib_to_mib(heap)
    )
}
