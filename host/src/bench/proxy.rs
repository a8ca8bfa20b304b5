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
/// It needs tokio's multi-thread runtime (see `sleep_precisely`): on
/// another it refuses to start, rather than panic on its first packet.
pub async fn start(upstream: SocketAddr, link: Link) -> std::io::Result<SocketAddr> {
    if tokio::runtime::Handle::current().runtime_flavor()
        != tokio::runtime::RuntimeFlavor::MultiThread
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the delaying proxy needs tokio's multi-thread runtime",
        ));
    }
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
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(item) => pending.push_back(item),
                None => break,
            }
        }
        let (at, _) = pending.front().expect("non-empty");
        sleep_precisely(*at).await;
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

/// Sleep until `at` to within tens of microseconds. tokio's timer wakes on
/// whole milliseconds (up to 1 ms late, in every direction of every hop,
/// for every server alike): sleep with it until the last millisecond, and
/// the rest on this thread (the runtime moves its other tasks meanwhile).
async fn sleep_precisely(at: Instant) {
    if let Some(coarse) = at.checked_sub(Duration::from_millis(1)) {
        tokio::time::sleep_until(coarse).await;
    }
    let rest = at.saturating_duration_since(Instant::now());
    if !rest.is_zero() {
        tokio::task::block_in_place(|| std::thread::sleep(rest));
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
    async fn refuses_to_start_on_a_current_thread_runtime() {
        let link = Link {
            rtt: Duration::from_millis(10),
            down_bytes_per_sec: 0,
        };
        let refused = start("127.0.0.1:9".parse().unwrap(), link).await;
        let e = refused.expect_err("sleep_precisely would panic there");
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("multi-thread runtime"), "{e}");
    }
}
