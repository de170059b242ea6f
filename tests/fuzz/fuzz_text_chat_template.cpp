// libFuzzer harness: a chat template and a chat, rendered.
//
// Input: template source, then a NUL byte, then a CHAT.json (docs/format.md); without a NUL the
// whole input is the template and a small fixed chat is used. The renderer must answer every
// input with a result or an sgt::Error -- no crash, no other exception, no hang, no unbounded
// memory: the interpreter's limits (jinja/limits.hpp: one work budget charged by every
// expression, builtin and operator, output and strings of 16 MiB checked before they are built,
// 100000-item lists, 1000000 loop iterations, nesting) are what keeps a hostile template bounded.
// The dictionary and tests/fuzz/seeds/chat_template reach the builtins that could spend without
// being charged: namespaces, slices, **, repetition, macros, count/index, unique, indent,
// replace, tojson, round.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "sgt/core/error.hpp"
#include "sgt/text/chat/chat_input.hpp"
#include "sgt/text/chat/chat_template.hpp"

namespace fuzz_text_chat_template {

namespace {
const char kDefaultChat[] =
    R"({"messages": [{"role": "system", "content": " sys "}, {"role": "user", "content": "Hi \"you\"\n"},
        {"role": "assistant", "content": [{"type": "text", "text": "part"}],
         "tool_calls": [{"id": "abcdefghi", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": "abcdefghi", "content": "42"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "add_generation_prompt": true, "extra_context": {"enable_thinking": false}})";
}  // namespace

int one_input(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = input.find('\0');
  const std::string source = input.substr(0, nul);
  const std::string chat_text =
      nul == std::string::npos ? std::string(kDefaultChat) : input.substr(nul + 1);
  try {
    const sgt::text::ChatTemplate t(source, "chat_template");
    const sgt::text::ChatInput chat = sgt::text::parse_chat_input(chat_text, "CHAT.json");
    sgt::text::TokenizerSpecialStrings specials;
    specials.bos_token = "<s>";
    specials.eos_token = "</s>";
    sgt::text::ChatTemplateOptions options;
    options.add_generation_prompt = chat.add_generation_prompt;
    options.extra_context = chat.extra_context;
    options.policy.protect_tool_calls = size % 2 == 0;
    options.policy.protect_tool_schemas = size % 3 == 0;
    const sgt::text::RenderedChat r = t.render(chat.messages, chat.tools, specials, options);
    // The spans are sorted, merged, non-empty and inside the text.
    std::size_t last_end = 0;
    for (const auto& s : r.protected_spans) {
      if (s.begin >= s.end || s.end > r.text.size() || (last_end && s.begin <= last_end))
        __builtin_trap();
      last_end = s.end;
    }
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_text_chat_template", one_input);

}  // namespace fuzz_text_chat_template
