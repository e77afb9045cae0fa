//! `latchkey-bench`: the one reproducible benchmark (issue #8). It seeds stores through the
//! library's `Store` API (`seed`), runs the release server (`target/release/latchkey serve`)
//! as a child process on loopback (`servers`), loads it with its own HTTP/1.1 keep-alive client
//! (`load`, 2 worker threads), compares it with a minimal hyper server (this binary
//! re-executed with `--hello-server`), samples /proc meanwhile (`procfs`), prints a table and
//! writes it, with the measurements behind every missed target, to BENCHMARKS.md (`report`).
//! This file holds the command line and the order of the run.
//!
//! `cargo run --release -p latchkey-bench [-- --large-users N --large-sessions N | --skip-large | --pages-only]`
//! (`-- --forward-auth-only` runs the forward-auth phase alone and writes nothing; `-- --backend
//! postgres` runs PostgreSQL's part (`postgres`, `load::postgres`) alone, `--backend redb` all
//! but it)

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;

use latchkey::Config;
use latchkey::auth::password::{Password, hash_once};
use latchkey::config::{AUTO_CACHE_FILE_FRACTION, AUTO_CACHE_MAX_MIB, AUTO_CACHE_MIN_MIB};

/// Progress lines on stderr; stdout carries only the results table.
macro_rules! progress {
    ($($argument:tt)*) => { $crate::progress(format_args!($($argument)*)) };
}

mod load;
mod postgres;
mod procfs;
mod report;
mod seed;
mod servers;

use crate::load::client::CLIENT_THREADS;
use crate::load::metrics_overhead::measure_metrics_overhead;
use crate::load::postgres::{PostgresResults, PostgresSide, measure_postgres};
use crate::load::{
    Argon2Limit, FORWARD_AUTH_ENV, FORWARD_AUTH_NAME, LargeResults, RATE_CONNECTIONS, Requests,
    Timing, argon2_limit, forward_auth_pair, measure_large_store, measure_pages_only,
    measure_small_store,
};
use crate::postgres::{PostgresServer, stop_throwaway_cluster};
use crate::report::Report;
use crate::report::render::{PHASES_HEADER, phase_row};
use crate::seed::{
    PASSWORD, PUBLIC_URL, SIGN_IN_USERS, SMALL_USERS, SeedPlan, SeedTarget, TOKEN_SESSIONS,
    seed_note, seed_store,
};
use crate::servers::{ChildServer, hello_server, kill_started_servers};

pub type BenchResult<T> = Result<T, Box<dyn Error>>;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "latchkey-bench",
    about = "Benchmarks the release server on loopback and writes BENCHMARKS.md"
)]
pub struct Args {
    /// Users in the large store (f).
    #[arg(long, default_value_t = 1_000_000)]
    pub large_users: u64,
    /// Sessions in the large store (f).
    #[arg(long, default_value_t = 5_000_000)]
    pub large_sessions: u64,
    /// Skip the large store (f, and its start time in g).
    #[arg(long)]
    pub skip_large: bool,
    /// Measured seconds per load phase.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Warm-up seconds before each measured window.
    #[arg(long, default_value_t = 1)]
    pub warmup_seconds: u64,
    /// The server binary to run; by default `latchkey` next to this binary, built first with
    /// `cargo build --release --bin latchkey` so that it matches the sources.
    #[arg(long, value_name = "PATH")]
    pub server: Option<PathBuf>,
    /// Where to write the report (default: BENCHMARKS.md in the workspace's directory).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the report only; do not write BENCHMARKS.md.
    #[arg(long)]
    pub no_write: bool,
    /// Extra environment for the latchkey server, for what-if runs (repeatable), e.g.
    /// `--server-env LATCHKEY_STORE__CACHE_SIZE_MIB=4`.
    #[arg(long, value_name = "NAME=VALUE")]
    pub server_env: Vec<String>,
    /// Run only the metrics-overhead rounds (#21) on the small store, print their ratio, and
    /// write nothing: for checking the cost of recording without a full run.
    #[arg(long)]
    pub only_metrics_overhead: bool,
    /// Run only (h), the sign-in page beside the token check, on the small store, and
    /// print its ratio; BENCHMARKS.md is not written.
    #[arg(long)]
    pub pages_only: bool,
    /// Run only the forward-auth phase (the small store seeded, then `GET /auth/forward`
    /// against `GET /user/current` in alternating rounds) and print it; writes nothing.
    #[arg(long)]
    pub forward_auth_only: bool,
    /// Which stores run: both (PostgreSQL's part after the small store's loads), redb only
    /// (no PostgreSQL needed), or PostgreSQL's part alone (beside the small redb store it is
    /// paired with), which prints it and writes nothing.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    pub backend: BackendChoice,
    /// An existing PostgreSQL server on this machine for PostgreSQL's part
    /// (`postgres://user@host:port/database`), where the run creates a database of its own and
    /// drops it at the end; without it, a throwaway cluster is started with
    /// `scripts/postgres-for-tests` and stopped at the end.
    #[arg(long, value_name = "URL", env = "LATCHKEY_BENCH_POSTGRES_URL")]
    pub postgres_url: Option<String>,
    /// A what-if for PostgreSQL's part: reach the throwaway cluster over its Unix socket
    /// rather than TCP on loopback.
    #[arg(long, conflicts_with = "postgres_url")]
    pub postgres_over_unix_socket: bool,
    /// Internal: serve the minimal hyper "hello" server on this address.
    #[arg(long, value_name = "ADDR", hide = true)]
    pub hello_server: Option<SocketAddr>,
}

