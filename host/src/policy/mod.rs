//! The policy runtime: compiles a policy component once, then runs it on a
//! fresh, sandboxed instance for every request.
//!
//! Isolation: one [`wasmtime::Engine`] for the process, the pooling allocator
//! with copy-on-write memory images, an `InstancePre` built once per component,
//! and a new `Store` per call. WASI is linked (interpreted guests need it) but
//! nothing is granted: no files, no environment, no network, no clock beyond
//! what WASI always offers, and stdout/stderr captured into a bounded buffer.
//!
//! Every call is bounded by a wall-clock deadline (epoch interruption, backed by
//! a `tokio::time::timeout`) and a memory cap. A trap, a timeout or an `err`
//! from the policy is a [`PolicyFailure`]: the caller serves the request without
//! hints. This module never decides what to do with hints; see `planner`.
//!
//! Invariant: nothing here blocks a tokio worker for longer than one epoch tick
//! (1 ms): a looping guest yields to the executor at every tick until its
//! deadline kills it.

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "push-policy",
        exports: { default: async },
        imports: { "herald:policy/client-cache.likely-cached": async },
    });
}

pub mod cache;
mod clock;
pub mod front;
pub mod input;
mod output;
pub mod registry;
pub mod samples;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::config::Isolation;
use anyhow::Context as _;
use output::CapturedOutput;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use bindings::herald::policy::types::{
    Cookie, CorsMode, Delivery, Destination, Header, Hint, Request, UpstreamResponse,
};

/// How often the epoch advances: the granularity of deadlines and of yields.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The limits every call runs under (from `[policy]` in the config).
#[derive(Clone, Debug)]
pub struct Limits {
    pub deadline: Duration,
    pub memory_bytes: usize,
    pub max_concurrent_calls: u32,
    pub max_output_bytes: usize,
    /// `reuse` isolation: calls per instance, and warm instances kept.
    pub reuse_max_calls: u32,
    pub reuse_idle: u32,
    /// Count instructions (wasmtime fuel) per call: deterministic, for
    /// `herald policy run`; costs 30 to 70% on interpreted guests, so off
    /// when serving unless `max_instructions` asks for it.
    pub fuel: bool,
    /// Instruction budget per call (`policy.max_instructions`); 0: none.
    pub max_instructions: u64,
    /// What answers may be cached by (`[policy.cache]`); off by default.
    pub cache: cache::CacheSpec,
    /// `[policy] request_headers` and `request_cookies` as configured: what
    /// a policy is shown, or, where unset, what its cache key and its
    /// declaration hold ([`Limits::shown_and_key`]).
    pub requested: input::Shown,
}

impl Limits {
    /// Whether calls count instructions (wasmtime fuel): for `fuel`, or to
    /// enforce `max_instructions`.
    pub fn counts_instructions(&self) -> bool {
        self.fuel || self.max_instructions > 0
    }

    /// What a policy that declared `declared` (or nothing) is shown, and
    /// the key its answers are cached by: `[policy.cache]`'s lists while
    /// the cache is on, and the declared names.
    pub fn shown_and_key(&self, declared: Option<&ReadSet>) -> (input::Shown, cache::CacheSpec) {
        let caching = self.cache.entries > 0;
        let union = |listed: &[String], declared: &[String]| {
            let mut all = if caching { listed.to_vec() } else { Vec::new() };
            for name in declared {
                if !all.contains(name) {
                    all.push(name.clone());
                }
            }
            all
        };
        let (declared_headers, declared_cookies) =
            declared.map_or((&[][..], &[][..]), |d| (&d.headers[..], &d.cookies[..]));
        let key = cache::CacheSpec {
            headers: union(&self.cache.headers, declared_headers),
            cookies: union(&self.cache.cookies, declared_cookies),
            entries: self.cache.entries,
        };
        let (headers, cookies) = crate::config::shown_for(
            self.requested.headers.as_deref(),
            self.requested.cookies.as_deref(),
            (caching || declared.is_some()).then_some((&key.headers[..], &key.cookies[..])),
        );
        (input::Shown { headers, cookies }, key)
    }

    pub fn from_config(c: &crate::config::PolicyConfig) -> Limits {
        Limits {
            deadline: c.deadline(),
            memory_bytes: (c.memory_mib as usize) << 20,
            max_concurrent_calls: c.max_concurrent_calls,
            max_output_bytes: c.max_output_bytes,
            reuse_max_calls: c.reuse_max_calls,
            reuse_idle: c.reuse_idle,
            fuel: false,
            max_instructions: c.max_instructions,
            cache: cache::CacheSpec {
                headers: c.cache.headers.clone(),
                cookies: c.cache.cookies.clone(),
                entries: c.cache.entries,
            },
            requested: input::Shown {
                headers: c.request_headers.clone(),
                cookies: c.request_cookies.clone(),
            },
        }
    }
}

/// The process-wide Wasm engine and its epoch clock.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    /// Shared with every policy loaded here (whose calls keep it ticking).
    clock: Arc<clock::EpochClock>,
    /// Where compiled components are kept between runs (`policy.cache_dir`).
    cache_dir: Option<PathBuf>,
    /// Call slots shared by every policy of this engine: the pooling
    /// allocator is sized for this many instances in all (A/B variants, old
    /// and new versions during a swap, and sample checks draw from it alike).
    slots: Arc<tokio::sync::Semaphore>,
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        self.clock.stop();
    }
}

