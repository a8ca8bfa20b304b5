//! The connection's byte scheduler: whose DATA goes into the next frame.
//!
//! The engine asks it each time it is about to write a DATA frame, so the
//! order on the wire is decided frame by frame, as late as possible. The
//! rules (RFC 9218, plus weights):
//!
//! 1. Strictly lower urgency first (0 before 7).
//! 2. Within an urgency, bandwidth is shared by weight (1-256) with
//!    start-time fair queueing over bytes: each flow has a virtual tag, the
//!    lowest tag sends next, and sending `n` bytes advances a flow's tag by
//!    `n / weight`.
//! 3. Each incremental stream is its own flow, so incremental streams
//!    interleave. Non-incremental streams of an urgency are sent whole, one
//!    after another, in the order they were registered; one whose own
//!    window is shut (its reader paused) does not hold up the next.
//! 4. A registered stream that is not ready yet (a page whose response is
//!    still being prepared, a push whose file is being opened) holds back
//!    the streams it would win against for at most `READY_GRACE` from when
//!    it was armed; one waiting for its file's next chunk mid-body, for at
//!    most `RESUME_GRACE`. After that the scheduler is work-conserving. (A
//!    body from an upstream never holds anyone back: its next chunk may be
//!    long coming.)
//!
//! Invariant: pure bookkeeping. It never sees bytes or windows itself: the
//! engine says, per stream, whether data is ready and how much window it has.

use std::time::{Duration, Instant};

use super::StreamMap;

/// RFC 9218's request header, parsed once (a `&str` name is parsed on every
/// lookup).
pub const PRIORITY: http::HeaderName = http::HeaderName::from_static("priority");

/// How long a registered but not yet ready stream holds back less urgent ones.
pub const READY_GRACE: Duration = Duration::from_millis(50);

/// How long a stream waiting for a local read of its next chunk holds back
/// the streams it would win against. A disk read of a chunk takes well under
/// this; on a fast link (loopback) framing outruns reading, and without the
/// hold the lighter streams would take the heavier one's share.
pub const RESUME_GRACE: Duration = Duration::from_millis(5);

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
        match value.and_then(|v| v.to_str().ok()) {
            Some(text) => Priority::parse(text, Priority::default()),
            None => Priority::default(),
        }
    }

    /// A priority field value applied over `base` (PRIORITY_UPDATE frames
    /// carry the same syntax as the header).
    pub fn parse(text: &str, base: Priority) -> Priority {
        let mut p = base;
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

/// What the engine knows of one scheduled stream at the moment of a pick.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// Bytes can be framed now.
    pub data: bool,
    /// The stream's own send window.
    pub window: i64,
    /// No data now, but a local read of it is under way.
    pub soon: bool,
}

/// The scheduler's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    Send(u32),
    /// A stream about to be ready would win: ask again then (or when
    /// something changes).
    WaitUntil(Instant),
    Nothing,
}

#[derive(Debug)]
struct Entry {
    prio: Priority,
    seq: u64,
    /// When its readiness grace began (registration, or `arm`).
    armed: Instant,
    was_ready: bool,
    /// Since when it has had no data (its source is being read, say).
    unready_since: Option<Instant>,
    /// At the last pick: no data, but a local read of it under way.
    soon: bool,
    /// At the last pick: its own window had room.
    window_open: bool,
    sent: u64,
    tag: u64,
}

/// The scheduler of one connection.
#[derive(Debug, Default)]
pub struct Scheduler {
    entries: StreamMap<Entry>,
    next_seq: u64,
    /// Per urgency: the tag of the flow served last.
    clock: [u64; 8],
}