/// `--backend`: which stores the run measures.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Both,
    Redb,
    Postgres,
}

impl Args {
    /// Whether one phase runs alone on the small store (`--only-metrics-overhead`,
    /// `--pages-only`, `--forward-auth-only`, `--backend postgres`).
    fn single_phase(&self) -> bool {
        self.only_metrics_overhead
            || self.pages_only
            || self.forward_auth_only
            || self.backend == BackendChoice::Postgres
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match args.hello_server {
        Some(address) => hello_server(address),
        None => run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "latchkey-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

pub fn progress(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "bench: {message}");
}

fn run(args: &Args) -> BenchResult<()> {
    let run_started = Instant::now();
    if args.seconds == 0 || args.seconds > 60 || args.warmup_seconds > 60 {
        return Err("--seconds must be 1 to 60 and --warmup-seconds at most 60".into());
    }
    if !args.skip_large && (args.large_users == 0 || args.large_sessions == 0) {
        return Err("--large-users and --large-sessions must be at least 1".into());
    }
    let paths = Paths::locate(args)?;
    let mut report = Report::new(args, &paths);
    let build_started = Instant::now();
    paths.ensure_server_built(args)?;
    report.phase("build check of the server binary", build_started.elapsed());

    let work = WorkDir::create()?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CLIENT_THREADS)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    client.spawn(clean_up_on_signal());
    let timing = Timing {
        warmup: Duration::from_secs(args.warmup_seconds),
        measured: Duration::from_secs(args.seconds),
    };
    // The server runs with `LATCHKEY_SERVER__PUBLIC_URL` set to this, and the seeded tokens
    // carry the issuer it makes of it.
    let mut config = Config::default();
    config.server.public_url = Some(PUBLIC_URL.parse()?);
    let cost = latchkey::app::password_cost(&config);
    let hasher_threads = config.password.effective_hasher_threads();
    report.config_note = format!(
        "argon2id m={} KiB, t={}, p={}; {} hasher threads; redb cache {}; verified-token \
         cache {} entries, freed after {} s without a token check",
        cost.memory_kib,
        cost.iterations,
        cost.parallelism,
        hasher_threads,
        match config.store.cache_size_mib {
            Some(mib) => format!("{mib} MiB"),
            None => format!(
                "1/{} of the store file when the server starts, {} to {} MiB",
                AUTO_CACHE_FILE_FRACTION, AUTO_CACHE_MIN_MIB, AUTO_CACHE_MAX_MIB
            ),
        },
        config.auth.verified_token_cache_entries,
        config.auth.verified_token_cache_release_after_idle_seconds
    );

    // (a) the argon2 limit, measured here with nothing else running (not needed for a single
    // phase run alone).
    let started = Instant::now();
    let argon2 = if args.single_phase() {
        Argon2Limit::not_measured()
    } else {
        progress!(
            "(a) argon2id limit: {hasher_threads} threads for {} s",
            args.seconds
        );
        let argon2 = argon2_limit(cost, hasher_threads, timing.measured)?;
        progress!("(a) {:.1} hashes/s", argon2.hashes_per_second);
        argon2
    };
    report.phase("(a) argon2 limit", started.elapsed());

    // The small store.
    let started = Instant::now();
    let password_hash = hash_once(&Password::new(PASSWORD.to_owned()), cost)?;
    let small_dir = work.path.join("small");
    let small_plan = SeedPlan {
        label: "small",
        users: SMALL_USERS,
        sessions: TOKEN_SESSIONS,
        sign_in_users: SIGN_IN_USERS,
    };
    let small = seed_store(
        SeedTarget::Redb(&small_dir),
        &small_plan,
        &password_hash,
        &config,
    )?;
    report.phase("seed the small store", started.elapsed());
    for (label, duration) in &small.timings {
        report.phase(&format!("  small: {label}"), *duration);
    }
    report.seed_notes.push(seed_note(&small_plan, &small));
    let requests = Requests::build(&small);

    let postgres_part = PostgresPart {
        client: &client,
        paths: &paths,
        work_dir: &work.path,
        redb_dir: &small_dir,
        redb_requests: &requests,
        timing: &timing,
        argon2_cost: (cost, hasher_threads),
        password_hash: &password_hash,
        config: &config,
    };
    if args.backend == BackendChoice::Postgres {
        drop(small);
        let postgres = postgres_part.run(args, &mut report)?;
        report.postgres_rows(&postgres);
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "{}", report.table());
        let _ = writeln!(stdout, "{}", report.postgres_section(&postgres, None));
        let _ = writeln!(stdout, "{PHASES_HEADER}");
        for phase in postgres.phases() {
            let _ = writeln!(stdout, "{}", phase_row(phase));
        }
        return Ok(());
    }
    if args.single_phase() {
        drop(small);
        return run_single_phase(args, &client, &paths, &small_dir, &requests, &timing);
    }

