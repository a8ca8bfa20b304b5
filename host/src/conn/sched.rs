//! The connection's byte scheduler: which stream's DATA goes next.
//!
//! h2 hands out flow-control window first come, first served and interleaves
//! whatever is queued. To make RFC 9218 priorities real on the wire, every body
//! on a connection (responses and pushes) asks this scheduler for a *turn*
//! before each chunk, and only the stream holding the turn reserves capacity
//! and calls `send_data`. The rules:
//!
//! 1. Strictly lower urgency first (0 before 7).
//! 2. Within an urgency, bandwidth is shared by weight (1-256) with start-time
//!    fair queueing over bytes: each *flow* has a virtual tag, the lowest tag
//!    sends next, and sending `n` bytes advances a flow's tag by `n / weight`.
//! 3. Each incremental stream is its own flow, so incremental streams
//!    interleave. All non-incremental streams of an urgency form one flow that
//!    sends them whole, in the order they were registered.
//! 4. A turn never exceeds the peer's windows (read off the wire by the tap)
//!    or one frame (16 KiB), and when the turn passes to another stream the
//!    new holder first waits until at most one chunk of the previous holder
//!    is unwritten. h2 writes one frame per stream in turn, in the order the
//!    streams queued them: one frame queued ahead of ours is written ahead
//!    of ours, while two could be split by ours. (Waiting for none, as this
//!    did first, cost a write per response: 42k instead of 63k requests/s
//!    in `BENCHMARKS.md`'s throughput run.)
//! 5. A registered stream that is not ready yet (a push whose file is being
//!    opened) holds back less urgent streams for at most `READY_GRACE`; after
//!    that the scheduler is work-conserving.
//!
//! Invariant: the only code that calls `send_data` on a connection is
//! `send::send_body`, and it does so only while holding a turn.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::tap::PeerState;

/// RFC 9218's request header, parsed once (a `&str` name is parsed on every
/// lookup).
pub const PRIORITY: http::HeaderName = http::HeaderName::from_static("priority");

/// The largest chunk one turn may send: one default-size DATA frame.
pub const QUANTUM: usize = 16 * 1024;

/// How long a registered but not yet ready stream holds back less urgent ones.
/// It runs from `Registered::arm`, the moment the stream could send.
pub const READY_GRACE: Duration = Duration::from_millis(50);

/// The longest a new turn waits for the previous holder's bytes to be written.
/// Past it, the worst case is one chunk of each interleaved by h2.
const FLUSH_WAIT: Duration = Duration::from_millis(500);

/// Scale of the virtual clock: one byte at weight 256 advances a tag by 256.
const TAG_SCALE: u64 = 65_536;

/// RFC 9218 priority plus a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// 0 (most urgent) to 7.
    pub urgency: u8,
    pub incremental: bool,
    /// 1 to 256: share of bandwidth within the urgency.
    pub weight: u16,
}

impl Default for Priority {
    /// RFC 9218 §4: `u=3`, not incremental; weight 16 (RFC 7540's default).
    fn default() -> Priority {
        Priority {
            urgency: 3,
            incremental: false,
            weight: 16,
        }
    }
}

impl Priority {
    /// From a request's `priority` header (`u=1, i`), defaults for anything
    /// missing or malformed (RFC 9218 §4: ignore what you cannot parse).
    pub fn from_header(value: Option<&http::HeaderValue>) -> Priority {
        let mut p = Priority::default();
        let Some(text) = value.and_then(|v| v.to_str().ok()) else {
            return p;
        };
        for member in text.split(',') {
            let member = member.trim();
            let (key, val) = match member.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (member, None),
            };
            // Parameters (`;x`) are ignored.
            let val = val.map(|v| v.split(';').next().unwrap_or("").trim());
            match (key, val) {
                ("u", Some(v)) => {
                    if let Ok(u) = v.parse::<u8>()
                        && u <= 7
                    {
                        p.urgency = u;
                    }
                }
                ("i", None) | ("i", Some("?1")) => p.incremental = true,
                ("i", Some("?0")) => p.incremental = false,
                _ => {}
            }
        }
        p
    }
}

