//! The live set of policies, swapped atomically.
//!
//! The registry holds an immutable [`Live`] in an `ArcSwap`. A request loads
//! it once at its start and finishes on that snapshot, whatever is swapped
//! meanwhile, so its hints always come from exactly one version.
//!
//! A new version arrives by a file change (the watcher), SIGHUP, or the admin
//! API. Every path goes through [`Registry::update`]: compile off the request
//! path (a blocking thread, or the precompiled cache), type-check against the
//! world, run the sample requests declared beside the policy, and only then
//! swap. A version that fails any step never goes live; the old one keeps
//! serving, and the error is logged once and kept for the admin API. The
//! version it replaced is kept for an instant rollback.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::samples::{self, Samples};
use super::{Policy, PolicyEngine};
use crate::metrics::Metrics;

/// One loaded, checked version of a policy.
pub struct Version {
    pub policy: Policy,
    /// The policy's own configuration (`[policy.config]`), kept for reloads.
    pub config: toml::Table,
    /// The file it came from, if any (the watcher follows it), and that
    /// file's (and its samples') signature when it was read.
    pub source: Option<PathBuf>,
    pub source_signature: Option<FileState>,
    pub loaded_at: SystemTime,
    /// Counters of requests served with this version.
    pub metrics: Arc<Metrics>,
    /// The A/B variant it serves (`default` outside experiments).
    pub variant: String,
}

/// A policy name's current version, the one before it, and the last failure.
#[derive(Clone)]
pub struct Slot {
    pub current: Arc<Version>,
    pub previous: Option<Arc<Version>>,
    pub last_error: Option<String>,
}

/// An immutable snapshot of every policy.
#[derive(Clone, Default)]
pub struct Live {
    pub slots: BTreeMap<String, Slot>,
    /// The policy requests use (outside experiments).
    pub active: Option<String>,
    /// The experiment in force: slots named after its variants.
    pub experiment: Option<Arc<LiveExperiment>>,
    /// Incremented by every swap.
    pub generation: u64,
    /// `active`'s current version, found at each swap rather than by name
    /// on every request.
    serving: Option<Arc<Version>>,
}

/// An experiment and its parsed sticky key.
pub struct LiveExperiment {
    pub config: crate::experiment::ExperimentConfig,
    pub sticky: crate::experiment::Sticky,
}

impl Live {
    /// The version requests are served with.
    pub fn active(&self) -> Option<&Arc<Version>> {
        self.serving.as_ref()
    }
}

/// What a caller hands to [`Registry::update`].
pub struct Candidate {
    /// The policy's name (its file stem), shown in logs and metrics.
    pub name: String,
    /// The registry slot it goes into: the policy name, or the variant name
    /// in an experiment.
    pub slot: String,
    pub bytes: Vec<u8>,
    pub config: toml::Table,
    pub isolation: super::Isolation,
    pub samples: Samples,
    pub source: Option<PathBuf>,
    pub source_signature: Option<FileState>,
    pub variant: String,
}

impl Candidate {
    /// Read a policy file and the samples beside it.
    pub fn from_file(
        path: &Path,
        config: toml::Table,
        isolation: super::Isolation,
    ) -> Result<Candidate, String> {
        let source_signature = signature(path).map(|s| (s, signature(&samples::path_for(path))));
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(Candidate {
            name: name_of(path),
            slot: name_of(path),
            bytes,
            config,
            isolation,
            samples: Samples::beside(path)?,
            source: Some(path.to_path_buf()),
            source_signature,
            variant: "default".into(),
        })
    }
}

/// A policy's name: its file stem (`page_map.wasm` → `page_map`).
pub fn name_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".into())
}

/// Retired versions whose counters stay visible in `/metrics`.
const RETIRED_KEPT: usize = 16;

/// The registry.
pub struct Registry {
    engine: Arc<PolicyEngine>,
    live: ArcSwap<Live>,
    /// Bumped after every store to `live`: a thread that saw this
    /// generation may serve on the snapshot it kept ([`Registry::with_live`]).
    stored: AtomicU64,
    /// Names this registry in threads' kept snapshots (an address can be
    /// reused by the next registry, an id is never).
    id: u64,
    /// Serialises updates (readers never wait).
    update: tokio::sync::Mutex<()>,
    retired: Mutex<VecDeque<Arc<Version>>>,
}

