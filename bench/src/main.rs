//! `latchkey-bench`: the one reproducible benchmark (issue #8). It seeds stores through the
//! library's `Store` API, runs the release server (`target/release/latchkey serve`) as a child
//! process on loopback, loads it with its own HTTP/1.1 keep-alive client (tokio, 2 worker
//! threads), compares it with a minimal hyper server (this binary re-executed with
//! `--hello-server`), prints a table and writes it, with the measurements behind every missed
//! target, to BENCHMARKS.md.
//!
//! `cargo run --release -p latchkey-bench [-- --large-users N --large-sessions N | --skip-large]`

use std::collections::{BTreeMap, VecDeque};
use std::error::Error;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use latchkey::auth::email::EmailAddress;
use latchkey::auth::password::{HashCost, Password, hash_once};
use latchkey::auth::token::{KeyRing, TokenClaims, generate_signing_key};
use latchkey::auth::{
    ClientInfo, api_token_hash, generate_api_token, new_session, user_permissions,
};
use latchkey::config::{Config, Origin};
use latchkey::model::{
    ApiToken, NewUser, PasswordHashString, PermissionSet, Role, Session, SessionKind, Status, User,
    UserId, now_unix_seconds,
};
use latchkey::store::Store;

type BenchResult<T> = Result<T, Box<dyn Error>>;

/// The tokens' issuer: fixed, so that tokens signed here verify whatever port the server has.
const PUBLIC_URL: &str = "http://bench.invalid";
const PASSWORD: &str = "correct horse battery staple";
const API: &str = "/frontend/api/v1";
/// Users that sign in during (a) and (d); they share one password and one stored hash.
const SIGN_IN_USERS: usize = 16;
/// Distinct sessions (and their bound API tokens) the token checks cycle over.
const TOKEN_SESSIONS: u64 = 10_000;
/// The small store: its users hold the token sessions, 5 each (as 5,000,000 / 1,000,000).
const SMALL_USERS: u64 = 2_000;
/// Rows per `insert_sessions` transaction.
const SEED_BATCH: usize = 100_000;
/// redb's page cache while seeding (the server itself runs with its configured cache).
const SEED_CACHE_BYTES: usize = 512 << 20;
const SIGN_IN_CONNECTIONS: usize = 16;
const RATE_CONNECTIONS: usize = 64;
const LATENCY_CONNECTIONS: usize = 8;
const CLIENT_THREADS: usize = 2;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REQUESTS_PER_CONNECTION: u64 = 20_000_000;
const MAX_RESPONSE_BYTES: usize = 1 << 20;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const RESTARTS: usize = 3;
const IDLE_AFTER_LOAD: Duration = Duration::from_secs(10);
/// /proc times are in USER_HZ, which the kernel ABI fixes at 100.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
const MIB: f64 = 1024.0 * 1024.0;
/// Before each load: wait until the machine uses less than this many cores...
const QUIET_CORES: f64 = 0.3;
/// ...but no longer than this.
const QUIET_WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Loads measured while others used more than `QUIET_CORES` are measured again, up to this
/// many attempts in all.
const MEASURE_ATTEMPTS: u32 = 3;
/// Rate windows against the hello server: this many rounds of a hello and a latchkey window,
/// each half the measured seconds, hello first in odd rounds and latchkey first in even ones;
/// the ratio is the median round's. A machine shared with others drifts by tens of percent
/// within a minute (hello alone measured 60,000 to 86,000/s in one run), so a ratio of two
/// windows measured minutes apart says more about the neighbours than about the server, and
/// three rounds left the median a round's noise away from the next run's.
const PAIRED_ROUNDS: usize = 5;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "latchkey-bench",
    about = "Benchmarks the release server on loopback and writes BENCHMARKS.md"
)]
struct Args {
    /// Users in the large store (f).
    #[arg(long, default_value_t = 1_000_000)]
    large_users: u64,
    /// Sessions in the large store (f).
    #[arg(long, default_value_t = 5_000_000)]
    large_sessions: u64,
    /// Skip the large store (f, and its start time in g).
    #[arg(long)]
    skip_large: bool,
    /// Measured seconds per load phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Warm-up seconds before each measured window.
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    /// The server binary to run; by default `latchkey` next to this binary, built first with
    /// `cargo build --release --bin latchkey` so that it matches the sources.
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
    /// Where to write the report (default: BENCHMARKS.md in the crate's directory).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print the report only; do not write BENCHMARKS.md.
    #[arg(long)]
    no_write: bool,
    /// Extra environment for the latchkey server, for what-if runs (repeatable), e.g.
    /// `--server-env LATCHKEY_STORE__CACHE_SIZE_MIB=4`.
    #[arg(long, value_name = "NAME=VALUE")]
    server_env: Vec<String>,
    /// Internal: serve the minimal hyper "hello" server on this address.
    #[arg(long, value_name = "ADDR", hide = true)]
    hello_server: Option<SocketAddr>,
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

fn progress(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "bench: {message}");
}

macro_rules! progress {
    ($($argument:tt)*) => { progress(format_args!($($argument)*)) };
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

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
    let config = Config::default();
    let cost = latchkey::app::password_cost(&config);
    let hasher_threads = config.password.effective_hasher_threads();
    let issuer = issuer()?;
    report.config_note = format!(
        "argon2id m={} KiB, t={}, p={}; {} hasher threads; redb cache {} MiB; \
         verified-token cache {} entries",
        cost.memory_kib,
        cost.iterations,
        cost.parallelism,
        hasher_threads,
        config.store.cache_size_mib,
        config.auth.verified_token_cache_entries
    );

    // (a) the argon2 limit, measured here with nothing else running.
    let started = Instant::now();
    progress!(
        "(a) argon2id limit: {hasher_threads} threads for {} s",
        args.seconds
    );
    let argon2 = argon2_limit(cost, hasher_threads, timing.measured)?;
    report.phase("(a) argon2 limit", started.elapsed());
    progress!("(a) {:.1} hashes/s", argon2.hashes_per_second);

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
    let small = seed_store(&small_dir, &small_plan, &password_hash, &issuer, &config)?;
    report.phase("seed the small store", started.elapsed());
    for (label, duration) in &small.timings {
        report.phase(&format!("  small: {label}"), *duration);
    }
    report.seed_notes.push(seed_note(&small_plan, &small));
    let requests = Requests::build(&small);

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
        let large = seed_store(&large_dir, &large_plan, &password_hash, &issuer, &config)?;
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
        large_results.as_ref(),
        cost,
    );
    let text = report.render(&argon2, &small_results, large_results.as_ref(), cost);
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

/// What an interrupted run (Ctrl-C, SIGTERM) must clean up: the child servers it started and
/// its temporary directory.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
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
    if let Ok(children) = CHILDREN.lock() {
        for pid in children.iter() {
            if let Some(pid) = i32::try_from(*pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
    if let Ok(directory) = WORK_DIR.lock()
        && let Some(directory) = directory.as_ref()
    {
        let _ = std::fs::remove_dir_all(directory);
    }
    progress!("interrupted: killed the servers it started and removed its temporary directory");
    std::process::exit(130);
}

struct Timing {
    warmup: Duration,
    measured: Duration,
}

/// Where things are: the server binary, the workspace's directory, the report.
struct Paths {
    server: PathBuf,
    server_env: Vec<(String, String)>,
    own_exe: PathBuf,
    target_dir: Option<PathBuf>,
    workspace_dir: PathBuf,
    output: PathBuf,
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
        if let Ok(mut directory) = WORK_DIR.lock() {
            *directory = Some(path.clone());
        }
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        if let Ok(mut directory) = WORK_DIR.lock() {
            *directory = None;
        }
    }
}

fn issuer() -> BenchResult<String> {
    let origin: Origin = PUBLIC_URL.parse()?;
    let mut config = Config::default();
    config.server.public_url = Some(origin);
    Ok(config.public_origin().to_string())
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

// ---------------------------------------------------------------------------------------------
// (a) the argon2 limit
// ---------------------------------------------------------------------------------------------

struct Argon2Limit {
    /// Cores that other processes used meanwhile.
    others_cores: Option<f64>,
    threads: usize,
    hashes: u64,
    hashes_per_second: f64,
    /// One hash on one otherwise idle core.
    seconds_per_hash: f64,
}

/// `threads` threads, each hashing with one reused buffer exactly as a server hasher does.
fn argon2_limit(cost: HashCost, threads: usize, duration: Duration) -> BenchResult<Argon2Limit> {
    let params = argon2::Params::new(cost.memory_kib, cost.iterations, cost.parallelism, Some(32))
        .map_err(|error| format!("argon2 parameters: {error}"))?;
    wait_for_quiet();
    let machine_before = machine_busy_ticks();
    let own_before = cpu_sample("/proc/self", false);
    let end = Instant::now() + duration;
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let params = params.clone();
            std::thread::spawn(move || -> Result<(u64, Duration), String> {
                let argon2 = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params.clone(),
                );
                let mut memory = vec![argon2::Block::default(); params.block_count()];
                let mut output = [0u8; 32];
                let salt = *b"latchkey-bench-s";
                let started = Instant::now();
                let mut hashes = 0u64;
                while Instant::now() < end && hashes < 1_000_000 {
                    argon2
                        .hash_password_into_with_memory(
                            PASSWORD.as_bytes(),
                            &salt,
                            &mut output,
                            &mut memory[..],
                        )
                        .map_err(|error| error.to_string())?;
                    hashes += 1;
                }
                Ok((hashes, started.elapsed()))
            })
        })
        .collect();
    let mut hashes = 0;
    let mut hashes_per_second = 0.0;
    for handle in handles {
        let (count, elapsed) = handle
            .join()
            .map_err(|_| "an argon2 thread failed")?
            .map_err(|error| format!("argon2: {error}"))?;
        hashes += count;
        hashes_per_second += count as f64 / elapsed.as_secs_f64().max(1e-9);
    }
    let window = duration.as_secs_f64().max(1e-9);
    let others_cores = match (
        machine_before,
        machine_busy_ticks(),
        CpuUse::between(
            own_before.as_ref(),
            cpu_sample("/proc/self", false).as_ref(),
            window,
        ),
    ) {
        (Some(before), Some(after), Some(own)) => Some(
            (after.saturating_sub(before) as f64 / CLOCK_TICKS_PER_SECOND / window - own.cores)
                .max(0.0),
        ),
        _ => None,
    };
    // One hash alone, for the start-up explanation (the server makes a dummy hash at start).
    let single_started = Instant::now();
    let mut memory = vec![argon2::Block::default(); params.block_count()];
    let mut output = [0u8; 32];
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params.clone(),
    )
    .hash_password_into_with_memory(
        PASSWORD.as_bytes(),
        b"latchkey-bench-s",
        &mut output,
        &mut memory[..],
    )
    .map_err(|error| format!("argon2: {error}"))?;
    Ok(Argon2Limit {
        others_cores,
        threads: threads.max(1),
        hashes,
        hashes_per_second,
        seconds_per_hash: single_started.elapsed().as_secs_f64(),
    })
}

