//! The engine against a real client (the `h2` crate, push enabled) over an
//! in-memory pipe, and frame by frame where a client would not misbehave.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;

use super::engine::{Engine, Outcome};
use super::frame::{self, FrameDecoder, FrameHead, Reason, flag, frame_type, setting};
use super::*;

/// Serve `handler` on one end of a pipe; the other end for the client.
fn pipe<F, Fut>(handler: F) -> tokio::io::DuplexStream
where
    F: Fn(Request, Responder) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (client, server) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let options = Options {
            handshake_timeout: Duration::from_secs(5),
            trace: None,
        };
        serve(
            server,
            Settings::default(),
            options,
            std::future::pending(),
            move |req, resp| Box::pin(handler(req, resp)),
        )
        .await
    });
    client
}

async fn client(io: tokio::io::DuplexStream, window: u32) -> h2::client::SendRequest<Bytes> {
    let (send, conn) = h2::client::Builder::new()
        .enable_push(true)
        .initial_window_size(window)
        .handshake(io)
        .await
        .unwrap();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            panic!("client connection failed: {e}");
        }
    });
    send
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("https://example.com{path}"))
        .body(())
        .unwrap()
}

async fn read_all(mut body: h2::RecvStream) -> Bytes {
    let mut out = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out.freeze()
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, http::HeaderValue::from_static(v));
    }
    h
}

/// Each page pushes three resources: the client checks that promised ids
/// only increase (it would reset the connection otherwise) and every push
/// and page arrives whole.
#[tokio::test]
async fn many_pages_pushing_at_once_keep_the_connection_valid() {
    let io = pipe(|req: Request, mut resp: Responder| async move {
        let page = req.parts.uri.path().to_string();
        for i in 0..3 {
            let path = format!("{page}/asset{i}");
            let promise = PushRequest {
                scheme: "https",
                authority: "example.com",
                path: &path,
                headers: &HeaderMap::new(),
            };
            let body = Payload::Bytes(Bytes::from(vec![i as u8; 20_000]));
            resp.push(
                promise,
                StatusCode::OK,
                &HeaderMap::new(),
                body,
                Priority::default(),
                None,
                Duration::from_secs(1),
            )
            .unwrap();
        }
        // Yield so other pages interleave their promises with ours.
        tokio::task::yield_now().await;
        resp.respond(
            StatusCode::OK,
            &headers(&[("content-type", "text/html")]),
            Payload::Bytes(Bytes::from(page.into_bytes())),
            None,
        )
        .unwrap();
    });
    let send = client(io, 65_535).await;
    let mut pages = Vec::new();
    for p in 0..20 {
        let mut send = send.clone();
        pages.push(tokio::spawn(async move {
            let path = format!("/p{p}");
            let (response, _) = send.send_request(get(&path), true).unwrap();
            let mut response = response;
            let mut pushes = response.push_promises();
            let mut got = Vec::new();
            // Three each (h2's client does not end the promise stream when
            // the parent closes, so it is not read to its end).
            for _ in 0..3 {
                let promise = pushes.push_promise().await.expect("a promise");
                let (req, pushed) = promise.unwrap().into_parts();
                let body = read_all(pushed.await.unwrap().into_body()).await;
                got.push((req.uri().path().to_string(), body.len()));
            }
            let page = read_all(response.await.unwrap().into_body()).await;
            assert_eq!(page, path.as_bytes());
            got
        }));
    }
    for (p, page) in pages.into_iter().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(10), page)
            .await
            .expect("every page completes")
            .unwrap();
        assert_eq!(got.len(), 3, "page {p}: {got:?}");
        assert!(got.iter().all(|(_, n)| *n == 20_000));
    }
}

