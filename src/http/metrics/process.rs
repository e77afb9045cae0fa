//! `ProcessFigures`: the process's memory, CPU time and open files, read from `/proc/self`
//! at scrape time (Linux only; elsewhere each figure is `None` and its series is left out).

/// What a scrape reports about the process, each `None` when it could not be read.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessFigures {
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_files: Option<u64>,
    pub max_open_files: Option<u64>,
}

impl ProcessFigures {
    pub fn read() -> ProcessFigures {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        ProcessFigures {
            resident_bytes: status_kib(&status, "VmRSS:").map(|kib| kib * 1024),
            virtual_bytes: status_kib(&status, "VmSize:").map(|kib| kib * 1024),
            cpu_seconds: cpu_seconds(&stat, clock_ticks_per_second()),
            open_files: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as u64),
            max_open_files: max_open_files(&limits),
        }
    }
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// User plus system time from `/proc/self/stat`: the 14th and 15th fields, counted after the
/// command name's closing parenthesis (the name may hold spaces).
fn cpu_seconds(stat: &str, ticks_per_second: u64) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user_ticks: u64 = fields.next()?.parse().ok()?;
    let system_ticks: u64 = fields.next()?.parse().ok()?;
    Some((user_ticks + system_ticks) as f64 / ticks_per_second.max(1) as f64)
}

/// The soft limit of the `Max open files` line of `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proc_files_are_parsed_field_by_field() {
        let status = "Name:\tlatchkey\nVmSize:\t  123456 kB\nVmRSS:\t    7890 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(7890));
        assert_eq!(status_kib(status, "VmSize:"), Some(123_456));
        let stat = "4242 (a (strange) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0";
        assert_eq!(cpu_seconds(stat, 100), Some(3.0));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn this_process_reads_its_own_figures() {
        let figures = ProcessFigures::read();
        assert!(figures.resident_bytes.unwrap() > 0);
        assert!(figures.virtual_bytes.unwrap() >= figures.resident_bytes.unwrap());
        assert!(figures.cpu_seconds.unwrap() >= 0.0);
        assert!(figures.open_files.unwrap() >= 3);
        assert!(figures.max_open_files.unwrap() >= figures.open_files.unwrap());
    }
}