// ---------------------------------------------------------------------------------------------
// Seeding, through the Store API, before the server holds the file
// ---------------------------------------------------------------------------------------------

struct SeedPlan {
    label: &'static str,
    users: u64,
    sessions: u64,
    sign_in_users: usize,
}

struct Seeded {
    sign_in_emails: Vec<String>,
    /// Signed session tokens of the token sessions, in cycling order.
    session_tokens: Vec<String>,
    /// The API tokens bound to the same sessions.
    api_tokens: Vec<String>,
    /// The distinct users those sessions belong to.
    token_users: usize,
    timings: Vec<(String, Duration)>,
}

fn new_user(email: &str, password_hash: &PasswordHashString) -> BenchResult<NewUser> {
    let address = EmailAddress::parse(email).ok_or_else(|| format!("bad email {email}"))?;
    Ok(NewUser {
        email: email.to_owned(),
        normalized_email: address.normalized,
        password_hash: Some(password_hash.clone()),
        role: Role::User,
        status: Status::Active,
        parent_id: None,
        first_name: None,
        last_name: None,
        permissions: Role::User.default_permissions(),
        email_verified: true,
    })
}

/// Users, sessions and API tokens in transactions of `SEED_BATCH` rows; one session in every
/// `sessions / TOKEN_SESSIONS` gets a bound API token and a signed token, signed with the
/// store's key exactly as the server signs them.
fn seed_store(
    directory: &Path,
    plan: &SeedPlan,
    password_hash: &PasswordHashString,
    issuer: &str,
    config: &Config,
) -> BenchResult<Seeded> {
    let label = plan.label;
    let store = Store::open(&directory.join("latchkey.redb"), SEED_CACHE_BYTES)?;
    let now = now_unix_seconds();
    let mut timings = Vec::new();
    let key = generate_signing_key(now)?;
    store.insert_active_signing_key(&key)?;
    let key_ring = KeyRing::from_stored(&store.signing_keys()?)?;

    let mut sign_in_emails = Vec::with_capacity(plan.sign_in_users);
    for index in 0..plan.sign_in_users {
        let email = format!("sign-in-{index}@bench.invalid");
        store.insert_user(new_user(&email, password_hash)?, now)?;
        sign_in_emails.push(email);
    }

    let started = Instant::now();
    let user_count = usize::try_from(plan.users)?;
    let mut user_ids: Vec<UserId> = Vec::with_capacity(user_count);
    let mut template: Option<User> = None;
    let mut last_report = Instant::now();
    let mut batch = Vec::with_capacity(SEED_BATCH.min(user_count));
    let mut done: u64 = 0;
    for index in 0..plan.users {
        batch.push(new_user(
            &format!("user-{index}@{label}.bench.invalid"),
            password_hash,
        )?);
        if batch.len() == SEED_BATCH || index + 1 == plan.users {
            let inserted = store.insert_users(std::mem::take(&mut batch), now)?;
            done += inserted.len() as u64;
            user_ids.extend(inserted.iter().map(|user| user.id));
            if template.is_none() {
                template = inserted.into_iter().next();
            }
        }
        if last_report.elapsed() >= Duration::from_secs(15) && done > 0 {
            last_report = Instant::now();
            let elapsed = started.elapsed().as_secs_f64();
            let left = (plan.users - done) as f64 * elapsed / done as f64;
            progress!(
                "seed {label}: {done} of {} users ({:.0}/s, about {left:.0} s left)",
                plan.users,
                done as f64 / elapsed
            );
        }
    }
    let mut template = template.ok_or("no users to seed")?;
    let users_took = started.elapsed();
    progress!(
        "seed {label}: {} users in {:.1} s ({:.0}/s, in transactions of {SEED_BATCH})",
        plan.users,
        users_took.as_secs_f64(),
        plan.users as f64 / users_took.as_secs_f64().max(1e-9)
    );
    timings.push((
        format!(
            "{} users, `insert_users` in transactions of {}",
            thousands(plan.users),
            thousands(SEED_BATCH as u64)
        ),
        users_took,
    ));

    let started = Instant::now();
    let expire = now.saturating_add(i64::try_from(config.session.long_term_seconds)?);
    let client = ClientInfo {
        remote_ip: "127.0.0.1".to_owned(),
        user_agent: "latchkey-bench".to_owned(),
    };
    let token_sessions = TOKEN_SESSIONS.min(plan.sessions);
    let stride = (plan.sessions / token_sessions.max(1)).max(1);
    let capacity = usize::try_from(token_sessions)?;
    let mut session_tokens = Vec::with_capacity(capacity);
    let mut api_tokens = Vec::with_capacity(capacity);
    let mut bound_tokens = Vec::with_capacity(capacity);
    let mut token_users = std::collections::HashSet::new();
    let mut batch: Vec<Session> =
        Vec::with_capacity(SEED_BATCH.min(usize::try_from(plan.sessions)?));
    let mut last_report = Instant::now();
    for index in 0..plan.sessions {
        let user_index = usize::try_from(index % plan.users)?;
        template.id = user_ids[user_index];
        let is_token_session = index % stride == 0 && index / stride < token_sessions;
        let api_token = if is_token_session {
            Some(generate_api_token()?)
        } else {
            None
        };
        let session = new_session(
            &template,
            SessionKind::SignIn,
            now,
            expire,
            &client,
            PermissionSet::empty(),
            api_token.as_deref().map(api_token_hash),
        );
        if let Some(api_token) = api_token {
            let claims = TokenClaims {
                issuer: issuer.to_owned(),
                user_id: template.id,
                session_id: session.id,
                issued_at: session.created,
                expires_at: session.expire,
                permissions: user_permissions(&template, None),
                extra_claims: serde_json::Map::new(),
            };
            session_tokens.push(key_ring.sign(&claims)?);
            token_users.insert(template.id);
            bound_tokens.push(ApiToken {
                hash: api_token_hash(&api_token),
                prefix: api_token.chars().take(8).collect(),
                user_id: template.id,
                session_id: Some(session.id),
                permissions: PermissionSet::empty(),
                restrictions: PermissionSet::empty(),
                created: session.created,
                updated: session.created,
                expires_at: Some(session.expire),
                made_by: None,
            });
            api_tokens.push(api_token);
        }
        batch.push(session);
        if batch.len() >= SEED_BATCH {
            store.insert_sessions(&batch)?;
            batch.clear();
            if last_report.elapsed() >= Duration::from_secs(15) {
                last_report = Instant::now();
                progress!(
                    "seed {label}: {} of {} sessions ({:.0}/s)",
                    index + 1,
                    plan.sessions,
                    (index + 1) as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
    }
    if !batch.is_empty() {
        store.insert_sessions(&batch)?;
    }
    let sessions_took = started.elapsed();
    progress!(
        "seed {label}: {} sessions in {:.1} s",
        plan.sessions,
        sessions_took.as_secs_f64()
    );
    timings.push((
        format!(
            "{} sessions, `insert_sessions` in transactions of {}",
            thousands(plan.sessions),
            thousands(SEED_BATCH as u64)
        ),
        sessions_took,
    ));

    let started = Instant::now();
    for chunk in bound_tokens.chunks(SEED_BATCH) {
        store.insert_api_tokens(chunk)?;
    }
    let tokens_took = started.elapsed();
    timings.push((
        format!(
            "{} session-bound API tokens, `insert_api_tokens` in one transaction",
            thousands(bound_tokens.len() as u64)
        ),
        tokens_took,
    ));
    progress!(
        "seed {label}: {} API tokens in {:.1} s",
        bound_tokens.len(),
        tokens_took.as_secs_f64()
    );
    drop(store);
    Ok(Seeded {
        token_users: token_users.len(),
        sign_in_emails,
        session_tokens,
        api_tokens,
        timings,
    })
}

fn seed_note(plan: &SeedPlan, seeded: &Seeded) -> String {
    format!(
        "{} store: {} sign-in users and {} users, {} sessions; the {} token sessions belong to \
         {} users",
        plan.label,
        plan.sign_in_users,
        thousands(plan.users),
        thousands(plan.sessions),
        thousands(seeded.session_tokens.len() as u64),
        thousands(seeded.token_users as u64)
    )
}

/// The request bytes each load cycles over, built once.
struct Requests {
    sign_in: Arc<Vec<Vec<u8>>>,
    user_current_signed: Arc<Vec<Vec<u8>>>,
    user_current_api: Arc<Vec<Vec<u8>>>,
    sessions_signed: Arc<Vec<Vec<u8>>>,
}

impl Requests {
    fn build(seeded: &Seeded) -> Requests {
        let get = |path: &str, tokens: &[String]| -> Arc<Vec<Vec<u8>>> {
            Arc::new(
                tokens
                    .iter()
                    .map(|token| {
                        format!(
                            "GET {API}{path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\
                             authorization: Bearer {token}\r\n\r\n"
                        )
                        .into_bytes()
                    })
                    .collect(),
            )
        };
        let sign_in = seeded
            .sign_in_emails
            .iter()
            .map(|email| {
                let body = serde_json::json!({ "email": email, "password": PASSWORD }).to_string();
                format!(
                    "POST {API}/auth/sign-in HTTP/1.1\r\nhost: 127.0.0.1\r\n\
                     content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            })
            .collect();
        Requests {
            sign_in: Arc::new(sign_in),
            user_current_signed: get("/user/current", &seeded.session_tokens),
            user_current_api: get("/user/current", &seeded.api_tokens),
            sessions_signed: get("/auth/session", &seeded.session_tokens),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The measurements on each store
// ---------------------------------------------------------------------------------------------

struct SmallResults {
    first_start: Duration,
    idle_before: MemoryStatus,
    idle_before_mappings: Vec<Mapping>,
    sign_ins: Phase,
    /// The argon2 limit measured again right after the sign-ins.
    argon2_after: Argon2Limit,
    /// (b) and (c).
    tokens: TokenLoads,
    mixed_tokens: Phase,
    mixed_sign_ins: Phase,
    idle_after: MemoryStatus,
    idle_after_mappings: Vec<Mapping>,
    peak: MemoryStatus,
    stop: Stopped,
    restarts: Vec<Duration>,
    restart_peaks: Vec<u64>,
    /// An API-token load with the verified-token cache off and a 1 MiB redb cache.
    uncached_load: Phase,
    idle_after_without_caches: MemoryStatus,
}

impl TokenLoads {
    /// The phases of (b) and (c), in the order they ran.
    fn phases(&self) -> [&Phase; 6] {
        [
            &self.signed_rate,
            &self.signed_latency,
            &self.api_rate,
            &self.api_latency,
            &self.sessions_rate,
            &self.sessions_latency,
        ]
    }
}

impl SmallResults {
    /// The phases answered by latchkey, in the order they ran.
    fn latchkey_phases(&self) -> Vec<&Phase> {
        let mut phases = vec![&self.sign_ins];
        phases.extend(self.tokens.phases());
        phases.push(&self.mixed_tokens);
        phases
    }
}

impl LargeMeasured {
    fn latchkey_phases(&self) -> Vec<&Phase> {
        self.tokens.phases().to_vec()
    }
}

struct LargeResults {
    seeded_bytes: u64,
    file_bytes: u64,
    results: LargeMeasured,
}

struct LargeMeasured {
    first_start: Duration,
    idle_before: MemoryStatus,
    tokens: TokenLoads,
    peak: MemoryStatus,
    peak_mappings: Vec<Mapping>,
    stop: Stopped,
    restarts: Vec<Duration>,
}

struct Stopped {
    took: Duration,
    status: ExitStatus,
}

/// One load phase as the report shows it.
struct Phase {
    name: String,
    connections: usize,
    outcome: LoadOutcome,
    server: Option<CpuUse>,
    client: Option<CpuUse>,
    server_reads: Option<u64>,
    server_memory_after: Option<MemoryStatus>,
    server_mappings_after: Vec<Mapping>,
    /// Cores busy on the whole machine minus the server, the client and the other server:
    /// anything else running during the window.
    others: Option<f64>,
    /// Time spent before the phase waiting for other processes to go quiet.
    quiet_wait: Duration,
    /// Which attempt this is (see `measure`).
    attempts: u32,
}

impl Phase {
    /// Server CPU per answered request in µs: total and user space.
    fn cpu_per_answer_us(&self) -> Option<(f64, f64)> {
        let answers = self.outcome.completed();
        let cpu = self.server.as_ref()?;
        if answers == 0 {
            return None;
        }
        let scale = self.outcome.window.as_secs_f64() * 1e6 / answers as f64;
        Some((cpu.cores * scale, cpu.user_cores * scale))
    }

    fn cpu_per_answer_text(&self) -> String {
        self.cpu_per_answer_us().map_or_else(
            || "?".to_owned(),
            |(total, user)| format!("{total:.0} ({user:.0} + {:.0})", total - user),
        )
    }

    fn rate(&self) -> f64 {
        self.outcome.rate()
    }

    fn p99(&self) -> f64 {
        self.outcome.percentile_ms(99.0)
    }
}

fn measure_small_store(
    client: &tokio::runtime::Runtime,
    paths: &Paths,
    directory: &Path,
    requests: &Requests,
    timing: &Timing,
    argon2_cost: (HashCost, usize),
) -> BenchResult<SmallResults> {
    let mut server = ChildServer::start_latchkey(paths, directory)?;
    let first_start = server.wait_ready()?;
    progress!(
        "small store: server pid {} ready on {} in {:.0} ms",
        server.pid,
        server.address,
        first_start.as_secs_f64() * 1e3
    );
    pause(Duration::from_secs(1));
    let idle_before = memory_status(server.pid)?;
    let idle_before_mappings = largest_mappings(server.pid);
    progress!(
        "(e) idle RSS before load: {:.1} MiB",
        kib_to_mib(idle_before.rss_kib)
    );

    let load = |name: &str, requests: &Arc<Vec<Vec<u8>>>, connections: usize| LoadSpec {
        name: name.to_owned(),
        requests: Arc::clone(requests),
        connections,
    };

    progress!("(a) sign-ins, {SIGN_IN_CONNECTIONS} connections");
    let sign_ins = measure_one(
        client,
        &server,
        None,
        load("sign-in", &requests.sign_in, SIGN_IN_CONNECTIONS),
        timing,
    )?;

    // The machine's speed drifts: the limit again, right after, and the sign-ins are judged
    // against the mean of the two.
    progress!("(a) argon2id limit again, right after the sign-ins");
    let argon2_after = argon2_limit(argon2_cost.0, argon2_cost.1, timing.measured)?;
    progress!("(a) {:.1} hashes/s", argon2_after.hashes_per_second);

    progress!("(b) the hello server, beside latchkey for the paired rate rounds");
    let mut hello_server = ChildServer::start_hello(&paths.own_exe)?;
    hello_server.wait_ready()?;
    let tokens = token_loads(client, &server, &hello_server, requests, timing, "")?;
    hello_server.stop()?;

    progress!(
        "(d) {LATENCY_CONNECTIONS} token-check connections beside {SIGN_IN_CONNECTIONS} sign-in connections"
    );
    let mut mixed = measure(
        client,
        &server,
        None,
        vec![
            load(
                "GET /user/current, signed token, while signing in",
                &requests.user_current_signed,
                LATENCY_CONNECTIONS,
            ),
            load(
                "sign-in, beside the token checks",
                &requests.sign_in,
                SIGN_IN_CONNECTIONS,
            ),
        ],
        timing,
    )?
    .into_iter();
    let mixed_tokens = mixed.next().ok_or("the mixed token phase is missing")?;
    let mixed_sign_ins = mixed.next().ok_or("the mixed sign-in phase is missing")?;

    progress!(
        "(e) idle for {} s after the load",
        IDLE_AFTER_LOAD.as_secs()
    );
    pause(IDLE_AFTER_LOAD);
    let idle_after = memory_status(server.pid)?;
    let idle_after_mappings = largest_mappings(server.pid);
    let peak = idle_after.clone();
    progress!(
        "(e) idle RSS after: {:.1} MiB, peak {:.1} MiB",
        kib_to_mib(idle_after.rss_kib),
        kib_to_mib(peak.hwm_kib)
    );
    let stop = server.stop()?;

    progress!("(g) small store: {RESTARTS} starts after a clean stop");
    let mut restarts = Vec::new();
    let mut restart_peaks = Vec::new();
    for _ in 0..RESTARTS {
        let mut server = ChildServer::start_latchkey(paths, directory)?;
        restarts.push(server.wait_ready()?);
        restart_peaks.push(memory_status(server.pid).map_or(0, |status| status.hwm_kib));
        server.stop()?;
    }

    // What the caches hold after the load: the same store and an API-token load (which needs
    // no verified-token cache), with that cache off and redb's at 1 MiB.
    progress!(
        "(e) without the caches: an API-token load, then {} s idle",
        IDLE_AFTER_LOAD.as_secs()
    );
    let mut server = ChildServer::start_latchkey_with(
        paths,
        directory,
        &[
            ("LATCHKEY_AUTH__VERIFIED_TOKEN_CACHE_ENTRIES", "0"),
            ("LATCHKEY_STORE__CACHE_SIZE_MIB", "1"),
        ],
    )?;
    server.wait_ready()?;
    let uncached_load = measure_one(
        client,
        &server,
        None,
        load(
            "GET /user/current, API token, caches off",
            &requests.user_current_api,
            RATE_CONNECTIONS,
        ),
        timing,
    )?;
    pause(IDLE_AFTER_LOAD);
    let idle_after_without_caches = memory_status(server.pid)?;
    server.stop()?;
    Ok(SmallResults {
        first_start,
        idle_before,
        idle_before_mappings,
        sign_ins,
        argon2_after,
        tokens,
        mixed_tokens,
        mixed_sign_ins,
        idle_after,
        idle_after_mappings,
        peak,
        stop,
        restarts,
        restart_peaks,
        uncached_load,
        idle_after_without_caches,
    })
}

fn measure_large_store(
    client: &tokio::runtime::Runtime,
    paths: &Paths,
    directory: &Path,
    requests: &Requests,
    timing: &Timing,
) -> BenchResult<LargeMeasured> {
    let mut server = ChildServer::start_latchkey(paths, directory)?;
    let first_start = server.wait_ready()?;
    progress!(
        "large store: server pid {} ready in {:.0} ms",
        server.pid,
        first_start.as_secs_f64() * 1e3
    );
    pause(Duration::from_secs(1));
    let idle_before = memory_status(server.pid)?;
    let mut hello_server = ChildServer::start_hello(&paths.own_exe)?;
    hello_server.wait_ready()?;
    let tokens = token_loads(client, &server, &hello_server, requests, timing, "large: ")?;
    hello_server.stop()?;
    let peak = memory_status(server.pid)?;
    let peak_mappings = largest_mappings(server.pid);
    let stop = server.stop()?;
    progress!("(g) large store: {RESTARTS} starts after a clean stop");
    let mut restarts = Vec::new();
    for _ in 0..RESTARTS {
        let mut server = ChildServer::start_latchkey(paths, directory)?;
        restarts.push(server.wait_ready()?);
        server.stop()?;
    }
    Ok(LargeMeasured {
        first_start,
        idle_before,
        tokens,
        peak,
        peak_mappings,
        stop,
        restarts,
    })
}

struct TokenLoads {
    signed_rate: Phase,
    signed_latency: Phase,
    api_rate: Phase,
    api_latency: Phase,
    sessions_rate: Phase,
    sessions_latency: Phase,
    priming: Vec<Priming>,
    signed_pair: HelloPair,
    api_pair: HelloPair,
    sessions_pair: HelloPair,
}

/// The hello side of a rate measured in `PAIRED_ROUNDS` rounds: the hello window of the
/// median round, and latchkey's rate over hello's in every round.
struct HelloPair {
    hello: Phase,
    round_ratios: Vec<f64>,
}

impl HelloPair {
    fn ratio(&self) -> f64 {
        median(&self.round_ratios)
    }

    fn rounds_text(&self) -> String {
        self.round_ratios
            .iter()
            .map(|ratio| format!("{:.0}%", ratio * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// A first, unmeasured pass over a request set.
struct Priming {
    name: String,
    requests: usize,
    took: Duration,
    failures: u64,
}

/// (b) and (c): each request set is first sent once, unmeasured (`prime`), then loaded at 64
/// connections for the rate, in `PAIRED_ROUNDS` rounds each paired with a hello window, and
/// at 8 for the latency.
fn token_loads(
    client: &tokio::runtime::Runtime,
    server: &ChildServer,
    hello_server: &ChildServer,
    requests: &Requests,
    timing: &Timing,
    prefix: &str,
) -> BenchResult<TokenLoads> {
    let mut phases = Vec::new();
    let mut pairs = Vec::new();
    let mut priming = Vec::new();
    let round_timing = Timing {
        warmup: timing.warmup,
        measured: timing.measured.div_f64(2.0).max(Duration::from_secs(1)),
    };
    for (name, request_set) in [
        (
            "GET /user/current, signed token",
            &requests.user_current_signed,
        ),
        ("GET /user/current, API token", &requests.user_current_api),
        ("GET /auth/session, signed token", &requests.sessions_signed),
    ] {
        let name = format!("{prefix}{name}");
        progress!(
            "(b/c/f) {name}: first pass over {} requests",
            request_set.len()
        );
        let first = prime(client, server, request_set)?;
        progress!(
            "    {:.0}/s on the first pass, {} failures",
            request_set.len() as f64 / first.0.as_secs_f64().max(1e-9),
            first.1
        );
        priming.push(Priming {
            name: name.clone(),
            requests: request_set.len(),
            took: first.0,
            failures: first.1,
        });
        let load_set = |target: &ChildServer,
                        beside: &ChildServer,
                        name: &str,
                        connections: usize,
                        timing: &Timing| {
            measure_one(
                client,
                target,
                Some(beside),
                LoadSpec {
                    name: name.to_owned(),
                    requests: Arc::clone(request_set),
                    connections,
                },
                timing,
            )
        };
        let mut rounds = Vec::new();
        for round in 1..=PAIRED_ROUNDS {
            let hello_first = round % 2 == 1;
            progress!(
                "(b/c/f) {name}, {RATE_CONNECTIONS} connections, round {round} of \
                 {PAIRED_ROUNDS}: {}",
                if hello_first {
                    "the hello server, then latchkey"
                } else {
                    "latchkey, then the hello server"
                }
            );
            let measure_hello = || {
                load_set(
                    hello_server,
                    server,
                    "hello server (same requests)",
                    RATE_CONNECTIONS,
                    &round_timing,
                )
            };
            let measure_target =
                || load_set(server, hello_server, &name, RATE_CONNECTIONS, &round_timing);
            let (hello, target) = if hello_first {
                let hello = measure_hello()?;
                (hello, measure_target()?)
            } else {
                let target = measure_target()?;
                (measure_hello()?, target)
            };
            rounds.push((hello, target));
        }
        let mut by_ratio: Vec<(f64, Phase, Phase)> = rounds
            .into_iter()
            .map(|(hello, target)| (target.rate() / hello.rate().max(1e-9), hello, target))
            .collect();
        let round_ratios = by_ratio.iter().map(|(ratio, _, _)| *ratio).collect();
        by_ratio.sort_by(|left, right| left.0.total_cmp(&right.0));
        let (_, hello, target) = by_ratio.swap_remove(by_ratio.len() / 2);
        phases.push(target);
        pairs.push(HelloPair {
            hello,
            round_ratios,
        });
        progress!("(b/c/f) {name}, {LATENCY_CONNECTIONS} connections");
        phases.push(load_set(
            server,
            hello_server,
            &name,
            LATENCY_CONNECTIONS,
            timing,
        )?);
    }
    let mut phases = phases.into_iter();
    let mut next = || phases.next().ok_or("a phase is missing");
    let mut pairs = pairs.into_iter();
    let mut next_pair = || pairs.next().ok_or("a paired rate is missing");
    Ok(TokenLoads {
        signed_rate: next()?,
        signed_latency: next()?,
        api_rate: next()?,
        api_latency: next()?,
        sessions_rate: next()?,
        sessions_latency: next()?,
        priming,
        signed_pair: next_pair()?,
        api_pair: next_pair()?,
        sessions_pair: next_pair()?,
    })
}

/// Sends every request of the set once over `LATENCY_CONNECTIONS` connections, unmeasured:
/// the first check of a signed token verifies its Ed25519 signature and fills the server's
/// verified-token cache, and every first read fills redb's page cache, so that the loads that
/// follow measure the steady state. Returns the time taken and the answers other than 200.
fn prime(
    client: &tokio::runtime::Runtime,
    target: &ChildServer,
    requests: &Arc<Vec<Vec<u8>>>,
) -> BenchResult<(Duration, u64)> {
    let address = target.address;
    let requests = Arc::clone(requests);
    let (took, failures) = client.block_on(async move {
        let started = Instant::now();
        let counter = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..LATENCY_CONNECTIONS)
            .map(|_| {
                tokio::spawn(prime_connection(
                    address,
                    Arc::clone(&requests),
                    Arc::clone(&counter),
                ))
            })
            .collect();
        let mut failures = 0;
        for task in tasks {
            failures += task.await.unwrap_or(1);
        }
        (started.elapsed(), failures)
    });
    Ok((took, failures))
}

async fn prime_connection(
    address: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    counter: Arc<AtomicUsize>,
) -> u64 {
    let mut failures = 0;
    let mut stream: Option<tokio::net::TcpStream> = None;
    let mut buffer = Vec::with_capacity(16 * 1024);
    loop {
        let index = counter.fetch_add(1, Ordering::Relaxed);
        let Some(request) = requests.get(index) else {
            break;
        };
        let mut connection = match stream.take() {
            Some(connection) => connection,
            None => {
                match tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(address))
                    .await
                {
                    Ok(Ok(connection)) => {
                        let _ = connection.set_nodelay(true);
                        connection
                    }
                    _ => {
                        failures += 1;
                        continue;
                    }
                }
            }
        };
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            exchange(&mut connection, request, &mut buffer),
        )
        .await
        {
            Ok(Ok(answer)) => {
                if answer.status != 200 {
                    failures += 1;
                }
                if !answer.close {
                    stream = Some(connection);
                }
            }
            _ => failures += 1,
        }
    }
    failures
}

fn measure_one(
    client: &tokio::runtime::Runtime,
    target: &ChildServer,
    other: Option<&ChildServer>,
    spec: LoadSpec,
    timing: &Timing,
) -> BenchResult<Phase> {
    measure(client, target, other, vec![spec], timing)?
        .into_iter()
        .next()
        .ok_or_else(|| "no phase measured".into())
}

/// `measure_once`, again (at most `MEASURE_ATTEMPTS` times in all) when other processes used
/// more than `QUIET_CORES` during the window; the least disturbed attempt is kept.
fn measure(
    client: &tokio::runtime::Runtime,
    target: &ChildServer,
    other: Option<&ChildServer>,
    specs: Vec<LoadSpec>,
    timing: &Timing,
) -> BenchResult<Vec<Phase>> {
    let disturbance = |phases: &[Phase]| {
        phases
            .iter()
            .filter_map(|phase| phase.others)
            .fold(0.0, f64::max)
    };
    let mut best: Option<Vec<Phase>> = None;
    for attempt in 1..=MEASURE_ATTEMPTS {
        let mut phases = measure_once(client, target, other, specs.clone(), timing)?;
        for phase in &mut phases {
            phase.attempts = attempt;
        }
        let others = disturbance(&phases);
        let better = best.as_ref().is_none_or(|best| others < disturbance(best));
        if better {
            best = Some(phases);
        }
        if others <= QUIET_CORES {
            break;
        }
        if attempt < MEASURE_ATTEMPTS {
            progress!("    other processes used {others:.2} cores meanwhile; measuring again");
        }
    }
    best.ok_or_else(|| "no attempt measured".into())
}

/// Runs the loads together against `target` and returns one phase per load; CPU, reads and
/// memory are sampled at the edges of the measured window.
fn measure_once(
    client: &tokio::runtime::Runtime,
    target: &ChildServer,
    other: Option<&ChildServer>,
    specs: Vec<LoadSpec>,
    timing: &Timing,
) -> BenchResult<Vec<Phase>> {
    let quiet_wait = wait_for_quiet();
    let address = target.address;
    let target_pid = target.pid;
    let other_pid = other.map(|server| server.pid);
    let (outcomes, samples) = client.block_on(async move {
        let measure_start = Instant::now() + timing.warmup;
        let measure_end = measure_start + timing.measured;
        let mut groups = Vec::new();
        for spec in &specs {
            let counter = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..spec.connections {
                tasks.push(tokio::spawn(connection_loop(
                    address,
                    Arc::clone(&spec.requests),
                    Arc::clone(&counter),
                    measure_start,
                    measure_end,
                )));
            }
            groups.push(tasks);
        }
        tokio::time::sleep_until(measure_start.into()).await;
        let before = Samples::take(target_pid, other_pid);
        tokio::time::sleep_until(measure_end.into()).await;
        let after = Samples::take(target_pid, other_pid);
        let mut outcomes = Vec::new();
        for (spec, tasks) in specs.iter().zip(groups) {
            let mut outcome = LoadOutcome::new(spec.name.clone(), timing.measured);
            for task in tasks {
                match task.await {
                    Ok(stats) => outcome.add(stats),
                    Err(_) => outcome.failed += 1,
                }
            }
            outcome.finish();
            outcomes.push((spec.connections, outcome));
        }
        (outcomes, (before, after))
    });
    let (before, after) = samples;
    let window = timing.measured.as_secs_f64();
    let server_memory = memory_status(target_pid).ok();
    let server_mappings = largest_mappings(target_pid);
    let mut phases = Vec::new();
    for (connections, outcome) in outcomes {
        progress!(
            "    {}: {:.0}/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
            outcome.name,
            outcome.rate(),
            outcome.percentile_ms(50.0),
            outcome.percentile_ms(99.0),
            outcome.unexpected + outcome.failed
        );
        phases.push(Phase {
            name: outcome.name.clone(),
            connections,
            server: CpuUse::between(before.target.as_ref(), after.target.as_ref(), window),
            client: CpuUse::between(before.client.as_ref(), after.client.as_ref(), window),
            server_reads: match (before.target_reads, after.target_reads) {
                (Some(before), Some(after)) => Some(after.saturating_sub(before)),
                _ => None,
            },
            server_memory_after: server_memory.clone(),
            server_mappings_after: server_mappings.clone(),
            quiet_wait,
            attempts: 1,
            others: match (before.machine_ticks, after.machine_ticks) {
                (Some(before_ticks), Some(after_ticks)) => {
                    let machine = after_ticks.saturating_sub(before_ticks) as f64
                        / CLOCK_TICKS_PER_SECOND
                        / window;
                    let ours = [&before.target, &before.other, &before.client]
                        .iter()
                        .zip([&after.target, &after.other, &after.client])
                        .filter_map(|(earlier, later)| {
                            CpuUse::between(earlier.as_ref(), later.as_ref(), window)
                        })
                        .map(|cpu| cpu.cores)
                        .sum::<f64>();
                    Some((machine - ours).max(0.0))
                }
                _ => None,
            },
            outcome,
        });
    }
    Ok(phases)
}

// ---------------------------------------------------------------------------------------------
// The load client
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct LoadSpec {
    name: String,
    requests: Arc<Vec<Vec<u8>>>,
    connections: usize,
}

#[derive(Default)]
struct ConnectionStats {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    failed: u64,
}

struct LoadOutcome {
    name: String,
    window: Duration,
    /// Sorted latencies of the requests completed in the window, in microseconds.
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    /// Answers other than 200.
    unexpected: u64,
    /// Connection failures, timeouts and unparsable answers.
    failed: u64,
}

impl LoadOutcome {
    fn new(name: String, window: Duration) -> LoadOutcome {
        LoadOutcome {
            name,
            window,
            latencies_us: Vec::new(),
            statuses: BTreeMap::new(),
            unexpected: 0,
            failed: 0,
        }
    }

    fn add(&mut self, stats: ConnectionStats) {
        self.latencies_us.extend(stats.latencies_us);
        for (status, count) in stats.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.failed += stats.failed;
    }

    fn finish(&mut self) {
        self.latencies_us.sort_unstable();
        self.unexpected = self
            .statuses
            .iter()
            .filter(|(status, _)| **status != 200)
            .map(|(_, count)| count)
            .sum();
    }

    fn completed(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    /// Successful (200) answers per second of the window.
    fn rate(&self) -> f64 {
        self.statuses.get(&200).copied().unwrap_or(0) as f64 / self.window.as_secs_f64()
    }

    /// Nearest-rank percentile, in milliseconds.
    fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let count = self.latencies_us.len();
        let rank = ((percentile / 100.0) * count as f64).ceil() as usize;
        let index = rank.clamp(1, count) - 1;
        f64::from(self.latencies_us[index]) / 1e3
    }

    fn max_ms(&self) -> f64 {
        self.latencies_us
            .last()
            .map_or(f64::NAN, |latency| f64::from(*latency) / 1e3)
    }
}

/// One keep-alive connection: request, read the whole answer, again, until the window ends.
/// Only answers completed inside the measured window count.
async fn connection_loop(
    address: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    counter: Arc<AtomicUsize>,
    measure_start: Instant,
    measure_end: Instant,
) -> ConnectionStats {
    let mut stats = ConnectionStats::default();
    let mut stream: Option<tokio::net::TcpStream> = None;
    let mut buffer = Vec::with_capacity(16 * 1024);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        if Instant::now() >= measure_end || requests.is_empty() {
            break;
        }
        let mut connection = match stream.take() {
            Some(connection) => connection,
            None => {
                match tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(address))
                    .await
                {
                    Ok(Ok(connection)) => {
                        let _ = connection.set_nodelay(true);
                        connection
                    }
                    _ => {
                        stats.failed += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
        };
        let index = counter.fetch_add(1, Ordering::Relaxed) % requests.len();
        let started = Instant::now();
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            exchange(&mut connection, &requests[index], &mut buffer),
        )
        .await;
        let finished = Instant::now();
        let in_window = finished >= measure_start && finished <= measure_end;
        match answer {
            Ok(Ok(answer)) => {
                if !answer.close {
                    stream = Some(connection);
                }
                if in_window {
                    let micros = finished.duration_since(started).as_micros();
                    stats
                        .latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    *stats.statuses.entry(answer.status).or_default() += 1;
                }
            }
            _ => {
                if in_window {
                    stats.failed += 1;
                }
            }
        }
    }
    stats
}

struct Answer {
    status: u16,
    close: bool,
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_owned())
}

/// Writes one request and reads one whole answer: the head up to `\r\n\r\n`, then exactly
/// `Content-Length` bytes of body.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> std::io::Result<Answer> {
    stream.write_all(request).await?;
    buffer.clear();
    let mut searched = 0;
    let head_end = loop {
        if let Some(position) = find_head_end(&buffer[searched..]) {
            break searched + position;
        }
        searched = buffer.len().saturating_sub(3);
        if buffer.len() > MAX_RESPONSE_BYTES {
            return Err(invalid("answer head too large"));
        }
        read_more(stream, buffer).await?;
    };
    let head = parse_head(&buffer[..head_end])?;
    let total = head_end + head.content_length;
    if total > MAX_RESPONSE_BYTES {
        return Err(invalid("answer too large"));
    }
    while buffer.len() < total {
        read_more(stream, buffer).await?;
    }
    if buffer.len() > total {
        return Err(invalid("bytes after the answer"));
    }
    Ok(Answer {
        status: head.status,
        close: head.close,
    })
}

async fn read_more(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<()> {
    buffer.reserve(8 * 1024);
    if stream.read_buf(buffer).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// The index just past the head's closing blank line.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|position| position + 4)
}

struct Head {
    status: u16,
    content_length: usize,
    close: bool,
}

fn parse_head(head: &[u8]) -> std::io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("answer head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or_else(|| invalid("no status line"))?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let mut content_length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| invalid("bad content-length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("chunked answers are not expected"));
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok(Head {
        status,
        content_length: content_length.ok_or_else(|| invalid("no content-length"))?,
        close,
    })
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// A server child process: latchkey or the hello server. Dropping it kills it.
struct ChildServer {
    child: Option<Child>,
    pid: u32,
    address: SocketAddr,
    started: Instant,
    health_path: &'static str,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

fn free_port() -> BenchResult<SocketAddr> {
    let listener = StdTcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl ChildServer {
    fn start_latchkey(paths: &Paths, data_dir: &Path) -> BenchResult<ChildServer> {
        ChildServer::start_latchkey_with(paths, data_dir, &[])
    }

    /// `start_latchkey` with `extra` environment on top of `--server-env`.
    fn start_latchkey_with(
        paths: &Paths,
        data_dir: &Path,
        extra: &[(&str, &str)],
    ) -> BenchResult<ChildServer> {
        let binary = &paths.server;
        let address = free_port()?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--listen")
            .arg(address.to_string());
        // An unknown LATCHKEY_ variable stops the server: pass exactly ours.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LATCHKEY_") {
                command.env_remove(name);
            }
        }
        command
            .env("LATCHKEY_DATA_DIR", data_dir)
            .env("LATCHKEY_SERVER__PUBLIC_URL", PUBLIC_URL)
            .env("LATCHKEY_LOG__LEVEL", "warn");
        for (name, value) in &paths.server_env {
            command.env(name, value);
        }
        for (name, value) in extra {
            command.env(name, value);
        }
        ChildServer::spawn(command, address, "/frontend/api/v1/health")
    }

    fn start_hello(own_exe: &Path) -> BenchResult<ChildServer> {
        let address = free_port()?;
        let mut command = Command::new(own_exe);
        command.arg("--hello-server").arg(address.to_string());
        ChildServer::spawn(command, address, "/")
    }

    fn spawn(
        mut command: Command,
        address: SocketAddr,
        health_path: &'static str,
    ) -> BenchResult<ChildServer> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start {:?}: {error}", command.get_program()))?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&stderr_tail);
            // Drains the child's log until it exits (EOF), keeping the last lines.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().take(10_000_000) {
                    let Ok(line) = line else { break };
                    if let Ok(mut tail) = tail.lock() {
                        if tail.len() >= 20 {
                            tail.pop_front();
                        }
                        tail.push_back(line);
                    }
                }
            });
        }
        if let Ok(mut children) = CHILDREN.lock() {
            children.push(child.id());
        }
        Ok(ChildServer {
            pid: child.id(),
            child: Some(child),
            address,
            started,
            health_path,
            stderr_tail,
        })
    }

    fn tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|tail| tail.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// Polls the health path until it answers 200; returns the time since the spawn.
    fn wait_ready(&mut self) -> BenchResult<Duration> {
        let deadline = self.started + READY_TIMEOUT;
        while Instant::now() < deadline {
            if health_answers(self.address, self.health_path) {
                return Ok(self.started.elapsed());
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                return Err(format!(
                    "the server exited with {status} before answering; its last log lines:\n{}",
                    self.tail()
                )
                .into());
            }
            pause(Duration::from_millis(1));
        }
        Err(format!(
            "the server on {} did not answer within {} s; its last log lines:\n{}",
            self.address,
            READY_TIMEOUT.as_secs(),
            self.tail()
        )
        .into())
    }

    /// SIGTERM, then waits for the exit.
    fn stop(mut self) -> BenchResult<Stopped> {
        let Some(mut child) = self.child.take() else {
            return Err("the server was already stopped".into());
        };
        let started = Instant::now();
        rustix::process::kill_process(pid_of(&child)?, rustix::process::Signal::TERM)?;
        while started.elapsed() < STOP_TIMEOUT {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    return Err(format!(
                        "the server exited with {status} on SIGTERM; its last log lines:\n{}",
                        self.tail()
                    )
                    .into());
                }
                return Ok(Stopped {
                    took: started.elapsed(),
                    status,
                });
            }
            pause(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "the server did not stop within {} s",
            STOP_TIMEOUT.as_secs()
        )
        .into())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Ok(mut children) = CHILDREN.lock() {
            children.retain(|pid| *pid != self.pid);
        }
    }
}

fn pid_of(child: &Child) -> BenchResult<rustix::process::Pid> {
    Ok(rustix::process::Pid::from_child(child))
}

/// One blocking GET; true when it answers 200.
fn health_answers(address: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = StdTcpStream::connect_timeout(&address, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.take(64 * 1024).read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

// ---------------------------------------------------------------------------------------------
// The hello server: this machine's ceiling for any hyper server
// ---------------------------------------------------------------------------------------------

fn hello_server(address: SocketAddr) -> BenchResult<()> {
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = terminate.recv() => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        bytes::Bytes::from_static(b"hello"),
                    )))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

// ---------------------------------------------------------------------------------------------
// /proc: CPU, reads, memory
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct CpuSample {
    ticks: u64,
    user_ticks: u64,
    threads: BTreeMap<String, u64>,
}

/// CPU in cores (CPU seconds per second of the window), whole process and per thread group.
#[derive(Clone)]
struct CpuUse {
    cores: f64,
    /// Of `cores`, the part in user space (the rest is the kernel's, on the process's behalf).
    user_cores: f64,
    threads: BTreeMap<String, f64>,
}

impl CpuUse {
    fn between(
        before: Option<&CpuSample>,
        after: Option<&CpuSample>,
        window: f64,
    ) -> Option<CpuUse> {
        let (before, after) = (before?, after?);
        let cores =
            after.ticks.saturating_sub(before.ticks) as f64 / CLOCK_TICKS_PER_SECOND / window;
        let user_cores = after.user_ticks.saturating_sub(before.user_ticks) as f64
            / CLOCK_TICKS_PER_SECOND
            / window;
        let threads = after
            .threads
            .iter()
            .map(|(name, ticks)| {
                let earlier = before.threads.get(name).copied().unwrap_or(0);
                (
                    name.clone(),
                    ticks.saturating_sub(earlier) as f64 / CLOCK_TICKS_PER_SECOND / window,
                )
            })
            .filter(|(_, cores)| *cores > 0.0)
            .collect();
        Some(CpuUse {
            cores,
            user_cores,
            threads,
        })
    }

    fn describe(&self) -> String {
        let mut text = format!("{:.2}", self.cores);
        if !self.threads.is_empty() {
            let parts: Vec<String> = self
                .threads
                .iter()
                .map(|(name, cores)| format!("{name} {cores:.2}"))
                .collect();
            let _ = write!(text, " ({})", parts.join(", "));
        }
        text
    }
}

struct Samples {
    machine_ticks: Option<u64>,
    target: Option<CpuSample>,
    target_reads: Option<u64>,
    other: Option<CpuSample>,
    client: Option<CpuSample>,
}

impl Samples {
    fn take(target: u32, other: Option<u32>) -> Samples {
        Samples {
            machine_ticks: machine_busy_ticks(),
            target: cpu_sample(&format!("/proc/{target}"), true),
            target_reads: read_syscalls(target),
            other: other.and_then(|pid| cpu_sample(&format!("/proc/{pid}"), true)),
            client: cpu_sample("/proc/self", false),
        }
    }
}

/// Other processes (a build, a test run) skew a 2-core measurement badly: before each load,
/// wait (at most `QUIET_WAIT_LIMIT`) until the whole machine uses less than `QUIET_CORES`.
fn wait_for_quiet() -> Duration {
    let started = Instant::now();
    let mut reported = false;
    while started.elapsed() < QUIET_WAIT_LIMIT {
        let before = machine_busy_ticks();
        pause(Duration::from_millis(500));
        let (Some(before), Some(after)) = (before, machine_busy_ticks()) else {
            break;
        };
        let cores = after.saturating_sub(before) as f64 / CLOCK_TICKS_PER_SECOND / 0.5;
        if cores < QUIET_CORES {
            break;
        }
        if !reported {
            progress!("    the machine is busy ({cores:.2} cores); waiting for it to go quiet");
            reported = true;
        }
    }
    started.elapsed()
}

/// Busy ticks of the whole machine, all cores (`/proc/stat`: all but idle and iowait).
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|index| fields.get(*index))
        .sum();
    Some(busy)
}