/// A body much larger than the client's windows arrives whole, and a body
/// of unknown length ends with its source.
#[tokio::test]
async fn bodies_larger_than_the_windows_arrive_whole() {
    struct Chunks(u32);
    impl Source for Chunks {
        fn poll_chunk(
            &mut self,
            _: &mut std::task::Context<'_>,
            _: usize,
        ) -> std::task::Poll<Option<std::io::Result<Bytes>>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(None);
            }
            self.0 -= 1;
            std::task::Poll::Ready(Some(Ok(Bytes::from(vec![b'x'; 10_000]))))
        }
    }
    let io = pipe(|req: Request, resp: Responder| async move {
        let payload = if req.parts.uri.path() == "/big" {
            Payload::Bytes(Bytes::from(vec![7u8; 1_000_000]))
        } else {
            Payload::Stream {
                source: Box::new(Chunks(30)),
                len: None,
            }
        };
        resp.respond(StatusCode::OK, &HeaderMap::new(), payload, None)
            .unwrap();
    });
    let mut send = client(io, 65_535).await;
    let (r, _) = send.send_request(get("/big"), true).unwrap();
    assert_eq!(
        read_all(r.await.unwrap().into_body()).await.len(),
        1_000_000
    );
    let (r, _) = send.send_request(get("/stream"), true).unwrap();
    assert_eq!(read_all(r.await.unwrap().into_body()).await.len(), 300_000);
}

/// A request body reaches the handler whole, past the stream window: the
/// window is given back as the handler reads.
#[tokio::test]
async fn request_bodies_arrive_as_the_reader_frees_window() {
    let io = pipe(|req: Request, resp: Responder| async move {
        let body = req.body.collect().await.unwrap().to_bytes();
        let n = Bytes::from(body.len().to_string());
        resp.respond(StatusCode::OK, &HeaderMap::new(), Payload::Bytes(n), None)
            .unwrap();
    });
    let mut send = client(io, 65_535).await;
    let request = http::Request::post("https://example.com/upload")
        .body(())
        .unwrap();
    let (response, mut body) = send.send_request(request, false).unwrap();
    let data = Bytes::from(vec![1u8; 3 << 20]);
    let mut offset = 0;
    while offset < data.len() {
        body.reserve_capacity(data.len() - offset);
        let n = std::future::poll_fn(|cx| body.poll_capacity(cx))
            .await
            .unwrap()
            .unwrap();
        body.send_data(data.slice(offset..offset + n), offset + n == data.len())
            .unwrap();
        offset += n;
    }
    let answer = read_all(response.await.unwrap().into_body()).await;
    assert_eq!(answer, (3 << 20).to_string().as_bytes());
}

/// What a push reports when the client cancels it, and the page goes on.
#[tokio::test]
async fn a_cancelled_push_reports_its_reset() {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = outcomes.clone();
    let io = pipe(move |_req: Request, mut resp: Responder| {
        let seen = seen.clone();
        async move {
            let done: Done = Box::new(move |f: Finished| seen.lock().unwrap().push(f.outcome));
            resp.push(
                PushRequest {
                    scheme: "https",
                    authority: "example.com",
                    path: "/huge",
                    headers: &HeaderMap::new(),
                },
                StatusCode::OK,
                &HeaderMap::new(),
                Payload::Bytes(Bytes::from(vec![0u8; 5_000_000])),
                Priority::default(),
                Some(done),
                Duration::from_secs(1),
            )
            .unwrap();
            resp.respond(
                StatusCode::OK,
                &HeaderMap::new(),
                Payload::Bytes("ok".into()),
                None,
            )
            .unwrap();
        }
    });
    let mut send = client(io, 65_535).await;
    let (mut response, _) = send.send_request(get("/"), true).unwrap();
    let mut pushes = response.push_promises();
    let promise = pushes.push_promise().await.unwrap().unwrap();
    let (_, pushed) = promise.into_parts();
    let mut pushed = pushed.await.unwrap().into_body();
    let _ = pushed.data().await;
    drop(pushed); // the client's h2 sends RST_STREAM(CANCEL)
    let page = read_all(response.await.unwrap().into_body()).await;
    assert_eq!(page, "ok");
    for _ in 0..100 {
        if !outcomes.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*outcomes.lock().unwrap(), [Outcome::Reset(Reason::CANCEL)]);
}

// ---- frame by frame ----------------------------------------------------

/// A raw client: frames in, the engine's frames out.
struct Raw {
    engine: Engine,
    enc: hpack::Encoder,
    now: Instant,
}

impl Raw {
    fn new(settings: &[(u16, u32)]) -> Raw {
        let now = Instant::now();
        let mut raw = Raw {
            engine: Engine::new(Settings::default(), now),
            enc: hpack::Encoder::new(),
            now,
        };
        let mut bytes = frame::PREFACE.to_vec();
        frame::settings(&mut bytes, settings);
        raw.feed(&bytes);
        raw.take();
        raw
    }

