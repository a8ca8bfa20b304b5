//! Herald push policies in JavaScript, run by QuickJS-ng.
//!
//! A policy is an ES module exporting `decide(request)`, which returns an
//! array of hints (or throws a string: the policy's error). It may import
//! `get`, `keys` and `json` from `"herald:policy/config@0.1.2"` (or an earlier `0.1.x`). Requests and
//! hints have the shapes componentize-js gives the WIT types, so one
//! `policy.js` builds with either toolchain: records are objects with
//! camelCase fields, enums their WIT names (`"style"`, `"push-only"`), an
//! absent `option` is `undefined` (or `null`), lists are arrays.
//!
//! `build-policy.sh POLICY.js OUT.wasm` builds this crate for
//! `wasm32-wasip2` with that module compiled to QuickJS bytecode
//! (`build.rs`): one component, about 1.3 MB, holding QuickJS-ng, the
//! bytecode, and the marshalling below. Its instance makes the runtime, the
//! context and the module on its first call and keeps them: with
//! `isolation = "reuse"` a call costs tens of microseconds
//! (`BENCHMARKS.md`), a fresh instance about half a millisecond.
//!
//! Hints go through the Rust SDK's [`Hint`](herald_sdk::Hint) builder, so
//! they are taken as a Rust policy's would be (an urgency above 7 is 7, a
//! weight is kept within 1..=256). A value of the wrong type (a number for a
//! path, an unknown destination) is the policy's error, naming the field.
//!
//! Natively (the workspace's checks and this crate's tests) the module is
//! `tests/policy.js`, and each thread has its engine, with the
//! configuration of its first call.

use std::cell::RefCell;

use herald_sdk::{Config, Decision, Policy, Reads, Request};
use rquickjs::module::{Declarations, Exports, ModuleDef};
use rquickjs::{Context, Ctx, Error, Function, Module, Runtime, qjs};

mod marshal;

/// The policy, compiled to QuickJS bytecode by `build.rs`.
static BYTECODE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/policy.qjsbc"));

/// The specifiers a policy may import its configuration from: the
/// interface's, at each version a policy may have been written against.
const CONFIG_MODULES: [&str; 3] = [
    "herald:policy/config@0.1.2",
    "herald:policy/config@0.1.1",
    "herald:policy/config@0.1.0",
];

thread_local! {
    /// The policy's configuration (the host's, in a component), for the
    /// config module's functions.
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
    /// Made on the first call, kept for the instance's life; so is a
    /// failure to make it (the module and the configuration are fixed for
    /// the instance, so it would fail again, at the cost of a fresh start).
    static ENGINE: RefCell<Option<Result<Engine, String>>> = const { RefCell::new(None) };
}

/// QuickJS, with the policy loaded.
struct Engine {
    /// The module's `decide`, holding a reference (released by `drop`).
    decide: qjs::JSValue,
    /// The module's `reads`, if it exports that function (held the same way).
    reads: Option<qjs::JSValue>,
    atoms: marshal::Atoms,
    // Dropped after `drop` ran, the context before the runtime.
    context: Context,
    _runtime: Runtime,
}

impl Drop for Engine {
    // A component's instance goes whole; natively, QuickJS checks that every
    // value was released before its runtime goes.
    fn drop(&mut self) {
        self.context.with(|ctx| {
            let raw = ctx.as_raw().as_ptr();
            // SAFETY: the reference and the atoms `start` took in this
            // context, released once.
            unsafe {
                qjs::JS_FreeValue(raw, self.decide);
                if let Some(reads) = self.reads {
                    qjs::JS_FreeValue(raw, reads);
                }
                self.atoms.free(raw);
            }
        });
    }
}

/// `f` of the configuration; a JavaScript error if there is none yet.
fn with_config<T>(ctx: &Ctx<'_>, f: impl FnOnce(&Config) -> T) -> rquickjs::Result<T> {
    CONFIG.with_borrow(|config| match config {
        Some(config) => Ok(f(config)),
        None => Err(rquickjs::Exception::throw_message(
            ctx,
            "herald:policy/config: no configuration yet",
        )),
    })
}

