//! Change notices for the directories the static file cache serves from
//! (Linux inotify), read without blocking.
//!
//! With them, a cache hit costs a look at the notice queue instead of an
//! `lstat` that walks the file's whole path (13% of a worker's time under
//! h2load, `BENCHMARKS.md`). Made inside a tokio runtime, the queue is
//! registered with the runtime's event loop, and a look while the loop has
//! seen nothing queued costs no system call (the `read` it replaces was 4%
//! of a worker); elsewhere each look is one non-blocking `read`. The kernel
//! queues a notice inside the system call that changes the file, and the
//! event loop learns of it on its next turn, in the same `epoll_wait` that
//! brings the requests which follow the change: a request read after that
//! turn sees the change. (H2O's file cache likewise holds for one turn of
//! its event loop.) Nothing here runs on a timer or another thread.
//!
//! Directories on network file systems are not watched (another machine's
//! changes send no notice there); the cache checks their files with `lstat`.
//!
//! Invariant: the only `unsafe` code is the inotify calls on a file
//! descriptor this type owns, its registration with the event loop (which
//! never outlives it), and a `statfs`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// What a notice means for cached files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// This file's bytes or metadata changed: drop it.
    Content(PathBuf),
    /// A name in a watched directory was removed, renamed or replaced:
    /// drop it, and if it was not a cached file (a symlink, a temporary
    /// file renamed into place) assume any mapping may have moved.
    Name(PathBuf),
    /// A watched directory itself went or moved, or notices were lost:
    /// nothing cached can be trusted.
    Everything,
}

/// An inotify instance and the directories it watches.
///
/// When anything is in doubt (`Change::Everything`: a watched directory
/// moved or went, notices were lost) the instance is replaced by a new one
/// with no watches, and `generation` moves on: watches set up before then
/// no longer count (see `generation`).
pub struct DirWatch {
    state: Mutex<State>,
    generation: AtomicU64,
}

struct State {
    /// The event loop's word on whether notices are queued on `fd`, when
    /// made in a runtime. Declared first: it is deregistered before `fd`
    /// closes.
    queued: Option<AsyncFd<QueueFd>>,
    fd: OwnedFd,
    /// Where notices are read to: made once, not zeroed per look.
    buf: Box<[u8]>,
    by_wd: HashMap<i32, PathBuf>,
    by_path: HashMap<PathBuf, i32>,
}

impl std::fmt::Debug for DirWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dirs = self.state.lock().map_or(0, |s| s.by_wd.len());
        f.debug_struct("DirWatch").field("dirs", &dirs).finish()
    }
}

/// Content changes of a file, and namespace changes in (or of) a directory.
const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// File systems whose files other machines change without this kernel
/// knowing (NFS, SMB/CIFS, FUSE, 9p, Ceph, AFS, Coda, OCFS2, GFS2, Lustre;
/// `linux/magic.h`): inotify says nothing of those changes, so their
/// directories are not watched and their files are checked with `lstat`.
const NETWORK_FILE_SYSTEMS: &[i64] = &[
    0x6969,
    0x517B,
    0xFF53_4D42,
    0xFE53_4D42,
    0x6573_5546,
    0x0102_1997,
    0x00C3_6400,
    0x5346_414F,
    0x7375_7245,
    0x7461_636F,
    0x0116_1970,
    0x0BD0_0BD0,
];

/// `State::fd`'s number, for the event loop (`State` owns and closes it).
struct QueueFd(RawFd);

impl AsRawFd for QueueFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Register the queue with the current runtime's event loop, if there is one.
fn register(fd: &OwnedFd) -> Option<AsyncFd<QueueFd>> {
    tokio::runtime::Handle::try_current().ok()?;
    // SAFETY: the registration lives in the same `State` as `fd`, is
    // declared before it (so dropped first), and is taken away before `fd`
    // is replaced: the number stays open and the same for its whole life.
    unsafe { AsyncFd::register_with_interest(QueueFd(fd.as_raw_fd()), Interest::READABLE) }.ok()
}

/// The fixed part of `struct inotify_event`: wd, mask, cookie, len.
const HEADER: usize = 16;