    fn feed(&mut self, bytes: &[u8]) {
        let mut buf = BytesMut::from(bytes);
        self.engine
            .recv(&mut buf, self.now, std::task::Waker::noop());
    }

    /// The bytes the engine has to write since the last call.
    fn written(&mut self) -> Vec<u8> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        self.engine.fill(&mut cx, self.now);
        let out = self.engine.output().to_vec();
        self.engine.consumed(out.len(), self.now);
        out
    }

    /// The engine's output frames since the last call (payloads cut to
    /// the decoder's prefix).
    fn take(&mut self) -> Vec<(FrameHead, Vec<u8>)> {
        let out = self.written();
        let mut frames = Vec::new();
        FrameDecoder::new(false).feed(&out, |f| frames.push((f.head, f.prefix.to_vec())));
        frames
    }

    /// The engine's output frames since the last call, payloads whole.
    fn take_whole(&mut self) -> Vec<(FrameHead, Vec<u8>)> {
        let out = self.written();
        let mut frames = Vec::new();
        let mut at = 0;
        while at < out.len() {
            let head = FrameHead::parse(&out[at..at + 9]);
            frames.push((head, out[at + 9..at + 9 + head.len].to_vec()));
            at += 9 + head.len;
        }
        assert_eq!(at, out.len(), "the output ends with a whole frame");
        frames
    }

    fn request(&mut self, id: u32, path: &str, end_stream: bool) {
        let mut block = Vec::new();
        self.enc
            .push_request("https", "example.com", path, &HeaderMap::new(), &mut block);
        let mut bytes = Vec::new();
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        frame::head(&mut bytes, block.len(), frame_type::HEADERS, flags, id);
        bytes.extend(block);
        self.feed(&bytes);
    }

    /// Pages 1 and 3 requested, each given its place in the scheduler.
    fn two_pages(&mut self) -> Vec<u32> {
        for id in [1, 3] {
            self.request(id, "/", true);
        }
        let ids: Vec<u32> = self.engine.take_requests().iter().map(|r| r.id).collect();
        for &id in &ids {
            self.engine.schedule(id, Priority::default(), self.now);
        }
        ids
    }

    /// Promise `path` on `parent`, at the default priority, with `body`.
    fn push(
        &mut self,
        parent: u32,
        path: &str,
        body: Payload,
        patience: Duration,
    ) -> Result<u32, PushError> {
        let empty = HeaderMap::new();
        let request = PushRequest {
            scheme: "https",
            authority: "example.com",
            path,
            headers: &empty,
        };
        self.engine.push(
            parent,
            request,
            StatusCode::OK,
            &empty,
            body,
            Priority::default(),
            None,
            patience,
            self.now,
        )
    }

    fn goaway(frames: &[(FrameHead, Vec<u8>)]) -> Option<u32> {
        frames
            .iter()
            .find(|(h, _)| h.kind == frame_type::GOAWAY)
            .map(|(_, p)| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
    }

    fn reset_of(frames: &[(FrameHead, Vec<u8>)], id: u32) -> Option<u32> {
        frames
            .iter()
            .find(|(h, _)| h.kind == frame_type::RST_STREAM && h.stream == id)
            .map(|(_, p)| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
    }
}

#[test]
fn our_settings_come_first_and_the_clients_are_acked() {
    let now = Instant::now();
    let mut e = Engine::new(Settings::default(), now);
    let mut frames = Vec::new();
    FrameDecoder::new(false).feed(e.output(), |f| frames.push(f.head));
    assert_eq!(frames[0].kind, frame_type::SETTINGS);
    assert_eq!(frames[1].kind, frame_type::WINDOW_UPDATE);
    let n = e.output().len();
    e.consumed(n, now);
    let mut bytes = frame::PREFACE.to_vec();
    frame::settings(&mut bytes, &[(setting::ENABLE_PUSH, 0)]);
    e.recv(
        &mut BytesMut::from(&bytes[..]),
        now,
        std::task::Waker::noop(),
    );
    assert!(e.handshake_done());
    assert!(!e.push_enabled());
    let mut acks = Vec::new();
    FrameDecoder::new(false).feed(e.output(), |f| acks.push(f.head));
    assert_eq!(
        (acks[0].kind, acks[0].flags),
        (frame_type::SETTINGS, flag::ACK)
    );
}

#[test]
fn a_bad_preface_or_a_first_frame_other_than_settings_is_a_connection_error() {
    let now = Instant::now();
    let mut e = Engine::new(Settings::default(), now);
    e.recv(
        &mut BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]),
        now,
        std::task::Waker::noop(),
    );
    assert_eq!(e.error().unwrap().reason, Reason::PROTOCOL_ERROR);
    let mut e = Engine::new(Settings::default(), now);
    let mut bytes = frame::PREFACE.to_vec();
    frame::ping_ack(&mut bytes, &[0; 8]);
    e.recv(
        &mut BytesMut::from(&bytes[..]),
        now,
        std::task::Waker::noop(),
    );
    assert_eq!(e.error().unwrap().reason, Reason::PROTOCOL_ERROR);
}