/// utime + stime from a `stat` file, and the thread's name.
fn stat_ticks(path: &str) -> Option<(String, u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((name, user, system))
}

fn cpu_sample(process: &str, with_threads: bool) -> Option<CpuSample> {
    let (_, user_ticks, system_ticks) = stat_ticks(&format!("{process}/stat"))?;
    let mut threads = BTreeMap::new();
    if with_threads && let Ok(entries) = std::fs::read_dir(format!("{process}/task")) {
        for entry in entries.take(10_000).flatten() {
            let path = entry.path().join("stat");
            if let Some((name, user, system)) = stat_ticks(&path.to_string_lossy()) {
                let group = name
                    .trim_end_matches(|character: char| character.is_ascii_digit())
                    .trim_end_matches('-')
                    .to_owned();
                *threads.entry(group).or_default() += user + system;
            }
        }
    }
    Some(CpuSample {
        ticks: user_ticks + system_ticks,
        user_ticks,
        threads,
    })
}

/// Read system calls so far (`syscr` in /proc/<pid>/io): redb reads pages it lacks in its
/// cache with `pread`.
fn read_syscalls(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("syscr:"))
        .and_then(|value| value.trim().parse().ok())
}

#[derive(Clone, Default)]
struct MemoryStatus {
    rss_kib: u64,
    hwm_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    threads: u64,
}

