//! The static origin: files under a root directory.
//!
//! One code path serves both the client's requests and pushed responses; a
//! typed [`Serve`] flag (never a header, which a client could forge) tells it
//! which. A push ignores conditional headers, since the promise carries none
//! the client chose.
//!
//! Invariant: no path outside the canonical root is ever opened. Dot segments
//! (also percent-encoded) are refused before touching the file system, and the
//! resolved file's canonical path must lie under the canonical root, which
//! stops symlinks pointing out of it. Dotfiles other than `/.well-known/` are
//! not served.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use percent_encoding::percent_decode_str;
use tokio::io::AsyncReadExt;

/// Who a response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// The client asked for it.
    Request,
    /// The host pushes it; the client never sent this request.
    Push,
}

/// Files up to this size are read in one go; larger ones are streamed.
const READ_WHOLE_LIMIT: u64 = 256 * 1024;

/// The static file origin.
#[derive(Debug)]
pub struct StaticOrigin {
    root: PathBuf,
    cache_control: HeaderValue,
    index: String,
    files: FileCache,
}

/// Small files (up to `READ_WHOLE_LIMIT`) kept in memory by request path.
/// Without it every request cost five `tokio::fs` calls, each a hand-off to
/// the blocking pool and back, which was most of a request's time under load
/// (`BENCHMARKS.md`, throughput). Bounded; emptied when full.
///
/// A changed, replaced or removed file is resolved afresh. The directories
/// from the root down to each cached file are watched (`fswatch`): a hit
/// reads the queue of change notices without blocking, and a file changed,
/// renamed over or deleted is dropped; a directory renamed, or a name that
/// is not a cached file replaced (a symlink flipped), drops everything.
/// Where watching is not possible (no inotify, its watch limit reached, or
/// a network file system, whose changes made elsewhere send no notice), a
/// hit checks its file with one `lstat` instead, as before.
#[derive(Debug, Default)]
struct FileCache {
    files: std::sync::Mutex<Files>,
    watch: Option<crate::fswatch::DirWatch>,
}

#[derive(Debug, Default)]
struct Files {
    /// Looked up on every request: foldhash, seeded per process (only files
    /// that exist enter, at most `CACHE_FILES`).
    by_path: std::collections::HashMap<String, Arc<Cached>, foldhash::fast::RandomState>,
    /// The bytes `by_path` holds, kept as entries come and go.
    bytes: u64,
}

impl Files {
    /// Drop the entries served from `file`; whether there were any.
    fn remove_file(&mut self, file: &Path) -> bool {
        let before = self.by_path.len();
        let mut freed = 0;
        self.by_path.retain(|_, c| {
            let keep = c.resolved.path != file;
            if !keep {
                freed += c.resolved.len;
            }
            keep
        });
        self.bytes -= freed;
        self.by_path.len() < before
    }
}

/// A cached file: its body and its `200` response head, built once when
/// cached (see [`StaticOrigin::head`]). Shared by every hit, which copies
/// only the head it sends.
#[derive(Debug)]
struct Cached {
    resolved: Resolved,
    body: Bytes,
    head: HeaderMap,
    etag: HeaderValue,
    /// Its directories are watched: a hit needs no `lstat`.
    watched: bool,
}

/// Files the cache holds at most, and their bytes.
const CACHE_FILES: usize = 4096;
const CACHE_BYTES: u64 = 64 << 20;