/// `herald:policy/config@0.1.x`: `get(key)`, `keys()`, `json()`.
struct ConfigModule;

impl ModuleDef for ConfigModule {
    fn declare<'js>(decl: &Declarations<'js>) -> rquickjs::Result<()> {
        for name in ["get", "keys", "json"] {
            decl.declare(name)?;
        }
        Ok(())
    }

    fn evaluate<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
        let get = |ctx: Ctx<'_>, key: String| with_config(&ctx, |c| c.get(&key));
        let keys = |ctx: Ctx<'_>| with_config(&ctx, Config::keys);
        let json = |ctx: Ctx<'_>| with_config(&ctx, Config::json);
        exports.export("get", Function::new(ctx.clone(), get)?.with_name("get")?)?;
        exports.export("keys", Function::new(ctx.clone(), keys)?.with_name("keys")?)?;
        exports.export("json", Function::new(ctx.clone(), json)?.with_name("json")?)?;
        Ok(())
    }
}

/// What a JavaScript exception says, as the policy's error: a thrown string
/// as it is, an `Error` as `Name: message`, anything else as `String(x)`.
fn thrown(ctx: &Ctx<'_>, err: Error) -> String {
    if !matches!(err, Error::Exception) {
        return err.to_string();
    }
    message_of(ctx, ctx.catch())
}

/// A thrown (or rejected) value, as [`thrown`] words it.
fn message_of<'js>(ctx: &Ctx<'js>, value: rquickjs::Value<'js>) -> String {
    if let Some(s) = value.as_string() {
        return s.to_string().unwrap_or_default();
    }
    let message = match value.as_exception() {
        Some(e) => {
            let name: Option<String> = e.get("name").ok();
            match (name, e.message()) {
                (Some(n), Some(m)) => format!("{n}: {m}"),
                (None, Some(m)) => m,
                (n, None) => n.unwrap_or_else(|| "Error".into()),
            }
        }
        None => value
            .get::<rquickjs::Coerced<String>>()
            .map(|s| s.0)
            .unwrap_or_else(|_| "the policy threw a value that is not a string".into()),
    };
    // A getter or `toString` that threw while being read: not left pending.
    if ctx.has_exception() {
        let _ = ctx.catch();
    }
    message
}

/// QuickJS with the policy's module evaluated and its `decide` found.
fn start() -> Result<Engine, String> {
    let runtime = Runtime::new().map_err(|e| format!("starting QuickJS: {e}"))?;
    // No stack limit of QuickJS's own: on WASI it has none, so a policy that
    // recurses without end traps, and Herald recycles the instance.
    let context = Context::full(&runtime).map_err(|e| format!("starting QuickJS: {e}"))?;
    let (decide, reads, atoms) = context.with(|ctx| {
        let load = || -> rquickjs::Result<(Function<'_>, rquickjs::Value<'_>)> {
            for name in CONFIG_MODULES {
                Module::declare_def::<ConfigModule, _>(ctx.clone(), name)?;
            }
            // SAFETY: these bytes are what this QuickJS-ng release wrote
            // for the policy (`build.rs`), and live as long as the program.
            let module = unsafe { Module::load(ctx.clone(), BYTECODE)? };
            let (module, done) = module.eval()?;
            done.finish::<()>()?;
            Ok((module.get("decide")?, module.get("reads")?))
        };
        let (decide, reads) = load().map_err(|e| match e {
            Error::FromJs { .. } => "the policy's module exports no `decide` function".to_string(),
            e => format!("loading the policy: {}", thrown(&ctx, e)),
        })?;
        let raw = ctx.as_raw().as_ptr();
        // SAFETY: a new reference to a live value, and atoms, of this
        // context; the engine releases both (`Drop`).
        Ok::<_, String>(unsafe {
            (
                qjs::JS_DupValue(raw, decide.as_raw()),
                reads
                    .is_function()
                    .then(|| qjs::JS_DupValue(raw, reads.as_raw())),
                marshal::Atoms::new(raw),
            )
        })
    })?;
    Ok(Engine {
        decide,
        reads,
        atoms,
        context,
        _runtime: runtime,
    })
}

