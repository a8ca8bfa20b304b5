//! Compiles the policy's JavaScript to QuickJS bytecode, on the build
//! machine, with the QuickJS-ng release the component runs: a syntax error
//! fails the build (with its line), and an instance loads bytecode instead
//! of parsing source.
//!
//! The policy is the file `HERALD_JS_POLICY` names (`build-policy.sh` sets
//! it). A native build without it (the workspace's own checks and tests)
//! takes `tests/policy.js`, the runner's test policy; a Wasm build without it
//! stops here with what to do.

use std::path::PathBuf;

use rquickjs::module::{Declarations, Exports, ModuleDef};
use rquickjs::{Context, Ctx, Function, Module, Runtime, WriteOptions};

/// The specifiers a policy may import its configuration from: the
/// interface's, at each version a policy may have been written against.
const CONFIG_MODULES: [&str; 3] = [
    "herald:policy/config@0.1.2",
    "herald:policy/config@0.1.1",
    "herald:policy/config@0.1.0",
];

/// A stand-in for `herald:policy/config`: compiling a module resolves its
/// imports, and the bytecode names them only.
struct ConfigStub;

impl ModuleDef for ConfigStub {
    fn declare<'js>(decl: &Declarations<'js>) -> rquickjs::Result<()> {
        for name in ["get", "keys", "json"] {
            decl.declare(name)?;
        }
        Ok(())
    }

    fn evaluate<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
        for name in ["get", "keys", "json"] {
            exports.export(name, Function::new(ctx.clone(), || ())?)?;
        }
        Ok(())
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=HERALD_JS_POLICY");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"));
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    let policy = match std::env::var_os("HERALD_JS_POLICY") {
        Some(path) => manifest.join(path),
        None if wasm => fail(
            "set HERALD_JS_POLICY to the policy's .js file (sdk/js/build-policy.sh POLICY.js OUT.wasm does)",
        ),
        None => manifest.join("tests/policy.js"),
    };
    println!("cargo:rerun-if-changed={}", policy.display());
    let source = std::fs::read_to_string(&policy)
        .unwrap_or_else(|e| fail(&format!("HERALD_JS_POLICY {}: {e}", policy.display())));
    let name = policy
        .file_name()
        .map_or("policy.js".into(), |n| n.to_string_lossy().into_owned());

    let runtime = Runtime::new().expect("a QuickJS runtime");
    let context = Context::full(&runtime).expect("a QuickJS context");
    let bytecode = context.with(|ctx| {
        for name in CONFIG_MODULES {
            Module::declare_def::<ConfigStub, _>(ctx.clone(), name).expect("the config stub");
        }
        // Compiled, not evaluated: its top level runs in the instance.
        let module = match Module::declare(ctx.clone(), name.as_str(), source) {
            Ok(module) => module,
            Err(e) => {
                // A syntax error: its message, at the line and column its
                // stack gives (`at policy.js:2:11`).
                let thrown = ctx.catch();
                let Some(x) = thrown.as_exception() else {
                    fail(&format!("{}: {e}", policy.display()))
                };
                let place = x
                    .stack()
                    .and_then(|s| {
                        let at = s.split_once(&format!("{name}:"))?.1;
                        let end = at.find(|c: char| !(c.is_ascii_digit() || c == ':'))?;
                        Some(format!(":{}", &at[..end]))
                    })
                    .unwrap_or_default();
                let message = x.message().unwrap_or_else(|| e.to_string());
                fail(&format!("{}{place}: {message}", policy.display()))
            }
        };
        module
            .write(WriteOptions {
                strip_source: true,
                ..Default::default()
            })
            .expect("bytecode of a compiled module")
    });
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("run by cargo")).join("policy.qjsbc");
    std::fs::write(&out, bytecode).expect("writing the bytecode");
}

/// Stop the build with one line a user can act on (`build-policy.sh` shows
/// only the lines that start with `herald-js:`).
fn fail(why: &str) -> ! {
    eprintln!("herald-js: {why}");
    std::process::exit(1)
}