impl FileCache {
    fn watching() -> FileCache {
        let watch = match crate::fswatch::DirWatch::new() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::info!("no file change notices ({e}): cached files are checked with lstat");
                None
            }
        };
        FileCache {
            watch,
            ..FileCache::default()
        }
    }

    /// Apply the change notices queued since the last look.
    fn apply_changes(&self) {
        let Some(watch) = &self.watch else { return };
        let changes = watch.changes();
        if changes.is_empty() {
            return;
        }
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        for change in changes {
            match change {
                crate::fswatch::Change::Content(file) => {
                    files.remove_file(&file);
                }
                crate::fswatch::Change::Name(file) => {
                    if !files.remove_file(&file) {
                        *files = Files::default();
                    }
                }
                crate::fswatch::Change::Everything => *files = Files::default(),
            }
        }
    }

    fn get(&self, path: &str) -> Option<Arc<Cached>> {
        self.apply_changes();
        // Unwatched, the stat runs outside the lock: other workers' hits do
        // not wait on this one's system call.
        let entry = self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_path
            .get(path)?
            .clone();
        if entry.watched {
            return Some(entry);
        }
        if !entry.resolved.still_there() {
            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            // Unless another request already replaced it with the new file.
            if files
                .by_path
                .get(path)
                .is_some_and(|e| Arc::ptr_eq(e, &entry))
                && let Some(stale) = files.by_path.remove(path)
            {
                files.bytes -= stale.resolved.len;
            }
            return None;
        }
        Some(entry)
    }

    /// Keep `entry` for `path`. Its directories, from `root` down, are
    /// watched first and the file checked again after: a change between
    /// reading it and the watch starting is not missed (it is not cached).
    fn insert(&self, root: &Path, path: &str, mut entry: Cached) {
        let mut generation = None;
        if let Some(watch) = &self.watch {
            generation = Some(watch.generation());
            let file = &entry.resolved.path;
            entry.watched = file
                .ancestors()
                .skip(1)
                .take_while(|dir| dir.starts_with(root))
                .all(|dir| watch.watch(dir).is_ok());
        }
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: a change after this check queues a notice
        // that the next look applies to this entry, once it is in; and the
        // watches must still be the ones just set up (not dropped meanwhile
        // by a look that found a directory moved).
        if entry.watched
            && (!entry.resolved.still_there()
                || generation != self.watch.as_ref().map(|w| w.generation()))
        {
            return;
        }
        let len = entry.resolved.len;
        if files.by_path.len() >= CACHE_FILES || files.bytes + len > CACHE_BYTES {
            *files = Files::default();
        }
        if let Some(old) = files.by_path.insert(path.to_string(), Arc::new(entry)) {
            files.bytes -= old.resolved.len;
        }
        files.bytes += len;
    }
}

/// A response head plus its body source.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

/// Where the body comes from.
pub enum Body {
    Empty,
    Bytes(Bytes),
    File {
        file: tokio::fs::File,
        len: u64,
    },
    /// Streamed from an upstream; its length known only if it sent one.
    Upstream(crate::proxy::UpstreamBody),
}

impl Body {
    /// The body length, when known up front (always for static files).
    pub fn known_len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::File { len, .. } => Some(*len),
            Body::Upstream(u) => u.declared_len(),
        }
    }

    /// The length as an estimate for budgets: 0 when unknown.
    pub fn len(&self) -> u64 {
        self.known_len().unwrap_or(0)
    }

    /// Known to be empty (an upstream body of unknown length is not).
    pub fn is_empty(&self) -> bool {
        self.known_len() == Some(0)
    }

    /// The next chunk of at most `max` bytes, or `None` at the end.
    pub async fn next_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match self {
            Body::Empty => Ok(None),
            Body::Bytes(b) if b.is_empty() => Ok(None),
            Body::Bytes(b) => {
                let n = max.min(b.len());
                Ok(Some(b.split_to(n)))
            }
            Body::File { len: 0, .. } => Ok(None),
            Body::File { file, len } => {
                let want = (*len).min(max as u64) as usize;
                let mut buf = vec![0u8; want];
                file.read_exact(&mut buf).await?;
                *len -= want as u64;
                Ok(Some(Bytes::from(buf)))
            }
            Body::Upstream(u) => u.next_chunk(max).await,
        }
    }
}

/// A file body as the HTTP/2 engine pulls it: one read per chunk, on the
/// blocking pool (tokio's file), started when the scheduler could send more.
pub struct FileSource {
    file: tokio::fs::File,
    left: u64,
    buf: bytes::BytesMut,
}

impl FileSource {
    pub fn new(file: tokio::fs::File, len: u64) -> FileSource {
        FileSource {
            file,
            left: len,
            buf: bytes::BytesMut::new(),
        }
    }
}