#[test]
fn malformed_requests_are_reset_and_the_connection_goes_on() {
    let mut raw = Raw::new(&[]);
    // Uppercase name: literal without indexing, new name.
    let mut block = Vec::new();
    raw.enc
        .push_request("https", "example.com", "/", &HeaderMap::new(), &mut block);
    block.extend([0x00, 0x03, b'B', b'a', b'd', 0x01, b'x']);
    let mut bytes = Vec::new();
    frame::head(
        &mut bytes,
        block.len(),
        frame_type::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
    );
    bytes.extend(block);
    raw.feed(&bytes);
    let frames = raw.take();
    assert_eq!(Raw::reset_of(&frames, 1), Some(Reason::PROTOCOL_ERROR.0));
    assert!(raw.engine.take_requests().is_empty());
    // The next request is served.
    raw.request(3, "/ok", true);
    let requests = raw.engine.take_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].parts.uri.path(), "/ok");
    assert!(Raw::goaway(&raw.take()).is_none());
}

#[test]
fn flow_control_violations_are_errors() {
    // DATA past the stream window: a stream error.
    let mut raw = Raw::new(&[]);
    raw.request(1, "/upload", false);
    // The handler holds the body and reads nothing: the window runs out.
    let held = raw.engine.take_requests();
    let mut bytes = Vec::new();
    let window = Settings::default().initial_window_size as usize;
    for _ in 0..=window / 16_384 {
        frame::head(&mut bytes, 16_384, frame_type::DATA, 0, 1);
        bytes.extend(std::iter::repeat_n(0u8, 16_384));
    }
    raw.feed(&bytes);
    let frames = raw.take();
    assert_eq!(
        Raw::reset_of(&frames, 1),
        Some(Reason::FLOW_CONTROL_ERROR.0)
    );
    assert!(Raw::goaway(&frames).is_none());
    drop(held);
    // A window past 2^31-1: a connection error.
    let mut bytes = Vec::new();
    frame::window_update(&mut bytes, 0, 0x7fff_ffff);
    raw.feed(&bytes);
    assert_eq!(Raw::goaway(&raw.take()), Some(Reason::FLOW_CONTROL_ERROR.0));
}

#[test]
fn a_client_may_not_push_nor_open_even_streams() {
    let mut raw = Raw::new(&[]);
    let mut bytes = Vec::new();
    frame::head(
        &mut bytes,
        4,
        frame_type::PUSH_PROMISE,
        flag::END_HEADERS,
        1,
    );
    bytes.extend([0, 0, 0, 2]);
    raw.feed(&bytes);
    assert_eq!(Raw::goaway(&raw.take()), Some(Reason::PROTOCOL_ERROR.0));
    let mut raw = Raw::new(&[]);
    raw.request(2, "/", true);
    assert_eq!(Raw::goaway(&raw.take()), Some(Reason::PROTOCOL_ERROR.0));
}