impl PolicyEngine {
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<PolicyEngine> {
        let calls = limits.max_concurrent_calls;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(calls)
            .total_stacks(calls)
            // Interpreted guests carry several core modules (and memories) per component.
            .total_core_instances(calls * 16)
            .total_memories(calls * 2)
            .total_tables(calls * 16)
            .max_memory_size(limits.memory_bytes)
            // Reset a slot for its next instance in place instead of
            // unmapping it: keep the first 2 MiB of each memory (and 64 KiB
            // of tables and fiber stacks) resident, and let the kernel's
            // PAGEMAP_SCAN (Linux 6.7+, ignored elsewhere) tell which pages
            // the call dirtied so only those are reset. Measured with `herald
            // bench policy`: a fresh Rust instance per call went from 27.5 to
            // 13 us, C from 14 to 9.5 us (BENCHMARKS.md).
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .consume_fuel(limits.counts_instructions())
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // For profiling guests with `perf`: a /tmp/perf-<pid>.map naming
        // compiled Wasm functions (their name section, if not stripped).
        if std::env::var_os("HERALD_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot create the Wasm engine: {e:#}"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        add_config_to_linker(&mut linker)?;
        bindings::herald::policy::client_cache::add_to_linker::<
            _,
            wasmtime::component::HasSelf<HostState>,
        >(&mut linker, |s| s)?;

        let ticker = engine.clone();
        let clock = Arc::new(clock::EpochClock::start(EPOCH_TICK, move || {
            ticker.increment_epoch()
        })?);
        if let Some(dir) = &cache_dir
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(
                "policy.cache_dir {}: {e}; compiling without a cache",
                dir.display()
            );
        }
        Ok(PolicyEngine {
            engine,
            linker,
            limits,
            clock,
            cache_dir,
            slots: Arc::new(tokio::sync::Semaphore::new(calls as usize)),
        })
    }

    /// Compile and type-check a component file against the `push-policy` world.
    pub fn load_file(&self, path: &Path, config: &toml::Table) -> anyhow::Result<Policy> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        self.load_bytes(&registry::name_of(path), &bytes, config)
            .with_context(|| format!("policy {}", path.display()))
    }

    /// Compile and type-check component bytes.
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        config: &toml::Table,
    ) -> anyhow::Result<Policy> {
        if bytes.starts_with(b"\0asm\x01\0\0\0") {
            anyhow::bail!(
                "this is a core WebAssembly module, not a component; build for wasm32-wasip2 or run `wasm-tools component new`"
            );
        }
        let component = self.compile(bytes)?;
        self.load_compiled(name, bytes, &component, config)
    }

    /// [`load_bytes`](Self::load_bytes) of a component already compiled
    /// from `bytes`.
    pub fn load_compiled(
        &self,
        name: &str,
        bytes: &[u8],
        component: &Component,
        config: &toml::Table,
    ) -> anyhow::Result<Policy> {
        let instance_pre = self.linker.instantiate_pre(component).map_err(|e| {
            anyhow::anyhow!("does not fit the herald:policy/push-policy world: {e:#}")
        })?;
        let pre = bindings::PushPolicyPre::new(instance_pre).map_err(|e| {
            anyhow::anyhow!("does not export the herald:policy/push-policy world: {e:#}")
        })?;
        // Checked just above: the world's `decide` is there.
        let decide = component
            .get_export_index(None, "decide")
            .context("the component has no `decide` export")?;
        let json = serde_json::to_string(&toml_to_json(&toml::Value::Table(config.clone())))?;
        let (shown, key) = self.limits.shown_and_key(None);
        let maker = Arc::new(Maker {
            pre,
            decide,
            decide_checked: std::sync::atomic::AtomicBool::new(false),
            data: Arc::new(PolicyData {
                values: crate::config::flatten_policy_config(config)
                    .into_iter()
                    .map(|(key, values)| (key, values.into()))
                    .collect(),
                none: Arc::new([]),
                json,
            }),
            engine: self.engine.clone(),
            limits: self.limits.clone(),
            slots: self.slots.clone(),
            clock: self.clock.clone(),
            warm: Mutex::new(WarmPool::default()),
        });
        Ok(Policy {
            name: name.to_string(),
            version: short_digest(bytes),
            maker,
            isolation: Isolation::Fresh,
            cache: cache::DecisionCache::new(&key),
            shown,
            on_response: component.get_export_index(None, "on-response"),
            reads: component.get_export_index(None, "reads"),
            declared: None,
        })
    }
}

/// What `herald policy check` reports about a component.
#[derive(Debug, Clone)]
pub struct Description {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub compile: Duration,
    /// Why it does not fit the world, if it does not.
    pub problem: Option<String>,
    /// The compiled component ([`PolicyEngine::load_compiled`] loads it
    /// without compiling again).
    pub component: Component,
}

impl PolicyEngine {
    /// Compile a component and say what it imports, exports, and whether it
    /// fits the `push-policy` world. Fails only if it is not a component.
    pub fn describe(&self, bytes: &[u8]) -> anyhow::Result<Description> {
        let start = Instant::now();
        let component = self.compile(bytes)?;
        let compile = start.elapsed();
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let problem = match self.linker.instantiate_pre(&component) {
            Err(e) => Some(format!(
                "does not fit the herald:policy/push-policy world: {e:#}"
            )),
            Ok(pre) => bindings::PushPolicyPre::new(pre)
                .err()
                .map(|e| format!("does not export the herald:policy/push-policy world: {e:#}")),
        };
        Ok(Description {
            imports,
            exports,
            compile,
            problem,
            component,
        })
    }