impl Registry {
    /// A registry with no policy yet.
    pub fn empty(engine: Arc<PolicyEngine>) -> Registry {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Registry {
            engine,
            live: ArcSwap::from_pointee(Live::default()),
            stored: AtomicU64::new(0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            update: tokio::sync::Mutex::new(()),
            retired: Mutex::new(VecDeque::new()),
        }
    }

    /// A registry with `first` loaded and active. Start-up fails if it fails.
    pub async fn start(engine: Arc<PolicyEngine>, first: Candidate) -> Result<Registry, String> {
        let registry = Registry::empty(engine);
        let name = first.slot.clone();
        registry.update(first).await?;
        registry.activate(&name).await?;
        Ok(registry)
    }

    /// Load every variant of `experiment` (all must pass) and put the
    /// experiment in force: a hot swap like any other, so new weights or
    /// variants apply to the next request.
    pub async fn set_experiment(
        &self,
        experiment: &crate::experiment::ExperimentConfig,
        default_config: &toml::Table,
        default_isolation: super::Isolation,
    ) -> Result<(), String> {
        let sticky = experiment.sticky()?;
        for v in &experiment.variants {
            let mut candidate = Candidate::from_file(
                &v.policy,
                v.config.clone().unwrap_or_else(|| default_config.clone()),
                v.isolation.unwrap_or(default_isolation),
            )
            .map_err(|e| format!("variant `{}`: {e}", v.name))?;
            candidate.slot = v.name.clone();
            candidate.variant = v.name.clone();
            self.update(candidate)
                .await
                .map_err(|e| format!("variant `{}`: {e}", v.name))?;
        }
        let _guard = self.update.lock().await;
        let live = Arc::new(LiveExperiment {
            config: experiment.clone(),
            sticky,
        });
        self.swap(|l| l.experiment = Some(live));
        tracing::info!(
            experiment = %experiment.name,
            variants = %experiment.variants.iter().map(|v| format!("{}={}bp", v.name, v.weight_bp)).collect::<Vec<_>>().join(","),
            "experiment in force"
        );
        Ok(())
    }

    /// Names this registry (for a thread's memo of its decisions).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its generation: bumped after every store of a snapshot. What a
    /// [`with_live`](Self::with_live) called after reading it served with
    /// is no older than that generation's snapshot, and may be served with
    /// again until the generation changes (as `with_live` itself does).
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Acquire)
    }

    /// The current snapshot, held.
    pub fn snapshot(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// `f` of the snapshot a request is served with, as this thread last
    /// saw it if nothing was stored since: one load instead of an
    /// `ArcSwap` load and a reference count, taken and dropped, on every
    /// request (each a locked instruction). A thread keeps the last
    /// snapshot it used until its next request sees a newer one.
    pub fn with_live<R>(&self, f: impl FnOnce(&Live) -> R) -> R {
        thread_local! {
            static KEPT: std::cell::RefCell<Option<(u64, u64, Arc<Live>)>> =
                const { std::cell::RefCell::new(None) };
        }
        // Read before the snapshot: a store in between is seen next time.
        let stored = self.stored.load(Ordering::Acquire);
        KEPT.with(|kept| {
            let Ok(mut kept) = kept.try_borrow_mut() else {
                // Called from inside `f`: no keeping.
                return f(&self.live.load());
            };
            match &*kept {
                Some((id, seen, live)) if *id == self.id && *seen == stored => f(live),
                _ => f(self.keep_live(&mut kept, stored)),
            }
        })
    }

    /// The snapshot now, kept as this thread's (seen at `stored`). Out of
    /// line: once per swap and thread.
    #[cold]
    #[inline(never)]
    fn keep_live<'k>(&self, kept: &'k mut Option<(u64, u64, Arc<Live>)>, stored: u64) -> &'k Live {
        &kept.insert((self.id, stored, self.live.load_full())).2
    }

    /// Compile, check and run samples, off the request path.
    pub async fn prepare(&self, candidate: Candidate) -> Result<Arc<Version>, String> {
        let engine = self.engine.clone();
        let (name, bytes, config, isolation) = (
            candidate.name.clone(),
            candidate.bytes,
            candidate.config.clone(),
            candidate.isolation,
        );
        let policy = tokio::task::spawn_blocking(move || engine.load_bytes(&name, &bytes, &config))
            .await
            .map_err(|e| format!("compile task failed: {e}"))?
            .map_err(|e| format!("{e:#}"))?
            .with_isolation(isolation)
            .with_declared_reads()
            .await?;
        if let Some(reads) = policy.declared_reads() {
            tracing::info!(
                policy = %candidate.name,
                headers = ?reads.headers,
                cookies = ?reads.cookies,
                "policy declares what it reads: shown only that, cached answers keyed by it"
            );
        }
        samples::check(&policy, &candidate.samples).await?;
        Ok(Arc::new(Version {
            policy,
            config: candidate.config,
            source: candidate.source,
            source_signature: candidate.source_signature,
            loaded_at: SystemTime::now(),
            metrics: Arc::new(Metrics::default()),
            variant: candidate.variant,
        }))
    }

    /// Prepare a candidate and, if it passes, make it the current version of
    /// its name. On failure nothing changes but the slot's `last_error`.
    pub async fn update(&self, candidate: Candidate) -> Result<Arc<Version>, String> {
        let name = candidate.slot.clone();
        let _guard = self.update.lock().await;
        match self.prepare(candidate).await {
            Ok(version) => {
                let same = self.live.load().slots.get(&name).is_some_and(|s| {
                    s.current.policy.version() == version.policy.version()
                        && s.current.config == version.config
                        && s.current.policy.isolation() == version.policy.isolation()
                });
                if same {
                    return Ok(self.live.load().slots[&name].current.clone());
                }
                self.swap(|live| {
                    let previous = live.slots.get(&name).map(|s| s.current.clone());
                    if let Some(p) = &previous {
                        p.policy.park();
                    }
                    live.slots.insert(
                        name.clone(),
                        Slot {
                            current: version.clone(),
                            previous,
                            last_error: None,
                        },
                    );
                });
                tracing::info!(policy = %name, version = version.policy.version(), "policy version live");
                Ok(version)
            }
            Err(e) => {
                let line = e.replace('\n', " ");
                tracing::warn!(policy = %name, "new policy version refused, the current one keeps serving: {line}");
                self.swap(|live| {
                    if let Some(slot) = live.slots.get_mut(&name) {
                        slot.last_error = Some(line.clone());
                    }
                });
                Err(line)
            }
        }
    }

    /// Serve requests with the policy `name`.
    pub async fn activate(&self, name: &str) -> Result<(), String> {
        let _guard = self.update.lock().await;
        if !self.live.load().slots.contains_key(name) {
            return Err(format!("no policy named `{name}`"));
        }
        self.swap(|live| live.active = Some(name.to_string()));
        Ok(())
    }

    /// Put the previous version of `name` back.
    pub async fn rollback(&self, name: &str) -> Result<Arc<Version>, String> {
        let _guard = self.update.lock().await;
        let live = self.live.load();
        let slot = live
            .slots
            .get(name)
            .ok_or_else(|| format!("no policy named `{name}`"))?;
        let previous = slot
            .previous
            .clone()
            .ok_or_else(|| format!("`{name}` has no previous version"))?;
        let current = slot.current.clone();
        previous.policy.unpark();
        current.policy.park();
        self.swap(|live| {
            live.slots.insert(
                name.to_string(),
                Slot {
                    current: previous.clone(),
                    previous: Some(current.clone()),
                    last_error: None,
                },
            );
        });
        tracing::info!(
            policy = name,
            version = previous.policy.version(),
            "rolled back"
        );
        Ok(previous)
    }

    /// Copy-on-write update of the live set (callers hold `update`).
    fn swap(&self, change: impl FnOnce(&mut Live)) {
        let old = self.live.load_full();
        let mut next = (*old).clone();
        change(&mut next);
        next.generation = old.generation + 1;
        next.serving = next
            .active
            .as_ref()
            .and_then(|name| next.slots.get(name))
            .map(|s| s.current.clone());
        // Versions that left every slot keep their counters visible for a while.
        let still: Vec<*const Version> = next
            .slots
            .values()
            .flat_map(|s| std::iter::once(&s.current).chain(s.previous.iter()))
            .map(Arc::as_ptr)
            .collect();
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        for slot in old.slots.values() {
            for v in std::iter::once(&slot.current).chain(slot.previous.iter()) {
                if !still.contains(&Arc::as_ptr(v)) && !retired.iter().any(|r| Arc::ptr_eq(r, v)) {
                    retired.push_back(v.clone());
                    if retired.len() > RETIRED_KEPT {
                        retired.pop_front();
                    }
                }
            }
        }
        self.live.store(Arc::new(next));
        self.stored.fetch_add(1, Ordering::Release);
    }

    /// Every version whose counters `/metrics` shows: live, previous, retired.
    pub fn versions_for_metrics(&self) -> Vec<Arc<Version>> {
        let live = self.live.load();
        let mut out: Vec<Arc<Version>> = Vec::new();
        let mut push = |v: &Arc<Version>| {
            if !out.iter().any(|o| Arc::ptr_eq(o, v)) {
                out.push(v.clone());
            }
        };
        for slot in live.slots.values() {
            push(&slot.current);
            if let Some(p) = &slot.previous {
                push(p);
            }
        }
        for v in self
            .retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            push(v);
        }
        out
    }

    /// The policy files to watch: name, path, config, signature when loaded.
    fn watched(&self) -> Vec<Watched> {
        self.live
            .load()
            .slots
            .iter()
            .filter_map(|(name, s)| {
                let v = &s.current;
                v.source.clone().map(|path| Watched {
                    slot: name.clone(),
                    variant: v.variant.clone(),
                    path,
                    config: v.config.clone(),
                    isolation: v.policy.isolation(),
                    loaded: v.source_signature,
                    previous: s.previous.as_ref().and_then(|p| p.source_signature),
                })
            })
            .collect()
    }
}