#[test]
fn pushes_stop_at_the_clients_stream_limit_and_after_the_final_headers() {
    let mut raw = Raw::new(&[(setting::MAX_CONCURRENT_STREAMS, 1)]);
    raw.request(1, "/", true);
    let id = raw.engine.take_requests()[0].id;
    let empty = HeaderMap::new();
    let push = |raw: &mut Raw| {
        let promise = PushRequest {
            scheme: "https",
            authority: "example.com",
            path: "/a.css",
            headers: &empty,
        };
        raw.engine.push(
            id,
            promise,
            StatusCode::OK,
            &HeaderMap::new(),
            Payload::Bytes(Bytes::from_static(b"body")),
            Priority::default(),
            None,
            Duration::from_secs(1),
            raw.now,
        )
    };
    assert_eq!(push(&mut raw), Ok(2));
    assert_eq!(push(&mut raw), Err(PushError::Limit));
    // Once the first push is out, the next fits.
    let frames = raw.take();
    assert!(frames.iter().any(|(h, _)| h.kind == frame_type::DATA
        && h.stream == 2
        && h.flags & flag::END_STREAM != 0));
    assert_eq!(push(&mut raw), Ok(4));
    raw.engine
        .respond(
            id,
            StatusCode::OK,
            &HeaderMap::new(),
            Payload::Empty,
            None,
            raw.now,
        )
        .unwrap();
    assert_eq!(push(&mut raw), Err(PushError::Parent));
    assert!(
        raw.engine
            .informational(id, StatusCode::EARLY_HINTS, &HeaderMap::new())
            .is_err()
    );
    // Promised ids in the order made, each promise before its HEADERS.
    let kinds: Vec<(u8, u32)> = raw.take().iter().map(|(h, _)| (h.kind, h.stream)).collect();
    assert_eq!(kinds[0], (frame_type::PUSH_PROMISE, 1));
    let at = |k| kinds.iter().position(|f| *f == k);
    assert!(at((frame_type::HEADERS, 4)) > at((frame_type::PUSH_PROMISE, 1)));
    assert!(at((frame_type::DATA, 4)) > at((frame_type::HEADERS, 4)));
}

/// Push `path` on page `parent` at `urgency`, an SVG of `body`.
fn push_to(raw: &mut Raw, parent: u32, path: &str, urgency: u8, body: &'static [u8]) -> u32 {
    let empty = HeaderMap::new();
    let promise = PushRequest {
        scheme: "https",
        authority: "example.com",
        path,
        headers: &empty,
    };
    let prio = Priority {
        urgency,
        ..Priority::default()
    };
    let head = headers(&[("content-type", "image/svg+xml")]);
    raw.engine
        .push(
            parent,
            promise,
            StatusCode::OK,
            &head,
            Payload::Bytes(Bytes::from_static(body)),
            prio,
            None,
            Duration::from_secs(1),
            raw.now,
        )
        .unwrap()
}

#[test]
fn a_push_less_urgent_than_its_page_sends_its_headers_after_the_page() {
    let mut raw = Raw::new(&[]);
    raw.request(1, "/", true);
    let id = raw.engine.take_requests()[0].id;
    raw.engine.schedule(id, Priority::default(), raw.now);
    let push = |raw: &mut Raw, path, urgency, body| push_to(raw, id, path, urgency, body);
    let css = push(&mut raw, "/a.css", 0, b"css");
    let img = push(&mut raw, "/b.svg", 5, b"svg");
    let empty_img = push(&mut raw, "/c.svg", 5, b"");
    raw.engine
        .respond(
            id,
            StatusCode::OK,
            &HeaderMap::new(),
            Payload::Bytes(Bytes::from_static(b"<html>")),
            None,
            raw.now,
        )
        .unwrap();
    let kinds: Vec<(u8, u32)> = raw.take().iter().map(|(h, _)| (h.kind, h.stream)).collect();
    use frame_type::{DATA, HEADERS, PUSH_PROMISE};
    assert_eq!(
        kinds,
        [
            (PUSH_PROMISE, id),
            (PUSH_PROMISE, id),
            (PUSH_PROMISE, id),
            // A push without a body is answered at once.
            (HEADERS, empty_img),
            (HEADERS, id),
            // The stylesheet outranks the page: its head goes with it.
            (HEADERS, css),
            (DATA, css),
            (DATA, id),
            // The image's head waited for its turn, after the page.
            (HEADERS, img),
            (DATA, img),
        ],
    );
}

