#!/usr/bin/env bash
# Build the JavaScript reference policy into a Wasm component.
#   usage: plugins-example/js/build.sh OUT.wasm [--engine quickjs | starlingmonkey [--aot]]
# quickjs (the default): QuickJS-ng with the policy's bytecode, through
#   Herald's runner (sdk/js/build-policy.sh): about 1.3 MB, tens of
#   microseconds a call on a reused instance. Needs the toolchain
#   scripts/setup installs (Rust's wasm32-wasip2 target, clang 14, wasi-libc).
# starlingmonkey: componentize-js (SpiderMonkey): about 12 MB, ten times the
#   cost of a call. Needs Node.js and this folder's npm packages
#   (`npm install --no-package-lock` here; scripts/setup does it). --aot
#   compiles its interpreter ahead of time for this script (weval;
#   `scripts/setup --bench` installs it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
usage="usage: build.sh OUT.wasm [--engine quickjs | starlingmonkey [--aot]]"
out="$(realpath -m "${1:?$usage}")"
shift
engine=quickjs aot=()
while (($#)); do
  case "$1" in
    --engine) engine="${2:?$usage}"; shift 2 ;;
    --aot) aot=(--aot); shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
case "$engine" in
  quickjs)
    ((${#aot[@]} == 0)) || { echo "build.sh: --aot is for --engine starlingmonkey" >&2; exit 2; }
    exec "$here/../../sdk/js/build-policy.sh" "$here/policy.js" "$out" ;;
  starlingmonkey) ;;
  *) echo "build.sh: --engine $engine: quickjs or starlingmonkey" >&2; exit 2 ;;
esac
if ((${#aot[@]})); then
  weval="$(command -v weval)" || { echo "build.sh: --aot needs weval; run scripts/setup --bench" >&2; exit 1; }
  aot+=(--weval-bin "$weval")
fi
cd "$here"
[ -d node_modules/@bytecodealliance/preview2-shim ] || { echo "build.sh: componentize-js not installed; run scripts/setup (or npm install --no-package-lock in $here)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
# No wasi:http: a policy has no network, and Herald does not link it.
node_modules/.bin/componentize-js policy.js --wit ../../wit --world-name push-policy \
  --disable http fetch-event "${aot[@]}" -o "$out" >/dev/null