impl crate::http2::Source for FileSource {
    fn poll_chunk(
        &mut self,
        cx: &mut std::task::Context<'_>,
        max: usize,
    ) -> std::task::Poll<Option<io::Result<Bytes>>> {
        use std::task::Poll;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = self.left.min(max as u64) as usize;
        self.buf.reserve(want);
        let spare = &mut self.buf.spare_capacity_mut()[..want];
        let mut read = tokio::io::ReadBuf::uninit(spare);
        if let Err(e) = std::task::ready!(tokio::io::AsyncRead::poll_read(
            std::pin::Pin::new(&mut self.file),
            cx,
            &mut read
        )) {
            return Poll::Ready(Some(Err(e)));
        }
        let n = read.filled().len();
        if n == 0 {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than when it was opened",
            ))));
        }
        // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity.
        unsafe { self.buf.set_len(n) };
        self.left -= n as u64;
        Poll::Ready(Some(Ok(self.buf.split().freeze())))
    }

    fn is_local(&self) -> bool {
        true
    }
}

/// A resolved file: what a response or a push plan needs to know about it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub path: PathBuf,
    pub len: u64,
    pub modified: Option<SystemTime>,
}

impl Resolved {
    /// The same regular file (not a symlink) is still at the canonical path
    /// (checked to lie under the root when it was resolved).
    fn still_there(&self) -> bool {
        std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.is_file() && m.len() == self.len && m.modified().ok() == self.modified)
    }
}

/// Why a path does not map to a file.
#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// Dot segments, NUL, backslashes: a 400.
    BadPath,
    /// Missing, a directory without index, outside the root, a dotfile: a 404.
    NotFound,
}

