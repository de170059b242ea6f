#!/usr/bin/env bash
# The layering check must fail on a wrong-way include: plants one per new edge in a copy of the
# headers (model -> lm, lm -> audit, text/jinja -> text/tokenizer, text/tokenizer -> text/chat,
# convert -> lm, pipeline -> serve, serve -> httplib)
# and expects check_layering.sh to name each.
# usage: check_layering_catches.sh INCLUDE_DIR
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${1:?usage: check_layering_catches.sh INCLUDE_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/sgt" "$work/"
plant() { sed -i "0,/^#include/s||#include \"$2\"\n#include|" "$work/$1"; }
plant sgt/model/ops.hpp sgt/lm/kv_cache.hpp
plant sgt/lm/kv_cache.hpp sgt/audit/recovery_audit.hpp
plant sgt/text/jinja/value.hpp sgt/text/tokenizer/unicode.hpp
plant sgt/text/tokenizer/bpe.hpp sgt/text/chat/chat_template.hpp
plant sgt/convert/gguf_import.hpp sgt/lm/config.hpp
plant sgt/pipeline/prompt_source.hpp sgt/serve/api_error.hpp
sed -i '0,/^#include/s||#include <httplib.h>\n#include|' "$work/sgt/serve/api_error.hpp"
out=$(bash "$here/check_layering.sh" "$work") && { echo "check_layering.sh passed planted includes"; exit 1; }
fail=0
for edge in "sgt/model/ops.hpp includes sgt/lm/kv_cache.hpp" \
            "sgt/lm/kv_cache.hpp includes sgt/audit/recovery_audit.hpp" \
            "sgt/text/jinja/value.hpp includes sgt/text/tokenizer/unicode.hpp" \
            "sgt/text/tokenizer/bpe.hpp includes sgt/text/chat/chat_template.hpp" \
            "sgt/convert/gguf_import.hpp includes sgt/lm/config.hpp" \
            "sgt/pipeline/prompt_source.hpp includes sgt/serve/api_error.hpp" \
            "sgt/serve/api_error.hpp includes httplib.h"; do
  grep -qF "$edge" <<<"$out" || { echo "not caught: $edge"; fail=1; }
done
[ $fail -eq 0 ] && echo "layering check: every planted wrong-way include caught"
exit $fail
