//! A delaying proxy on loopback: adds a round-trip time and a bandwidth limit
//! between a client and a server (the kernel here has no netem).
//!
//! Each direction is a link with a one-way delay of RTT/2; the server-to-client
//! direction also has a rate. The link only takes bytes from the sender as
//! fast as it can deliver them (plus a queue of one bandwidth-delay product),
//! and the proxy's receive buffer toward the server is kept small, so unsent
//! data piles up in the *server's* socket, where it would on a real path. That
//! is what makes TCP_NOTSENT_LOWAT measurable.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The bottleneck's queue, in bytes.
pub const ROUTER_BUFFER: usize = 16 * 1024;

/// The link's packet size: bytes are delivered in pieces of at most this,
/// each when its own last byte has crossed the link (an Ethernet MSS).
/// Delivering a whole 16 KiB read at once would hold its first bytes back
/// until its last had crossed: 6.5 ms at 20 Mbit/s, added to whatever
/// (an HTML's end) shared a read with what followed it.
pub const PACKET: usize = 1448;

/// Link parameters.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub rtt: Duration,
    /// Server-to-client rate in bytes per second (0 = unlimited).
    pub down_bytes_per_sec: u64,
}

/// Start a proxy to `upstream`; returns the address clients connect to.
pub async fn start(upstream: SocketAddr, link: Link) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let socket = match TcpSocket::new_v4() {
                    Ok(s) => s,
                    Err(_) => return,
                };
                // A small receive window toward the server: the backlog must
                // stay in the server's send queue, not here.
                let _ = socket.set_recv_buffer_size(16 * 1024);
                let Ok(server) = socket.connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let half = link.rtt / 2;
                tokio::spawn(pipe(cr, sw, half, 0));
                pipe(sr, cw, half, link.down_bytes_per_sec).await;
            });
        }
    });
    Ok(addr)
}

/// One direction of the link.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    rate: u64,
) {
    // Bytes in the pipe (rate x one-way delay) plus a shallow 16 KiB
    // bottleneck queue. A deeper router buffer adds its own delay to every
    // measurement (bufferbloat) and hides what the server controls.
    let capacity = if rate == 0 {
        usize::MAX
    } else {
        (rate as f64 * delay.as_secs_f64()) as usize + ROUTER_BUFFER
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let (credit_tx, mut credit_rx) = mpsc::unbounded_channel::<usize>();
    let reader = tokio::spawn(async move {
        let mut in_flight = 0usize;
        let mut buf = vec![0u8; 16 * 1024];
        // The link serialises bytes at `rate`: the next byte can only leave
        // when the previous ones have.
        let mut link_free = Instant::now();
        loop {
            while let Ok(done) = credit_rx.try_recv() {
                in_flight -= done;
            }
            if in_flight >= capacity {
                match credit_rx.recv().await {
                    Some(done) => in_flight -= done,
                    None => return,
                }
                continue;
            }
            let want = buf.len().min(capacity - in_flight);
            let n = match from.read(&mut buf[..want]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let now = Instant::now();
            in_flight += n;
            for packet in buf[..n].chunks(if rate == 0 { n } else { PACKET }) {
                let serialise = if rate == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_secs_f64(packet.len() as f64 / rate as f64)
                };
                link_free = link_free.max(now) + serialise;
                if tx.send((link_free + delay, packet.to_vec())).is_err() {
                    return;
                }
            }
        }
    });
    let mut pending: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let timer = match Timer::new() {
        Ok(timer) => timer,
        Err(e) => {
            eprintln!("delaying proxy: no timer for a connection, dropping it: {e}");
            reader.abort();
            return;
        }
    };
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(item) => pending.push_back(item),
                None => break,
            }
        }
        let (at, _) = pending.front().expect("non-empty");
        if timer.sleep_until(*at).await.is_err() {
            break;
        }
        while let Ok(item) = rx.try_recv() {
            pending.push_back(item);
        }
        // Every packet due by now leaves in one write (the timer's
        // millisecond wakes up once for all that arrived within it).
        let now = Instant::now();
        let mut bytes = Vec::new();
        while let Some((at, _)) = pending.front()
            && *at <= now
        {
            let (_, packet) = pending.pop_front().expect("non-empty");
            bytes.extend_from_slice(&packet);
        }
        if bytes.is_empty() {
            continue;
        }
        if to.write_all(&bytes).await.is_err() {
            break;
        }
        let _ = credit_tx.send(bytes.len());
    }
    reader.abort();
    let _ = to.shutdown().await;
}