/// The scheduler of one connection.
pub struct Scheduler {
    state: Mutex<State>,
    peer: Arc<PeerState>,
}

struct State {
    streams: crate::tap::StreamMap<Entry>,
    next_seq: u64,
    holder: Option<u32>,
    /// The stream that sent last and its bytes handed to h2 so far: the next
    /// holder waits until they are written (recorded at `complete`, since
    /// the stream may be gone from `streams` by then).
    last_sent: Option<(u32, u64)>,
    /// DATA bytes handed to h2 on this connection.
    sent_total: u64,
    /// Per urgency: the tag of the flow served last.
    clock: [u64; 8],
}

struct Entry {
    prio: Priority,
    seq: u64,
    registered: Instant,
    ready: bool,
    want: usize,
    sent: u64,
    tag: u64,
    notify: Arc<Notify>,
}

/// A stream's place in the scheduler; dropping it finishes the stream.
pub struct Registered {
    sched: Arc<Scheduler>,
    stream: u32,
}

impl Registered {
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    pub fn stream(&self) -> u32 {
        self.stream
    }

    /// The stream is about to send (its HEADERS are out or queued): its
    /// readiness grace starts now.
    pub fn arm(&self) {
        if let Some(e) = self.sched.lock().streams.get_mut(&self.stream) {
            e.registered = Instant::now();
        }
    }

