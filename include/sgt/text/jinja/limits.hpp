// The limits of one chat-template render. Templates come from model downloads and chats from
// users, so what a render may spend is part of the library's contract: every limit below has a
// documented default (docs/reliability.md, "Chat-template limits") and a library caller may set
// it (sgt::text::ChatTemplateOptions::limits). Exceeding one stops the render with an sgt::Error
// that names the template, line and column, and the limit.
//
// One budget sees all work and memory: every expression and statement evaluated, every item a
// builtin or operator visits, every byte and every item it builds is charged to max_work_units
// before it is done, and a string, list or output that would outgrow its limit is refused before
// it is built. An item built costs kItemWorkUnits: a value takes about 160 bytes, so that the
// memory a render can allocate stays near max_work_units * 10 bytes (well under 1 GiB by default).
#pragma once

#include <cstddef>

namespace sgt::text::jinja {

// Work units charged for one value placed in a list or dict the render builds.
inline constexpr std::size_t kItemWorkUnits = 16;

// Work units charged for one macro call, on top of the expressions it evaluates.
inline constexpr std::size_t kMacroCallWorkUnits = 64;

struct Limits {
  // The rendered output, and any one string the template builds (a set block, a macro's output,
  // a concatenation, a filter's result), in bytes. The output is tokenized next, and the
  // tokenizer holds 60 to 270 bytes per byte of text (docs/reliability.md, "Cost of one input"):
  // 2 MiB keeps that under 600 MB, and is about 500k tokens, far past any model's context.
  std::size_t max_output_bytes = std::size_t{2} << 20;
  // Items of any one list the template builds (range, +, *, slices, |list, split, ...).
  std::size_t max_list_items = 100000;
  // Iterations of all for loops of one render together.
  std::size_t max_loop_iterations = 1000000;
  // Work units of one render: one per expression or statement evaluated, per item visited and per
  // byte built, kItemWorkUnits per item built, kMacroCallWorkUnits per macro call.
  std::size_t max_work_units = std::size_t{64} << 20;
  // How deep evaluation may nest (expressions, statements and macro calls together). It bounds
  // the interpreter's stack use, so raise it only on a thread with stack to spare.
  std::size_t max_recursion = 512;
  // How deep macro calls may nest.
  std::size_t max_macro_depth = 64;
};

}  // namespace sgt::text::jinja