/// A timer to within microseconds: a `timerfd` awaited through the
/// runtime's reactor. tokio's own timer wakes on whole milliseconds, up to
/// a millisecond late (later still when the reactor rounds its wait up), on
/// every hop in each direction, for every server alike: at 50 ms RTT that
/// was 1.5 ms of a page load's 51, a third of the 1.03x budget a scheduler
/// is measured against.
struct Timer {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Timer {
    fn new() -> std::io::Result<Timer> {
        use std::os::fd::FromRawFd;
        // SAFETY: a plain system call; the descriptor is checked, then owned.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let interest = tokio::io::Interest::READABLE;
        // SAFETY: the `OwnedFd` is moved in and stays open as long as the
        // `AsyncFd`, and always names the same descriptor.
        let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }?;
        Ok(Timer { fd })
    }

    /// Wait until `at` (at once if it has passed).
    async fn sleep_until(&self, at: Instant) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let rest = at.saturating_duration_since(Instant::now());
        if rest.is_zero() {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: rest.as_secs() as libc::time_t,
                tv_nsec: rest.subsec_nanos() as libc::c_long,
            },
        };
        let fd = self.fd.get_ref().as_raw_fd();
        // SAFETY: `fd` is our timerfd; `spec` lives across the call.
        if unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a buffer of 8.
            let read = ready.try_io(|_| {
                match unsafe { libc::read(fd, expirations.as_mut_ptr().cast(), expirations.len()) }
                {
                    n if n < 0 => Err(std::io::Error::last_os_error()),
                    _ => Ok(()),
                }
            });
            match read {
                Ok(result) => return result,
                // Spurious readiness: the timer has not fired yet.
                Err(_would_block) => continue,
            }
        }
    }
}

/// Connect through a fresh TCP connection (helper for benches).
pub async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timer_wakes_on_time_to_within_a_fraction_of_a_millisecond() {
        let timer = Timer::new().unwrap();
        let mut late = Vec::new();
        for _ in 0..20 {
            let at = Instant::now() + Duration::from_micros(1_700);
            timer.sleep_until(at).await.unwrap();
            let now = Instant::now();
            assert!(now >= at, "woke {:?} early", at - now);
            late.push(now - at);
        }
        // The median, loosely: a shared machine may stall any wake-up.
        late.sort();
        assert!(late[10] < Duration::from_millis(1), "{late:?}");
        // A deadline already past returns at once.
        timer.sleep_until(Instant::now()).await.unwrap();
    }

    #[tokio::test]
    async fn adds_the_round_trip_time() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut b = [0u8; 1];
            while s.read_exact(&mut b).await.is_ok() {
                s.write_all(&b).await.unwrap();
            }
        });
        let rtt = Duration::from_millis(20);
        let link = Link {
            rtt,
            down_bytes_per_sec: 0,
        };
        let mut c = connect(start(addr, link).await.unwrap()).await.unwrap();
        let mut b = [0u8; 1];
        for _ in 0..3 {
            let sent = Instant::now();
            c.write_all(b"x").await.unwrap();
            c.read_exact(&mut b).await.unwrap();
            let took = sent.elapsed();
            assert!(took >= rtt, "{took:?}");
            assert!(took < rtt * 2, "{took:?}");
        }
    }
}
