//! The report rendered as BENCHMARKS.md: the facts of the run, the results table, the load
//! phases, memory, starts and stops, where the time went, the missed targets explained, and
//! how to run it.

use std::fmt::Write as _;
use std::time::Duration;

use latchkey::auth::password::HashCost;

use crate::load::client::CLIENT_THREADS;
use crate::load::postgres::PostgresResults;
use crate::load::{
    Argon2Limit, IDLE_AFTER_LOAD, LATENCY_CONNECTIONS, LargeResults, MEASURE_ATTEMPTS,
    PAIRED_ROUNDS, Phase, Priming, SmallResults,
};
use crate::procfs::{Mapping, MemoryStatus, QUIET_CORES, QUIET_WAIT_LIMIT, kib_to_mib};
use crate::report::{MIB, Report, Row, Verdict, hasher_buffers_in, rate_text, thousands};
use crate::seed::{PUBLIC_URL, SIGN_IN_USERS, TOKEN_SESSIONS};

impl Report {
    pub fn table(&self) -> String {
        let mut text =
            String::from("| | measurement | value | target | result |\n|---|---|---|---|---|\n");
        for row in &self.rows {
            let verdict = match row.verdict {
                Verdict::Met => "met",
                Verdict::Missed => "**missed**",
                Verdict::Info => "",
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {} |",
                row.kind.letter(),
                row.measurement,
                row.value,
                row.target,
                verdict
            );
        }
        text
    }