    /// Compile, or load the precompiled artifact from the cache. The cache key
    /// covers the bytes and the engine's settings and version, so a stale or
    /// foreign artifact is never used; a corrupt one is recompiled.
    fn compile(&self, bytes: &[u8]) -> anyhow::Result<Component> {
        let invalid = |e: wasmtime::Error| anyhow::anyhow!("not a valid component: {e:#}");
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(invalid);
        };
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let path = dir.join(format!("{}-{:016x}.cwasm", short_digest(bytes), h.finish()));
        if path.is_file() {
            // SAFETY: the cache directory is Herald's own and holds only what
            // `precompile_component` wrote there; wasmtime checks the
            // artifact's version and settings before using it.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!("precompiled {} unusable ({e}); recompiling", path.display())
                }
            }
        }
        let artifact = self.engine.precompile_component(bytes).map_err(invalid)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &artifact)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
        // SAFETY: `artifact` was produced just now by this engine.
        unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(invalid)
    }
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => s.clone().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.iter().map(toml_to_json).collect::<Vec<_>>().into(),
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// A stable short id of the component's bytes (FNV-1a 64), used as its version.
pub fn short_digest(bytes: &[u8]) -> String {
    let h = crate::hash::fnv1a(bytes.iter().copied());
    format!("{h:016x}")[..12].to_string()
}

/// The policy's configuration as the `config` import serves it.
#[derive(Debug)]
struct PolicyData {
    values: BTreeMap<String, Arc<[String]>>,
    /// What `get` answers for an absent key.
    none: Arc<[String]>,
    json: String,
}

/// Per-call state inside the store.
struct HostState {
    /// Built on the guest's first WASI call: most policies make none, and
    /// building one per fresh instance cost about 0.4 us.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    limits: Limiter,
    data: Arc<PolicyData>,
    output: CapturedOutput,
    /// This call's view of the client's cache (`client-cache` import).
    client_cache: Option<Arc<dyn ClientCache>>,
    /// The guest asked `likely-cached` during this call.
    asked_client_cache: bool,
}

/// What the host knows of a client's cache, answered for the
/// `client-cache` import (see `crate::digest`).
#[async_trait::async_trait]
pub trait ClientCache: Send + Sync {
    async fn likely_cached(&self, path: &str) -> bool;
}

/// The memory cap, recording the peak the guest asked for.
struct Limiter {
    inner: StoreLimits,
    peak: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.peak = self.peak.max(desired);
        self.inner.memory_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let output = &self.output;
        // Locked down: no arguments, environment, files or sockets; stdout
        // and stderr captured (bounded) for the log.
        let ctx = self.wasi.get_or_insert_with(|| {
            WasiCtx::builder()
                .stdout(output.clone())
                .stderr(output.clone())
                .build()
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// The `config` interface, defined by hand rather than through the
/// generated trait: `get` reads its key in the guest's memory and lowers
/// the shared values as they are, where the trait's signature (an owned key,
/// an owned `Vec<String>` back) cost an allocation per string on every call.
fn add_config_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    use wasmtime::StoreContextMut;
    use wasmtime::component::WasmStr;
    let mut config = linker.instance("herald:policy/config@0.1.2")?;
    config.func_wrap(
        "get",
        |store: StoreContextMut<'_, HostState>, (key,): (WasmStr,)| {
            let data = &store.data().data;
            let values = data
                .values
                .get(&*key.to_str(&store)?)
                .unwrap_or(&data.none)
                .clone();
            Ok((values,))
        },
    )?;
    config.func_wrap("keys", |store: StoreContextMut<'_, HostState>, (): ()| {
        Ok((store.data().data.values.keys().cloned().collect::<Vec<_>>(),))
    })?;
    config.func_wrap("json", |store: StoreContextMut<'_, HostState>, (): ()| {
        Ok((store.data().data.json.clone(),))
    })?;
    Ok(())
}

impl bindings::herald::policy::types::Host for HostState {}

impl bindings::herald::policy::client_cache::Host for HostState {
    async fn likely_cached(&mut self, path: String) -> bool {
        self.asked_client_cache = true;
        match self.client_cache.clone() {
            Some(cache) => cache.likely_cached(&path).await,
            None => false,
        }
    }
}

/// Why a call produced no hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyFailure {
    /// The guest trapped (panic, unreachable, out of memory, stack overflow...).
    Trap(String),
    /// The call ran past its deadline.
    Timeout,
    /// The policy returned `err(message)`.
    Error(String),
    /// No call slot became free within the deadline.
    Busy,
}

impl PolicyFailure {
    /// A short, stable name for counters and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            PolicyFailure::Trap(_) => "trap",
            PolicyFailure::Timeout => "timeout",
            PolicyFailure::Error(_) => "error",
            PolicyFailure::Busy => "busy",
        }
    }
}

impl std::fmt::Display for PolicyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyFailure::Trap(m) => write!(f, "trapped: {m}"),
            PolicyFailure::Timeout => f.write_str("ran past its deadline"),
            PolicyFailure::Error(m) => write!(f, "returned an error: {m}"),
            PolicyFailure::Busy => f.write_str("no free call slot before the deadline"),
        }
    }
}

/// What one call cost, for `herald policy run` and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallStats {
    /// The call's wall time (and, for [`Policy::decide`], the key's and
    /// the lookup's). A cache hit through [`Policy::answer`] is not timed.
    pub elapsed: Duration,
    /// Instructions executed (wasmtime fuel), when counting is on.
    pub fuel: Option<u64>,
    /// The largest linear memory the guest asked for, in bytes (over the
    /// instance's life, for a reused instance).
    pub peak_memory: usize,
    /// Whether the call ran on a warm instance (`reuse` isolation).
    pub reused: bool,
    /// The call ran on a fresh instance instantiated ahead of it.
    pub ahead: bool,
    /// Calls this instance has served, this one included.
    pub calls_on_instance: u32,
    /// The answer came from the decision cache: no call was made.
    pub cached: bool,
    /// The policy asked the `client-cache` import: its answer depends on
    /// the client's digest, so it is not cached.
    pub asked_client_cache: bool,
}

