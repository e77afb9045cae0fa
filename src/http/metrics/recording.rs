//! `RequestMetrics`: every answered request counted by route, method and status, and its
//! duration by route, in plain atomics laid out in fixed arrays indexed by `Route` (and
//! `PageRoute`), so that a request does a few relaxed atomic adds and takes no lock. The
//! arrays are sharded by thread, so that cores do not contend for one counter's cache line;
//! a scrape adds the shards up.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::Method;

use crate::http::pages::PageRoute;
use crate::http::routes::Route;

/// The route label of a path that matched no route: one value, whatever the path.
pub const UNMATCHED_ROUTE_LABEL: &str = "unmatched";

/// One slot per API route, then one per page, and the last for paths that matched none.
const ROUTE_SLOTS: usize = Route::ALL.len() + PageRoute::ALL.len() + 1;

/// Where the page slots begin.
const FIRST_PAGE_SLOT: usize = Route::ALL.len();

/// The slot of paths that matched nothing.
const UNMATCHED_SLOT: usize = ROUTE_SLOTS - 1;

/// What a request's path matched, for its route label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedRoute {
    /// An API route: labelled with its template under `/frontend/api/v1`.
    Api(Route),
    /// A hosted page: labelled with its path.
    Page(PageRoute),
    Nothing,
}

impl MatchedRoute {
    fn slot(self) -> usize {
        let slot = match self {
            MatchedRoute::Api(route) => {
                Some(route as usize).filter(|slot| *slot < Route::ALL.len())
            }
            MatchedRoute::Page(page) => Some(page as usize)
                .filter(|slot| *slot < PageRoute::ALL.len())
                .map(|slot| FIRST_PAGE_SLOT + slot),
            MatchedRoute::Nothing => None,
        };
        slot.unwrap_or(UNMATCHED_SLOT)
    }
}

/// The method labels; any other method counts as `other`.
pub const METHOD_LABELS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other",
];

/// The status labels: the codes the server answers with, each on its own, then one per
/// class for any other code, so that the set stays closed.
pub const STATUS_LABELS: [&str; 24] = [
    "200", "201", "204", "302", "303", "304", "400", "401", "403", "404", "405", "408", "409",
    "413", "415", "429", "500", "503", "504", "1xx", "2xx", "3xx", "4xx", "5xx",
];

/// The codes counted on their own: `STATUS_LABELS` up to the per-class slots.
const SEPARATE_STATUS_CODES: [u16; 19] = [
    200, 201, 204, 302, 303, 304, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429, 500, 503, 504,
];

/// Where the per-class slots begin in `STATUS_LABELS`.
const FIRST_CLASS_SLOT: usize = SEPARATE_STATUS_CODES.len();

/// The histogram's upper bounds, in microseconds: from a cached token check (well under a
/// millisecond) to a sign-in that waited for the hash queue (seconds).
pub const DURATION_BOUNDS_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// One route's durations: a count per bucket (not cumulative; the last is `+Inf`) and their
/// sum. A cache line of its own, so that routes busy on different cores do not share one.
#[derive(Debug, Default)]
#[repr(align(128))]
struct RouteDurations {
    buckets: [AtomicU64; DURATION_BOUNDS_MICROS.len() + 1],
    sum_nanos: AtomicU64,
}

/// How many shards the counters are split into. A thread records into the shard its
/// `ThreadId` picks, so that the runtime's workers, answering the same route with the same
/// status all day, each add to cache lines of their own instead of passing one line from
/// core to core on every request; a scrape adds the shards up. Thread ids are numbered in
/// the order threads start, so the workers, started together, fall in different shards as
/// long as there are no more of them than shards.
const SHARDS: usize = 16;

