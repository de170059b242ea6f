#!/usr/bin/env bash
# The README's first command: install what is missing, build the `sgt` tool, and protect the sample
# prompt with the bundled demo model. Extra arguments go to `sgt transform` (e.g. --seed 42).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install_deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target sgt_cli

mkdir -p build/demo
echo "== sgt info examples/models/demo"
build/release/tools/sgt info examples/models/demo | head -n 12
echo "== sgt transform examples/models/demo --input examples/prompt.json"
build/release/tools/sgt transform examples/models/demo --input examples/prompt.json \
  --output build/demo/prompt_protected.safetensors "$@"