impl Engine {
    /// One call of the policy's `decide`: its result, or what its promise
    /// settled to once every job it queued has run (an `async decide` is
    /// awaited, as componentize-js awaits it).
    fn decide(&self, req: &Request) -> Decision {
        self.context.with(|ctx| {
            let raw = ctx.as_raw().as_ptr();
            // SAFETY: `raw` is live for this `with`; every value made here is
            // released by an `Owned` or handed to QuickJS, which takes it.
            unsafe {
                let mut arg = marshal::request(raw, &self.atoms, req);
                let out = marshal::Owned::new(
                    raw,
                    qjs::JS_Call(raw, self.decide, qjs::JS_UNDEFINED, 1, &mut arg),
                );
                qjs::JS_FreeValue(raw, arg);
                if qjs::JS_IsException(out.value()) {
                    drop(out);
                    return Err(thrown(&ctx, Error::Exception));
                }
                run_jobs(&ctx);
                let out = match qjs::JS_PromiseState(raw, out.value()) {
                    qjs::JSPromiseStateEnum_JS_PROMISE_NOT_A_PROMISE => out,
                    qjs::JSPromiseStateEnum_JS_PROMISE_FULFILLED => {
                        marshal::Owned::new(raw, qjs::JS_PromiseResult(raw, out.value()))
                    }
                    qjs::JSPromiseStateEnum_JS_PROMISE_REJECTED => {
                        let reason = qjs::JS_PromiseResult(raw, out.value());
                        return Err(message_of(
                            &ctx,
                            rquickjs::Value::from_raw(ctx.clone(), reason),
                        ));
                    }
                    _ => return Err("decide's promise did not settle".into()),
                };
                marshal::hints(&self.atoms, &out).map_err(|why| {
                    // A getter threw while the hints were read.
                    if ctx.has_exception() {
                        format!("{why}: {}", thrown(&ctx, Error::Exception))
                    } else {
                        why
                    }
                })
            }
        })
    }

    /// What the module's `reads()` returns, `{headers: [...], cookies:
    /// [...]}` (a missing list is empty), or `None` when it has no `reads`
    /// or it returns `undefined` or `null`.
    fn reads(&self) -> Result<Option<Reads>, String> {
        let Some(reads) = self.reads else {
            return Ok(None);
        };
        self.context.with(|ctx| {
            let raw = ctx.as_raw().as_ptr();
            // SAFETY: `reads` is a live function of this context; the result
            // is handed to a `Value`, which releases it.
            let out = unsafe {
                let out = qjs::JS_Call(raw, reads, qjs::JS_UNDEFINED, 0, std::ptr::null_mut());
                if qjs::JS_IsException(out) {
                    return Err(format!("reads() threw: {}", thrown(&ctx, Error::Exception)));
                }
                rquickjs::Value::from_raw(ctx.clone(), out)
            };
            if out.is_undefined() || out.is_null() {
                return Ok(None);
            }
            let object = out
                .as_object()
                .ok_or("reads() returned neither an object nor undefined")?;
            let list = |key: &str| -> Result<Vec<String>, String> {
                let value: rquickjs::Value = object
                    .get(key)
                    .map_err(|e| format!("reads().{key}: {}", thrown(&ctx, e)))?;
                if value.is_undefined() {
                    return Ok(Vec::new());
                }
                let array = value
                    .as_array()
                    .ok_or_else(|| format!("reads().{key} is not an array"))?;
                array
                    .iter::<String>()
                    .collect::<rquickjs::Result<Vec<String>>>()
                    .map_err(|_| format!("reads().{key} holds a value that is not a string"))
            };
            let mut declared = Reads::nothing();
            for name in list("headers")? {
                declared = declared.header(&name);
            }
            for name in list("cookies")? {
                declared = declared.cookie(&name);
            }
            Ok(Some(declared))
        })
    }
}