    let started = Instant::now();
    let small_results = measure_small_store(
        &client,
        &paths,
        &small_dir,
        &requests,
        &timing,
        (cost, hasher_threads),
    )?;
    report.phase("small store: loads, idle wait, restarts", started.elapsed());
    let small_file_bytes = file_size(&small_dir.join("latchkey.redb"));

    // (#22) PostgreSQL beside the small store.
    let postgres = if args.backend == BackendChoice::Both {
        Some(postgres_part.run(args, &mut report)?)
    } else {
        None
    };

    // (f) the large store.
    let large_results = if args.skip_large {
        None
    } else {
        let started = Instant::now();
        let large_dir = work.path.join("large");
        let large_plan = SeedPlan {
            label: "large",
            users: args.large_users,
            sessions: args.large_sessions,
            sign_in_users: 0,
        };
        let large = seed_store(
            SeedTarget::Redb(&large_dir),
            &large_plan,
            &password_hash,
            &config,
        )?;
        report.phase("seed the large store", started.elapsed());
        for (label, duration) in &large.timings {
            report.phase(&format!("  large: {label}"), *duration);
        }
        let seeded_bytes = file_size(&large_dir.join("latchkey.redb"));
        report.seed_notes.push(seed_note(&large_plan, &large));
        let large_requests = Requests::build(&large);
        drop(large);
        let started = Instant::now();
        let results = measure_large_store(&client, &paths, &large_dir, &large_requests, &timing)?;
        report.phase("large store: loads, restarts", started.elapsed());
        Some(LargeResults {
            seeded_bytes,
            file_bytes: file_size(&large_dir.join("latchkey.redb")),
            results,
        })
    };

    report.total = run_started.elapsed();
    report.build_rows(
        &argon2,
        &small_results,
        small_file_bytes,
        postgres.as_ref(),
        large_results.as_ref(),
        cost,
    );
    let text = report.render(
        &argon2,
        &small_results,
        postgres.as_ref(),
        large_results.as_ref(),
        cost,
    );
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{}", report.table());
    if !args.no_write {
        std::fs::write(&paths.output, &text)
            .map_err(|error| format!("cannot write {}: {error}", paths.output.display()))?;
        progress!("wrote {}", paths.output.display());
    }
    progress!("whole run: {:.1} s", report.total.as_secs_f64());
    Ok(())
}

/// What PostgreSQL's part needs from the run: the client, the paths, the redb small store it
/// is paired with and that store's requests, and what seeding needs.
struct PostgresPart<'a> {
    client: &'a tokio::runtime::Runtime,
    paths: &'a Paths,
    work_dir: &'a Path,
    redb_dir: &'a Path,
    redb_requests: &'a Requests,
    timing: &'a Timing,
    argon2_cost: (latchkey::auth::password::HashCost, usize),
    password_hash: &'a latchkey::model::PasswordHashString,
    config: &'a Config,
}

