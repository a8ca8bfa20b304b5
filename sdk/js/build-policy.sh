#!/usr/bin/env bash
# Build a JavaScript policy into a Wasm component, run by QuickJS-ng.
#   usage: sdk/js/build-policy.sh POLICY.js OUT.wasm
# POLICY.js is an ES module exporting `decide(request)` (shapes: src/lib.rs).
# Needs the wasm32-wasip2 Rust target and Debian's clang 14, llvm 14 and
# wasi-libc (scripts/setup installs them); nothing is downloaded but crates.
# Builds in $HERALD_JS_TARGET_DIR (default: this checkout's target/guests):
# the first build compiles QuickJS (a minute or two), later ones the policy.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -eq 2 ] || { echo "usage: build-policy.sh POLICY.js OUT.wasm" >&2; exit 2; }
[ -f "$1" ] || { echo "build-policy.sh: $1: no such file" >&2; exit 2; }
policy="$(realpath "$1")"
out="$(realpath -m "$2")"
target="$(realpath -m "${HERALD_JS_TARGET_DIR:-$here/../../target/guests}")"
for tool in clang-14 llvm-ar-14; do
  command -v "$tool" >/dev/null || { echo "build-policy.sh: $tool not found; run scripts/setup" >&2; exit 1; }
done
[ -f /usr/include/wasm32-wasi/stdlib.h ] || { echo "build-policy.sh: wasi-libc not found; run scripts/setup" >&2; exit 1; }
# QuickJS-ng's C, compiled by Debian's clang against Debian's wasi-libc
# (rquickjs-sys would otherwise download wasi-sdk). clang 14 does not know
# the wasm32-wasip2 triple the cc crate passes: the later --target wins.
export RQUICKJS_SYS_NO_WASI_SDK=1
export CC_wasm32_wasip2=clang-14 AR_wasm32_wasip2=llvm-ar-14
export CFLAGS_wasm32_wasip2="--target=wasm32-wasi --sysroot=/usr"
export HERALD_JS_POLICY="$policy"
mkdir -p "$target"
# Every policy is built to the same file: one build-and-copy at a time.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
(
  flock 9
  if ! cargo build --quiet --manifest-path "$here/Cargo.toml" -p herald-js \
    --profile guest-js --target wasm32-wasip2 --target-dir "$target" 2>"$log"; then
    # The policy's own error (a syntax error, a missing file) is one line;
    # anything else, cargo's whole report.
    grep -E '^ *herald-js: ' "$log" | sed 's/^ *//' >&2 || cat "$log" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$out")"
  cp "$target/wasm32-wasip2/guest-js/herald_js.wasm" "$out"
) 9>"$target/.herald-js.lock"
