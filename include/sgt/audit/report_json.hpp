// The audit report as a document (`sgt audit`'s stdout; docs/format.md, "sgt audit") and as a
// table for people (its stderr). The schema:
//
//   {draws, precision, noise, vocab_size,
//    overall: {protected_tokens, recovery_l2, recovery_cosine, mean_rank_l2, mean_cosine,
//              sigma: {min, mean, max}},
//    tokens: [{row (B > 1 only), position, id, text, protected, recovery_l2, recovery_cosine,
//              mean_rank_l2, mean_cosine (null when not protected), nearest_l2, nearest_cosine,
//              rank_l2 (per draw)}],
//    sequences: [{original_ids, reconstructed_ids, original, reconstructed}]  (draw 0's L2
//               nearest neighbours),
//    utility (with a base model): {base, precision, draws, new_tokens,
//              overall: {reached_positions, mean_kl, top1_agreement, mean_rank},
//              positions: [{position, clean_top1, clean_top1_text, reached, mean_kl,
//                           top1_agreement, mean_rank, kl, protected_top1, rank}],
//              answers: {clean: {ids, text}, protected: {draw: 0, ids, text}}}}
//
// Token text comes from a TokenText the caller makes from a tokenizer (the audit does not depend
// on the text front end); without one every text is null.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/audit/recovery_audit.hpp"
#include "sgt/audit/utility_audit.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/io/request.hpp"