impl PostgresPart<'_> {
    /// Starts (or connects to) the PostgreSQL server, seeds the small store's plan into a fresh
    /// database there, measures it beside the redb small store, and drops the database (and
    /// stops a throwaway cluster) whatever the outcome.
    fn run(&self, args: &Args, report: &mut Report) -> BenchResult<PostgresResults> {
        let started = Instant::now();
        progress!(
            "(#22) PostgreSQL: {}",
            if args.postgres_url.is_some() {
                "the server --postgres-url names"
            } else {
                "a throwaway cluster (initdb, pg_ctl start)"
            }
        );
        let server = PostgresServer::start_or_connect(
            args.postgres_url.as_deref(),
            &self.work_dir.join("postgres-cluster"),
            args.postgres_over_unix_socket,
        )?;
        let database = server.create_fresh_database()?;
        report.phase(
            "(#22) start PostgreSQL, create the database",
            started.elapsed(),
        );
        let outcome = self.seed_and_measure(&server, &database, report);
        let dropped = server.drop_database(&database);
        drop(server);
        let results = outcome?;
        dropped?;
        Ok(results)
    }

    fn seed_and_measure(
        &self,
        server: &PostgresServer,
        database: &crate::postgres::FreshDatabase,
        report: &mut Report,
    ) -> BenchResult<PostgresResults> {
        let started = Instant::now();
        let plan = SeedPlan {
            label: "postgres",
            users: SMALL_USERS,
            sessions: TOKEN_SESSIONS,
            sign_in_users: SIGN_IN_USERS,
        };
        let seeded = seed_store(
            SeedTarget::Postgres(&database.url),
            &plan,
            self.password_hash,
            self.config,
        )?;
        report.phase(
            "(#22) seed the small store into PostgreSQL",
            started.elapsed(),
        );
        for (label, duration) in &seeded.timings {
            report.phase(&format!("  postgres: {label}"), *duration);
        }
        report.seed_notes.push(format!(
            "{} (the small store's plan, in PostgreSQL)",
            seed_note(&plan, &seeded)
        ));
        let requests = Requests::build(&seeded);
        let started = Instant::now();
        let results = measure_postgres(
            self.client,
            self.paths,
            self.redb_dir,
            self.redb_requests,
            &PostgresSide {
                server,
                database,
                data_dir: &self.work_dir.join("postgres-node"),
                requests: &requests,
            },
            self.timing,
            self.argon2_cost,
        )?;
        report.phase(
            "(#22) PostgreSQL beside redb: loads, sign-ins, argon2 limits",
            started.elapsed(),
        );
        Ok(results)
    }
}

/// `--only-metrics-overhead`, `--pages-only` or `--forward-auth-only`: that phase alone on the
/// seeded small store, printed; nothing is written.
fn run_single_phase(
    args: &Args,
    client: &tokio::runtime::Runtime,
    paths: &Paths,
    small_dir: &Path,
    requests: &Requests,
    timing: &Timing,
) -> BenchResult<()> {
    let mut stdout = std::io::stdout();
    if args.only_metrics_overhead {
        let overhead = measure_metrics_overhead(client, paths, small_dir, requests, timing)?;
        for (off, on) in &overhead.rounds {
            let _ = writeln!(
                stdout,
                "metrics off {:.0}/s, on {:.0}/s: {:.1}%",
                off.rate(),
                on.rate(),
                on.rate() / off.rate().max(1e-9) * 100.0
            );
        }
        let _ = writeln!(
            stdout,
            "median round: {:.1}% ({} requests recorded by the server with metrics)",
            overhead.ratio() * 100.0,
            overhead.recorded_requests
        );
    } else if args.pages_only {
        let pair = measure_pages_only(client, paths, small_dir, requests, timing)?;
        let _ = writeln!(
            stdout,
            "(h) GET /sign-in {:.0}/s, GET /user/current (signed token) {:.0}/s in the median \
             round, {RATE_CONNECTIONS} connections each: {:.0}% (rounds {}); target ≥ 50%",
            pair.subject.rate(),
            pair.baseline.rate(),
            pair.ratio() * 100.0,
            pair.rounds_text()
        );
    } else {
        let mut server = ChildServer::start_latchkey_with(paths, small_dir, &FORWARD_AUTH_ENV)?;
        server.wait_ready()?;
        let pair = forward_auth_pair(client, &server, requests, timing)?;
        server.stop()?;
        let _ = writeln!(
            stdout,
            "{FORWARD_AUTH_NAME}: {:.0}/s against GET /user/current, signed token: {:.0}/s in \
             the median round; forward/current {:.1}% (rounds {}), target ≥ 90%. Server CPU \
             per answer in that round, µs (user + kernel): forward {}, current {}; other \
             processes' cores: forward {}, current {}",
            pair.subject.rate(),
            pair.baseline.rate(),
            pair.ratio() * 100.0,
            pair.rounds_text(),
            pair.subject.cpu_per_answer_text(),
            pair.baseline.cpu_per_answer_text(),
            pair.subject.cores_texts()[2],
            pair.baseline.cores_texts()[2]
        );
    }
    Ok(())
}