impl CallStats {
    /// An answer from the decision cache. Not timed: two clock reads would
    /// cost a tenth of the hit.
    pub fn cache_hit() -> CallStats {
        CallStats {
            cached: true,
            ..CallStats::default()
        }
    }
}

/// What the decision cache has for a request ([`Policy::cached`]).
pub enum Cached<T> {
    /// What the call's `hit` made of the answer.
    Hit(T),
    /// No answer: the key to keep the policy's under, if caching is on.
    Miss(Option<Vec<u8>>),
}

/// A compiled, type-checked policy, ready to be called concurrently.
pub struct Policy {
    name: String,
    version: String,
    maker: Arc<Maker>,
    isolation: Isolation,
    /// Answers by request key (`[policy.cache]`), for this version only.
    cache: Option<cache::DecisionCache>,
    /// What this version is shown of a request (`[policy] request_headers`
    /// and `request_cookies`).
    shown: input::Shown,
    /// The `on-response` export (`proxy-policy` world), if the component has one.
    on_response: Option<wasmtime::component::ComponentExportIndex>,
    /// The `reads` export (the `-reads` worlds), if the component has one.
    reads: Option<wasmtime::component::ComponentExportIndex>,
    /// What `reads` answered, once asked ([`Policy::with_declared_reads`]).
    declared: Option<ReadSet>,
}

/// What a policy declares it reads of a request (`read-set` in the WIT).
#[derive(
    Debug, Clone, PartialEq, Eq, wasmtime::component::ComponentType, wasmtime::component::Lift,
)]
#[component(record)]
pub struct ReadSet {
    pub headers: Vec<String>,
    pub cookies: Vec<String>,
}

/// Names a policy may declare, of each kind: more is a mistake, and each
/// is compared on every request the cache keys.
const MAX_DECLARED: usize = 64;

/// The least time a version's `reads` is given, its instance's start-up
/// included (`policy.deadline_ms` when that is longer).
const READS_DEADLINE: Duration = Duration::from_secs(1);

/// What a policy version's instances are made from, and the instances
/// waiting for a call. Shared with the tasks that tear used instances down
/// and, in `fresh` isolation, instantiate the next one ahead of its call.
struct Maker {
    pre: bindings::PushPolicyPre<HostState>,
    /// Where `decide` is in every instance, found once at load (looking it
    /// up by name per fresh instance cost 0.7 us of 13; `herald bench policy`).
    decide: wasmtime::component::ComponentExportIndex,
    /// `decide`'s type was checked against the world on a first instance;
    /// later instances of the same component skip the check (0.4 us).
    decide_checked: std::sync::atomic::AtomicBool,
    data: Arc<PolicyData>,
    engine: Engine,
    limits: Limits,
    slots: Arc<tokio::sync::Semaphore>,
    clock: Arc<clock::EpochClock>,
    /// Instances waiting for a call: in `reuse` isolation warm ones, in
    /// `fresh` isolation ones instantiated ahead and never called.
    warm: Mutex<WarmPool>,
}