impl StaticOrigin {
    pub fn new(root: &Path, cache_control: &str, index: &str) -> io::Result<StaticOrigin> {
        let root = std::fs::canonicalize(root)?;
        Ok(StaticOrigin {
            root,
            cache_control: HeaderValue::from_str(cache_control).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cache_control is not a header value",
                )
            })?,
            index: index.to_string(),
            files: FileCache::watching(),
        })
    }

    /// Map a request path (percent-encoded, no query) to a file under the root.
    pub async fn resolve(&self, path: &str) -> Result<Resolved, ResolveError> {
        if !path.starts_with('/') {
            return Err(ResolveError::BadPath);
        }
        let decoded = percent_decode_str(path).collect::<Vec<u8>>();
        if decoded.iter().any(|&b| b == 0 || b == b'\\') {
            return Err(ResolveError::BadPath);
        }
        let decoded = String::from_utf8(decoded).map_err(|_| ResolveError::NotFound)?;
        let mut candidate = self.root.clone();
        for segment in decoded.split('/') {
            match segment {
                "" => continue,
                "." | ".." => return Err(ResolveError::BadPath),
                s if s.starts_with('.') && s != ".well-known" => {
                    return Err(ResolveError::NotFound);
                }
                s => candidate.push(s),
            }
        }
        if decoded.ends_with('/') {
            candidate.push(&self.index);
        }
        let mut canonical = tokio::fs::canonicalize(&candidate)
            .await
            .map_err(|_| ResolveError::NotFound)?;
        if !canonical.starts_with(&self.root) {
            return Err(ResolveError::NotFound);
        }
        let mut meta = tokio::fs::metadata(&canonical)
            .await
            .map_err(|_| ResolveError::NotFound)?;
        if meta.is_dir() {
            canonical.push(&self.index);
            meta = tokio::fs::metadata(&canonical)
                .await
                .map_err(|_| ResolveError::NotFound)?;
            let again = tokio::fs::canonicalize(&canonical)
                .await
                .map_err(|_| ResolveError::NotFound)?;
            if !again.starts_with(&self.root) {
                return Err(ResolveError::NotFound);
            }
        }
        if !meta.is_file() {
            return Err(ResolveError::NotFound);
        }
        Ok(Resolved {
            path: canonical,
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    /// The ETag `path` would be served with now, if it maps to a file.
    pub async fn etag_of(&self, path: &str) -> Option<String> {
        let etag = match self.files.get(path) {
            Some(cached) => cached.etag.clone(),
            None => etag(&self.resolve(path).await.ok()?),
        };
        etag.to_str().ok().map(str::to_string)
    }

    /// The `200` response head of a file (type, length, ETag, Last-Modified,
    /// Cache-Control), and its ETag.
    fn head(&self, resolved: &Resolved) -> (HeaderMap, HeaderValue) {
        let etag = etag(resolved);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type(&resolved.path));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(resolved.len));
        headers.insert(header::ETAG, etag.clone());
        if let Some(modified) = resolved.modified {
            headers.insert(
                header::LAST_MODIFIED,
                HeaderValue::from_str(&httpdate::fmt_http_date(modified))
                    .expect("http date is ASCII"),
            );
        }
        headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
        (headers, etag)
    }

    /// Produce the response for `method path` with the request's headers.
    pub async fn respond(
        &self,
        method: &Method,
        path: &str,
        req_headers: &HeaderMap,
        serve: Serve,
    ) -> Response {
        if method != Method::GET && method != Method::HEAD {
            let mut r = simple(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        // A cached file's head was built when it was cached; otherwise
        // resolve the path and build it now.
        let cached = self.files.get(path);
        let uncached;
        let (resolved, head, etag) = match &cached {
            Some(c) => (&c.resolved, &c.head, &c.etag),
            None => {
                let resolved = match self.resolve(path).await {
                    Ok(r) => r,
                    Err(ResolveError::BadPath) => {
                        return simple(StatusCode::BAD_REQUEST, "bad path\n");
                    }
                    Err(ResolveError::NotFound) => {
                        return simple(StatusCode::NOT_FOUND, "not found\n");
                    }
                };
                let (head, etag) = self.head(&resolved);
                uncached = (resolved, head, etag);
                (&uncached.0, &uncached.1, &uncached.2)
            }
        };

        if serve == Serve::Request && not_modified(req_headers, etag, resolved.modified) {
            // A 304 carries no Content-Length (it has no body to measure).
            let mut headers = head.clone();
            headers.remove(header::CONTENT_LENGTH);
            return Response {
                status: StatusCode::NOT_MODIFIED,
                headers,
                body: Body::Empty,
            };
        }
        let headers = head.clone();
        if method == Method::HEAD {
            return Response {
                status: StatusCode::OK,
                headers,
                body: Body::Empty,
            };
        }
        if let Some(c) = &cached {
            return Response {
                status: StatusCode::OK,
                headers,
                body: Body::Bytes(c.body.clone()),
            };
        }
        let body = match open_body(resolved).await {
            Ok(Body::Bytes(bytes)) => {
                let entry = Cached {
                    resolved: resolved.clone(),
                    body: bytes.clone(),
                    head: headers.clone(),
                    etag: etag.clone(),
                    watched: false,
                };
                self.files.insert(&self.root, path, entry);
                Body::Bytes(bytes)
            }
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(file = %resolved.path.display(), "cannot read file: {e}");
                return simple(StatusCode::INTERNAL_SERVER_ERROR, "cannot read file\n");
            }
        };
        Response {
            status: StatusCode::OK,
            headers,
            body,
        }
    }
}

async fn open_body(resolved: &Resolved) -> io::Result<Body> {
    let mut file = tokio::fs::File::open(&resolved.path).await?;
    if resolved.len <= READ_WHOLE_LIMIT {
        let mut buf = Vec::with_capacity(resolved.len as usize);
        file.read_to_end(&mut buf).await?;
        return Ok(Body::Bytes(Bytes::from(buf)));
    }
    Ok(Body::File {
        file,
        len: resolved.len,
    })
}

/// `421 Misdirected Request`: this server does not serve that authority.
pub fn misdirected() -> Response {
    simple(
        StatusCode::MISDIRECTED_REQUEST,
        "this server does not serve that host\n",
    )
}

/// A short plain-text response.
pub fn simple(status: StatusCode, text: &'static str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    Response {
        status,
        headers,
        body: Body::Bytes(Bytes::from_static(text.as_bytes())),
    }
}

