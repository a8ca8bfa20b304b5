#!/usr/bin/env bash
# Build the C reference policy into a Wasm component.
#   usage: plugins-example/c/build.sh OUT.wasm
# Needs Debian's clang, lld, wasi-libc and libclang-rt-14-dev-wasm32, plus
# wit-bindgen (C generator) and wasm-tools; `scripts/setup` installs them all.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
for tool in clang wit-bindgen wasm-tools; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found; run scripts/setup" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# 1. C bindings for the world: push_policy_reads.{h,c} and the component type object.
wit-bindgen c "$here/../../wit" --world push-policy-reads --out-dir "$work" >/dev/null 2>&1 \
  || wit-bindgen c "$here/../../wit" --world push-policy-reads --out-dir "$work"
# 2. A core module for wasm32-wasi with no entry point (a reactor). The
#    policy calls no WASI function, so the module imports only the world.
clang --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Werror \
  -mexec-model=reactor -Wl,--strip-all -I "$work" \
  -o "$work/policy.core.wasm" \
  "$here/policy.c" "$work/push_policy_reads.c" "$work/push_policy_reads_component_type.o"
# 3. The adapter step: wrap the core module into a component.
mkdir -p "$(dirname "$out")"
wasm-tools component new "$work/policy.core.wasm" -o "$out"