impl Scheduler {
    /// Announce a stream that will send a body. Registration order is the
    /// order of non-incremental streams of one urgency.
    pub fn register(&mut self, stream: u32, prio: Priority, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let tag = self.clock[usize::from(prio.urgency.min(7))];
        self.entries.insert(
            stream,
            Entry {
                prio,
                seq,
                armed: now,
                was_ready: false,
                unready_since: Some(now),
                soon: false,
                window_open: false,
                sent: 0,
                tag,
            },
        );
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, stream: u32) -> bool {
        self.entries.contains_key(&stream)
    }

    /// The stream sends no more.
    pub fn remove(&mut self, stream: u32) {
        self.entries.remove(&stream);
    }

    /// The stream could send from now on: its grace starts now.
    pub fn arm(&mut self, stream: u32, now: Instant) {
        if let Some(e) = self.entries.get_mut(&stream) {
            e.armed = now;
        }
    }

    /// The stream will not be ready for a while (a proxied page while the
    /// upstream computes): it keeps its place but holds nobody back.
    pub fn idle(&mut self, stream: u32, now: Instant) {
        if let Some(e) = self.entries.get_mut(&stream) {
            e.armed = now.checked_sub(READY_GRACE).unwrap_or(now);
        }
    }

    /// A new priority (PRIORITY_UPDATE): it keeps its place in line.
    pub fn reprioritize(&mut self, stream: u32, prio: Priority) {
        if let Some(e) = self.entries.get_mut(&stream) {
            if e.prio.urgency != prio.urgency {
                e.tag = e.tag.max(self.clock[usize::from(prio.urgency.min(7))]);
            }
            e.prio = prio;
        }
    }

    pub fn priority(&self, stream: u32) -> Option<Priority> {
        self.entries.get(&stream).map(|e| e.prio)
    }

    /// `n` bytes of `stream` were framed.
    pub fn sent(&mut self, stream: u32, n: usize) {
        if let Some(e) = self.entries.get_mut(&stream) {
            let u = usize::from(e.prio.urgency.min(7));
            self.clock[u] = self.clock[u].max(e.tag);
            e.sent += n as u64;
            e.tag += n as u64 * TAG_SCALE / u64::from(e.prio.weight.clamp(1, 256));
        }
    }

