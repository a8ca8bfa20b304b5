//! Counters, and logging that says a thing once per burst.
//!
//! The request path never takes a lock for a counter, nor a locked
//! instruction: each thread that counts writes a set of counters of its own
//! (a plain load and store), and a read sums the sets. A cached policy
//! answer bumps half a dozen counters, and a locked add each cost about as
//! much as the rest of the cache hit (perf, BENCHMARKS.md). Prometheus
//! exposition builds on them (issue: hot swap and A/B).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the policy latency histogram, in microseconds: from a
/// compiled policy's few microseconds to the 20 ms default deadline.
pub const LATENCY_BOUNDS_US: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000,
];

/// One thread's counters (see [`Metrics`]). Cache-line aligned: two
/// threads' sets never share a line; laid out in the order written.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub struct Counters {
    // What most requests count, first: one cache line (a cached page's
    // hints touch nothing else).
    pub requests: AtomicU64,
    pub policy_calls: AtomicU64,
    pub policy_cached: AtomicU64,
    pub hints: AtomicU64,
    pub early_hints_sent: AtomicU64,
    /// Links sent in 103 Early Hints.
    pub hinted_links: AtomicU64,
    /// A hinted resource later requested on the same connection: a used hint.
    pub hinted_requested: AtomicU64,
    pub pushes_promised: AtomicU64,
    pub policy_traps: AtomicU64,
    pub policy_timeouts: AtomicU64,
    pub policy_errors: AtomicU64,
    pub policy_busy: AtomicU64,
    /// Calls on a fresh instance that was instantiated ahead of them.
    pub policy_ahead: AtomicU64,
    pub floods: AtomicU64,
    /// Proxied requests answered 502/504 because the upstream failed.
    pub upstream_errors: AtomicU64,
    pub invalid_hints: AtomicU64,
    pub pushes_completed: AtomicU64,
    pub pushes_cancelled: AtomicU64,
    pub pushes_over_budget: AtomicU64,
    pub pushed_bytes: AtomicU64,
    /// Pushed bytes sent before the client cancelled the push.
    pub wasted_bytes: AtomicU64,
    /// Nanoseconds spent in policy calls.
    pub policy_nanos: AtomicU64,
    /// Policy calls per latency bucket (`LATENCY_BOUNDS_US`, then +Inf).
    pub policy_latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    /// A pushed resource the client requested anyway on the same connection.
    pub pushed_requested_anyway: AtomicU64,
    pub connections: AtomicU64,
}

/// Which counter: `|c| &c.requests`.
pub type Pick = fn(&Counters) -> &AtomicU64;

/// Sets of counters per [`Metrics`]: the first `SETS - 1` counting threads
/// get one each; later threads share the last, with locked adds.
const SETS: usize = 16;

/// This thread's set, and whether it is this thread's alone.
fn set_of_thread() -> (usize, bool) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SET: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    let set = SET.with(|s| {
        let mut set = s.get();
        if set == usize::MAX {
            // Never handed out again: a set's only writer is its thread.
            set = NEXT.fetch_add(1, Ordering::Relaxed).min(SETS - 1);
            s.set(set);
        }
        set
    });
    (set, set < SETS - 1)
}