namespace sgt {

// The text of `ids` (a JSON string), or null when there is no tokenizer.
using TokenText =
    std::function<nlohmann::ordered_json(const std::vector<std::int32_t>& ids, bool skip_special)>;

namespace detail {
SGT_ISA_BEGIN

inline nlohmann::ordered_json text_or_null(const TokenText& text,
                                           const std::vector<std::int32_t>& ids, bool skip) {
  return text ? text(ids, skip) : nlohmann::ordered_json(nullptr);
}

inline std::vector<std::int32_t> narrow_ids(const std::vector<std::int64_t>& ids) {
  return std::vector<std::int32_t>(ids.begin(), ids.end());
}

// A JSON number, or null for a value that only protected tokens have.
inline nlohmann::ordered_json protected_value(bool is_protected, double v) {
  return is_protected ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

// printf into a std::string.
template <class... Args>
void append_format(std::string& out, const char* format, Args... args) {
  const int n = std::snprintf(nullptr, 0, format, args...);
  if (n <= 0) return;
  const std::size_t at = out.size();
  out.resize(at + std::size_t(n) + 1);
  std::snprintf(&out[at], std::size_t(n) + 1, format, args...);
  out.resize(at + std::size_t(n));
}

// One line, whatever a token or a random model's answer holds.
inline std::string flat_text(const nlohmann::ordered_json& text) {
  std::string s = text.is_string() ? text.get<std::string>() : "";
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return s;
}

SGT_ISA_END
}  // namespace detail

SGT_ISA_BEGIN

struct AuditDescription {
  const char* precision = "f32";  // what the transform runs ran
  const char* noise = "secure";   // "secure" or "injected"
  TokenText text;                 // the SGT model's tokenizer; empty: texts are null
};

struct UtilityDescription {
  std::string base;               // the base model's directory
  const char* precision = "f32";  // what the base model ran
  std::size_t new_tokens = 0;     // asked for (an answer may stop earlier)
  TokenText text;                 // the base model's tokenizer; empty: texts are null
};

inline nlohmann::ordered_json to_json(const AuditReport& report, const TransformInput& in,
                                      const AuditDescription& d) {
  using nlohmann::ordered_json;
  ordered_json j;
  j["draws"] = report.draws;
  j["precision"] = d.precision;
  j["noise"] = d.noise;
  j["vocab_size"] = report.vocab_size;
  ordered_json tokens = ordered_json::array();
  for (std::size_t t = 0; t < report.tokens.size(); ++t) {
    const TokenAudit& a = report.tokens[t];
    ordered_json tj;
    if (report.batch > 1) tj["row"] = t / report.seq_len;
    tj["position"] = t % report.seq_len;
    tj["id"] = a.id;
    tj["text"] = detail::text_or_null(d.text, {static_cast<std::int32_t>(a.id)}, false);
    tj["protected"] = a.is_protected;
    tj["recovery_l2"] = detail::protected_value(a.is_protected, a.recovery_l2);
    tj["recovery_cosine"] = detail::protected_value(a.is_protected, a.recovery_cosine);
    tj["mean_rank_l2"] = detail::protected_value(a.is_protected, a.mean_rank_l2);
    tj["mean_cosine"] = detail::protected_value(a.is_protected, a.mean_cosine);
    tj["nearest_l2"] = a.nearest_l2;
    tj["nearest_cosine"] = a.nearest_cosine;
    tj["rank_l2"] = a.rank_l2;
    tokens.push_back(tj);
  }
  ordered_json overall;
  overall["protected_tokens"] = report.protected_tokens;
  overall["recovery_l2"] = report.recovery_l2;
  overall["recovery_cosine"] = report.recovery_cosine;
  overall["mean_rank_l2"] = report.mean_rank_l2;
  overall["mean_cosine"] = report.mean_cosine;
  overall["sigma"] = {
      {"min", report.sigma_min}, {"mean", report.sigma_mean}, {"max", report.sigma_max}};
  j["overall"] = overall;
  j["tokens"] = tokens;
  ordered_json sequences = ordered_json::array();
  for (std::size_t b = 0; b < report.batch; ++b) {
    std::vector<std::int32_t> original;
    for (std::size_t s = 0; s < report.seq_len; ++s) {
      const std::size_t t = b * report.seq_len + s;
      if (in.is_real(t))
        original.push_back(static_cast<std::int32_t>(in.input_ids[t]));
    }
    const auto reconstructed = report.reconstructed_ids(0, b, in);
    sequences.push_back({{"original_ids", original},
                         {"reconstructed_ids", reconstructed},
                         {"original", detail::text_or_null(d.text, original, false)},
                         {"reconstructed", detail::text_or_null(d.text, reconstructed, false)}});
  }
  j["sequences"] = sequences;
  return j;
}

inline nlohmann::ordered_json to_json(const UtilityReport& u, const UtilityDescription& d) {
  using nlohmann::ordered_json;
  ordered_json uj;
  uj["base"] = d.base;
  uj["precision"] = d.precision;
  uj["draws"] = u.draws;
  uj["new_tokens"] = d.new_tokens;
  uj["overall"] = {{"reached_positions", u.reached_positions},
                   {"mean_kl", u.mean_kl},
                   {"top1_agreement", u.top1_agreement},
                   {"mean_rank", u.mean_rank}};
  ordered_json positions = ordered_json::array();
  for (std::size_t t = 0; t < u.positions.size(); ++t) {
    const PositionUtility& p = u.positions[t];
    positions.push_back(
        {{"position", t},
         {"clean_top1", p.clean_top1},
         {"clean_top1_text",
          detail::text_or_null(d.text, {static_cast<std::int32_t>(p.clean_top1)}, false)},
         {"reached", p.reached},
         {"mean_kl", p.mean_kl},
         {"top1_agreement", p.top1_agreement},
         {"mean_rank", p.mean_rank},
         {"kl", p.kl},
         {"protected_top1", p.protected_top1},
         {"rank", p.rank}});
  }
  uj["positions"] = positions;
  uj["answers"] = {
      {"clean",
       {{"ids", u.clean_answer},
        {"text", detail::text_or_null(d.text, detail::narrow_ids(u.clean_answer), true)}}},
      {"protected",
       {{"draw", 0},
        {"ids", u.protected_answer},
        {"text", detail::text_or_null(d.text, detail::narrow_ids(u.protected_answer), true)}}}};
  return uj;
}

// The table for people: a line per token (protected ones with their numbers), the overall line,
// and with a utility report its overall line and both answers.
inline std::string audit_table(const AuditReport& report, const AuditDescription& d,
                               const UtilityReport* utility = nullptr,
                               const UtilityDescription& ud = {}) {
  std::string out;
  detail::append_format(out, "%5s %8s %-16s %6s %6s %9s %7s\n", "pos", "id", "text", "recL2",
                        "recCos", "rankL2", "cos");
  for (std::size_t t = 0; t < report.tokens.size(); ++t) {
    const TokenAudit& a = report.tokens[t];
    const nlohmann::ordered_json text =
        detail::text_or_null(d.text, {static_cast<std::int32_t>(a.id)}, false);
    std::string piece = text.is_string() ? text.get<std::string>() : "";
    for (char& c : piece)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    if (piece.size() > 16) piece = piece.substr(0, 16);
    if (!a.is_protected) {
      detail::append_format(out, "%5zu %8lld %-16s %6s\n", t % report.seq_len,
                            static_cast<long long>(a.id), piece.c_str(), "clean");
      continue;
    }
    detail::append_format(out, "%5zu %8lld %-16s %6.2f %6.2f %9.1f %7.3f\n", t % report.seq_len,
                          static_cast<long long>(a.id), piece.c_str(), a.recovery_l2,
                          a.recovery_cosine, a.mean_rank_l2, a.mean_cosine);
  }
  detail::append_format(
      out,
      "%zu protected tokens, %zu draws: recovery L2 %.3f, cosine %.3f, mean L2 rank %.1f, "
      "mean cosine %.3f; sigma min %.4g mean %.4g max %.4g\n",
      report.protected_tokens, report.draws, report.recovery_l2, report.recovery_cosine,
      report.mean_rank_l2, report.mean_cosine, report.sigma_min, report.sigma_mean,
      report.sigma_max);
  if (utility) {
    const UtilityReport& u = *utility;
    detail::append_format(out,
                          "utility for %s, %zu positions from the first protected token, %zu "
                          "draws: KL(clean||protected) %.4f nats, top-1 agreement %.3f, mean "
                          "rank of the clean top-1 %.1f\n",
                          ud.base.c_str(), u.reached_positions, u.draws, u.mean_kl,
                          u.top1_agreement, u.mean_rank);
    out +=
        "  clean answer:     " +
        detail::flat_text(detail::text_or_null(ud.text, detail::narrow_ids(u.clean_answer), true)) +
        "\n";
    out += "  protected answer: " +
           detail::flat_text(
               detail::text_or_null(ud.text, detail::narrow_ids(u.protected_answer), true)) +
           "  (draw 0)\n";
  }
  return out;
}

SGT_ISA_END
}  // namespace sgt