fn memory_status(pid: u32) -> BenchResult<MemoryStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut status = MemoryStatus::default();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let number = value
            .split_whitespace()
            .next()
            .and_then(|number| number.parse().ok())
            .unwrap_or(0);
        match name {
            "VmRSS" => status.rss_kib = number,
            "VmHWM" => status.hwm_kib = number,
            "RssAnon" => status.anon_kib = number,
            "RssFile" => status.file_kib = number,
            "Threads" => status.threads = number,
            _ => {}
        }
    }
    Ok(status)
}

/// A resident mapping from /proc/<pid>/smaps.
#[derive(Clone)]
struct Mapping {
    name: String,
    size_kib: u64,
    rss_kib: u64,
}

/// The mappings holding the most resident memory, largest first.
fn largest_mappings(pid: u32) -> Vec<Mapping> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return Vec::new();
    };
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let mut range = first.split('-');
            let start = range
                .next()
                .and_then(|start| u64::from_str_radix(start, 16).ok());
            let end = range
                .next()
                .and_then(|end| u64::from_str_radix(end, 16).ok());
            let name = words.nth(4).unwrap_or("[anonymous]").to_owned();
            mappings.push(Mapping {
                name,
                size_kib: match (start, end) {
                    (Some(start), Some(end)) => end.saturating_sub(start) / 1024,
                    _ => 0,
                },
                rss_kib: 0,
            });
        } else if first == "Rss:"
            && let Some(mapping) = mappings.last_mut()
        {
            mapping.rss_kib = words.next().and_then(|kib| kib.parse().ok()).unwrap_or(0);
        }
    }
    mappings.sort_by_key(|mapping| std::cmp::Reverse(mapping.rss_kib));
    mappings.truncate(8);
    mappings
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

