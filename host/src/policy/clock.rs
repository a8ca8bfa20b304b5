//! The epoch clock: a thread that advances Wasmtime's epoch every tick, which
//! is what stops guest code at its deadline and makes a long call yield.
//!
//! It ticks only while calls may be running. After `IDLE_TICKS` ticks with
//! none in flight it parks, and the next call wakes it: a server whose
//! answers all come from the decision cache, or that is idle, is not woken a
//! thousand times a second (each wake-up a context switch on the worker's
//! core under load: 0.025 a request, h2load with the cache).
//!
//! Invariant: while a [`Running`] guard lives, the clock is not parked. A
//! call takes the guard before any guest code runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

/// Idle ticks before the clock parks: calls that follow each other closely
/// (a loaded server without a cache) keep it ticking and never pay a wake-up.
const IDLE_TICKS: u32 = 100;

pub struct EpochClock {
    state: Arc<State>,
    thread: Thread,
}

struct State {
    in_flight: AtomicUsize,
    parked: AtomicBool,
    stop: AtomicBool,
}

/// A call in flight: the clock ticks until it is dropped.
pub struct Running<'a>(&'a EpochClock);

impl EpochClock {
    /// Start the clock's thread, calling `tick` every `every` while calls
    /// run (and for `IDLE_TICKS` after).
    pub fn start(
        every: Duration,
        mut tick: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Self> {
        let state = Arc::new(State {
            in_flight: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        let handle = std::thread::Builder::new()
            .name("herald-epoch".into())
            .spawn(move || {
                let mut idle = 0;
                while !st.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    tick();
                    if st.in_flight.load(Ordering::SeqCst) > 0 {
                        idle = 0;
                        continue;
                    }
                    idle += 1;
                    if idle < IDLE_TICKS {
                        continue;
                    }
                    // Announce the park, then look again: a call that
                    // started meanwhile either is seen here or sees `parked`
                    // and unparks (both SeqCst, so one of the two happens).
                    st.parked.store(true, Ordering::SeqCst);
                    if st.in_flight.load(Ordering::SeqCst) == 0 && !st.stop.load(Ordering::SeqCst) {
                        // May also return spuriously: the loop just ticks.
                        std::thread::park();
                    }
                    st.parked.store(false, Ordering::SeqCst);
                    idle = 0;
                }
            })?;
        Ok(EpochClock {
            state,
            thread: handle.thread().clone(),
        })
    }

    /// Mark a call in flight, waking the clock if it rests.
    pub fn running(&self) -> Running<'_> {
        self.state.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.state.parked.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
        Running(self)
    }

    /// Stop the thread (it ends within a tick).
    pub fn stop(&self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.state.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    const TICK: Duration = Duration::from_millis(1);

    fn ticks_during(ticks: &AtomicU64, wait: Duration) -> u64 {
        let before = ticks.load(Ordering::SeqCst);
        std::thread::sleep(wait);
        ticks.load(Ordering::SeqCst) - before
    }

    /// Wait (bounded) until the clock has parked: no tick for 20 ticks.
    fn until_parked(ticks: &AtomicU64) {
        let start = Instant::now();
        while ticks_during(ticks, TICK * 20) > 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "never parked");
        }
    }

    #[test]
    fn rests_when_idle_ticks_while_a_call_runs_and_stops() {
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = ticks.clone();
        let clock = EpochClock::start(TICK, move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        until_parked(&ticks);

        // A call wakes it, and it keeps ticking for as long as the call runs
        // (well past IDLE_TICKS).
        let call = clock.running();
        assert!(ticks_during(&ticks, TICK * 30) > 0, "woken by a call");
        std::thread::sleep(TICK * IDLE_TICKS);
        assert!(
            ticks_during(&ticks, TICK * 30) > 0,
            "ticks through a long call"
        );
        drop(call);
        until_parked(&ticks);

        // Stopped from rest, it ticks no more.
        clock.stop();
        let _call = clock.running();
        std::thread::sleep(TICK * 10);
        assert_eq!(ticks_during(&ticks, TICK * 30), 0, "stopped");
    }
}