    /// Who sends next, given each stream's readiness and the connection window.
    pub fn pick(&mut self, now: Instant, conn_window: i64, state: impl Fn(u32) -> Ready) -> Pick {
        if self.entries.is_empty() {
            return Pick::Nothing;
        }
        // Readiness, once per stream. A stream back after more than
        // READY_GRACE without data was idle, and gets no credit for the
        // time it was away; one back sooner was only waiting for its next
        // chunk (a file read), and keeps its place, so a source slower than
        // the link for a moment does not cost it its share.
        let mut lanes: [Option<(u64, u32)>; 8] = [None; 8]; // non-incremental head per urgency
        let mut candidates = 0usize;
        for (&id, e) in self.entries.iter_mut() {
            let s = state(id);
            let u = usize::from(e.prio.urgency.min(7));
            if s.data && !e.was_ready {
                if e.unready_since
                    .is_none_or(|t| now.duration_since(t) > READY_GRACE)
                {
                    e.tag = e.tag.max(self.clock[u]);
                }
                e.unready_since = None;
            } else if !s.data && e.was_ready {
                e.unready_since = Some(now);
            }
            e.was_ready = s.data;
            e.soon = s.soon;
            e.window_open = s.window > 0;
            if s.data {
                candidates += 1;
                if !e.prio.incremental
                    && s.window > 0
                    && lanes[u].is_none_or(|(seq, _)| e.seq < seq)
                {
                    lanes[u] = Some((e.seq, id));
                }
            }
        }
        if candidates == 0 || conn_window <= 0 {
            return Pick::Nothing;
        }
        let mut best: Option<(u8, u64, u64, u32)> = None; // (urgency, tag, seq, id)
        for (&id, e) in &self.entries {
            if !e.was_ready {
                continue;
            }
            let u = e.prio.urgency.min(7);
            if !e.prio.incremental && lanes[usize::from(u)].map(|(_, head)| head) != Some(id) {
                continue;
            }
            if !e.window_open {
                continue;
            }
            let key = (u, e.tag, e.seq, id);
            if best.is_none_or(|b| (key.0, key.1, key.2) < (b.0, b.1, b.2)) {
                best = Some(key);
            }
        }
        let Some((urgency, best_tag, _, id)) = best else {
            return Pick::Nothing;
        };
        // A stream about to be ready (armed within READY_GRACE, nothing
        // sent) that would win holds the turn back briefly: a more urgent
        // one, an older non-incremental one of the same urgency, or an
        // incremental peer with a lower tag.
        let head_seq = lanes[usize::from(urgency)].map(|(seq, _)| seq);
        let best_incremental = self.entries.get(&id).is_some_and(|b| b.prio.incremental);
        let mut hold: Option<Instant> = None;
        for e in self.entries.values() {
            let until = if e.was_ready {
                continue;
            } else if e.sent == 0 {
                e.armed + READY_GRACE
            } else if e.soon
                && let Some(since) = e.unready_since
            {
                since + RESUME_GRACE
            } else {
                continue;
            };
            if until <= now {
                continue;
            }
            let ahead = e.prio.urgency < urgency
                || (e.prio.urgency == urgency
                    && if e.prio.incremental {
                        e.tag.max(self.clock[usize::from(urgency)]) < best_tag
                    } else {
                        !best_incremental && head_seq.is_none_or(|s| e.seq < s)
                    });
            if ahead {
                hold = Some(hold.map_or(until, |h| h.min(until)));
            }
        }
        match hold {
            Some(t) => Pick::WaitUntil(t),
            None => Pick::Send(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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

    /// Run the scheduler to completion over streams of (id, priority, bytes),
    /// framing at most 16 KiB per pick, all data ready at once and windows
    /// unlimited; returns the frames in order.
    fn run(streams: &[(u32, Priority, usize)]) -> Vec<(u32, usize)> {
        let now = Instant::now();
        let mut s = Scheduler::default();
        let mut left: HashMap<u32, usize> = HashMap::new();
        for &(id, prio, len) in streams {
            s.register(id, prio, now);
            left.insert(id, len);
        }
        let mut order = Vec::new();
        loop {
            let pick = s.pick(now, i64::MAX, |id| Ready {
                data: left.get(&id).is_some_and(|&n| n > 0),
                window: i64::MAX,
                soon: false,
            });
            let Pick::Send(id) = pick else { break };
            let n = left[&id].min(16_384);
            *left.get_mut(&id).unwrap() -= n;
            s.sent(id, n);
            if left[&id] == 0 {
                s.remove(id);
            }
            order.push((id, n));
        }
        order
    }

    fn p(urgency: u8, incremental: bool, weight: u16) -> Priority {
        Priority {
            urgency,
            incremental,
            weight,
        }
    }

    #[test]
    fn lower_urgency_goes_first_entirely() {
        let order = run(&[(2, p(5, false, 16), 100_000), (4, p(0, false, 16), 100_000)]);
        let first_of_2 = order.iter().position(|(id, _)| *id == 2).unwrap();
        let last_of_4 = order.iter().rposition(|(id, _)| *id == 4).unwrap();
        assert!(last_of_4 < first_of_2, "{order:?}");
    }

    #[test]
    fn weights_share_bytes_within_an_urgency() {
        let order = run(&[(2, p(3, true, 200), 800_000), (4, p(3, true, 50), 800_000)]);
        let end = order.iter().rposition(|(id, _)| *id == 2).unwrap();
        let sum = |want| -> usize {
            order[..end]
                .iter()
                .filter(|(id, _)| *id == want)
                .map(|(_, n)| n)
                .sum()
        };
        let ratio = sum(2) as f64 / sum(4) as f64;
        assert!((3.5..=4.5).contains(&ratio), "ratio {ratio}");
    }

    /// The heavier stream's file read falls behind the link every few
    /// frames: the lighter one waits a moment instead of taking its share,
    /// and keeps it when the read takes too long.
    #[test]
    fn a_stream_waiting_for_its_file_holds_back_briefly() {
        let start = Instant::now();
        let mut s = Scheduler::default();
        s.register(2, p(3, true, 200), start);
        s.register(4, p(3, true, 50), start);
        let mut sent: HashMap<u32, usize> = HashMap::new();
        let mut now = start;
        let mut waits = 0;
        for round in 0..400 {
            // Stream 2's next chunk is being read one pick in three; the
            // read completes by the time the scheduler asks again.
            let reading = round % 3 == 0;
            let pick = s.pick(now, i64::MAX, |id| Ready {
                data: id == 4 || !reading,
                window: i64::MAX,
                soon: id == 2 && reading,
            });
            match pick {
                Pick::Send(id) => {
                    s.sent(id, 16_384);
                    *sent.entry(id).or_default() += 16_384;
                }
                Pick::WaitUntil(t) => {
                    assert!(t <= now + RESUME_GRACE);
                    waits += 1;
                }
                Pick::Nothing => unreachable!(),
            }
            now += Duration::from_micros(10);
        }
        let ratio = sent[&2] as f64 / sent[&4] as f64;
        assert!((3.5..=4.5).contains(&ratio), "ratio {ratio}");
        assert!(waits > 0);
        // A read slower than the grace: the other stream goes.
        let later = now + RESUME_GRACE * 2;
        let pick = s.pick(later, i64::MAX, |id| Ready {
            data: id == 4,
            window: i64::MAX,
            soon: id == 2,
        });
        assert_eq!(pick, Pick::Send(4));
    }

    #[test]
    fn non_incremental_streams_go_whole_in_order() {
        let order = run(&[
            (2, p(3, false, 16), 50_000),
            (4, p(3, false, 200), 50_000),
            (6, p(3, false, 16), 50_000),
        ]);
        let mut ids: Vec<u32> = order.iter().map(|(id, _)| *id).collect();
        ids.dedup();
        assert_eq!(ids, [2, 4, 6]);
    }

    #[test]
    fn incremental_streams_interleave() {
        let order = run(&[(2, p(4, true, 16), 64_000), (4, p(4, true, 16), 64_000)]);
        let ids: Vec<u32> = order.iter().map(|(id, _)| *id).collect();
        let longest_run = ids.chunk_by(|a, b| a == b).map(<[u32]>::len).max().unwrap();
        assert!(longest_run <= 2, "{ids:?}");
    }

    #[test]
    fn a_stream_about_to_be_ready_holds_back_less_urgent_ones_briefly() {
        let now = Instant::now();
        let mut s = Scheduler::default();
        s.register(1, p(0, false, 16), now); // not ready yet
        s.register(2, p(5, false, 16), now);
        let ready = |id| Ready {
            data: id == 2,
            window: 65_535,
            soon: false,
        };
        assert_eq!(
            s.pick(now, 65_535, ready),
            Pick::WaitUntil(now + READY_GRACE)
        );
        assert_eq!(s.pick(now + READY_GRACE, 65_535, ready), Pick::Send(2));
        // Idle streams hold nobody back.
        s.idle(1, now);
        assert_eq!(s.pick(now, 65_535, ready), Pick::Send(2));
    }

    #[test]
    fn a_shut_window_does_not_block_the_next_in_line() {
        let now = Instant::now();
        let mut s = Scheduler::default();
        s.register(1, p(3, false, 16), now);
        s.register(3, p(3, false, 16), now);
        let state = |id| Ready {
            data: true,
            window: if id == 1 { 0 } else { 100 },
            soon: false,
        };
        assert_eq!(s.pick(now, 65_535, state), Pick::Send(3));
        assert_eq!(s.pick(now, 0, state), Pick::Nothing);
    }
}