/// HEADERS are not flow-controlled: a push whose stream has no window
/// (from the start, or shut by a SETTINGS before its turn) sends its
/// response head at once, for a client that opens a stream's window only
/// once it has seen its response.
#[test]
fn a_push_without_window_sends_its_headers_at_once() {
    let push = |raw: &mut Raw, id, path| push_to(raw, id, path, 5, b"body");
    let kinds = |frames: Vec<(FrameHead, Vec<u8>)>| -> Vec<(u8, u32)> {
        frames.iter().map(|(h, _)| (h.kind, h.stream)).collect()
    };

    // No window from the start.
    let mut raw = Raw::new(&[(setting::INITIAL_WINDOW_SIZE, 0)]);
    raw.request(1, "/", true);
    let id = raw.engine.take_requests()[0].id;
    let pushed = push(&mut raw, id, "/a.svg");
    let frames = kinds(raw.take());
    assert!(
        frames.contains(&(frame_type::HEADERS, pushed)),
        "{frames:?}"
    );
    assert!(!frames.contains(&(frame_type::DATA, pushed)), "{frames:?}");

    // Window at the promise, shut before the push's turn.
    let mut raw = Raw::new(&[]);
    raw.request(1, "/", true);
    let id = raw.engine.take_requests()[0].id;
    let pushed = push(&mut raw, id, "/b.svg");
    let mut shut = Vec::new();
    frame::settings(&mut shut, &[(setting::INITIAL_WINDOW_SIZE, 0)]);
    raw.feed(&shut);
    let frames = kinds(raw.take());
    assert!(
        frames.contains(&(frame_type::HEADERS, pushed)),
        "{frames:?}"
    );
    assert!(!frames.contains(&(frame_type::DATA, pushed)), "{frames:?}");
}

#[test]
fn priority_update_reorders_streams_waiting_for_the_wire() {
    let mut raw = Raw::new(&[]);
    raw.request(1, "/a", true);
    raw.request(3, "/b", true);
    // Stream 3 becomes urgent before either is answered.
    let mut bytes = Vec::new();
    let value = b"u=0";
    frame::head(
        &mut bytes,
        4 + value.len(),
        frame_type::PRIORITY_UPDATE,
        0,
        0,
    );
    bytes.extend(3u32.to_be_bytes());
    bytes.extend(value);
    raw.feed(&bytes);
    for r in raw.engine.take_requests() {
        raw.engine.schedule(r.id, Priority::default(), raw.now);
    }
    // Both answered at once: the scheduler, not the order of answers,
    // decides whose DATA goes first.
    for id in [1, 3] {
        raw.engine
            .respond(
                id,
                StatusCode::OK,
                &HeaderMap::new(),
                Payload::Bytes(Bytes::from(vec![0u8; 100_000])),
                None,
                raw.now,
            )
            .unwrap();
    }
    let frames = raw.take();
    let first_data = frames
        .iter()
        .find(|(h, _)| h.kind == frame_type::DATA)
        .map(|(h, _)| h.stream);
    assert_eq!(first_data, Some(3));
}

#[test]
fn rapid_resets_of_unanswered_streams_close_the_connection() {
    let mut raw = Raw::new(&[]);
    let mut resets = 0;
    for i in 0..1_000u32 {
        let id = 1 + 2 * i;
        raw.request(id, "/", true);
        let mut bytes = Vec::new();
        frame::rst_stream(&mut bytes, id, Reason::CANCEL);
        raw.feed(&bytes);
        resets += 1;
        if raw.engine.error().is_some() {
            break;
        }
    }
    let limit = Settings::default().max_reset_burst as usize;
    assert!(
        resets > limit && resets < limit + 5,
        "closed after {resets}"
    );
    assert_eq!(Raw::goaway(&raw.take()), Some(Reason::ENHANCE_YOUR_CALM.0));
}

#[test]
fn a_write_ends_after_a_stream_that_outranks_what_follows() {
    let mut raw = Raw::new(&[]);
    let ids = raw.two_pages();
    // Page 1 pushes a font at its own urgency; both pages answer.
    let empty = HeaderMap::new();
    let font = raw
        .push(
            1,
            "/font.woff",
            Payload::Bytes(Bytes::from(vec![0u8; 9000])),
            Duration::from_secs(1),
        )
        .unwrap();
    for &id in &ids {
        raw.engine
            .respond(
                id,
                StatusCode::OK,
                &empty,
                Payload::Bytes(Bytes::from(vec![1u8; 700])),
                None,
                raw.now,
            )
            .unwrap();
    }
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    raw.engine.fill(&mut cx, raw.now);
    // The two pages (equals) share a write; it ends where the font begins.
    let mut frames = Vec::new();
    FrameDecoder::new(false).feed(raw.engine.next_write(), |f| frames.push(f.head));
    let last = frames.last().unwrap();
    assert_eq!(
        (last.kind, last.stream),
        (frame_type::DATA, 3),
        "{frames:?}"
    );
    let data: Vec<u32> = frames
        .iter()
        .filter(|f| f.kind == frame_type::DATA)
        .map(|f| f.stream)
        .collect();
    assert_eq!(data, [1, 3]);
    let n = raw.engine.next_write().len();
    raw.engine.consumed(n, raw.now);
    let mut rest = Vec::new();
    FrameDecoder::new(false).feed(raw.engine.next_write(), |f| rest.push(f.head));
    assert!(rest.iter().all(|f| f.stream == font), "{rest:?}");
}