/// What an interrupted run (Ctrl-C, SIGTERM) must clean up besides the servers it started: its
/// temporary directory.
static WORK_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Waits on the client runtime for SIGINT or SIGTERM, then kills the children this run
/// started (by their ids), removes the temporary directory and exits.
async fn clean_up_on_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    kill_started_servers();
    stop_throwaway_cluster();
    if let Some(directory) = WORK_DIR
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        let _ = std::fs::remove_dir_all(directory);
    }
    progress!("interrupted: killed the servers it started and removed its temporary directory");
    std::process::exit(130);
}

/// Where things are: the server binary, the workspace's directory, the report.
#[derive(Debug)]
pub struct Paths {
    pub server: PathBuf,
    pub server_env: Vec<(String, String)>,
    pub own_exe: PathBuf,
    pub target_dir: Option<PathBuf>,
    pub workspace_dir: PathBuf,
    pub output: PathBuf,
}

impl Paths {
    fn locate(args: &Args) -> BenchResult<Paths> {
        let own_exe = std::env::current_exe()?;
        let exe_dir = own_exe
            .parent()
            .ok_or("this binary has no parent directory")?
            .to_path_buf();
        // The bench is a member of the server's workspace, one directory below its root.
        let workspace_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("the bench's directory has no parent")?
            .to_path_buf();
        let server = args
            .server
            .clone()
            .unwrap_or_else(|| exe_dir.join("latchkey"));
        let output = args
            .output
            .clone()
            .unwrap_or_else(|| workspace_dir.join("BENCHMARKS.md"));
        let mut server_env = Vec::new();
        for variable in &args.server_env {
            let (name, value) = variable
                .split_once('=')
                .ok_or_else(|| format!("--server-env {variable}: expected NAME=VALUE"))?;
            server_env.push((name.to_owned(), value.to_owned()));
        }
        Ok(Paths {
            server,
            server_env,
            target_dir: exe_dir.parent().map(Path::to_path_buf),
            own_exe,
            workspace_dir,
            output,
        })
    }

    /// `cargo run -p latchkey-bench` builds only this binary, so build the server too (a
    /// no-op when it is fresh) rather than measure a stale one.
    fn ensure_server_built(&self, args: &Args) -> BenchResult<()> {
        if args.server.is_some() {
            return Ok(());
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        progress!("building the server: cargo build --release --bin latchkey");
        let mut command = Command::new(cargo);
        command
            .args(["build", "--release", "--bin", "latchkey"])
            .current_dir(&self.workspace_dir)
            .stdin(Stdio::null());
        if let Some(target_dir) = &self.target_dir {
            command.env("CARGO_TARGET_DIR", target_dir);
        }
        // `cargo run` sets the package's variables for this process. Build scripts that
        // watch them (ring's watches CARGO_PKG_NAME and CARGO_MANIFEST_DIR) would see a change
        // from the build `cargo run` just made and rebuild ring and everything above it:
        // three minutes of a run, every run.
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            let set_by_cargo_run = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|prefix| name_text.starts_with(prefix))
                || name_text == "CARGO_PRIMARY_PACKAGE";
            if set_by_cargo_run {
                command.env_remove(&name);
            }
        }
        let status = command
            .status()
            .map_err(|error| format!("cannot run cargo (pass --server PATH instead): {error}"))?;
        if !status.success() {
            return Err(format!("cargo build --release --bin latchkey failed: {status}").into());
        }
        if !self.server.is_file() {
            return Err(format!("no server binary at {}", self.server.display()).into());
        }
        Ok(())
    }
}

/// A fresh temporary directory, removed at the end of the run (even a failed one).
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create() -> BenchResult<WorkDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("latchkey-bench-{}-{nanos:x}", std::process::id()));
        std::fs::create_dir(&path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        {
            let mut directory = WORK_DIR.lock().unwrap_or_else(PoisonError::into_inner);
            *directory = Some(path.clone());
        }
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        {
            let mut directory = WORK_DIR.lock().unwrap_or_else(PoisonError::into_inner);
            *directory = None;
        }
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

/// Sleeps on the benchmark's main thread (never a runtime thread, which the lint is about).
#[allow(clippy::disallowed_methods)]
pub fn pause(duration: Duration) {
    std::thread::sleep(duration);
}