/// Add `n` to a counter of this thread's set (`own`: this thread is its
/// only writer, so no read-modify-write is needed).
fn bump(counter: &AtomicU64, n: u64, own: bool) {
    if own {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    } else {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One thread's counters of a [`Metrics`] ([`Metrics::adder`]). Not `Send`:
/// held across an `.await`, it could be used from another thread, whose
/// adds to this set would race its owner's.
pub struct Adder<'a> {
    counters: &'a Counters,
    own: bool,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl Adder<'_> {
    pub fn add(&self, pick: impl Fn(&Counters) -> &AtomicU64, n: u64) {
        bump(pick(self.counters), n, self.own);
    }
}

/// A set of counters (the process's, or one policy version's), counted per
/// thread and summed when read.
pub struct Metrics {
    sets: Box<[Counters]>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            sets: (0..SETS).map(|_| Counters::default()).collect(),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("requests", &self.get(|c| &c.requests))
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn add(&self, pick: impl Fn(&Counters) -> &AtomicU64, n: u64) {
        let (set, own) = set_of_thread();
        bump(pick(&self.sets[set]), n, own);
    }

    /// This thread's counters, found once for several adds.
    pub fn adder(&self) -> Adder<'_> {
        let (set, own) = set_of_thread();
        Adder {
            counters: &self.sets[set],
            own,
            _this_thread: std::marker::PhantomData,
        }
    }

    pub fn inc(&self, pick: impl Fn(&Counters) -> &AtomicU64) {
        self.add(pick, 1);
    }

    /// The counter's value: the sum of every thread's.
    pub fn get(&self, pick: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.sets
            .iter()
            .map(|set| pick(set).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// The Prometheus text exposition of several label sets (e.g.
    /// `policy="x",version="y"`), one HELP/TYPE block per series name.
    pub fn render_all(sets: &[(String, std::sync::Arc<Metrics>)]) -> String {
        let series: [(&str, &str, Pick); 23] = [
            ("herald_requests_total", "Requests received.", |m| {
                &m.requests
            }),
            ("herald_policy_calls_total", "Policy calls.", |m| {
                &m.policy_calls
            }),
            (
                "herald_flood_connections_closed_total",
                "Connections closed for flooding PING or SETTINGS frames.",
                |m| &m.floods,
            ),
            (
                "herald_upstream_errors_total",
                "Proxied requests answered 502 or 504 because the upstream failed.",
                |m| &m.upstream_errors,
            ),
            (
                "herald_policy_instantiated_ahead_total",
                "Policy calls on a fresh instance instantiated before the request came.",
                |m| &m.policy_ahead,
            ),
            (
                "herald_policy_cached_answers_total",
                "Policy calls answered from the decision cache ([policy.cache]).",
                |m| &m.policy_cached,
            ),
            (
                "herald_policy_traps_total",
                "Policy calls that trapped.",
                |m| &m.policy_traps,
            ),
            (
                "herald_policy_timeouts_total",
                "Policy calls stopped at their deadline.",
                |m| &m.policy_timeouts,
            ),
            (
                "herald_policy_errors_total",
                "Policy calls that returned an error.",
                |m| &m.policy_errors,
            ),
            (
                "herald_policy_busy_total",
                "Policy calls that found no free slot in time.",
                |m| &m.policy_busy,
            ),
            ("herald_hints_total", "Hints returned by policies.", |m| {
                &m.hints
            }),
            (
                "herald_invalid_hints_total",
                "Hints dropped by validation or limits.",
                |m| &m.invalid_hints,
            ),
            ("herald_pushes_promised_total", "PUSH_PROMISEs sent.", |m| {
                &m.pushes_promised
            }),
            (
                "herald_pushes_completed_total",
                "Pushed responses sent whole.",
                |m| &m.pushes_completed,
            ),
            (
                "herald_pushes_cancelled_total",
                "Pushes reset by the client.",
                |m| &m.pushes_cancelled,
            ),
            (
                "herald_pushes_over_budget_total",
                "Push candidates turned into early hints by a budget or the client's stream limit.",
                |m| &m.pushes_over_budget,
            ),
            (
                "herald_pushed_bytes_total",
                "Pushed body bytes sent.",
                |m| &m.pushed_bytes,
            ),
            (
                "herald_wasted_bytes_total",
                "Pushed bytes sent before the client cancelled the push.",
                |m| &m.wasted_bytes,
            ),
            (
                "herald_early_hints_total",
                "103 Early Hints responses sent.",
                |m| &m.early_hints_sent,
            ),
            ("herald_connections_total", "Connections accepted.", |m| {
                &m.connections
            }),
            (
                "herald_hinted_links_total",
                "Links sent in 103 Early Hints.",
                |m| &m.hinted_links,
            ),
            (
                "herald_hinted_requested_total",
                "Hinted resources then requested on the same connection (hints used).",
                |m| &m.hinted_requested,
            ),
            (
                "herald_pushed_requested_anyway_total",
                "Pushed resources the client requested anyway on the same connection.",
                |m| &m.pushed_requested_anyway,
            ),
        ];
        let mut out = String::with_capacity(4096);
        for (name, help, pick) in series {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for (labels, m) in sets {
                out.push_str(&format!("{name}{{{labels}}} {}\n", m.get(pick)));
            }
        }
        let name = "herald_policy_call_seconds";
        out.push_str(&format!(
            "# HELP {name} Policy call latency (instantiation and call).\n# TYPE {name} histogram\n"
        ));
        for (labels, m) in sets {
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
                cumulative += m.get(|c| &c.policy_latency[i]);
                out.push_str(&format!(
                    "{name}_bucket{{{labels},le=\"{}\"}} {cumulative}\n",
                    *bound as f64 / 1e6
                ));
            }
            cumulative += m.get(|c| &c.policy_latency[LATENCY_BOUNDS_US.len()]);
            out.push_str(&format!(
                "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}\n"
            ));
            out.push_str(&format!(
                "{name}_sum{{{labels}}} {}\n",
                m.get(|c| &c.policy_nanos) as f64 / 1e9
            ));
            out.push_str(&format!("{name}_count{{{labels}}} {cumulative}\n"));
        }
        out
    }

    /// A `103 Early Hints` of `links` links was sent (HTTP/2 or HTTP/1.1).
    pub fn early_hints_sent(&self, links: usize) {
        let adder = self.adder();
        adder.add(|c| &c.early_hints_sent, 1);
        adder.add(|c| &c.hinted_links, links as u64);
    }

    /// Record one policy call's latency.
    pub fn observe_policy_call(&self, elapsed: std::time::Duration) {
        self.add(|c| &c.policy_nanos, elapsed.as_nanos() as u64);
        let us = elapsed.as_micros() as u64;
        let slot = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.inc(|c| &c.policy_latency[slot]);
    }
}

/// What a connection delivered ahead of time, to learn whether it was used:
/// a later request for a pushed path means the push was not (pushed but
/// requested anyway); for a hinted path it means the hint was (the preload).
/// Counted once per path, on the version that delivered it.
pub struct Followups {
    delivered: Mutex<Delivered>,
    /// `delivered.last`'s addresses, read without the lock.
    seen: LastSeen,
    /// Every path ever recorded, as a one-hash Bloom filter of 64 bits
    /// ([`path_bit`]; never cleared): a request for a path whose bit is
    /// clear was never hinted or pushed here, and takes no lock (a page,
    /// most often, on a connection whose assets were hinted).
    recorded: AtomicU64,
    cap: usize,
}

/// A path's bit in [`Followups::recorded`]: of its length and two of its
/// bytes, spread by a multiply (a page and its assets seldom share one).
fn path_bit(path: &str) -> u64 {
    let b = path.as_bytes();
    let (Some(&last), n) = (b.last(), b.len()) else {
        return 1;
    };
    let mixed = n as u64 ^ (last as u64) << 8 ^ (b[n / 2] as u64) << 16;
    1 << (mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
}

/// The shared hint list recorded last and its metrics, by address, as a
/// sequence lock: written under `Followups::delivered`'s lock, read without
/// it. The sequence is odd while a write is under way; a read that saw it
/// change (or odd) is not trusted. (0, 0) is no list.
#[derive(Default)]
struct LastSeen {
    seq: AtomicU64,
    set: AtomicUsize,
    metrics: AtomicUsize,
}

impl LastSeen {
    /// Whether `(set, metrics)` was the last recorded, as one consistent read.
    #[inline]
    fn is(&self, set: usize, metrics: usize) -> bool {
        let before = self.seq.load(Ordering::Acquire);
        let same = self.set.load(Ordering::Relaxed) == set
            && self.metrics.load(Ordering::Relaxed) == metrics;
        std::sync::atomic::fence(Ordering::Acquire);
        same && before & 1 == 0 && self.seq.load(Ordering::Relaxed) == before
    }

    /// Under the lock: `(set, metrics)` is now the last recorded.
    fn store(&self, set: usize, metrics: usize) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        self.set.store(set, Ordering::Relaxed);
        self.metrics.store(metrics, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

/// Where an `Arc`'s value lives: what [`LastSeen`] names it by.
fn address<T: ?Sized>(a: &std::sync::Arc<T>) -> usize {
    std::sync::Arc::as_ptr(a) as *const () as usize
}

/// A shared hint list, compared by address.
pub type Set = std::sync::Arc<dyn std::any::Any + Send + Sync>;

#[derive(Default)]
struct Delivered {
    /// Hashed with foldhash (seeded per process): looked up on every
    /// request, and bounded by `cap`, so no key set can grow it.
    map: std::collections::HashMap<
        String,
        (std::sync::Arc<Metrics>, bool),
        foldhash::fast::RandomState,
    >,
    /// The shared hint list recorded last (`Followups::seen` names it and
    /// its metrics), while nothing has changed the map since: recording it
    /// again would change nothing. Held, so its address cannot be reused by
    /// another list meanwhile.
    last: Option<Set>,
}

impl Followups {
    pub fn new(cap: usize) -> Followups {
        Followups {
            delivered: Mutex::new(Delivered::default()),
            seen: LastSeen::default(),
            recorded: AtomicU64::new(0),
            cap,
        }
    }

    #[inline]
    fn record<'a, T: std::any::Any + Send + Sync>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
        metrics: &std::sync::Arc<Metrics>,
        pushed: bool,
        set: Option<&std::sync::Arc<T>>,
    ) {
        let metrics_at = address(metrics);
        // The same list again, with nothing changed since, changes nothing:
        // a comparison, without the lock. (Its address cannot be another
        // list's: `last` holds the one it names, and the caller this one.)
        if let Some(set) = set
            && self.seen.is(address(set), metrics_at)
        {
            return;
        }
        self.record_locked(paths, metrics, metrics_at, pushed, set);
    }

    #[inline(never)]
    fn record_locked<'a, T: std::any::Any + Send + Sync>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
        metrics: &std::sync::Arc<Metrics>,
        metrics_at: usize,
        pushed: bool,
        set: Option<&std::sync::Arc<T>>,
    ) {
        let mut d = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
        let mut bits = 0;
        for path in paths {
            bits |= path_bit(path);
            // A path delivered again (every page of a site hints the same
            // assets) costs no allocation.
            if let Some(entry) = d.map.get_mut(path) {
                if !std::sync::Arc::ptr_eq(&entry.0, metrics) {
                    entry.0 = metrics.clone();
                }
                entry.1 = pushed;
            } else if d.map.len() < self.cap {
                d.map.insert(path.to_string(), (metrics.clone(), pushed));
            }
        }
        // Before the lock is let go: a request that finds the path's bit
        // clear was not recorded yet.
        self.recorded.fetch_or(bits, Ordering::Release);
        match set {
            Some(s) => {
                self.seen.store(address(s), metrics_at);
                d.last = Some(s.clone() as Set);
            }
            None => self.forget_last(&mut d),
        }
    }

    /// Under the lock: no list is the last recorded any more. `seen` stops
    /// naming it before it is dropped (its address may then be reused).
    fn forget_last(&self, d: &mut Delivered) {
        if d.last.is_some() {
            self.seen.store(0, 0);
            d.last = None;
        }
    }

    pub fn pushed(&self, path: &str, metrics: &std::sync::Arc<Metrics>) {
        self.record([path], metrics, true, None::<&std::sync::Arc<()>>);
    }

    /// Paths sent as hints (a `103` and `Link`s).
    pub fn hinted<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
        metrics: &std::sync::Arc<Metrics>,
    ) {
        self.record(paths, metrics, false, None::<&std::sync::Arc<()>>);
    }

    /// The paths of a shared hint list (a cached plan's, `set`): the same
    /// list again, with nothing requested in between, costs a comparison
    /// instead of a lookup per path.
    #[inline]
    pub fn hinted_set<'a, T: std::any::Any + Send + Sync>(
        &self,
        set: &std::sync::Arc<T>,
        paths: impl IntoIterator<Item = &'a str>,
        metrics: &std::sync::Arc<Metrics>,
    ) {
        self.record(paths, metrics, false, Some(set));
    }

    /// A request for `path` arrived on the connection.
    pub fn requested(&self, path: &str) {
        if self.recorded.load(Ordering::Acquire) & path_bit(path) == 0 {
            return;
        }
        let hit = {
            let mut d = self.delivered.lock().unwrap_or_else(|e| e.into_inner());
            let hit = d.map.remove(path);
            if hit.is_some() {
                // Unnamed first, dropped after: its address may be reused.
                self.forget_last(&mut d);
            }
            hit
        };
        match hit {
            Some((m, true)) => m.inc(|c| &c.pushed_requested_anyway),
            Some((m, false)) => m.inc(|c| &c.hinted_requested),
            None => {}
        }
    }
}

