#!/usr/bin/env bash
# The README's first command: install what is missing, build the `sgt` tool, and protect the sample
# chat (examples/chat.json) with the bundled demo model: its chat template renders the chat, its
# tokenizer tokenizes it, the message contents are protected. Extra arguments go to
# `sgt transform` (e.g. --seed 42, --format vllm-completions).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install_deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target sgt_cli

mkdir -p build/demo
echo "== sgt info examples/models/demo"
build/release/tools/sgt info examples/models/demo | head -n 12
echo "== sgt tokenize examples/models/demo --chat examples/chat.json"
build/release/tools/sgt tokenize examples/models/demo --chat examples/chat.json | cut -c1-160
echo "== sgt transform examples/models/demo --chat examples/chat.json"
build/release/tools/sgt transform examples/models/demo --chat examples/chat.json \
  --output build/demo/chat_protected.safetensors "$@"