fn open() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl DirWatch {
    pub fn new() -> io::Result<DirWatch> {
        let fd = open()?;
        Ok(DirWatch {
            state: Mutex::new(State {
                queued: register(&fd),
                fd,
                buf: vec![0; 4096].into_boxed_slice(),
                by_wd: HashMap::new(),
                by_path: HashMap::new(),
            }),
            generation: AtomicU64::new(0),
        })
    }

    /// Moves on whenever the watches were dropped. A caller that set up
    /// watches, then finds the generation changed, must not rely on them.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Watch `dir` (once: a directory already watched costs a map lookup).
    pub fn watch(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.by_path.contains_key(dir) {
            return Ok(());
        }
        let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `statfs` is plain data, for which all zeroes is valid.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid NUL-terminated path and a writable struct.
        if unsafe { libc::statfs(c_path.as_ptr(), &mut fs) } != 0 {
            return Err(io::Error::last_os_error());
        }
        #[allow(clippy::unnecessary_cast, reason = "f_type's width differs by target")]
        let f_type = fs.f_type as i64;
        if NETWORK_FILE_SYSTEMS.contains(&f_type) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a network file system: changes made elsewhere send no notice",
            ));
        }
        // SAFETY: a valid NUL-terminated path and our own descriptor.
        let wd = unsafe { libc::inotify_add_watch(state.fd.as_raw_fd(), c_path.as_ptr(), MASK) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        state.by_wd.insert(wd, dir.to_path_buf());
        state.by_path.insert(dir.to_path_buf(), wd);
        Ok(())
    }

    /// The changes noticed since the last call; empty at once when none.
    pub fn changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        // Registered: unless the event loop saw the queue become readable,
        // it is empty, and there is nothing to read. (An error here means
        // the runtime is going away: read, as without one.)
        let mut ready = None;
        if let Some(queued) = &state.queued {
            match queued.poll_read_ready(&mut Context::from_waker(Waker::noop())) {
                Poll::Pending => return out,
                Poll::Ready(Ok(guard)) => ready = Some(guard),
                Poll::Ready(Err(_)) => {}
            }
        }
        loop {
            let buf = &mut state.buf;
            // SAFETY: `buf` is writable for its whole length.
            let n = unsafe { libc::read(state.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                // EAGAIN: nothing (more) queued, which the event loop may
                // forget until the next notice. Any other error would mean
                // lost notices: trust nothing.
                if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                    out.push(Change::Everything);
                } else if let Some(guard) = ready.as_mut() {
                    guard.clear_ready();
                }
                break;
            }
            parse(&state.by_wd, &state.buf[..n as usize], &mut out);
        }
        if out.contains(&Change::Everything) {
            // Start over: the watched paths may no longer be the watched
            // directories. If a new instance cannot be had, the old one is
            // kept, with its watches forgotten (re-adding a directory it
            // still watches is harmless).
            if let Ok(fd) = open() {
                state.queued = None;
                state.fd = fd;
                state.queued = register(&state.fd);
            }
            state.by_wd.clear();
            state.by_path.clear();
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        out
    }
}

fn parse(by_wd: &HashMap<i32, PathBuf>, mut bytes: &[u8], out: &mut Vec<Change>) {
    while bytes.len() >= HEADER {
        let word = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
        let end = (HEADER + len).min(bytes.len());
        let name = &bytes[HEADER..end];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        bytes = &bytes[end..];
        let whole_dir = libc::IN_Q_OVERFLOW
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF
            | libc::IN_IGNORED
            | libc::IN_UNMOUNT
            | libc::IN_ISDIR;
        let change = match by_wd.get(&wd) {
            Some(dir) if mask & whole_dir == 0 && !name.is_empty() => {
                let path = dir.join(std::ffi::OsStr::from_bytes(name));
                if mask & (libc::IN_MOVED_FROM | libc::IN_MOVED_TO | libc::IN_DELETE) != 0 {
                    Change::Name(path)
                } else {
                    Change::Content(path)
                }
            }
            // A directory went, moved, or was renamed in one we watch;
            // notices were lost; or a watch we no longer know (replaced).
            _ => Change::Everything,
        };
        out.push(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_read_without_blocking_and_say_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("a.css"), "a").unwrap();
        let w = DirWatch::new().unwrap();
        w.watch(&root).unwrap();
        w.watch(&root).unwrap();
        assert!(w.changes().is_empty(), "nothing yet, and no waiting");

        std::fs::write(root.join("a.css"), "b").unwrap();
        let changes = w.changes();
        assert!(!changes.is_empty());
        assert!(
            changes
                .iter()
                .all(|c| *c == Change::Content(root.join("a.css"))),
            "{changes:?}"
        );

        std::fs::write(root.join("tmp"), "c").unwrap();
        w.changes();
        std::fs::rename(root.join("tmp"), root.join("a.css")).unwrap();
        let changes = w.changes();
        assert!(
            changes.contains(&Change::Name(root.join("tmp"))),
            "{changes:?}"
        );
        assert!(
            changes.contains(&Change::Name(root.join("a.css"))),
            "{changes:?}"
        );

        std::fs::rename(root.join("sub"), root.join("sub2")).unwrap();
        assert!(w.changes().contains(&Change::Everything));
    }

    /// What `changes` returns once the event loop has turned.
    async fn noticed(w: &DirWatch) -> Vec<Change> {
        let look = async {
            loop {
                let changes = w.changes();
                if !changes.is_empty() {
                    return changes;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), look)
            .await
            .expect("the change was noticed within 5 s")
    }

    #[tokio::test]
    async fn in_a_runtime_the_event_loop_says_when_notices_are_queued() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("a.css"), "a").unwrap();
        let w = DirWatch::new().unwrap();
        let registered = |w: &DirWatch| w.state.lock().unwrap().queued.is_some();
        assert!(registered(&w), "registered with the runtime's event loop");
        w.watch(&root).unwrap();
        assert!(w.changes().is_empty());

        // Each change is seen once, and the next one is seen again: the
        // readiness was cleared only when the queue was empty.
        for content in ["b", "c"] {
            std::fs::write(root.join("a.css"), content).unwrap();
            let changes = noticed(&w).await;
            assert!(
                changes
                    .iter()
                    .all(|c| *c == Change::Content(root.join("a.css"))),
                "{changes:?}"
            );
            tokio::task::yield_now().await;
            assert!(w.changes().is_empty(), "not reported twice");
        }

        // A new queue after `Everything` is registered in its turn.
        std::fs::rename(root.join("sub"), root.join("sub2")).unwrap();
        assert!(noticed(&w).await.contains(&Change::Everything));
        assert!(registered(&w));
        w.watch(&root).unwrap();
        std::fs::write(root.join("a.css"), "d").unwrap();
        assert!(
            noticed(&w)
                .await
                .contains(&Change::Content(root.join("a.css")))
        );
    }
}