/// Run the jobs the call queued (promise reactions), until none is left; a
/// job that throws has nobody to tell but its own promise.
fn run_jobs(ctx: &Ctx<'_>) {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: the runtime of a live context; the context a job ran in is
    // this one (the runtime has no other).
    unsafe {
        let runtime = qjs::JS_GetRuntime(raw);
        let mut ran_in = std::ptr::null_mut();
        loop {
            match qjs::JS_ExecutePendingJob(runtime, &mut ran_in) {
                0 => break,
                n if n < 0 => {
                    let _ = ctx.catch();
                }
                _ => {}
            }
        }
    }
}

/// The policy: the module `build.rs` compiled, run by QuickJS.
pub struct JsPolicy;

/// `f` of this instance's engine, made on first use (with `config`, which
/// is the same for every call of the instance).
fn with_engine<T>(config: &Config, f: impl FnOnce(&Result<Engine, String>) -> T) -> T {
    CONFIG.with_borrow_mut(|c| {
        if c.is_none() {
            *c = Some(config.clone());
        }
    });
    ENGINE.with_borrow_mut(|engine| f(engine.get_or_insert_with(start)))
}

impl Policy for JsPolicy {
    fn decide(req: &Request, config: &Config) -> Decision {
        with_engine(config, |engine| match engine {
            Ok(engine) => engine.decide(req),
            Err(why) => Err(why.clone()),
        })
    }

    /// The module's `reads()`, if it exports one. A module that fails to
    /// load declares nothing here: each call then fails with why. A
    /// `reads()` that throws or answers a wrong shape stops the instance
    /// (its message on stderr), and Herald refuses the policy.
    fn reads(config: &Config) -> Option<Reads> {
        with_engine(config, |engine| match engine {
            Ok(engine) => engine
                .reads()
                .unwrap_or_else(|why| panic!("policy.js: {why}")),
            Err(_) => None,
        })
    }
}

herald_sdk::export_policy!(JsPolicy);

#[cfg(test)]
mod tests {
    use herald_sdk::{CorsMode, Delivery, Destination};

    use super::*;

    /// `tests/policy.js` answering `path` (it picks what to do by path).
    fn decide(path: &str) -> Decision {
        let config = Config::empty()
            .with("/", ["/a.css u=0", "/b.js"])
            .with("cookie", ["have"]);
        let req = Request::get(path)
            .with_authority("shop.example")
            .with_header("accept", "text/html")
            .with_header("cookie", "have=/a.css; theme=dark");
        JsPolicy::decide(&req, &config)
    }

    #[test]
    fn the_request_reaches_the_policy_shaped_as_componentize_js_shapes_it() {
        let hints = decide("/echo?x=1").unwrap();
        let paths: Vec<&str> = hints.iter().map(|h| h.path()).collect();
        assert_eq!(
            paths,
            [
                "/m/GET",
                "/s/https",
                "/a/shop.example",
                "/p/%2Fecho",
                "/q/x%3D1",
                "/h/accept%3Dtext%2Fhtml,cookie%3Dhave%3D%2Fa.css%3B%20theme%3Ddark",
                "/c/have%3D%2Fa.css,theme%3Ddark",
                "/push/true",
                "/v/default",
            ]
        );
        let no_query = decide("/echo").unwrap();
        assert_eq!(no_query[4].path(), "/q/undefined");
    }

    #[test]
    fn every_field_of_a_hint_is_read_back() {
        let hints = decide("/full").unwrap();
        assert_eq!(hints.len(), 2);
        let h = &hints[0];
        assert_eq!(h.path(), "/font.woff2?v=2");
        assert_eq!(h.get_urgency(), 1);
        assert!(h.is_incremental());
        assert_eq!(h.get_weight(), 200);
        assert_eq!(h.destination(), Destination::Font);
        assert_eq!(h.cors_mode(), Some(CorsMode::UseCredentials));
        assert_eq!(
            h.copied_headers(),
            Some(&["accept-language".to_string()][..])
        );
        assert_eq!(
            h.extra_headers(),
            &[("accept".to_string(), "font/woff2".to_string())]
        );
        assert_eq!(h.delivery(), Delivery::PushOnly);
        // `null` options are none, as componentize-js takes them.
        assert_eq!(hints[1].cors_mode(), None);
        assert_eq!(hints[1].copied_headers(), None);
        assert_eq!(hints[1].delivery(), Delivery::HintOnly);
    }