/// A file's identity for change detection.
pub type Signature = (u64, Option<SystemTime>);

/// A watched policy file and what it currently serves.
struct Watched {
    slot: String,
    variant: String,
    path: PathBuf,
    config: toml::Table,
    isolation: super::Isolation,
    /// The file's state when the live version was read.
    loaded: Option<FileState>,
    /// The same for the previous version (so a rollback is not undone).
    previous: Option<FileState>,
}

/// A policy file's and its samples' signatures.
pub type FileState = (Signature, Option<Signature>);

fn signature(path: &Path) -> Option<Signature> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()))
}

/// One message every `interval`, from a thread of its own: a sleep in the
/// runtime would sit in the workers' timer wheel, which every worker then
/// looks at each time it parks (about 200 instructions a park, most of an
/// idle server's parks being between two requests). The thread ends at the
/// first tick after the receiver is dropped.
fn ticker(interval: Duration) -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let spawned = std::thread::Builder::new()
        .name("herald-policy-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                // Full: the watcher has a tick it has not taken yet.
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("policy files are not watched: cannot start the watch thread: {e}");
    }
    rx
}

/// Follow the policy files (and their samples): when one changes and then
/// stays unchanged for one interval (so a half-written file is not loaded),
/// load it through `update`. Polling, not inotify: it works the same on every
/// file system, including the network mounts fleets distribute policies on.
pub async fn watch(
    registry: Arc<Registry>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    // Signatures already tried (live or refused): never retried until the
    // file changes again, so a broken file is reported once.
    let mut tried: HashMap<PathBuf, FileState> = HashMap::new();
    let mut pending: HashMap<PathBuf, (FileState, Instant)> = HashMap::new();
    let mut ticks = ticker(interval);
    loop {
        tokio::select! {
            tick = ticks.recv() => {
                if tick.is_none() {
                    return;
                }
            }
            _ = shutdown.changed() => return,
        }
        for w in registry.watched() {
            let Watched {
                slot: name,
                variant,
                path,
                config,
                isolation,
                loaded,
                previous,
            } = w;
            // File system calls off the async workers: a hung network mount
            // must not block request handling.
            let probe = path.clone();
            let Ok(Some(current)) = tokio::task::spawn_blocking(move || {
                signature(&probe).map(|now| (now, signature(&samples::path_for(&probe))))
            })
            .await
            else {
                continue;
            };
            // The live version's file, or the one just rolled back from (a
            // rollback must not be undone by the watcher), or one already tried.
            if Some(current) == loaded
                || Some(current) == previous
                || tried.get(&path) == Some(&current)
            {
                pending.remove(&path);
                continue;
            }
            if let Some(first_seen) = landed(&mut pending, &path, current, Instant::now(), interval)
            {
                tried.insert(path.clone(), current);
                let file = path.clone();
                let read = tokio::task::spawn_blocking(move || {
                    Candidate::from_file(&file, config, isolation)
                })
                .await;
                match read.unwrap_or_else(|e| Err(format!("reader failed: {e}"))) {
                    Ok(mut candidate) => {
                        // Back into the slot it serves (an experiment variant
                        // is not named after its file).
                        candidate.slot = name.clone();
                        candidate.variant = variant;
                        if let Ok(v) = registry.update(candidate).await {
                            tracing::info!(
                                policy = %name,
                                version = v.policy.version(),
                                ms = first_seen.elapsed().as_millis() as u64,
                                "reloaded from {}",
                                path.display()
                            );
                        }
                    }
                    Err(e) => tracing::warn!(policy = %name, "cannot reload: {e}"),
                }
            }
        }
    }
}

