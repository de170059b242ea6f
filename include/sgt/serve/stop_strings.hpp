// Stop strings, applied where the text arrives: pieces of an answer go in, the text that may be
// shown comes out, and the answer ends at the first occurrence of any stop string (which is not
// shown, as OpenAI does). Text that could still be the start of a stop string is held back until
// the next piece decides it, so a stop string split across pieces is still caught.
//
// The proxy applies them itself instead of sending them upstream: stop strings are the client's
// text, and nothing of the client's text leaves the process in clear.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace sgt::serve {

class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  bool stopped() const noexcept { return stopped_; }

  // The text of `piece` that can be shown now ("" once stopped).
  std::string feed(std::string_view piece) {
    if (stopped_) return {};
    pending_.append(piece);
    std::size_t cut = std::string::npos;
    for (const std::string& s : stops_) cut = std::min(cut, pending_.find(s));
    if (cut != std::string::npos) {
      stopped_ = true;
      std::string out = pending_.substr(0, cut);
      pending_.clear();
      return out;
    }
    // Hold back the longest suffix that is a proper prefix of a stop string.
    std::size_t keep = 0;
    for (const std::string& s : stops_)
      for (std::size_t k = std::min(s.size() - 1, pending_.size()); k > keep; --k)
        if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
          keep = k;
          break;
        }
    std::string out = pending_.substr(0, pending_.size() - keep);
    pending_.erase(0, pending_.size() - keep);
    return out;
  }

  // At the end of the answer: what was held back.
  std::string finish() {
    std::string out = stopped_ ? std::string() : std::move(pending_);
    pending_.clear();
    return out;
  }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace sgt::serve
