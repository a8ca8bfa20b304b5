#!/usr/bin/env bash
# Build the Python reference policy into a Wasm component.
#   usage: plugins-example/python/build.sh OUT.wasm
# Needs componentize-py (`pip install componentize-py==0.25.1`; `scripts/setup` does it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
command -v componentize-py >/dev/null || { echo "build.sh: componentize-py not found; run scripts/setup" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
cd "$here"
componentize-py --wit-path ../../wit --world push-policy-reads componentize app -o "$out" >/dev/null
