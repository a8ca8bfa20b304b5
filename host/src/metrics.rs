//! Counters, and logging that says a thing once per burst.
//!
//! The counters are plain atomics so the request path never takes a lock for
//! them. Prometheus exposition builds on them (issue: hot swap and A/B).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub policy_calls: AtomicU64,
    pub policy_traps: AtomicU64,
    pub policy_timeouts: AtomicU64,
    pub policy_errors: AtomicU64,
    pub policy_busy: AtomicU64,
    pub hints: AtomicU64,
    pub invalid_hints: AtomicU64,
    pub pushes_promised: AtomicU64,
    pub pushes_completed: AtomicU64,
    pub pushes_cancelled: AtomicU64,
    pub pushes_over_budget: AtomicU64,
    pub pushed_bytes: AtomicU64,
    /// Pushed bytes sent before the client cancelled the push.
    pub wasted_bytes: AtomicU64,
    pub early_hints_sent: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
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
    fn burst_log_admits_first_then_summarises() {
        let log = BurstLog::new(Duration::from_millis(50));
        assert_eq!(log.admit(), Some(0));
        assert_eq!(log.admit(), None);
        assert_eq!(log.admit(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(log.admit(), Some(2));
    }
}