/// A sighting of the file at `path` in state `current` at `now`: when it
/// has stood still since a sighting about an interval ago, it has landed
/// (that sighting's time is given, and it is no longer pending); otherwise
/// it is pending from now, or still pending. "About": a quarter of the
/// interval is slack for the ticks' jitter, so the usual case lands at the
/// second tick; a tick taken late (after a long reload) can come well
/// within an interval of the next, and does not count.
fn landed(
    pending: &mut HashMap<PathBuf, (FileState, Instant)>,
    path: &Path,
    current: FileState,
    now: Instant,
    interval: Duration,
) -> Option<Instant> {
    match pending.get(path) {
        Some(&(sig, first_seen)) if sig == current => {
            if now.saturating_duration_since(first_seen) < interval * 3 / 4 {
                return None;
            }
            pending.remove(path);
            Some(first_seen)
        }
        _ => {
            pending.insert(path.to_path_buf(), (current, now));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let limits = super::super::Limits::from_config(&crate::config::PolicyConfig::default());
        Registry::empty(Arc::new(PolicyEngine::new(limits, None).unwrap()))
    }

    #[test]
    fn a_file_lands_once_it_stood_still_for_about_an_interval() {
        let interval = Duration::from_millis(200);
        let path = Path::new("/policies/p.wasm");
        let (a, b): (FileState, FileState) = (((1, None), None), ((2, None), None));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut pending = HashMap::new();
        // First seen: pending, not landed.
        assert_eq!(landed(&mut pending, path, a, at(0), interval), None);
        // A late tick followed by a prompt one: seen again 20 ms later.
        assert_eq!(landed(&mut pending, path, a, at(20), interval), None);
        // Changed meanwhile: pending again from its new state.
        assert_eq!(landed(&mut pending, path, b, at(200), interval), None);
        // Still for 190 ms (jitter under the interval): landed, once.
        assert_eq!(
            landed(&mut pending, path, b, at(390), interval),
            Some(at(200))
        );
        assert!(pending.is_empty());
    }

    #[test]
    fn a_thread_serves_on_its_kept_snapshot_until_one_is_stored() {
        let (a, b) = (registry(), registry());
        let generation = |r: &Registry| r.with_live(|live| live.generation);
        assert_eq!(generation(&a), 0);
        a.swap(|_| {});
        assert_eq!(generation(&a), 1, "a store is seen by the next request");
        // Another registry's snapshot is never taken for this one's.
        assert_eq!(generation(&b), 0);
        assert_eq!(generation(&a), 1);
        a.swap(|_| {});
        a.swap(|_| {});
        assert_eq!(generation(&a), 3);
        // From inside `f`: the current snapshot, not the kept one.
        assert_eq!(a.with_live(|_| generation(&a)), 3);
    }
}
