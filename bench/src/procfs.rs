//! Sampling /proc, the benchmark's only window on the processes it measures: CPU time of a
//! process and of its thread groups, of the whole machine, read system calls, memory status
//! and the largest resident mappings; and the wait for a quiet machine before each load.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::{BenchResult, pause};

/// /proc times are in USER_HZ, which the kernel ABI fixes at 100.
pub const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
/// Before each load: wait until the machine uses less than this many cores...
pub const QUIET_CORES: f64 = 0.3;
/// ...but no longer than this.
pub const QUIET_WAIT_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct CpuSample {
    ticks: u64,
    user_ticks: u64,
    threads: BTreeMap<String, u64>,
}

/// CPU in cores (CPU seconds per second of the window), whole process and per thread group.
#[derive(Clone)]
pub struct CpuUse {
    pub cores: f64,
    /// Of `cores`, the part in user space (the rest is the kernel's, on the process's behalf).
    pub user_cores: f64,
    pub threads: BTreeMap<String, f64>,
}

impl CpuUse {
    pub fn between(
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

    pub fn describe(&self) -> String {
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

pub struct Samples {
    pub machine_ticks: Option<u64>,
    pub target: Option<CpuSample>,
    pub target_reads: Option<u64>,
    pub other: Option<CpuSample>,
    pub client: Option<CpuSample>,
}

/// The processes that serve a load: the server's, and (on PostgreSQL) the database cluster's,
/// named by its postmaster's pid, whose CPU counts as the server's.
#[derive(Clone, Copy)]
pub struct ServerProcesses {
    pub server_pid: u32,
    pub database_postmaster_pid: Option<u32>,
}

impl ServerProcesses {
    /// The server's CPU, by thread group, and the database cluster's under "postgres".
    fn cpu_sample(self) -> Option<CpuSample> {
        let server = cpu_sample(&format!("/proc/{}", self.server_pid), true)?;
        Some(match self.database_postmaster_pid {
            Some(postmaster) => server.merged(process_family_sample(postmaster, "postgres")),
            None => server,
        })
    }
}

impl Samples {
    pub fn take(target: ServerProcesses, other: Option<ServerProcesses>) -> Samples {
        Samples {
            machine_ticks: machine_busy_ticks(),
            target: target.cpu_sample(),
            target_reads: read_syscalls(target.server_pid),
            other: other.and_then(ServerProcesses::cpu_sample),
            client: cpu_sample("/proc/self", false),
        }
    }
}

impl CpuSample {
    /// Both samples' ticks added up, their thread groups side by side.
    fn merged(mut self, other: Option<CpuSample>) -> CpuSample {
        if let Some(other) = other {
            self.ticks += other.ticks;
            self.user_ticks += other.user_ticks;
            for (name, ticks) in other.threads {
                *self.threads.entry(name).or_default() += ticks;
            }
        }
        self
    }
}

/// The CPU of a process and of its children (a PostgreSQL postmaster and the backends,
/// writers and launchers it forked), all counted under one thread group `group`. A child
/// that exits during a window takes its ticks with it: the pooled backends live throughout.
pub fn process_family_sample(parent: u32, group: &str) -> Option<CpuSample> {
    let (_, mut user_ticks, mut system_ticks) = stat_ticks(&format!("/proc/{parent}/stat"))?;
    for entry in std::fs::read_dir("/proc").ok()?.take(1_000_000).flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if pid != parent && parent_pid(pid) == Some(parent) {
            let path = format!("/proc/{pid}/stat");
            if let Some((_, user, system)) = stat_ticks(&path) {
                user_ticks += user;
                system_ticks += system;
            }
        }
    }
    Some(CpuSample {
        ticks: user_ticks + system_ticks,
        user_ticks,
        threads: BTreeMap::from([(group.to_owned(), user_ticks + system_ticks)]),
    })
}

/// A process's parent (`ppid`, the second field after the name in `/proc/<pid>/stat`).
pub fn parent_pid(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    text.get(close + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Other processes (a build, a test run) skew a 2-core measurement badly: before each load,
/// wait (at most `QUIET_WAIT_LIMIT`) until the whole machine uses less than `QUIET_CORES`.
pub fn wait_for_quiet() -> Duration {
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
pub fn machine_busy_ticks() -> Option<u64> {
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

pub fn cpu_sample(process: &str, with_threads: bool) -> Option<CpuSample> {
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
pub struct MemoryStatus {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub anon_kib: u64,
    pub file_kib: u64,
    pub threads: u64,
}

pub fn memory_status(pid: u32) -> BenchResult<MemoryStatus> {
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
pub struct Mapping {
    pub name: String,
    pub size_kib: u64,
    pub rss_kib: u64,
}

/// The mappings holding the most resident memory, largest first.
pub fn largest_mappings(pid: u32) -> Vec<Mapping> {
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

pub fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn proc_field(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then(|| value.trim().to_owned())
    })
}