#[test]
fn a_stream_that_ended_in_what_was_written_leaves_no_empty_write() {
    let mut raw = Raw::new(&[]);
    let ids = raw.two_pages();
    let empty = HeaderMap::new();
    let body = |n| Payload::Bytes(Bytes::from(vec![1u8; n]));
    raw.engine
        .respond(ids[0], StatusCode::OK, &empty, body(700), None, raw.now)
        .unwrap();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    raw.engine.fill(&mut cx, raw.now);
    let n = raw.engine.next_write().len();
    raw.engine.consumed(n, raw.now);
    assert!(raw.engine.output().is_empty());
    // The next body framed ranks below the page that ended in that write:
    // no boundary at the start of the output (an empty write would be a
    // zero-length write, which the driver treats as a dead socket).
    raw.push(ids[1], "/font.woff", body(9000), Duration::from_secs(1))
        .unwrap();
    // Page 3 waits for its upstream meanwhile.
    raw.engine.idle(ids[1], raw.now);
    raw.engine.fill(&mut cx, raw.now);
    assert!(raw.engine.output().len() > 9000);
    assert_eq!(raw.engine.next_write().len(), raw.engine.output().len());
}

#[test]
fn a_connection_busy_with_a_long_body_is_slow_not_stalled() {
    let mut raw = Raw::new(&[]);
    let ids = raw.two_pages();
    let empty = HeaderMap::new();
    let big = Payload::Bytes(Bytes::from(vec![1u8; 1 << 20]));
    raw.engine
        .respond(ids[0], StatusCode::OK, &empty, big, None, raw.now)
        .unwrap();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let patience = Duration::from_secs(2);
    let push = |raw: &mut Raw, path: &str| {
        raw.push(
            ids[1],
            path,
            Payload::Bytes(Bytes::from_static(b"asset")),
            patience,
        )
    };
    // A slow reader: the socket takes 2 KiB every half second for three
    // seconds, and some output waits all along.
    for _ in 0..6 {
        raw.engine.fill(&mut cx, raw.now);
        raw.now += Duration::from_millis(500);
        raw.engine.consumed(2048, raw.now);
        assert!(!raw.engine.output().is_empty());
    }
    assert!(
        push(&mut raw, "/a.css").is_ok(),
        "a moving connection takes promises"
    );
    // Then nothing for longer than the patience: not reading.
    raw.engine.blocked(raw.now);
    raw.now += patience;
    assert_eq!(push(&mut raw, "/b.css"), Err(PushError::Stalled));
}

/// A header block's fields, decoded by `d` (names and values as text).
fn fields_of(d: &mut hpack::Decoder, block: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    d.decode(block, usize::MAX, |n, v| {
        let name = String::from_utf8(n.as_bytes().to_vec()).unwrap();
        fields.push((name, String::from_utf8(v.to_vec()).unwrap()));
    })
    .unwrap();
    fields
}