/// Logs the first event of a burst at once, then at most one summary line per
/// window with how many were suppressed. A policy trapping on every request
/// under load gives one line per window, not thousands.
#[derive(Debug)]
pub struct BurstLog {
    window: Duration,
    state: Mutex<BurstState>,
}

#[derive(Debug)]
struct BurstState {
    window_start: Option<Instant>,
    suppressed: u64,
}

impl BurstLog {
    pub fn new(window: Duration) -> BurstLog {
        BurstLog {
            window,
            state: Mutex::new(BurstState {
                window_start: None,
                suppressed: 0,
            }),
        }
    }

    /// Returns `Some(n)` when this event should be logged, `n` being the events
    /// suppressed since the last logged one; `None` to stay quiet.
    pub fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.window_start {
            Some(start) if now.duration_since(start) < self.window => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.window_start = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        // More threads than sets: some count alone, the rest share one.
        let m = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..SETS * 2)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.inc(|c| &c.requests);
                        m.add(|c| &c.pushed_bytes, 3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.get(|c| &c.requests), (SETS * 2 * 1000) as u64);
        assert_eq!(m.get(|c| &c.pushed_bytes), (SETS * 2 * 3000) as u64);
        assert_eq!(m.get(|c| &c.hints), 0);
    }

    #[test]
    fn a_shared_hint_list_recorded_again_still_counts_what_is_requested() {
        use std::sync::Arc;
        let f = Followups::new(16);
        let (one, two) = (Arc::new(Metrics::default()), Arc::new(Metrics::default()));
        let list = Arc::new(["/a.css", "/b.js"]);
        let hint = |m: &Arc<Metrics>| f.hinted_set(&list, list.iter().copied(), m);
        let used = |m: &Metrics| m.get(|c| &c.hinted_requested);
        hint(&one);
        hint(&one);
        f.requested("/a.css");
        assert_eq!(used(&one), 1);
        // Requested again without a new hint: not a used hint.
        f.requested("/a.css");
        assert_eq!(used(&one), 1);
        // The same list again, after a request took a path from it: the
        // path is hinted again, and its next request counts.
        hint(&one);
        f.requested("/a.css");
        assert_eq!(used(&one), 2);
        // The same list from another version: counted on that version.
        hint(&two);
        f.requested("/b.js");
        assert_eq!((used(&one), used(&two)), (2, 1));
        // Pushed since: a request is "pushed, requested anyway" until the
        // list is hinted again.
        hint(&one);
        f.pushed("/a.css", &one);
        hint(&one);
        f.requested("/a.css");
        assert_eq!(used(&one), 3);
        assert_eq!(one.get(|c| &c.pushed_requested_anyway), 0);
    }

    #[test]
    fn every_recorded_path_passes_the_filter_and_the_demo_page_does_not() {
        use std::sync::Arc;
        let f = Followups::new(64);
        let m = Arc::new(Metrics::default());
        // Whatever bits they share with the page, every recorded path is
        // found, and counted once.
        let assets: Vec<String> = (0..40).map(|i| format!("/assets/{i}.js")).collect();
        f.hinted(assets.iter().map(|a| a.as_str()), &m);
        f.pushed("/pushed.css", &m);
        for a in &assets {
            f.requested(a);
            f.requested(a);
        }
        f.requested("/pushed.css");
        assert_eq!(m.get(|c| &c.hinted_requested), 40);
        assert_eq!(m.get(|c| &c.pushed_requested_anyway), 1);
        // The demo page's bit is not one of its five assets': its requests
        // take no lock on a connection that was sent their hints.
        let demo = [
            "/css/site.css",
            "/js/app.js",
            "/fonts/dejavu-light.woff",
            "/img/logo.svg",
            "/img/hero.svg",
        ];
        let bits = demo.iter().fold(0, |b, p| b | path_bit(p));
        assert_eq!(bits & path_bit("/"), 0);
        assert_eq!(path_bit(""), 1);
    }

    #[test]
    fn a_shared_hint_list_is_recorded_right_while_others_race_it() {
        use std::sync::Arc;
        // Four threads each hint the same list, then request one of its
        // paths, 2,000 times. Between a thread's hint and its request the
        // path is recorded, so the request counts it or another thread's
        // request took it first (and counted it): one count stands for at
        // most one pair of each thread, so there are at least 2,000. Were a
        // hint skipped after a request had taken a path, a path would be
        // counted once and never again.
        let f = Arc::new(Followups::new(64));
        let m = Arc::new(Metrics::default());
        let list = Arc::new(["/a.css", "/b.js", "/c.png"]);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (f, m, list) = (f.clone(), m.clone(), list.clone());
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        f.hinted_set(&list, list.iter().copied(), &m);
                        f.requested(list[(i + t) % list.len()]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let used = m.get(|c| &c.hinted_requested);
        assert!(used >= 2000, "{used} hinted requests counted");
    }

    #[test]
    fn burst_log_admits_first_then_summarises() {
        let log = BurstLog::new(Duration::from_millis(50));
        assert_eq!(log.admit(), Some(0));
        assert_eq!(log.admit(), None);
        assert_eq!(log.admit(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(log.admit(), Some(2));
    }
}
