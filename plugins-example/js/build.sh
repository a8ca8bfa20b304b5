#!/usr/bin/env bash
# Build the JavaScript reference policy into a Wasm component.
#   usage: plugins-example/js/build.sh OUT.wasm [--aot]
# --aot compiles the engine's interpreter ahead of time for this script
# (componentize-js with weval; `scripts/setup --bench` installs weval).
# Needs Node.js and this folder's npm packages (`npm install --no-package-lock` here; `scripts/setup` does it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm [--aot]}")"
aot=()
case "${2:-}" in
  "") ;;
  --aot)
    weval="$(command -v weval)" || { echo "build.sh: --aot needs weval; run scripts/setup --bench" >&2; exit 1; }
    aot=(--aot --weval-bin "$weval") ;;
  *) echo "usage: build.sh OUT.wasm [--aot]" >&2; exit 2 ;;
esac
cd "$here"
[ -d node_modules/@bytecodealliance/preview2-shim ] || { echo "build.sh: componentize-js not installed; run scripts/setup (or npm install --no-package-lock in $here)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
# No wasi:http: a policy has no network, and Herald does not link it.
node_modules/.bin/componentize-js policy.js --wit ../../wit --world-name push-policy \
  --disable http fetch-event "${aot[@]}" -o "$out" >/dev/null