#[test]
fn a_103_sent_again_is_one_whole_headers_frame_and_a_long_one_is_split() {
    let mut raw = Raw::new(&[]);
    for id in [1, 3, 5, 7, 9] {
        raw.request(id, "/", true);
    }
    raw.engine.take_requests();
    let links = HeaderValue::from_static("</a.css>; rel=preload; as=style");
    // The third and later 103s are the block remembered from the second
    // (the first adds the field to the table).
    for id in [1, 3, 5] {
        raw.engine.early_hints(id, &links).unwrap();
    }
    let mut d = hpack::Decoder::new();
    let frames = raw.take_whole();
    assert_eq!(frames.len(), 3);
    for ((head, block), id) in frames.iter().zip([1, 3, 5]) {
        assert_eq!(
            (head.kind, head.flags, head.stream),
            (frame_type::HEADERS, flag::END_HEADERS, id)
        );
        assert_eq!(
            fields_of(&mut d, block),
            [
                (":status".into(), "103".into()),
                ("link".into(), links.to_str().unwrap().to_string())
            ]
        );
    }
    assert_eq!(frames[1].1, frames[2].1, "the same block, indices only");

    // A stream answered, or unknown, gets no 103 from the remembered block.
    let body = Payload::Bytes(Bytes::from_static(b"page"));
    let now = raw.now;
    raw.engine.schedule(1, Priority::default(), now);
    raw.engine
        .respond(1, StatusCode::OK, &HeaderMap::new(), body, None, now)
        .unwrap();
    assert_eq!(raw.engine.early_hints(1, &links), Err(Gone::Answered));
    assert_eq!(raw.engine.early_hints(11, &links), Err(Gone::Stream));
    assert_eq!(raw.engine.early_hints(3, &links), Ok(()));
    let heads: Vec<(u32, Vec<(String, String)>)> = raw
        .take_whole()
        .iter()
        .filter(|(head, _)| head.kind == frame_type::HEADERS)
        .map(|(head, block)| (head.stream, fields_of(&mut d, block)))
        .collect();
    assert_eq!(
        heads.len(),
        2,
        "page 1's response and page 3's 103: {heads:?}"
    );
    assert_eq!((heads[0].0, heads[0].1[0].1.as_str()), (1, "200"));
    assert_eq!((heads[1].0, heads[1].1[0].1.as_str()), (3, "103"));

    // A block longer than a frame is remembered too (its literal adds
    // nothing to the table), and each time split into CONTINUATIONs.
    let long = format!("</{}.js>; rel=preload", "x".repeat(30_000));
    let long = HeaderValue::from_str(&long).unwrap();
    for id in [7, 9] {
        raw.engine.early_hints(id, &long).unwrap();
        let frames = raw.take_whole();
        let kinds: Vec<(u8, u8, u32)> = frames
            .iter()
            .map(|(h, _)| (h.kind, h.flags, h.stream))
            .collect();
        assert_eq!(
            kinds,
            [
                (frame_type::HEADERS, 0, id),
                (frame_type::CONTINUATION, flag::END_HEADERS, id)
            ]
        );
        let block: Vec<u8> = frames.iter().flat_map(|(_, b)| b.clone()).collect();
        let fields = fields_of(&mut d, &block);
        assert_eq!(fields[1].1, long.to_str().unwrap());
    }
}

#[test]
fn a_held_103_goes_just_before_its_response_and_not_at_all_to_a_gone_stream() {
    let mut raw = Raw::new(&[]);
    for id in [1, 3] {
        raw.request(id, "/", true);
    }
    raw.engine.take_requests();
    let links = HeaderValue::from_static("</a.css>; rel=preload; as=style");
    let now = raw.now;
    let mut d = hpack::Decoder::new();
    // Twice: the second 103 is the remembered block.
    // A page's response after a held 103 of `links`.
    let held = |engine: &mut Engine, id: u32| {
        let body = Payload::Bytes(Bytes::from_static(b"page"));
        let empty = HeaderMap::new();
        engine.respond_after_103(id, Some(&links), StatusCode::OK, &empty, body, None, now)
    };
    for id in [1, 3] {
        held(&mut raw.engine, id).unwrap();
        let heads: Vec<(u32, String)> = raw
            .take_whole()
            .iter()
            .filter(|(head, _)| head.kind == frame_type::HEADERS)
            .map(|(head, block)| (head.stream, fields_of(&mut d, block)[0].1.clone()))
            .collect();
        assert_eq!(heads, [(id, "103".to_string()), (id, "200".to_string())]);
    }
    // Answered (its body still going), or unknown: neither a 103 nor a
    // response, and the error.
    raw.request(5, "/", true);
    raw.engine.take_requests();
    let big = Payload::Bytes(Bytes::from(vec![b'x'; 100_000]));
    raw.engine
        .respond(5, StatusCode::OK, &HeaderMap::new(), big, None, now)
        .unwrap();
    raw.take_whole();
    for (id, why) in [(5, Gone::Answered), (11, Gone::Stream)] {
        assert_eq!(held(&mut raw.engine, id), Err(why));
        // (Stream 5's body goes on meanwhile.)
        let heads: Vec<u32> = raw
            .take_whole()
            .iter()
            .filter(|(head, _)| head.kind == frame_type::HEADERS)
            .map(|(head, _)| head.stream)
            .collect();
        assert!(heads.is_empty(), "stream {id}: HEADERS on {heads:?}");
    }
}