/// Which export a call runs.
#[derive(Clone, Copy)]
enum Call<'a> {
    Decide(input::RequestRef<'a>),
    OnResponse(&'a Request, &'a UpstreamResponse, &'a [Hint]),
}

/// `decide`'s signature in the `push-policy` world, its request borrowed.
type DecideFunc =
    wasmtime::component::TypedFunc<(input::RequestRef<'static>,), (Result<Vec<Hint>, String>,)>;

/// What a call is shown of its request: a built one (tools, samples), or
/// the HTTP request's parts, lowered from where they are.
enum Asked<'r> {
    Built(Cow<'r, Request>),
    Parts(&'r http::request::Parts, input::View<'r>),
}

/// An instantiated policy: the typed `decide` and the raw instance (for
/// `on-response`).
struct Exports {
    decide: DecideFunc,
    instance: wasmtime::component::Instance,
}

#[derive(Default)]
struct WarmPool {
    idle: Vec<Instance>,
    /// Off while this version is not serving (kept for rollback): its warm
    /// instances would hold call slots for nothing.
    parked: bool,
}

/// A store and (once instantiated) its instance. In `fresh` isolation it
/// serves one call; in `reuse` it returns to the warm pool until it has served
/// `reuse_max_calls`, trapped or timed out.
struct Instance {
    store: Store<HostState>,
    exports: Option<Exports>,
    calls: u32,
    /// The call slot this instance occupies in the pooling allocator.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("isolation", &self.isolation)
            .finish()
    }
}

impl Policy {
    /// The policy's name (its file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A short digest of the component's bytes.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How calls get their instance.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Choose the isolation mode (fresh is the default).
    pub fn with_isolation(mut self, isolation: Isolation) -> Policy {
        self.isolation = isolation;
        self
    }

    /// Ask the policy what it reads (its `reads` export, when it has one),
    /// once, as it loads: then show it only that, unless `[policy]
    /// request_headers`/`request_cookies` say otherwise, and key its cached
    /// answers by it as well as by `[policy.cache]`'s lists. A trap, a
    /// deadline passed or a name that is not one refuses the policy.
    pub async fn with_declared_reads(mut self) -> Result<Policy, String> {
        let Some(index) = self.reads else {
            return Ok(self);
        };
        let Some(declared) = self.ask_reads(index).await? else {
            return Ok(self);
        };
        let culprit = "its `reads` export";
        for (kind, names) in [
            ("headers", &declared.headers),
            ("cookies", &declared.cookies),
        ] {
            if names.len() > MAX_DECLARED {
                return Err(format!(
                    "{culprit} lists {} {kind} (at most {MAX_DECLARED})",
                    names.len()
                ));
            }
        }
        crate::config::header_names(culprit, &declared.headers).map_err(|e| e.to_string())?;
        crate::config::cookie_names(culprit, &declared.cookies).map_err(|e| e.to_string())?;
        let (shown, key) = self.maker.limits.shown_and_key(Some(&declared));
        self.shown = shown;
        self.cache = cache::DecisionCache::new(&key);
        self.declared = Some(declared);
        Ok(self)
    }

    /// What the policy declared it reads, if it did
    /// ([`with_declared_reads`](Self::with_declared_reads)).
    pub fn declared_reads(&self) -> Option<&ReadSet> {
        self.declared.as_ref()
    }

    /// Call `reads` on an instance of its own, under the call limits but
    /// for the deadline, which is at least [`READS_DEADLINE`]: a version's
    /// first instance is made cold (and may wait for a call slot under
    /// load), and refusing a sound version for that would be wrong.
    async fn ask_reads(
        &self,
        index: wasmtime::component::ComponentExportIndex,
    ) -> Result<Option<ReadSet>, String> {
        let limits = &self.maker.limits;
        let allowed = limits.deadline.max(READS_DEADLINE);
        let deadline = Instant::now() + allowed;
        let late = || {
            format!(
                "its `reads` export did not answer within {} ms",
                allowed.as_millis()
            )
        };
        let _ticking = self.maker.clock.running();
        let mut instance = self
            .maker
            .new_instance_by(deadline)
            .await
            .ok_or_else(|| format!("{}: no free call slot", late()))?;
        let store = &mut instance.store;
        // As for instances made ahead: starting up is not the call's budget.
        let counting = limits.counts_instructions();
        if counting {
            store.set_fuel(u64::MAX / 2).map_err(|e| e.to_string())?;
        }
        arm_deadline(store, deadline);
        let ask = async {
            let raw = self
                .maker
                .pre
                .instance_pre()
                .instantiate_async(&mut *store)
                .await
                .map_err(|e| ("its instance failed to start", e))?;
            let reads = raw
                .get_typed_func::<(), (Option<ReadSet>,)>(&mut *store, index)
                .map_err(|e| {
                    (
                        "its `reads` export does not fit the push-policy-reads world",
                        e,
                    )
                })?;
            if counting && limits.max_instructions > 0 {
                store
                    .set_fuel(limits.max_instructions)
                    .map_err(|e| ("setting its instruction budget", e))?;
            }
            reads
                .call_async(&mut *store, ())
                .await
                .map(|(r,)| r)
                .map_err(|e| ("its `reads` export failed", e))
        };
        let answer = tokio::time::timeout_at((deadline + EPOCH_TICK * 5).into(), ask).await;
        let (captured, _) = instance.store.data().output.take();
        retire(instance, None);
        match answer {
            Ok(Ok(declared)) => Ok(declared),
            Ok(Err((what, e))) => match failure_of(&e, limits.max_instructions) {
                PolicyFailure::Timeout => Err(late()),
                why => Err(format!("{what}: {why}{}", said_why(&captured))),
            },
            Err(_) => Err(late()),
        }
    }

    /// Cache answers by `spec` (replacing the engine-wide `[policy.cache]`).
    pub fn with_cache(mut self, spec: &cache::CacheSpec) -> Policy {
        self.cache = cache::DecisionCache::new(spec);
        self
    }

    /// Show the policy only what `shown` lets through (replacing the
    /// engine-wide `[policy] request_headers` and `request_cookies`).
    pub fn with_shown(mut self, shown: input::Shown) -> Policy {
        self.shown = shown;
        self
    }

    /// Drop the warm instances and keep none until `unpark`: for a version
    /// that stops serving but stays loaded for a rollback.
    pub fn park(&self) {
        let idle = {
            let mut warm = self.maker.warm.lock().unwrap_or_else(|e| e.into_inner());
            warm.parked = true;
            std::mem::take(&mut warm.idle)
        };
        drop(idle);
    }

    /// Serve again after `park` (a rollback made this version current).
    pub fn unpark(&self) {
        self.maker
            .warm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .parked = false;
    }

    /// Run the policy under the configured limits, on a fresh instance or a
    /// warm one (`reuse` isolation), or answer from the decision cache. For
    /// tools and benchmarks, which hold a built request and know no client;
    /// the server calls [`answer`](Self::answer). The policy is shown what
    /// `[policy] request_headers` and `request_cookies` let it see of `req`
    /// (`req` itself when it has nothing else).
    pub async fn decide(&self, req: &Request) -> (Result<Vec<Hint>, PolicyFailure>, CallStats) {
        let start = Instant::now();
        let key = self.cache.as_ref().map(|c| c.key(req));
        let req = || Asked::Built(self.shown(req));
        let (result, mut stats) = self.answer_keyed(key, req, None).await;
        // Timed whole here, cache hits too (tools print it).
        stats.elapsed = start.elapsed();
        let hints = result.map(|answer| match Arc::try_unwrap(answer) {
            Ok(answer) => answer.hints,
            Err(shared) => shared.hints.clone(),
        });
        (hints, stats)
    }

    /// `req` as this policy is shown it (`req` itself when it holds
    /// nothing hidden).
    pub fn shown<'r>(&self, req: &'r Request) -> Cow<'r, Request> {
        self.shown.apply(req)
    }

    /// The policy's view of the request `parts` describe: what it is shown
    /// of it (`[policy] request_headers`, `request_cookies`).
    pub fn request_of(&self, parts: &http::request::Parts, view: &input::View<'_>) -> Request {
        input::build(parts, view, &self.shown)
    }

    /// The server's call: the answer for the request `parts` describe. A
    /// cache hit is found from `parts` alone; the policy's view of the
    /// request is built only for a call. The answer is shared with the
    /// cache (when it holds it), with what the host derived from it.
    pub async fn answer(
        &self,
        parts: &http::request::Parts,
        view: &input::View<'_>,
        client_cache: Option<Arc<dyn ClientCache>>,
    ) -> (Result<Arc<cache::Answer>, PolicyFailure>, CallStats) {
        match self.cached(parts, view, Arc::clone) {
            Cached::Hit(answer) => (Ok(answer), CallStats::cache_hit()),
            Cached::Miss(key) => self.answer_missed(parts, view, key, client_cache).await,
        }
    }

    /// [`answer`](Self::answer)'s first half, without a future: the
    /// decision cache's answer, found without a lock or a copy of the key
    /// (the thread's front of recent hits) when it has one, as `hit`
    /// makes of it.
    pub fn cached<T>(
        &self,
        parts: &http::request::Parts,
        view: &input::View<'_>,
        hit: impl FnOnce(&Arc<cache::Answer>) -> T,
    ) -> Cached<T> {
        match &self.cache {
            None => Cached::Miss(None),
            Some(cache) => match cache.lookup_then(parts, view, hit) {
                Ok(made) => Cached::Hit(made),
                Err(key) => Cached::Miss(Some(key)),
            },
        }
    }

    /// [`answer`](Self::answer)'s second half, after a miss: call the
    /// policy, and keep its answer under `key`.
    pub async fn answer_missed(
        &self,
        parts: &http::request::Parts,
        view: &input::View<'_>,
        key: Option<Vec<u8>>,
        client_cache: Option<Arc<dyn ClientCache>>,
    ) -> (Result<Arc<cache::Answer>, PolicyFailure>, CallStats) {
        self.answer_keyed(key, || Asked::Parts(parts, *view), client_cache)
            .await
    }

    async fn answer_keyed<'r>(
        &self,
        key: Option<Vec<u8>>,
        req: impl FnOnce() -> Asked<'r>,
        client_cache: Option<Arc<dyn ClientCache>>,
    ) -> (Result<Arc<cache::Answer>, PolicyFailure>, CallStats) {
        if let (Some(cache), Some(key)) = (&self.cache, &key)
            && let Some(answer) = cache.get(key)
        {
            return (Ok(answer), CallStats::cache_hit());
        }
        let start = Instant::now();
        let asked = req();
        // Lowered from where the strings are; a request is built only from
        // parts with a shown header that is not UTF-8 (made so).
        let built: Request;
        let fields: input::Fields<'_>;
        let req = match &asked {
            Asked::Built(req) => {
                fields = input::fields_of_request(req);
                input::request_ref(req, &fields)
            }
            Asked::Parts(parts, view) => match input::fields_of(&parts.headers, &self.shown) {
                Some(borrowed) => {
                    fields = borrowed;
                    input::request_ref_of_parts(parts, view, &fields)
                }
                None => {
                    built = input::build(parts, view, &self.shown);
                    fields = input::fields_of_request(&built);
                    input::request_ref(&built, &fields)
                }
            },
        };
        // Boxed, as every call: Wasmtime's call future is about 2 KB, which
        // would otherwise be part of every request handler's future (moved
        // on each spawn) though a cache hit never makes it.
        let call = self.run(Call::Decide(req), client_cache, start);
        let (result, mut stats) = Box::pin(call).await;
        let result = result.map(|hints| Arc::new(cache::Answer::new(hints)));
        if let (Some(cache), Some(key), Ok(answer)) = (&self.cache, key, &result)
            && !stats.asked_client_cache
        {
            cache.insert(key, answer.clone());
        }
        stats.elapsed = start.elapsed();
        (result, stats)
    }

    /// Whether its answers are cached, keyed by the request line alone (no
    /// header or cookie declared): then two requests alike in method,
    /// scheme, authority, `:path` and push get the same answer.
    pub fn caches_by_request_line(&self) -> bool {
        self.cache
            .as_ref()
            .is_some_and(|c| c.keys_by_request_line())
    }

    /// Whether the component exports `on-response` (the `proxy-policy` world).
    pub fn has_on_response(&self) -> bool {
        self.on_response.is_some()
    }

    /// An upstream's response head as this policy is shown it, for
    /// [`on_response`](Self::on_response).
    pub fn response_of(&self, status: u16, headers: &http::HeaderMap) -> UpstreamResponse {
        input::build_response(status, headers, &self.shown)
    }

    /// Call `on-response` with the upstream's response head and the hints
    /// read from it. Without the export, `hints` come back unchanged. `req`
    /// and `response` are what the policy is shown: made by
    /// [`request_of`](Self::request_of) and [`response_of`](Self::response_of).
    pub async fn on_response(
        &self,
        req: &Request,
        response: &UpstreamResponse,
        hints: Vec<Hint>,
    ) -> (Result<Vec<Hint>, PolicyFailure>, CallStats) {
        if self.on_response.is_none() {
            return (Ok(hints), CallStats::default());
        }
        let start = Instant::now();
        let call = self.run(Call::OnResponse(req, response, &hints), None, start);
        let (result, mut stats) = Box::pin(call).await;
        stats.elapsed = start.elapsed();
        (result, stats)
    }

    /// One call under the limits, on a warm or fresh instance.
    async fn run(
        &self,
        what: Call<'_>,
        client_cache: Option<Arc<dyn ClientCache>>,
        start: Instant,
    ) -> (Result<Vec<Hint>, PolicyFailure>, CallStats) {
        let deadline = start + self.maker.limits.deadline;
        let mut stats = CallStats::default();
        // Guest code runs only under this guard: its deadline needs the clock.
        let _ticking = self.maker.clock.running();
        let instance = match self.maker.take_waiting(self.isolation) {
            Some(warm) => Ok(warm),
            None => self
                .maker
                .new_instance_by(deadline)
                .await
                .ok_or(PolicyFailure::Busy),
        };
        let result = match instance {
            Err(busy) => Err(busy),
            Ok(instance) => {
                // The epoch deadline stops guest code; this outer timeout also
                // covers time spent outside it (instantiation, host calls).
                // On expiry the instance is dropped with the future: a
                // half-run instance is never reused.
                let grace = EPOCH_TICK * 5;
                match tokio::time::timeout_at(
                    (deadline + grace).into(),
                    self.call(instance, what, client_cache, deadline, &mut stats),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(PolicyFailure::Timeout),
                }
            }
        };
        (result, stats)
    }

    async fn call(
        &self,
        mut instance: Instance,
        what: Call<'_>,
        client_cache: Option<Arc<dyn ClientCache>>,
        deadline: Instant,
        stats: &mut CallStats,
    ) -> Result<Vec<Hint>, PolicyFailure> {
        let counting = self.maker.limits.counts_instructions();
        let budget = match self.maker.limits.max_instructions {
            0 => u64::MAX / 2,
            n => n,
        };
        let store = &mut instance.store;
        store.data_mut().client_cache = client_cache;
        store.data_mut().asked_client_cache = false;
        if counting {
            store
                .set_fuel(budget)
                .map_err(|e| PolicyFailure::Trap(e.to_string()))?;
        }
        arm_deadline(store, deadline);
        stats.reused = instance.calls > 0;
        stats.ahead = instance.calls == 0 && instance.exports.is_some();
        let result = async {
            let exports = match instance.exports.take() {
                Some(exports) => exports,
                None => self.maker.instantiate(&mut instance.store).await?,
            };
            let store = &mut instance.store;
            let result = match (what, &self.on_response) {
                (Call::Decide(req), _) => {
                    exports
                        .decide
                        .call_async(&mut *store, (req,))
                        .await
                        .map(|(r,)| r)
                }
                (Call::OnResponse(req, response, hints), Some(index)) => {
                    let f = exports
                        .instance
                        .get_typed_func::<(&Request, &UpstreamResponse, &[Hint]), (Result<Vec<Hint>, String>,)>(
                            &mut *store,
                            index,
                        )
                        .map_err(|e| {
                            e.context("on-response does not have the proxy-policy signature")
                        })?;
                    f.call_async(&mut *store, (req, response, hints))
                        .await
                        .map(|(r,)| r)
                }
                (Call::OnResponse(_, _, hints), None) => Ok(Ok(hints.to_vec())),
            };
            instance.exports = Some(exports);
            result
        }
        .await;
        instance.calls += 1;
        stats.calls_on_instance = instance.calls;
        let store = &mut instance.store;
        if counting {
            stats.fuel = store.get_fuel().ok().map(|left| budget - left);
        }
        stats.peak_memory = store.data().limits.peak;
        stats.asked_client_cache = store.data().asked_client_cache;
        // A warm instance must not keep this client's view.
        store.data_mut().client_cache = None;
        let (captured, discarded) = store.data().output.take();
        if !captured.is_empty() {
            tracing::debug!(
                policy = %self.name,
                discarded,
                "policy output: {}",
                String::from_utf8_lossy(&captured)
            );
        }
        let result = match result {
            Ok(Ok(hints)) => Ok(hints),
            Ok(Err(message)) => Err(PolicyFailure::Error(truncate(&message, 200))),
            Err(e) => Err(failure_of(&e, budget)),
        };
        // Only an instance whose call returned (hints or an `err`) is sound:
        // after a trap or an interrupt its memory may be mid-update.
        let sound = matches!(result, Ok(_) | Err(PolicyFailure::Error(_)));
        if self.isolation == Isolation::Reuse
            && sound
            && instance.calls < self.maker.limits.reuse_max_calls
        {
            self.maker.give_back(instance);
        } else if self.isolation == Isolation::Fresh {
            retire(instance, Some(self.maker.clone()));
        } else {
            tracing::debug!(
                policy = %self.name,
                calls = instance.calls,
                "recycling a reused instance ({})",
                if sound { "call limit" } else { "trap or timeout" }
            );
            retire(instance, None);
        }
        result
    }
}