    /// The stream will not be ready for a while (a proxied page while the
    /// upstream computes): it keeps its place but holds nobody back until
    /// `arm`.
    pub fn idle(&self) {
        if let Some(e) = self.sched.lock().streams.get_mut(&self.stream) {
            let now = Instant::now();
            e.registered = now.checked_sub(READY_GRACE).unwrap_or(now);
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.sched.finish(self.stream);
    }
}

/// Permission to send at most `max` bytes on a stream, until `complete`.
#[derive(Debug)]
pub struct Turn {
    pub max: usize,
}

enum Step {
    Granted {
        max: usize,
        flush: Option<(u32, u64)>,
    },
    Wait(Option<Instant>),
}

enum Pick {
    Grant(u32, usize),
    WaitUntil(Instant),
    Nothing,
}

impl Scheduler {
    pub fn new(peer: Arc<PeerState>) -> Scheduler {
        Scheduler {
            state: Mutex::new(State {
                streams: Default::default(),
                next_seq: 0,
                holder: None,
                last_sent: None,
                sent_total: 0,
                clock: [0; 8],
            }),
            peer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Announce a stream that will send a body. Registration order is the
    /// order of non-incremental streams of one urgency. The stream is
    /// forgotten when the returned guard drops.
    pub fn register(self: &Arc<Self>, stream: u32, prio: Priority) -> Registered {
        self.insert(stream, prio);
        Registered {
            sched: self.clone(),
            stream,
        }
    }

    fn insert(&self, stream: u32, prio: Priority) {
        self.peer.track_stream(stream);
        let mut st = self.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        let tag = st.clock[usize::from(prio.urgency.min(7))];
        st.streams.insert(
            stream,
            Entry {
                prio,
                seq,
                registered: Instant::now(),
                ready: false,
                want: 0,
                sent: 0,
                tag,
                notify: Arc::new(Notify::new()),
            },
        );
    }

    /// The stream will send no more: forget it and pass the turn on.
    pub fn finish(&self, stream: u32) {
        let mut st = self.lock();
        let sent_anything = st.streams.remove(&stream).is_some_and(|e| e.sent > 0);
        self.peer.untrack_stream(stream, sent_anything);
        if st.holder == Some(stream) {
            st.holder = None;
        }
        Self::wake_next(&mut st, &self.peer);
    }

    /// Wait for this stream's turn to send up to `want` bytes.
    pub async fn turn(&self, stream: u32, want: usize) -> Turn {
        // Let streams that became ready meanwhile be counted before we pick:
        // a sender that never awaits between chunks would otherwise keep the turn.
        tokio::task::yield_now().await;
        let mut yielded = false;
        loop {
            let mut flow = self.peer.flow_changes();
            let (notify, step) = self.try_turn(stream, want);
            match step {
                Step::Granted { max, flush } => {
                    if let Some((previous, sent)) = flush {
                        // All but the previous holder's last chunk must be on
                        // the wire before ours joins h2's queue, or h2 would
                        // interleave them (rule 4). Bounded, in case the
                        // wire stalls.
                        let enough = sent.saturating_sub(QUANTUM as u64);
                        let _ = tokio::time::timeout(
                            FLUSH_WAIT,
                            self.peer.wait_stream_written(previous, enough),
                        )
                        .await;
                    }
                    return Turn { max };
                }
                // Held for a stream about to be ready: usually it is
                // runnable already (tasks run in no set order), so it gets
                // one round before a timer is armed (registering one wakes
                // the event loop, a system call: 0.28 a request under h2load).
                Step::Wait(Some(_)) if !yielded => {
                    yielded = true;
                    tokio::select! {
                        _ = notify.notified() => {}
                        _ = flow.changed() => {}
                        _ = tokio::task::yield_now() => {}
                    }
                }
                Step::Wait(Some(deadline)) => {
                    tokio::select! {
                        _ = notify.notified() => {}
                        _ = flow.changed() => {}
                        _ = tokio::time::sleep_until(deadline.into()) => {}
                    }
                }
                Step::Wait(None) => {
                    tokio::select! {
                        _ = notify.notified() => {}
                        _ = flow.changed() => {}
                    }
                }
            }
        }
    }

    /// One attempt at a turn, under the lock.
    fn try_turn(&self, stream: u32, want: usize) -> (Arc<Notify>, Step) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(entry) = st.streams.get_mut(&stream) else {
            // Not registered (cannot happen through send_body): unscheduled.
            return (
                Arc::new(Notify::new()),
                Step::Granted {
                    max: want.min(QUANTUM),
                    flush: None,
                },
            );
        };
        if !entry.ready {
            // Back from idle: no credit for the time it was away.
            entry.ready = true;
            entry.tag = entry
                .tag
                .max(st.clock[usize::from(entry.prio.urgency.min(7))]);
        }
        entry.want = want;
        let notify = entry.notify.clone();
        if st.holder.is_some() {
            return (notify, Step::Wait(None));
        }
        let step = match Self::pick(st, &self.peer, Instant::now()) {
            Pick::Grant(id, max) if id == stream => {
                tracing::trace!(stream, max, sent_total = st.sent_total, "turn granted");
                st.holder = Some(stream);
                let flush = st.last_sent.filter(|&(previous, _)| previous != stream);
                Step::Granted { max, flush }
            }
            Pick::Grant(id, _) => {
                if let Some(e) = st.streams.get(&id) {
                    e.notify.notify_one();
                }
                Step::Wait(None)
            }
            Pick::WaitUntil(t) => Step::Wait(Some(t)),
            Pick::Nothing => Step::Wait(None),
        };
        (notify, step)
    }

    /// End a turn in which `sent` bytes were handed to h2. `more`: the stream
    /// will ask again right away (it stays ready and keeps its place).
    pub fn complete(&self, stream: u32, sent: usize, more: bool) {
        if sent > 0 {
            self.peer.record_handed(stream, sent as u64);
        }
        let mut st = self.lock();
        st.sent_total += sent as u64;
        let clock_slot;
        let st = &mut *st;
        if let Some(e) = st.streams.get_mut(&stream) {
            e.sent += sent as u64;
            e.ready = more;
            if sent > 0 {
                st.last_sent = Some((stream, e.sent));
            }
            clock_slot = Some((usize::from(e.prio.urgency.min(7)), e.tag));
            e.tag += sent as u64 * TAG_SCALE / u64::from(e.prio.weight.clamp(1, 256));
        } else {
            clock_slot = None;
        }
        if let Some((u, tag)) = clock_slot {
            st.clock[u] = st.clock[u].max(tag);
        }
        if st.holder == Some(stream) {
            st.holder = None;
        }
        Self::wake_next(st, &self.peer);
    }

    fn wake_next(st: &mut State, peer: &PeerState) {
        if st.holder.is_some() {
            return;
        }
        match Self::pick(st, peer, Instant::now()) {
            Pick::Grant(id, _) => {
                if let Some(e) = st.streams.get(&id) {
                    e.notify.notify_one();
                }
            }
            // Someone must come back at the deadline: wake a ready stream so
            // it re-picks and sleeps until then.
            Pick::WaitUntil(_) => {
                if let Some(e) = st.streams.values().find(|e| e.ready) {
                    e.notify.notify_one();
                }
            }
            Pick::Nothing => {}
        }
    }

    fn pick(st: &State, peer: &PeerState, now: Instant) -> Pick {
        // Candidates: ready streams with window to send into.
        let mut best: Option<(u8, u64, u64, u32, usize)> = None; // (urgency, tag, seq, id, max)
        let mut conn_window = None;
        let mut lanes: [Option<(u64, u32)>; 8] = [None; 8]; // non-incremental head per urgency: (seq, id)
        for (&id, e) in &st.streams {
            // A stream whose own window is shut (its reader paused) cannot
            // head its lane: the next one in order sends instead of all waiting.
            if e.ready && !e.prio.incremental && peer.windows(id, st.sent_total, e.sent).1 > 0 {
                let u = usize::from(e.prio.urgency.min(7));
                if lanes[u].is_none_or(|(seq, _)| e.seq < seq) {
                    lanes[u] = Some((e.seq, id));
                }
            }
        }
        for (&id, e) in &st.streams {
            if !e.ready {
                continue;
            }
            let u = e.prio.urgency.min(7);
            if !e.prio.incremental && lanes[usize::from(u)].map(|(_, head)| head) != Some(id) {
                continue;
            }
            let (conn, stream) = peer.windows(id, st.sent_total, e.sent);
            conn_window = Some(conn);
            if conn <= 0 || stream <= 0 {
                tracing::trace!(stream = id, conn, window = stream, "no window");
                continue;
            }
            let max = e
                .want
                .clamp(1, QUANTUM)
                .min(conn as usize)
                .min(stream as usize);
            let key = (u, e.tag, e.seq, id, max);
            if best.is_none_or(|b| (key.0, key.1, key.2) < (b.0, b.1, b.2)) {
                best = Some(key);
            }
        }
        let Some((urgency, _, _, id, max)) = best else {
            let _ = conn_window;
            return Pick::Nothing;
        };
        // A stream that is about to be ready (registered within READY_GRACE,
        // nothing sent yet) and would win against the best ready one holds
        // the turn back briefly: a more urgent one, an older non-incremental
        // one of the same urgency, or an incremental peer with a lower tag.
        let head_seq = lanes[usize::from(urgency)].map(|(seq, _)| seq);
        let best_entry = st.streams.get(&id);
        let best_incremental = best_entry.is_some_and(|b| b.prio.incremental);
        let best_tag = best_entry.map_or(0, |b| b.tag);
        let mut hold: Option<Instant> = None;
        for e in st.streams.values() {
            let until = e.registered + READY_GRACE;
            if e.ready || e.sent > 0 || until <= now {
                continue;
            }
            let ahead = e.prio.urgency < urgency
                || (e.prio.urgency == urgency
                    && if e.prio.incremental {
                        e.tag.max(st.clock[usize::from(urgency)]) < best_tag
                    } else {
                        !best_incremental && head_seq.is_none_or(|s| e.seq < s)
                    });
            if ahead {
                hold = Some(hold.map_or(until, |h| h.min(until)));
            }
        }
        match hold {
            Some(t) => Pick::WaitUntil(t),
            None => Pick::Grant(id, max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> Priority {
        Priority::from_header(Some(&http::HeaderValue::from_str(v).unwrap()))
    }

    #[test]
    fn parses_rfc9218_priority() {
        assert_eq!(Priority::from_header(None), Priority::default());
        assert_eq!(
            h("u=0"),
            Priority {
                urgency: 0,
                ..Default::default()
            }
        );
        assert_eq!(
            h("u=5, i"),
            Priority {
                urgency: 5,
                incremental: true,
                weight: 16
            }
        );
        assert_eq!(
            h("i=?1, u=1;x"),
            Priority {
                urgency: 1,
                incremental: true,
                weight: 16
            }
        );
        assert_eq!(h("u=9, i=?0"), Priority::default());
        assert_eq!(h("garbage"), Priority::default());
    }

    /// Drive the scheduler the way `send_body` does, recording the order of
    /// turns, with the tap's windows effectively unlimited.
    async fn run(streams: Vec<(u32, Priority, usize)>) -> Vec<(u32, usize)> {
        let peer = PeerState::new(1, false);
        // Grant plenty of window: as if the client had sent large WINDOW_UPDATEs.
        peer.test_grant_window(1 << 30);
        let sched = Arc::new(Scheduler::new(peer.clone()));
        for (id, prio, _) in &streams {
            sched.insert(*id, *prio);
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (id, _, len) in streams {
            let (sched, log, peer) = (sched.clone(), log.clone(), peer.clone());
            tasks.push(tokio::spawn(async move {
                let mut left = len;
                while left > 0 {
                    let turn = sched.turn(id, left).await;
                    let n = turn.max.min(left);
                    left -= n;
                    log.lock().unwrap().push((id, n));
                    sched.complete(id, n, left > 0);
                    // The "wire" takes the bytes at once.
                    peer.test_written(id, n as u64);
                }
                sched.finish(id);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(log).unwrap().into_inner().unwrap()
    }

    fn p(urgency: u8, incremental: bool, weight: u16) -> Priority {
        Priority {
            urgency,
            incremental,
            weight,
        }
    }

    #[tokio::test]
    async fn lower_urgency_goes_first_entirely() {
        let order = run(vec![
            (2, p(5, false, 16), 100_000),
            (4, p(0, false, 16), 100_000),
        ])
        .await;
        let first_of_2 = order.iter().position(|(id, _)| *id == 2).unwrap();
        let last_of_4 = order.iter().rposition(|(id, _)| *id == 4).unwrap();
        assert!(last_of_4 < first_of_2, "{order:?}");
    }

    #[tokio::test]
    async fn weights_share_bytes_within_an_urgency() {
        let order = run(vec![
            (2, p(3, true, 200), 800_000),
            (4, p(3, true, 50), 800_000),
        ])
        .await;
        // While both are active (until the heavier one finishes).
        let end = order.iter().rposition(|(id, _)| *id == 2).unwrap();
        let a: usize = order[..end]
            .iter()
            .filter(|(id, _)| *id == 2)
            .map(|(_, n)| n)
            .sum();
        let b: usize = order[..end]
            .iter()
            .filter(|(id, _)| *id == 4)
            .map(|(_, n)| n)
            .sum();
        let ratio = a as f64 / b as f64;
        assert!((3.5..=4.5).contains(&ratio), "ratio {ratio}: {a} vs {b}");
    }

    #[tokio::test]
    async fn non_incremental_streams_go_whole_in_order() {
        let order = run(vec![
            (2, p(3, false, 16), 50_000),
            (4, p(3, false, 200), 50_000),
            (6, p(3, false, 16), 50_000),
        ])
        .await;
        let ids: Vec<u32> = order.iter().map(|(id, _)| *id).collect();
        let mut dedup = ids.clone();
        dedup.dedup();
        assert_eq!(dedup, [2, 4, 6], "{ids:?}");
    }

    #[tokio::test]
    async fn incremental_streams_interleave() {
        let order = run(vec![
            (2, p(4, true, 16), 64_000),
            (4, p(4, true, 16), 64_000),
        ])
        .await;
        let ids: Vec<u32> = order.iter().map(|(id, _)| *id).collect();
        // Equal weights: neither stream ever gets more than two turns in a row.
        let longest_run = ids.chunk_by(|a, b| a == b).map(<[u32]>::len).max().unwrap();
        assert!(longest_run <= 2, "{ids:?}");
    }
}