    pub fn render(
        &self,
        argon2: &Argon2Limit,
        small: &SmallResults,
        postgres: Option<&PostgresResults>,
        large: Option<&LargeResults>,
        cost: HashCost,
    ) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "# Benchmarks\n");
        let _ = writeln!(
            text,
            "This file is written by the benchmark itself (issue #8); rerun it rather than edit \
             the numbers. The command:\n\n```sh\n{}\n```\n",
            self.command
        );
        let _ = writeln!(text, "- Date: {}", self.date);
        let _ = writeln!(text, "- Commit: {}", self.commit);
        let _ = writeln!(text, "- Machine: {}", self.machine);
        let _ = writeln!(
            text,
            "- Server: `target/release/latchkey serve --listen 127.0.0.1:<free port>` on a fresh \
             temporary data dir, with `LATCHKEY_SERVER__PUBLIC_URL={PUBLIC_URL}` and \
             `LATCHKEY_LOG__LEVEL=warn` (each request logs one line at info, so request logging \
             is off; stderr is drained). Everything else is the default configuration: {}.",
            self.config_note
        );
        if !self.args.server_env.is_empty() {
            let _ = writeln!(
                text,
                "- **A what-if run**: the server also had `{}`.",
                self.args.server_env.join("`, `")
            );
        }
        let _ = writeln!(
            text,
            "- Client: the benchmark's own HTTP/1.1 keep-alive client, a tokio runtime with \
             {CLIENT_THREADS} worker threads, one task per connection (request, read the status \
             line, the head and `Content-Length` bytes, again). Each load runs {} s of warm-up, \
             then {} s measured; only answers completed in the measured window count, and a rate \
             counts 200 answers only. Client and server share the machine's cores, so ratios are \
             what count.",
            self.args.warmup_seconds, self.args.seconds
        );
        let _ = writeln!(
            text,
            "- Seeding, through the `Store` API before the server starts (redb lets one process \
             hold the file): {SIGN_IN_USERS} sign-in users sharing one argon2id hash made with the \
             server's own cost; token users with 5 sessions each; {} sessions per store carry a \
             session-bound API token and a signed token, signed with the store's key and \
             `iss` = `{PUBLIC_URL}` exactly as the server signs. The token checks cycle over \
             these {} sessions.",
            thousands(TOKEN_SESSIONS),
            thousands(TOKEN_SESSIONS)
        );
        for note in &self.seed_notes {
            let _ = writeln!(text, "  - {note}");
        }
        let _ = writeln!(text, "- Whole run: {:.0} s.\n", self.total.as_secs_f64());
        let _ = writeln!(text, "## Results\n");
        let _ = writeln!(text, "{}", self.table());
        if let Some(postgres) = postgres {
            let _ = writeln!(
                text,
                "{}",
                self.postgres_section(postgres, Some((small, argon2)))
            );
        }

        let _ = writeln!(text, "## Load phases\n");
        let _ = writeln!(
            text,
            "CPU is in cores (CPU seconds per second) over the measured window, from \
             `/proc/<pid>/stat` and each thread's `stat`; \"server\" is the process that answered \
             (the hello server in its row). \"reads/req\" is the server's read system calls \
             (`syscr` in `/proc/<pid>/io`) per answered request: redb reads a page it lacks in \
             its cache with `pread`.{}\n",
            if postgres.is_some() {
                " In PostgreSQL's rows the server's CPU includes the database cluster's \
                 processes (`postgres` among the threads); its reads are the latchkey \
                 process's only."
            } else {
                ""
            }
        );
        let _ = writeln!(text, "{PHASES_HEADER}");
        let mut all: Vec<&Phase> = vec![
            &small.sign_ins,
            &small.tokens.signed_pair.hello,
            &small.tokens.signed_rate,
            &small.tokens.signed_latency,
            &small.tokens.api_rate,
            &small.tokens.api_latency,
            &small.tokens.sessions_rate,
            &small.tokens.sessions_latency,
            &small.sign_in_page.baseline,
            &small.sign_in_page.subject,
            &small.forward_auth.baseline,
            &small.forward_auth.subject,
            &small.mixed_tokens,
            &small.mixed_sign_ins,
        ];
        if let Some(postgres) = postgres {
            all.extend(postgres.phases());
        }
        if let Some(large) = large {
            let results = &large.results;
            all.extend([
                &results.tokens.signed_rate,
                &results.tokens.signed_latency,
                &results.tokens.api_rate,
                &results.tokens.api_latency,
                &results.tokens.sessions_rate,
                &results.tokens.sessions_latency,
            ]);
        }
        let all_phases = all.clone();
        for phase in all {
            let _ = writeln!(text, "{}", phase_row(phase));
        }
        let _ = writeln!(
            text,
            "\nThe first, unmeasured pass over each request set ({LATENCY_CONNECTIONS} \
             connections): a signed token's first check verifies its Ed25519 signature and fills \
             the verified-token cache; every first read fills redb's page cache.\n\n\
             | request set | requests | seconds | rate | non-200 / failed |\n|---|---|---|---|---|"
        );
        let mut priming: Vec<&Priming> = small.tokens.priming.iter().collect();
        if let Some(postgres) = postgres {
            priming.extend(postgres.priming.iter());
        }
        if let Some(large) = large {
            priming.extend(large.results.tokens.priming.iter());
        }
        for first in priming {
            let _ = writeln!(
                text,
                "| {} | {} | {:.2} | {} | {} |",
                first.name,
                thousands(first.requests as u64),
                first.took.as_secs_f64(),
                rate_text(first.requests as f64 / first.took.as_secs_f64().max(1e-9)),
                first.failures
            );
        }
        let _ = writeln!(
            text,
            "\nThe argon2 limit: {} hashes on {} threads in {} s before the small store's loads \
             ({:.1}/s), and {} hashes again right after its sign-ins ({:.1}/s); other processes \
             used {} and {} cores meanwhile. Sign-ins are judged against the mean of the two: \
             this shared machine's speed drifts between windows a minute apart.\n\n\
             Token-check rates against hello: {PAIRED_ROUNDS} rounds per request set, each a \
             hello window and a latchkey window of half the measured seconds (hello first in \
             odd rounds, latchkey first in even ones), with both servers running; the ratio is \
             the median round's, and every round's is listed. \
             Load phases show the median round's windows. The large store's rates are judged as \
             their share of hello over the small store's share of hello, because seeding \
             separates them by minutes; the raw ratio of the rates is listed beside it.",
            thousands(argon2.hashes),
            argon2.threads,
            self.args.seconds,
            argon2.hashes_per_second,
            thousands(small.argon2_after.hashes),
            small.argon2_after.hashes_per_second,
            argon2
                .others_cores
                .map_or_else(|| "?".to_owned(), |cores| format!("{cores:.2}")),
            small
                .argon2_after
                .others_cores
                .map_or_else(|| "?".to_owned(), |cores| format!("{cores:.2}"))
        );
        let waited: Duration = all_phases.iter().map(|phase| phase.quiet_wait).sum();
        let _ = writeln!(
            text,
            "\nBefore each load the benchmark waits (up to {} s) for the machine to use less \
             than {QUIET_CORES} cores; it waited {:.1} s in all. A load during which other \
             processes used more than {QUIET_CORES} cores is measured again (at most \
             {MEASURE_ATTEMPTS} attempts, the least disturbed one kept): {} of the loads above \
             needed more than one attempt.",
            QUIET_WAIT_LIMIT.as_secs(),
            waited.as_secs_f64(),
            all_phases.iter().filter(|phase| phase.attempts > 1).count()
        );
        let busiest_others = all_phases
            .iter()
            .filter_map(|phase| phase.others)
            .fold(0.0, f64::max);
        if busiest_others > 0.1 {
            let _ = writeln!(
                text,
                "\n**Other processes were busy during this run** (up to {busiest_others:.2} \
                 cores in one phase): the numbers are disturbed; rerun on a quiet machine."
            );
        }
        let mut sign_in_phases = vec![&small.sign_ins, &small.mixed_sign_ins];
        if let Some(postgres) = postgres {
            sign_in_phases.push(postgres.sign_ins());
        }
        let statuses: Vec<String> = sign_in_phases
            .iter()
            .filter(|phase| phase.outcome.unexpected > 0)
            .map(|phase| format!("{}: {:?}", phase.name, phase.outcome.statuses))
            .collect();
        if !statuses.is_empty() {
            let _ = writeln!(text, "\nAnswers by status: {}", statuses.join("; "));
        }

        let _ = writeln!(text, "\n## Memory\n");
        let memory_line = |label: &str, status: &MemoryStatus| {
            format!(
                "| {label} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                kib_to_mib(status.rss_kib),
                kib_to_mib(status.anon_kib),
                kib_to_mib(status.file_kib),
                kib_to_mib(status.hwm_kib),
                status.threads
            )
        };
        let _ = writeln!(
            text,
            "From `/proc/<pid>/status`, in MiB.\n\n| when | VmRSS | RssAnon | RssFile | VmHWM | threads |\n|---|---|---|---|---|---|"
        );
        let _ = writeln!(
            text,
            "{}",
            memory_line("small store, idle before the load", &small.idle_before)
        );
        let _ = writeln!(
            text,
            "{}",
            memory_line(
                &format!(
                    "small store, {} s after the load",
                    IDLE_AFTER_LOAD.as_secs()
                ),
                &small.idle_after
            )
        );
        if let Some(large) = large {
            let _ = writeln!(
                text,
                "{}",
                memory_line(
                    "large store, idle before the load",
                    &large.results.idle_before
                )
            );
            let _ = writeln!(
                text,
                "{}",
                memory_line("large store, after the load", &large.results.peak)
            );
        }
        let hasher_buffer_kib = u64::from(cost.memory_kib);
        let mappings_table = |title: &str, mappings: &[Mapping]| -> String {
            let mut table = format!(
                "\n{title} (`/proc/<pid>/smaps`, the largest resident mappings):\n\n| mapping | size KiB | resident KiB | what it is |\n|---|---|---|---|\n"
            );
            for mapping in mappings {
                let buffers = hasher_buffers_in(mapping, hasher_buffer_kib);
                let what = if buffers > 0 {
                    format!(
                        "{buffers} × {} KiB: the size of {buffers} hasher thread(s)' preallocated \
                         argon2 buffer(s) (m = {} KiB, 1 KiB blocks, plus a page of malloc header)",
                        thousands(hasher_buffer_kib + 4),
                        cost.memory_kib
                    )
                } else if mapping.name == "[anonymous]" {
                    "anonymous: malloc arenas, thread stacks, redb's cache".to_owned()
                } else if mapping.name.ends_with("latchkey") {
                    "the binary (code and data)".to_owned()
                } else if mapping.name == "[heap]" {
                    "the main heap (brk)".to_owned()
                } else {
                    String::new()
                };
                let _ = writeln!(
                    table,
                    "| `{}` | {} | {} | {what} |",
                    mapping.name,
                    thousands(mapping.size_kib),
                    thousands(mapping.rss_kib)
                );
            }
            table
        };
        let _ = write!(
            text,
            "{}",
            mappings_table(
                "Small store, idle before the load",
                &small.idle_before_mappings
            )
        );
        let _ = write!(
            text,
            "{}",
            mappings_table(
                &format!(
                    "Small store, {} s after the load",
                    IDLE_AFTER_LOAD.as_secs()
                ),
                &small.idle_after_mappings
            )
        );
        if let Some(large) = large {
            let _ = write!(
                text,
                "{}",
                mappings_table("Large store, after its load", &large.results.peak_mappings)
            );
        }

        let _ = writeln!(text, "\n## Starts and stops\n");
        let list = |times: &[Duration]| -> String {
            times
                .iter()
                .map(|time| format!("{:.0} ms", time.as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            text,
            "- Small store: first start after seeding {:.0} ms; SIGTERM to exit {:.0} ms ({}); \
             starts after a clean stop: {}; their VmHWM at the first answer: {} MiB.",
            small.first_start.as_secs_f64() * 1e3,
            small.stop.took.as_secs_f64() * 1e3,
            small.stop.status,
            list(&small.restarts),
            small
                .restart_peaks
                .iter()
                .map(|kib| format!("{:.1}", kib_to_mib(*kib)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(large) = large {
            let _ = writeln!(
                text,
                "- Large store: first start after seeding {:.0} ms; SIGTERM to exit {:.0} ms ({}); \
                 starts after a clean stop: {}. File size after seeding {:.0} MiB, after the run \
                 {:.0} MiB.",
                large.results.first_start.as_secs_f64() * 1e3,
                large.results.stop.took.as_secs_f64() * 1e3,
                large.results.stop.status,
                list(&large.results.restarts),
                large.seeded_bytes as f64 / MIB,
                large.file_bytes as f64 / MIB
            );
        }
        let _ = writeln!(
            text,
            "- One argon2id hash alone on one core takes {:.1} ms; the server makes one (the dummy \
             hash for unknown emails) before it answers.",
            argon2.seconds_per_hash * 1e3
        );

        let _ = writeln!(text, "\n## Where the time went\n");
        let _ = writeln!(text, "| phase of the run | seconds |\n|---|---|");
        for (label, took) in &self.phases {
            let _ = writeln!(text, "| {label} | {:.1} |", took.as_secs_f64());
        }

        let missed: Vec<&Row> = self
            .rows
            .iter()
            .filter(|row| row.verdict == Verdict::Missed)
            .collect();
        let _ = writeln!(text, "\n## Missed targets: what the measurements say\n");
        if missed.is_empty() {
            let _ = writeln!(text, "Every target was met.");
        }
        for row in missed {
            let _ = writeln!(
                text,
                "- **{}** ({}): {}",
                row.measurement,
                row.value,
                self.why(row, argon2, small, postgres, large)
            );
        }
        let _ = writeln!(text, "\n## Running it\n");
        let _ = writeln!(
            text,
            "```sh\ncargo run --release -p latchkey-bench                     # everything, 1,000,000 users / 5,000,000 sessions\n\
             cargo run --release -p latchkey-bench -- --skip-large    # (a) to (e) and (g) on the small store only\n\
             cargo run --release -p latchkey-bench -- --large-users 100000 --large-sessions 500000\n\
             cargo run --release -p latchkey-bench -- --pages-only    # (h) alone; prints its ratio, writes nothing\n\
             cargo run --release -p latchkey-bench -- --only-metrics-overhead --no-write   # (#21) alone\n\
             cargo run --release -p latchkey-bench -- --backend redb      # all but PostgreSQL's part: no PostgreSQL needed\n\
             cargo run --release -p latchkey-bench -- --backend postgres  # (#22) PostgreSQL beside redb alone; prints it, writes nothing\n\
             bench/callgrind-metrics.sh                               # (#21) instructions per token check, metrics off and on\n```\n\n\
             It builds `target/release/latchkey` first (`cargo build --release --bin latchkey`; \
             `--server PATH` runs another binary instead), works in a temporary directory that it \
             removes, talks to 127.0.0.1 only, and writes this file (`--no-write` prints the \
             table only). `--seconds` and `--warmup-seconds` set the length of each load."
        );
        let _ = writeln!(
            text,
            "\nPostgreSQL's part needs PostgreSQL's programs on this machine: by default it \
             makes a throwaway cluster in its temporary directory with `initdb` and `pg_ctl` \
             (the newest `/usr/lib/postgresql/<version>/bin`, Debian's `postgresql` package, \
             else `pg_config --bindir`; run as root, the cluster runs as the `postgres` user) \
             and stops it at the end; `--postgres-url URL` (or `LATCHKEY_BENCH_POSTGRES_URL`) \
             names an existing server on this machine instead, on which the run creates a \
             database of its own and drops it at the end."
        );
        text
    }
}

/// The head of the load phases' table.
pub const PHASES_HEADER: &str = "| phase | conns | answers | rate | p50 ms | p99 ms | max ms | non-200 / failed | server CPU µs/req (user + kernel) | server cores (threads) | client cores | other processes' cores | reads/req | server RSS / HWM after, MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// One phase as a row of the load phases' table.
pub fn phase_row(phase: &Phase) -> String {
    let outcome = &phase.outcome;
    let answers = outcome.completed();
    let [server_cores, client_cores, other_cores] = phase.cores_texts();
    format!(
        "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {} / {} | {} | {} | {} | {} | {} | {} |",
        phase.name,
        phase.connections,
        thousands(answers),
        rate_text(phase.rate()),
        outcome.percentile_ms(50.0),
        outcome.percentile_ms(99.0),
        outcome.max_ms(),
        outcome.unexpected,
        outcome.failed,
        phase.cpu_per_answer_text(),
        server_cores,
        client_cores,
        other_cores,
        phase.server_reads.map_or_else(
            || "?".to_owned(),
            |reads| if answers == 0 {
                "?".to_owned()
            } else {
                format!("{:.2}", reads as f64 / answers as f64)
            }
        ),
        phase.server_memory_after.as_ref().map_or_else(
            || "?".to_owned(),
            |memory| format!(
                "{:.1} / {:.1}",
                kib_to_mib(memory.rss_kib),
                kib_to_mib(memory.hwm_kib)
            )
        ),
    )
}