/// The request counters and duration histograms, made once with the `Api`.
#[derive(Debug)]
pub struct RequestMetrics {
    /// Each made on the first request a thread of its own records, so that an install holds
    /// only the shards its threads use (one per runtime worker).
    shards: [OnceLock<CounterShard>; SHARDS],
    /// Each slot's route label, filled from `Route::ALL` and `PageRoute::ALL`, so that a new
    /// variant is covered.
    route_labels: [&'static str; ROUTE_SLOTS],
}

/// One shard's counters: its own allocations, so no two shards share a cache line.
#[derive(Debug)]
struct CounterShard {
    /// `[route slot][method][status]`, flattened.
    requests: Box<[AtomicU64]>,
    durations: Box<[RouteDurations]>,
}

impl CounterShard {
    fn new() -> CounterShard {
        CounterShard {
            requests: (0..ROUTE_SLOTS * METHOD_LABELS.len() * STATUS_LABELS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            durations: (0..ROUTE_SLOTS)
                .map(|_| RouteDurations::default())
                .collect(),
        }
    }
}

/// One request counter's labels and value, as a scrape reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestCount {
    pub route: &'static str,
    pub method: &'static str,
    pub status: &'static str,
    pub count: u64,
}

/// One route's histogram, as a scrape reads it: the count of each bucket alone (the encoder
/// adds them up), by upper bound in seconds, the last being `+Inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteHistogram {
    pub route: &'static str,
    pub sum_seconds: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

impl Default for RequestMetrics {
    fn default() -> RequestMetrics {
        let mut route_labels = [UNMATCHED_ROUTE_LABEL; ROUTE_SLOTS];
        for route in Route::ALL {
            if let Some(label) = route_labels.get_mut(MatchedRoute::Api(route).slot()) {
                *label = route.template();
            }
        }
        for page in PageRoute::ALL {
            if let Some(label) = route_labels.get_mut(MatchedRoute::Page(page).slot()) {
                *label = page.path();
            }
        }
        RequestMetrics {
            shards: std::array::from_fn(|_| OnceLock::new()),
            route_labels,
        }
    }
}

impl RequestMetrics {
    /// Counts one answered request, in the calling thread's shard.
    pub fn record(&self, matched: MatchedRoute, method: &Method, status: u16, elapsed: Duration) {
        let Some(shard) = self.shards.get(current_thread_shard()) else {
            return;
        };
        let shard = shard.get_or_init(CounterShard::new);
        let route_slot = matched.slot();
        let index = (route_slot * METHOD_LABELS.len() + method_slot(method)) * STATUS_LABELS.len()
            + status_slot(status);
        if let Some(counter) = shard.requests.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let Some(durations) = shard.durations.get(route_slot) else {
            return;
        };
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let micros = nanos / 1_000;
        let bucket = DURATION_BOUNDS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(DURATION_BOUNDS_MICROS.len());
        if let Some(bucket) = durations.buckets.get(bucket) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        durations.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The shards some thread has recorded into.
    fn used_shards(&self) -> impl Iterator<Item = &CounterShard> {
        self.shards.iter().filter_map(OnceLock::get)
    }

    /// Every request counter above zero, summed over the shards, in slot order.
    pub fn request_counts(&self) -> Vec<RequestCount> {
        let mut counts = Vec::new();
        for (route_slot, route) in self.route_labels.iter().enumerate() {
            for (method_slot, method) in METHOD_LABELS.iter().enumerate() {
                for (status_slot, status) in STATUS_LABELS.iter().enumerate() {
                    let index = (route_slot * METHOD_LABELS.len() + method_slot)
                        * STATUS_LABELS.len()
                        + status_slot;
                    let count = self
                        .used_shards()
                        .filter_map(|shard| shard.requests.get(index))
                        .map(|counter| counter.load(Ordering::Relaxed))
                        .sum();
                    if count > 0 {
                        counts.push(RequestCount {
                            route,
                            method,
                            status,
                            count,
                        });
                    }
                }
            }
        }
        counts
    }

    /// The histogram of every route that answered at least one request, summed over the
    /// shards.
    pub fn route_histograms(&self) -> Vec<RouteHistogram> {
        let mut histograms = Vec::new();
        for (route_slot, route) in self.route_labels.iter().enumerate() {
            let route_durations: Vec<&RouteDurations> = self
                .used_shards()
                .filter_map(|shard| shard.durations.get(route_slot))
                .collect();
            let mut count = 0;
            let mut buckets = Vec::with_capacity(DURATION_BOUNDS_MICROS.len() + 1);
            for slot in 0..=DURATION_BOUNDS_MICROS.len() {
                let in_bucket: u64 = route_durations
                    .iter()
                    .filter_map(|durations| durations.buckets.get(slot))
                    .map(|bucket| bucket.load(Ordering::Relaxed))
                    .sum();
                count += in_bucket;
                let upper_bound = DURATION_BOUNDS_MICROS
                    .get(slot)
                    .map_or(f64::INFINITY, |micros| *micros as f64 / 1e6);
                buckets.push((upper_bound, in_bucket));
            }
            if count == 0 {
                continue;
            }
            let sum_nanos: u64 = route_durations
                .iter()
                .map(|durations| durations.sum_nanos.load(Ordering::Relaxed))
                .sum();
            histograms.push(RouteHistogram {
                route,
                sum_seconds: sum_nanos as f64 / 1e9,
                count,
                buckets,
            });
        }
        histograms
    }
}

/// The calling thread's shard: its `ThreadId`'s number, modulo `SHARDS`.
fn current_thread_shard() -> usize {
    let mut number = ThreadIdNumber::default();
    std::thread::current().id().hash(&mut number);
    usize::try_from(number.finish() % SHARDS as u64).unwrap_or(0)
}

/// A `Hasher` that keeps the number a `ThreadId` hashes as (its place in the order threads
/// started), so that consecutive threads get consecutive shards where a real hash would
/// scatter them; should the id hash as anything else, that is folded in, still the same
/// for one thread.
#[derive(Debug, Default)]
struct ThreadIdNumber(u64);

impl Hasher for ThreadIdNumber {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, number: u64) {
        self.0 = self.0.wrapping_mul(31).wrapping_add(number);
    }
}

/// The methods counted under their own label, in `METHOD_LABELS`' order: compared as
/// `Method`s, which for these is a comparison of tags, not of text.
const SEPARATE_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
];

