// libFuzzer harness: CHAT.json parsing (sgt::text::parse_chat_input), then a render of what was
// accepted through a template that touches every message key, so that the JSON -> template value
// conversion sees the parsed chat too. Only sgt::Error may escape the library.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "sgt/core/error.hpp"
#include "sgt/text/chat/chat_input.hpp"
#include "sgt/text/chat/chat_template.hpp"

namespace fuzz_text_chat_json {

int one_input(const std::uint8_t* data, std::size_t size) {
  static const sgt::text::ChatTemplate kTemplate(
      "{% for m in messages %}{{ m.role }}:{{ m.content|string|trim }}|{{ m|tojson }}|"
      "{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}\n{% endfor %}{{ tools|tojson(indent=2) }}",
      "fuzz template");
  try {
    const sgt::text::ChatInput chat =
        sgt::text::parse_chat_input(std::string(reinterpret_cast<const char*>(data), size), "CHAT.json");
    sgt::text::ChatTemplateOptions options;
    options.add_generation_prompt = chat.add_generation_prompt;
    options.extra_context = chat.extra_context;
    options.policy.protect_tool_calls = true;
    options.policy.protect_tool_schemas = true;
    (void)kTemplate.render(chat.messages, chat.tools, {}, options);
  } catch (const sgt::Error&) {
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_text_chat_json", one_input);

}  // namespace fuzz_text_chat_json