impl Maker {
    /// This instance's `decide`: type-checked on the policy's first
    /// instance, taken as it is on the others (the same component).
    fn decide_of(
        &self,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<DecideFunc> {
        use std::sync::atomic::Ordering;
        if !self.decide_checked.load(Ordering::Relaxed) {
            instance
                .get_typed_func::<(input::RequestRef<'_>,), (Result<Vec<Hint>, String>,)>(
                    &mut *store,
                    self.decide,
                )
                .map_err(|e| e.context("`decide` does not have the push-policy signature"))?;
            self.decide_checked.store(true, Ordering::Relaxed);
        }
        let func = instance
            .get_func(&mut *store, self.decide)
            .ok_or_else(|| wasmtime::Error::msg("the component has no `decide` function"))?;
        // SAFETY: the signature was checked against this component above
        // (on this or an earlier instance of it), and every instance of a
        // component has the same export types.
        Ok(unsafe { DecideFunc::new_unchecked(func) })
    }

    /// An instance waiting for a call: a warm one in `reuse` isolation,
    /// one instantiated ahead and never called in `fresh` isolation.
    fn take_waiting(&self, isolation: Isolation) -> Option<Instance> {
        let instance = self
            .warm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .idle
            .pop()?;
        if isolation == Isolation::Fresh && instance.calls > 0 {
            retire(instance, None);
            return None;
        }
        Some(instance)
    }

    fn give_back(&self, instance: Instance) {
        let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        if !warm.parked && warm.idle.len() < self.limits.reuse_idle as usize {
            warm.idle.push(instance);
            return;
        }
        drop(warm);
        retire(instance, None);
    }

    /// A new instance, once a call slot is free; `None` if none is by
    /// `deadline`.
    async fn new_instance_by(&self, deadline: Instant) -> Option<Instance> {
        let slot = tokio::time::timeout_at(deadline.into(), self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(self.new_instance(slot))
    }

    fn new_instance(&self, slot: tokio::sync::OwnedSemaphorePermit) -> Instance {
        let output = CapturedOutput::new(self.limits.max_output_bytes);
        let state = HostState {
            wasi: None,
            table: ResourceTable::new(),
            limits: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes)
                    .trap_on_grow_failure(true)
                    .build(),
                peak: 0,
            },
            data: self.data.clone(),
            output,
            client_cache: None,
            asked_client_cache: false,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        Instance {
            store,
            exports: None,
            calls: 0,
            _slot: slot,
        }
    }

    /// Instantiate `instance`'s component in its store, guest code under
    /// the deadline the store was armed with.
    async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Exports> {
        let raw = self
            .pre
            .instance_pre()
            .instantiate_async(&mut *store)
            .await?;
        Ok(Exports {
            decide: self.decide_of(&mut *store, &raw)?,
            instance: raw,
        })
    }

    /// In `fresh` isolation, after a call: instantiate the next instance
    /// now, so the next request only calls it. At most [`STANDBY`] per
    /// version, never for a parked one, and only while more than half of
    /// the call slots (and more than [`STANDBY`]) are free, so instances
    /// made ahead never keep a call from getting a slot.
    async fn prepare_standby(&self) {
        {
            let warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
            if warm.parked || warm.idle.len() >= STANDBY {
                return;
            }
        }
        let reserve = (self.limits.max_concurrent_calls as usize / 2).max(STANDBY);
        if self.slots.available_permits() <= reserve {
            return;
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return;
        };
        let mut instance = self.new_instance(slot);
        if self.limits.counts_instructions() {
            // The call sets its own budget; this one covers start-up code.
            let _ = instance.store.set_fuel(u64::MAX / 2);
        }
        let deadline = Instant::now() + self.limits.deadline;
        let _ticking = self.clock.running();
        arm_deadline(&mut instance.store, deadline);
        let made = tokio::time::timeout_at(
            (deadline + EPOCH_TICK * 5).into(),
            self.instantiate(&mut instance.store),
        )
        .await;
        // A failure here is left to the next call, which instantiates
        // inline and reports it.
        let Ok(Ok(exports)) = made else {
            return;
        };
        instance.exports = Some(exports);
        let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        if !warm.parked && warm.idle.len() < STANDBY {
            warm.idle.push(instance);
        }
    }
}

/// An instance's teardown (the store dropped, its pooled slot reset: a
/// `PAGEMAP_SCAN` ioctl and the dirtied pages copied back, a quarter of a
/// fresh call) is taken off the request's path: it runs as a task of its
/// own on this runtime, which starts once the task that asked yields, in
/// `herald serve` normally with the response written. Its call slot is
/// held until then, so the pool never hands out more than it has. With a
/// `maker` (fresh isolation) the same task then instantiates the next
/// instance ahead of its call.
///
/// One such task per thread at a time: while it has not run, this thread
/// is busy with other requests, and further instances are dropped here.
/// Deferring them all cost a saturated worker a fifth of its fresh-call
/// throughput (`scripts/bench-throughput`: more pool slots cycling through
/// the cache, each torn down cold). Outside a runtime: dropped here.
fn retire(instance: Instance, maker: Option<Arc<Maker>>) {
    thread_local! {
        static PENDING: Arc<std::sync::atomic::AtomicBool> = Arc::default();
    }
    use std::sync::atomic::Ordering;
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        drop(instance);
        return;
    };
    let Some(pending) = PENDING.with(|p| (!p.swap(true, Ordering::AcqRel)).then(|| p.clone()))
    else {
        drop(instance);
        return;
    };
    runtime.spawn(async move {
        drop(instance);
        if let Some(maker) = maker {
            maker.prepare_standby().await;
        }
        pending.store(false, Ordering::Release);
    });
}