fn method_slot(method: &Method) -> usize {
    SEPARATE_METHODS
        .iter()
        .position(|separate| separate == method)
        .unwrap_or(METHOD_LABELS.len() - 1)
}

fn status_slot(status: u16) -> usize {
    SEPARATE_STATUS_CODES
        .iter()
        .position(|code| *code == status)
        .unwrap_or_else(|| {
            let class = usize::from(status / 100).clamp(1, 5);
            FIRST_CLASS_SLOT + class - 1
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_page_has_a_slot_and_a_label_of_its_own() {
        let metrics = RequestMetrics::default();
        let mut slots: Vec<usize> = Route::ALL
            .into_iter()
            .map(MatchedRoute::Api)
            .chain(PageRoute::ALL.into_iter().map(MatchedRoute::Page))
            .chain([MatchedRoute::Nothing])
            .map(MatchedRoute::slot)
            .collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots, (0..ROUTE_SLOTS).collect::<Vec<_>>());
        for route in Route::ALL {
            let slot = MatchedRoute::Api(route).slot();
            assert_eq!(metrics.route_labels[slot], route.template());
        }
        for page in PageRoute::ALL {
            assert_eq!(
                metrics.route_labels[MatchedRoute::Page(page).slot()],
                page.path()
            );
        }
        assert_eq!(metrics.route_labels[UNMATCHED_SLOT], UNMATCHED_ROUTE_LABEL);
        let mut labels = metrics.route_labels.to_vec();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ROUTE_SLOTS, "two slots share a label");
    }

    #[test]
    fn each_separate_code_has_its_own_label() {
        for (code, label) in SEPARATE_STATUS_CODES.iter().zip(STATUS_LABELS) {
            assert_eq!(code.to_string(), label);
        }
        assert_eq!(STATUS_LABELS.len(), FIRST_CLASS_SLOT + 5);
        assert_eq!(STATUS_LABELS[status_slot(502)], "5xx");
        assert_eq!(STATUS_LABELS[status_slot(101)], "1xx");
    }

    #[test]
    fn each_separate_method_has_its_own_label() {
        for (method, label) in SEPARATE_METHODS.iter().zip(METHOD_LABELS) {
            assert_eq!(method.as_str(), label);
            assert_eq!(METHOD_LABELS[method_slot(method)], label);
        }
        assert_eq!(METHOD_LABELS.len(), SEPARATE_METHODS.len() + 1);
        let brew = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(METHOD_LABELS[method_slot(&brew)], "other");
    }

    #[test]
    fn threads_recording_at_once_are_each_counted_in_their_own_shard() {
        let metrics = RequestMetrics::default();
        let current_user = MatchedRoute::Api(Route::CurrentUser);
        let fast = Duration::from_micros(300);
        let mut shards_picked: Vec<usize> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        for _ in 0..1000 {
                            metrics.record(current_user, &Method::GET, 200, fast);
                        }
                        current_thread_shard()
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().unwrap())
                .collect()
        });
        metrics.record(current_user, &Method::GET, 200, Duration::from_millis(3));
        shards_picked.push(current_thread_shard());
        assert_eq!(current_thread_shard(), current_thread_shard());
        shards_picked.sort_unstable();
        shards_picked.dedup();
        assert_eq!(metrics.used_shards().count(), shards_picked.len());
        let counts: Vec<_> = metrics
            .request_counts()
            .into_iter()
            .map(|count| (count.route, count.method, count.status, count.count))
            .collect();
        assert_eq!(counts, [("/user/current", "GET", "200", 4001)]);
        let histograms = metrics.route_histograms();
        assert_eq!(histograms.len(), 1);
        let current_user = &histograms[0];
        assert_eq!(current_user.count, 4001);
        assert_eq!(current_user.buckets[0], (0.0005, 4000));
        assert_eq!(current_user.buckets[3], (0.005, 1));
        assert!((current_user.sum_seconds - 1.203).abs() < 1e-9);
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let metrics = RequestMetrics::default();
        let fast = Duration::from_micros(300);
        let current_user = MatchedRoute::Api(Route::CurrentUser);
        metrics.record(current_user, &Method::GET, 200, fast);
        metrics.record(current_user, &Method::GET, 200, fast);
        metrics.record(current_user, &Method::GET, 401, fast);
        let brew = Method::from_bytes(b"BREW").unwrap();
        metrics.record(MatchedRoute::Nothing, &brew, 418, fast);
        let sign_in = MatchedRoute::Api(Route::SignIn);
        metrics.record(sign_in, &Method::POST, 200, Duration::from_secs(20));
        let counts: Vec<_> = metrics
            .request_counts()
            .into_iter()
            .map(|count| (count.route, count.method, count.status, count.count))
            .collect();
        assert_eq!(
            counts,
            [
                ("/auth/sign-in", "POST", "200", 1),
                ("/user/current", "GET", "200", 2),
                ("/user/current", "GET", "401", 1),
                ("unmatched", "other", "4xx", 1),
            ]
        );
        let histograms = metrics.route_histograms();
        let sign_in = &histograms[0];
        assert_eq!((sign_in.route, sign_in.count), ("/auth/sign-in", 1));
        assert_eq!(sign_in.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(sign_in.buckets[sign_in.buckets.len() - 2], (10.0, 0));
        assert_eq!(sign_in.buckets[0], (0.0005, 0));
        let current_user = &histograms[1];
        assert_eq!(current_user.count, 3);
        assert_eq!(current_user.buckets[0], (0.0005, 3));
        assert!((current_user.sum_seconds - 0.0009).abs() < 1e-9);
    }
}
