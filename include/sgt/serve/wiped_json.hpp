// Request JSON holds the client's clean chat: a parsed body is a tree of strings (message
// contents, tool arguments, template variables) that would go back to the allocator as they
// were. wipe_json_strings overwrites every string of a tree, values and object keys, with zeros;
// WipedJson owns a parsed body and wipes it when it goes out of scope; wipe_chat_input does the
// same for the copy a parsed request keeps. What stays unwiped (docs/reliability.md, "Server
// limits"): the JSON parser's own token buffer and the chat template's intermediate strings.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "sgt/core/secure_memory.hpp"
#include "sgt/text/chat/chat_input.hpp"

namespace sgt::serve {

using text::ChatJson;

inline void wipe_string(const std::string& s) noexcept {
  // The characters live in heap (or in-object) storage that is not itself const: a key's string
  // is a const object only in the sense that the tree must not reorder it, and it is about to be
  // destroyed.
  secure_wipe(const_cast<char*>(s.data()), s.capacity());
}

// Overwrites every string in `j` with zeros (sizes kept). Iterative: a request's nesting is
// bounded (kMaxRequestDepth) but the wipe must not depend on that.
inline void wipe_json_strings(ChatJson& j) noexcept {
  std::vector<ChatJson*> pending{&j};
  while (!pending.empty()) {
    ChatJson* v = pending.back();
    pending.pop_back();
    if (v->is_string()) {
      wipe_string(*v->get_ptr<std::string*>());
    } else if (v->is_object()) {
      for (auto it = v->begin(); it != v->end(); ++it) {
        wipe_string(it.key());
        pending.push_back(&it.value());
      }
    } else if (v->is_array()) {
      for (ChatJson& item : *v) pending.push_back(&item);
    }
  }
}

inline void wipe_chat_input(text::ChatInput& chat) noexcept {
  wipe_json_strings(chat.messages);
  wipe_json_strings(chat.tools);
  wipe_json_strings(chat.extra_context);
}

// A parsed request body, wiped when it goes out of scope.
class WipedJson {
 public:
  explicit WipedJson(ChatJson value) : value_(std::move(value)) {}
  WipedJson(const WipedJson&) = delete;
  WipedJson& operator=(const WipedJson&) = delete;
  ~WipedJson() { wipe_json_strings(value_); }

  const ChatJson& get() const noexcept { return value_; }

 private:
  ChatJson value_;
};

}  // namespace sgt::serve