    #[test]
    fn the_configuration_is_read_through_its_module() {
        let hints = decide("/config").unwrap();
        let paths: Vec<&str> = hints.iter().map(|h| h.path()).collect();
        assert_eq!(
            paths,
            ["/a.css u=0", "/b.js", "/keys/%2F,cookie", "/json/2"]
        );
    }

    #[test]
    fn reads_is_the_modules_declaration() {
        let config = |mode: &str| {
            Config::empty()
                .with("cookie", ["have"])
                .with("reads_mode", [mode])
        };
        // Each test runs on a thread of its own: an engine, a configuration.
        let on_thread = |mode: &'static str| {
            std::thread::spawn(move || {
                std::panic::catch_unwind(|| JsPolicy::reads(&config(mode)))
                    .map_err(|e| e.downcast_ref::<String>().cloned().unwrap_or_default())
            })
            .join()
            .unwrap()
        };
        assert_eq!(
            on_thread("declare"),
            Ok(Some(Reads::nothing().header("accept").cookie("have")))
        );
        assert_eq!(on_thread("none"), Ok(None));
        assert_eq!(
            on_thread("throw"),
            Err("policy.js: reads() threw: TypeError: no declaration today".to_string())
        );
        assert_eq!(
            on_thread("bad"),
            Err("policy.js: reads().headers holds a value that is not a string".to_string())
        );
    }

    #[test]
    fn a_thrown_value_is_the_policy_error() {
        assert_eq!(decide("/throw/string").unwrap_err(), "no hints for you");
        assert_eq!(decide("/throw/error").unwrap_err(), "TypeError: bad input");
        assert_eq!(decide("/throw/object").unwrap_err(), "[object Object]");
    }

    #[test]
    fn a_promise_is_awaited_and_its_jobs_run() {
        assert_eq!(decide("/async").unwrap()[0].path(), "/async");
        assert_eq!(decide("/async/rejected").unwrap_err(), "no hints, later");
        assert_eq!(
            decide("/async/never").unwrap_err(),
            "decide's promise did not settle"
        );
        let jobs = |d: Decision| -> u32 {
            d.unwrap()[0]
                .path()
                .trim_start_matches("/jobs/")
                .parse()
                .unwrap()
        };
        let first = jobs(decide("/jobs"));
        assert_eq!(jobs(decide("/jobs")), first + 1);
    }

    #[test]
    fn a_wrong_value_names_the_field() {
        for (path, says) in [
            (
                "/wrong/result",
                "decide's result: expected an array, got a number",
            ),
            ("/wrong/hint", "a hint must be an object, got a string"),
            ("/wrong/path", "hint.path: expected a string, got a number"),
            ("/wrong/urgency", "hint.urgency: 1.5 is not an integer"),
            (
                "/wrong/destination",
                "hint.destination: `stylesheet` is not a destination",
            ),
            (
                "/wrong/delivery",
                "hint.delivery: `later` is not a delivery",
            ),
            (
                "/wrong/headers",
                "hint.headers: expected an array, got undefined",
            ),
            (
                "/getter",
                "hint.path: expected a string, got an exception (a getter threw): Error: no path",
            ),
            ("/long", "decide's result: 20000 elements, more than 10000"),
        ] {
            let err = decide(path).unwrap_err();
            assert!(err.contains(says), "{path}: {err}");
        }
    }

    #[test]
    fn the_engine_outlives_a_call_so_module_state_persists() {
        let first = decide("/count").unwrap();
        let second = decide("/count").unwrap();
        let n = |d: &[herald_sdk::Hint]| d[0].path().trim_start_matches("/count/").parse::<u32>();
        assert_eq!(n(&second).unwrap(), n(&first).unwrap() + 1);
    }
}