/// A validator from size and modification time, like nginx's.
fn etag(r: &Resolved) -> HeaderValue {
    let (secs, nanos) = r
        .modified
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0));
    HeaderValue::from_str(&format!("\"{:x}-{:x}{:08x}\"", r.len, secs, nanos))
        .expect("hex is ASCII")
}

/// RFC 9110 §13.1.2 and §13.1.3: If-None-Match wins over If-Modified-Since.
fn not_modified(req: &HeaderMap, etag: &HeaderValue, modified: Option<SystemTime>) -> bool {
    let inm: Vec<&HeaderValue> = req.get_all(header::IF_NONE_MATCH).iter().collect();
    if !inm.is_empty() {
        let ours = etag.as_bytes();
        return inm
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == ours
            });
    }
    let (Some(ims), Some(modified)) = (req.get(header::IF_MODIFIED_SINCE), modified) else {
        return false;
    };
    let Some(ims) = ims
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
    else {
        return false;
    };
    // HTTP dates have one-second resolution.
    let modified_secs = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ims_secs = ims
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    modified_secs <= ims_secs
}

fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let essence = mime.essence_str();
    let text_like = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    let value = if text_like {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_string()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> (tempfile::TempDir, StaticOrigin) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("css")).unwrap();
        std::fs::write(root.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(root.join("css/site.css"), "body{}").unwrap();
        std::fs::write(root.join(".env"), "SECRET").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "SECRET").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("escape.txt")).unwrap();
        let origin = StaticOrigin::new(&root, "no-cache", "index.html").unwrap();
        (dir, origin)
    }

    async fn get(o: &StaticOrigin, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        o.respond(&Method::GET, path, &map, Serve::Request).await
    }

    fn text(r: &Response) -> String {
        match &r.body {
            Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            _ => panic!("a small file is served from memory"),
        }
    }

    /// A request after a change: it reaches the server through the event
    /// loop, which on that turn also learns of the change notices queued.
    async fn css(o: &StaticOrigin) -> String {
        tokio::task::yield_now().await;
        text(&get(o, "/css/site.css", &[]).await)
    }

    /// Every way a deploy changes a file: each is served new by the next
    /// request, with change notices and (unwatched) with `lstat`.
    #[tokio::test]
    async fn a_changed_file_is_served_new_by_the_next_request() {
        for watching in [true, false] {
            let (d, mut o) = site();
            if !watching {
                o.files = FileCache::default();
            }
            let root = d.path().join("root");
            assert_eq!(text(&get(&o, "/css/site.css", &[]).await), "body{}");
            let watched = o.files.files.lock().unwrap().by_path["/css/site.css"].watched;
            assert_eq!(watched, watching, "a hit needs no lstat when watched");
            // Rewritten in place (a new length, so `lstat` can tell too).
            std::fs::write(root.join("css/site.css"), "body{x}").unwrap();
            assert_eq!(css(&o).await, "body{x}", "watching: {watching}");
            // Renamed over.
            std::fs::write(root.join("css/new"), "p{}").unwrap();
            std::fs::rename(root.join("css/new"), root.join("css/site.css")).unwrap();
            assert_eq!(css(&o).await, "p{}", "watching: {watching}");
            // Its directory swapped for another.
            std::fs::create_dir(root.join("css2")).unwrap();
            std::fs::write(root.join("css2/site.css"), "a{b}").unwrap();
            std::fs::rename(root.join("css"), root.join("css-old")).unwrap();
            std::fs::rename(root.join("css2"), root.join("css")).unwrap();
            assert_eq!(css(&o).await, "a{b}", "watching: {watching}");
            // Removed.
            std::fs::remove_file(root.join("css/site.css")).unwrap();
            tokio::task::yield_now().await;
            assert_eq!(
                get(&o, "/css/site.css", &[]).await.status,
                404,
                "watching: {watching}"
            );
        }
    }

    /// What only notices can see: a same-length rewrite within the file
    /// system's timestamp granularity, and a symlink flipped to a new
    /// release (the canonical path of the old one is still there).
    #[tokio::test]
    async fn notices_catch_what_lstat_cannot() {
        let (d, o) = site();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("v1")).unwrap();
        std::fs::create_dir_all(root.join("v2")).unwrap();
        std::fs::write(root.join("v1/app.js"), "one()").unwrap();
        std::fs::write(root.join("v2/app.js"), "two()").unwrap();
        std::os::unix::fs::symlink("v1", root.join("current")).unwrap();
        assert_eq!(text(&get(&o, "/current/app.js", &[]).await), "one()");
        std::os::unix::fs::symlink("v2", root.join("next")).unwrap();
        std::fs::rename(root.join("next"), root.join("current")).unwrap();
        tokio::task::yield_now().await;
        assert_eq!(text(&get(&o, "/current/app.js", &[]).await), "two()");

        assert_eq!(text(&get(&o, "/css/site.css", &[]).await), "body{}");
        std::fs::write(root.join("css/site.css"), "BODY{}").unwrap();
        assert_eq!(css(&o).await, "BODY{}");
    }

    #[tokio::test]
    async fn serves_files_with_validators() {
        let (_d, o) = site();
        let r = get(&o, "/css/site.css", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(r.headers[header::CONTENT_LENGTH], "6");
        assert!(
            r.headers.contains_key(header::ETAG) && r.headers.contains_key(header::LAST_MODIFIED)
        );
        assert_eq!(r.headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(
            get(&o, "/", &[]).await.headers[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn conditional_requests_get_304_but_pushes_never_do() {
        let (_d, mut o) = site();
        let first = get(&o, "/css/site.css", &[]).await;
        let etag = first.headers[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(first.headers[header::CONTENT_LENGTH], "6");
        // From the cache, then with the cache emptied: neither 304 has a
        // Content-Length.
        for cached in [true, false] {
            if !cached {
                o.files = FileCache::default();
            }
            let not_modified = get(&o, "/css/site.css", &[("if-none-match", &etag)]).await;
            assert_eq!(not_modified.status, 304);
            assert_eq!(not_modified.headers[header::ETAG], etag.as_str());
            assert!(!not_modified.headers.contains_key(header::CONTENT_LENGTH));
        }
        assert_eq!(
            get(&o, "/css/site.css", &[("if-none-match", "\"other\", *")])
                .await
                .status,
            304
        );
        assert_eq!(
            get(&o, "/css/site.css", &[("if-none-match", "\"other\"")])
                .await
                .status,
            200
        );
        let lm = first.headers[header::LAST_MODIFIED]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(
            get(&o, "/css/site.css", &[("if-modified-since", &lm)])
                .await
                .status,
            304
        );
        assert_eq!(
            get(
                &o,
                "/css/site.css",
                &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")]
            )
            .await
            .status,
            200
        );
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag.parse().unwrap());
        assert_eq!(
            o.respond(&Method::GET, "/css/site.css", &h, Serve::Push)
                .await
                .status,
            200
        );
    }

    #[tokio::test]
    async fn head_has_no_body_and_other_methods_are_refused() {
        let (_d, o) = site();
        let r = o
            .respond(
                &Method::HEAD,
                "/css/site.css",
                &HeaderMap::new(),
                Serve::Request,
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers[header::CONTENT_LENGTH], "6");
        assert!(r.body.is_empty());
        let r = o
            .respond(&Method::POST, "/", &HeaderMap::new(), Serve::Request)
            .await;
        assert_eq!(r.status, 405);
    }

    #[tokio::test]
    async fn no_traversal_of_any_kind() {
        let (_d, o) = site();
        for (path, status) in [
            ("/../secret.txt", 400),
            ("/%2e%2e/secret.txt", 400),
            ("/css/%2E%2E/%2e%2e/secret.txt", 400),
            ("/css%2f..%2f..%2fsecret.txt", 400),
            ("/escape.txt", 404),
            ("/.env", 404),
            ("/missing", 404),
            ("/a%00b", 400),
        ] {
            assert_eq!(get(&o, path, &[]).await.status, status, "{path}");
        }
    }
}