/// Instances a `fresh` policy version keeps instantiated ahead of their
/// call (see [`Maker::prepare_standby`]).
const STANDBY: usize = 2;

/// Guest code in `store` stops at `deadline` (checked every epoch tick).
fn arm_deadline(store: &mut Store<HostState>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// What a guest that trapped wrote of why (a Rust panic's message: the line
/// after `panicked at`, or else its last line), as a suffix for the trap's
/// line; empty when it wrote nothing.
fn said_why(captured: &[u8]) -> String {
    let text = String::from_utf8_lossy(captured);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let why = lines
        .iter()
        .position(|l| l.contains("panicked at"))
        .and_then(|i| lines.get(i + 1))
        .or(lines.last());
    why.map_or(String::new(), |w| format!(" ({})", truncate(w, 200)))
}

/// What a call's error means: its deadline passed, its instruction budget
/// (`budget`) ran out, or it trapped (one line).
fn failure_of(e: &wasmtime::Error, budget: u64) -> PolicyFailure {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PolicyFailure::Timeout,
        Some(Trap::OutOfFuel) => PolicyFailure::Trap(format!(
            "used up its instruction budget (policy.max_instructions = {budget})"
        )),
        _ => PolicyFailure::Trap(trap_summary(e)),
    }
}

/// One line: the trap's root cause, without the wasm backtrace.
fn trap_summary(e: &wasmtime::Error) -> String {
    let root = e.root_cause().to_string();
    let first = root.lines().next().unwrap_or("trap");
    let detail = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => String::new(),
    };
    let line = if detail.is_empty() || first.contains(&detail) {
        first.to_string()
    } else {
        format!("{detail}: {first}")
    };
    truncate(&line, 200)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.replace(['\n', '\r'], " ");
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", s[..end].replace(['\n', '\r'], " "))
}