/// How many hasher buffers (`memory_kib` of argon2 blocks, mmapped with one page of malloc
/// header) an anonymous mapping's resident size amounts to: adjacent ones merge into one.
fn hasher_buffers_in(mapping: &Mapping, memory_kib: u64) -> u64 {
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

/// Sleeps on the benchmark's main thread (never a runtime thread, which the lint is about).
#[allow(clippy::disallowed_methods)]
fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Met,
    Missed,
    Info,
}

struct Row {
    key: &'static str,
    measurement: String,
    value: String,
    target: String,
    verdict: Verdict,
}

struct Report {
    command: String,
    date: String,
    commit: String,
    machine: String,
    config_note: String,
    seed_notes: Vec<String>,
    phases: Vec<(String, Duration)>,
    rows: Vec<Row>,
    total: Duration,
    args: Args,
}

fn thousands(value: u64) -> String {
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

fn rate_text(rate: f64) -> String {
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

fn proc_field(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then(|| value.trim().to_owned())
    })
}

impl Report {
    fn new(args: &Args, paths: &Paths) -> Report {
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

    fn phase(&mut self, label: &str, took: Duration) {
        self.phases.push((label.to_owned(), took));
    }

    fn row(
        &mut self,
        key: &'static str,
        measurement: String,
        value: String,
        target: &str,
        verdict: Verdict,
    ) {
        self.rows.push(Row {
            key,
            measurement,
            value,
            target: target.to_owned(),
            verdict,
        });
    }

    fn build_rows(
        &mut self,
        argon2: &Argon2Limit,
        small: &SmallResults,
        small_file_bytes: u64,
        large: Option<&LargeResults>,
        cost: HashCost,
    ) {
        let check = |met: bool| if met { Verdict::Met } else { Verdict::Missed };
        self.row(
            "a",
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
            "a",
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
            "b",
            format!(
                "hello hyper server, same client and requests, {RATE_CONNECTIONS} connections \
                 (the window paired with the signed-token median round)"
            ),
            rate_text(hello),
            "—",
            Verdict::Info,
        );
        for (label, phase, pair, latency) in [
            (
                "token checks: GET /user/current, signed token",
                &small.tokens.signed_rate,
                &small.tokens.signed_pair,
                &small.tokens.signed_latency,
            ),
            (
                "token checks: GET /user/current, API token",
                &small.tokens.api_rate,
                &small.tokens.api_pair,
                &small.tokens.api_latency,
            ),
            (
                "GET /auth/session, signed token",
                &small.tokens.sessions_rate,
                &small.tokens.sessions_pair,
                &small.tokens.sessions_latency,
            ),
        ] {
            let key = if std::ptr::eq(phase, &small.tokens.signed_rate) {
                "b"
            } else {
                "c"
            };
            let rate = phase.rate();
            self.row(
                key,
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
                key,
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
        self.row(
            "d",
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
        let mib = kib_to_mib;
        self.row(
            "e",
            "idle RSS of the server before the load".to_owned(),
            format!("{:.1} MiB", mib(small.idle_before.rss_kib)),
            "≤ 15 MiB",
            check(mib(small.idle_before.rss_kib) <= 15.0),
        );
        self.row(
            "e",
            format!("idle RSS {} s after the load", IDLE_AFTER_LOAD.as_secs()),
            format!("{:.1} MiB", mib(small.idle_after.rss_kib)),
            "≤ 15 MiB",
            check(mib(small.idle_after.rss_kib) <= 15.0),
        );
        self.row(
            "e",
            format!(
                "idle RSS {} s after an API-token load with the verified-token cache off and \
                 redb's cache at 1 MiB (what the caches hold)",
                IDLE_AFTER_LOAD.as_secs()
            ),
            format!(
                "{:.1} MiB (that load: {})",
                mib(small.idle_after_without_caches.rss_kib),
                rate_text(small.uncached_load.rate())
            ),
            "—",
            Verdict::Info,
        );
        self.row(
            "e",
            "peak RSS (VmHWM) through (a) to (e)".to_owned(),
            format!("{:.1} MiB", mib(small.peak.hwm_kib)),
            "≤ 64 MiB",
            check(mib(small.peak.hwm_kib) <= 64.0),
        );
        if let Some(large) = large {
            let results = &large.results;
            let counts = format!(
                "{} users / {} sessions",
                thousands(self.args.large_users),
                thousands(self.args.large_sessions)
            );
            for (label, phase, latency, pair, small_phase, small_pair) in [
                (
                    "GET /user/current, signed token",
                    &results.tokens.signed_rate,
                    &results.tokens.signed_latency,
                    &results.tokens.signed_pair,
                    &small.tokens.signed_rate,
                    &small.tokens.signed_pair,
                ),
                (
                    "GET /user/current, API token",
                    &results.tokens.api_rate,
                    &results.tokens.api_latency,
                    &results.tokens.api_pair,
                    &small.tokens.api_rate,
                    &small.tokens.api_pair,
                ),
                (
                    "GET /auth/session, signed token",
                    &results.tokens.sessions_rate,
                    &results.tokens.sessions_latency,
                    &results.tokens.sessions_pair,
                    &small.tokens.sessions_rate,
                    &small.tokens.sessions_pair,
                ),
            ] {
                // Minutes of seeding separate the two stores' windows, so each is taken as a
                // share of the hello server measured beside it; the raw ratio is shown too.
                let ratio = pair.ratio() / small_pair.ratio().max(1e-9);
                let raw_ratio = phase.rate() / small_phase.rate().max(1e-9);
                self.row(
                    "f",
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
                    "f",
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
                "f",
                format!("{counts}: peak RSS (VmHWM) of that server"),
                format!("{:.1} MiB", mib(results.peak.hwm_kib)),
                "≤ 64 MiB",
                check(mib(results.peak.hwm_kib) <= 64.0),
            );
            self.row(
                "f",
                format!("{counts}: store file size"),
                format!("{:.0} MiB", large.file_bytes as f64 / MIB),
                "—",
                Verdict::Info,
            );
        }
        self.row(
            "f",
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
            "g",
            format!("start to first answered GET /health, small store, after SIGTERM (median of {RESTARTS})"),
            format!("{small_start:.0} ms (runs: {} ms)", list_ms(&small.restarts)),
            "≤ 200 ms",
            check(small_start <= 200.0),
        );
        if let Some(large) = large {
            let large_start = median_ms(&large.results.restarts);
            self.row(
                "g",
                format!("start to first answered GET /health, large store, after SIGTERM (median of {RESTARTS})"),
                format!("{large_start:.0} ms (runs: {} ms)", list_ms(&large.results.restarts)),
                "≤ 200 ms",
                check(large_start <= 200.0),
            );
        }
        self.row(
            "",
            "whole benchmark run".to_owned(),
            format!("{:.0} s", self.total.as_secs_f64()),
            "< 10 min",
            check(self.total < Duration::from_secs(600)),
        );
    }

    fn table(&self) -> String {
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
                row.key, row.measurement, row.value, row.target, verdict
            );
        }
        text
    }

    fn render(
        &self,
        argon2: &Argon2Limit,
        small: &SmallResults,
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

        let _ = writeln!(text, "## Load phases\n");
        let _ = writeln!(
            text,
            "CPU is in cores (CPU seconds per second) over the measured window, from \
             `/proc/<pid>/stat` and each thread's `stat`; \"server\" is the process that answered \
             (the hello server in its row). \"reads/req\" is the server's read system calls \
             (`syscr` in `/proc/<pid>/io`) per answered request: redb reads a page it lacks in \
             its cache with `pread`.\n"
        );
        let _ = writeln!(
            text,
            "| phase | conns | answers | rate | p50 ms | p99 ms | max ms | non-200 / failed | server CPU µs/req (user + kernel) | server cores (threads) | client cores | other processes' cores | reads/req | server RSS / HWM after, MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let mut all: Vec<&Phase> = vec![
            &small.sign_ins,
            &small.tokens.signed_pair.hello,
            &small.tokens.signed_rate,
            &small.tokens.signed_latency,
            &small.tokens.api_rate,
            &small.tokens.api_latency,
            &small.tokens.sessions_rate,
            &small.tokens.sessions_latency,
            &small.mixed_tokens,
            &small.mixed_sign_ins,
        ];
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
            let outcome = &phase.outcome;
            let answers = outcome.completed();
            let _ = writeln!(
                text,
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
                phase
                    .server
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), CpuUse::describe),
                phase
                    .client
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), |cpu| format!("{:.2}", cpu.cores)),
                phase
                    .others
                    .map_or_else(|| "?".to_owned(), |cores| format!("{cores:.2}")),
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
            );
        }
        let _ = writeln!(
            text,
            "\nThe first, unmeasured pass over each request set ({LATENCY_CONNECTIONS} \
             connections): a signed token's first check verifies its Ed25519 signature and fills \
             the verified-token cache; every first read fills redb's page cache.\n\n\
             | request set | requests | seconds | rate | non-200 / failed |\n|---|---|---|---|---|"
        );
        let mut priming: Vec<&Priming> = small.tokens.priming.iter().collect();
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
        let statuses: Vec<String> = [&small.sign_ins, &small.mixed_sign_ins]
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
                self.why(row, argon2, small, large)
            );
        }
        let _ = writeln!(text, "\n## Running it\n");
        let _ = writeln!(
            text,
            "```sh\ncargo run --release -p latchkey-bench                     # everything, 1,000,000 users / 5,000,000 sessions\n\
             cargo run --release -p latchkey-bench -- --skip-large    # (a) to (e) and (g) on the small store only\n\
             cargo run --release -p latchkey-bench -- --large-users 100000 --large-sessions 500000\n```\n\n\
             It builds `target/release/latchkey` first (`cargo build --release --bin latchkey`; \
             `--server PATH` runs another binary instead), works in a temporary directory that it \
             removes, talks to 127.0.0.1 only, and writes this file (`--no-write` prints the \
             table only). `--seconds` and `--warmup-seconds` set the length of each load."
        );
        text
    }

    /// The measurement behind a missed target, in words.
    fn why(
        &self,
        row: &Row,
        argon2: &Argon2Limit,
        small: &SmallResults,
        large: Option<&LargeResults>,
    ) -> String {
        let cpu = |phase: &Phase| -> String {
            format!(
                "server {} cores, client {} cores, other processes {} cores",
                phase
                    .server
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), CpuUse::describe),
                phase
                    .client
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), |cpu| format!("{:.2}", cpu.cores)),
                phase
                    .others
                    .map_or_else(|| "?".to_owned(), |cores| format!("{cores:.2}"))
            )
        };
        let per_request = |phase: &Phase| -> f64 {
            phase
                .cpu_per_answer_us()
                .map_or(f64::NAN, |(total, _)| total)
        };
        match row.key {
            "a" => format!(
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
            "b" | "c" if row.target.starts_with("≥") => {
                let (phase, pair) = if row.measurement.contains("API token") {
                    (&small.tokens.api_rate, &small.tokens.api_pair)
                } else if row.measurement.contains("/auth/session") {
                    (&small.tokens.sessions_rate, &small.tokens.sessions_pair)
                } else {
                    (&small.tokens.signed_rate, &small.tokens.signed_pair)
                };
                format!(
                    "in the median round the server spent {} µs of CPU (user + kernel) per answer \
                     against the hello server's {} µs; {} (its hello window: {}).",
                    phase.cpu_per_answer_text(),
                    pair.hello.cpu_per_answer_text(),
                    cpu(phase),
                    cpu(&pair.hello)
                )
            }
            "b" | "c" | "d" => {
                let phase = if row.key == "d" {
                    &small.mixed_tokens
                } else if row.measurement.contains("API token") {
                    &small.tokens.api_latency
                } else if row.measurement.contains("/auth/session") {
                    &small.tokens.sessions_latency
                } else {
                    &small.tokens.signed_latency
                };
                format!(
                    "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} answers; {}.",
                    phase.outcome.percentile_ms(50.0),
                    phase.p99(),
                    phase.outcome.max_ms(),
                    thousands(phase.outcome.completed()),
                    cpu(phase)
                )
            }
            "e" | "f" if row.measurement.contains("RSS") => {
                let buffer_kib = u64::from(self.memory_kib());
                if row.measurement.contains("peak") {
                    let (phases, final_peak): (Vec<&Phase>, u64) = if row.key == "f" {
                        match large {
                            Some(large) => {
                                (large.results.latchkey_phases(), large.results.peak.hwm_kib)
                            }
                            None => (Vec::new(), 0),
                        }
                    } else {
                        (small.latchkey_phases(), small.peak.hwm_kib)
                    };
                    let setter = phases.into_iter().find(|phase| {
                        phase
                            .server_memory_after
                            .as_ref()
                            .is_some_and(|memory| memory.hwm_kib + 256 >= final_peak)
                    });
                    match setter
                        .and_then(|phase| Some((phase, phase.server_memory_after.as_ref()?)))
                    {
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
                } else {
                    let (mappings, status) = if row.measurement.contains("before") {
                        (&small.idle_before_mappings, &small.idle_before)
                    } else {
                        (&small.idle_after_mappings, &small.idle_after)
                    };
                    let mut why = memory_breakdown(status, mappings, buffer_kib);
                    if row.measurement.contains("after") {
                        let _ = write!(
                            why,
                            " The same store after an API-token load with the verified-token \
                             cache off and redb's cache at 1 MiB idles at {:.1} MiB: the \
                             difference is the two caches holding the load's working set \
                             (10,000 verified tokens, and the store's pages), which the next \
                             request would need again.",
                            kib_to_mib(small.idle_after_without_caches.rss_kib)
                        );
                    }
                    why
                }
            }
            "f" => match large {
                Some(large) => {
                    let results = &large.results;
                    let (phase, small_phase) = if row.measurement.contains("API token") {
                        (&results.tokens.api_rate, &small.tokens.api_rate)
                    } else if row.measurement.contains("/auth/session") {
                        (&results.tokens.sessions_rate, &small.tokens.sessions_rate)
                    } else {
                        (&results.tokens.signed_rate, &small.tokens.signed_rate)
                    };
                    let reads = |phase: &Phase| {
                        phase.server_reads.map_or(f64::NAN, |reads| {
                            reads as f64 / phase.outcome.completed().max(1) as f64
                        })
                    };
                    format!(
                        "{:.0} µs of server CPU and {:.2} read system calls per answer, against \
                         {:.0} µs and {:.2} on the small store; the file is {:.0} MiB and redb's \
                         cache {} MiB; {}.",
                        per_request(phase),
                        reads(phase),
                        per_request(small_phase),
                        reads(small_phase),
                        large.file_bytes as f64 / MIB,
                        Config::default().store.cache_size_mib,
                        cpu(phase)
                    )
                }
                None => String::new(),
            },
            "g" => format!(
                "one argon2id hash takes {:.1} ms on one core, and the server makes its dummy hash \
                 before it answers; see Starts and stops.",
                argon2.seconds_per_hash * 1e3
            ),
            _ => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    /// A fixed run, every figure made up: every target missed (with the large store, a what-if
    /// variable and busy neighbours) or every target met (small store only), so that the
    /// report's every sentence and branch is rendered.
    struct Fixture {
        report: Report,
        argon2: Argon2Limit,
        small: SmallResults,
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
    fn phase(
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
            hello: phase("hello server (same requests)", 64, answers, 400, 0, false),
            round_ratios: [0.79, 0.65, 0.56, 0.75, 0.76]
                .iter()
                .map(|ratio| ratio * ratio_scale)
                .collect(),
        };
        TokenLoads {
            signed_rate: phase(
                &named("GET /user/current, signed token"),
                64,
                rate_answers,
                700,
                0,
                missed,
            ),
            signed_latency: phase(
                &named("GET /user/current, signed token"),
                8,
                66_000,
                base_us,
                0,
                false,
            ),
            api_rate: phase(
                &named("GET /user/current, API token"),
                64,
                rate_answers,
                800,
                0,
                false,
            ),
            api_latency: phase(
                &named("GET /user/current, API token"),
                8,
                64_000,
                base_us,
                0,
                false,
            ),
            sessions_rate: phase(
                &named("GET /auth/session, signed token"),
                64,
                rate_answers,
                900,
                0,
                false,
            ),
            sessions_latency: phase(
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
            sign_ins: phase(
                "sign-in",
                16,
                if missed { 80 } else { 110 },
                160_000,
                u64::from(missed) * 3,
                false,
            ),
            argon2_after: argon2(560),
            tokens: token_loads(missed, "", 1.0),
            mixed_tokens: phase(
                "GET /user/current, signed token, while signing in",
                8,
                44_000,
                if missed { 25_000 } else { 140 },
                0,
                false,
            ),
            mixed_sign_ins: phase(
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
            uncached_load: phase(
                "GET /user/current, API token, caches off",
                64,
                52_000,
                700,
                0,
                false,
            ),
            idle_after_without_caches: memory(12, 40),
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
        report.build_rows(&argon2_before, &small, 8_600_000, large.as_ref(), cost);
        Fixture {
            report,
            argon2: argon2_before,
            small,
            large,
            cost,
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
