// The proxy's pipeline: a chat request in, the Completions request the upstream gets out, with
// only protected embeddings in it -- and, for POST /v1/stainedglass, what that protection did.
//
//   ChatProtection p("models/demo");                       // the SGT model, its tokenizer, template
//   text::EncodedPrompt prompt = p.encode(request.chat);   // rendered with add_generation_prompt,
//                                                          // masked by the library's chat policy
//   ProtectedChat sent = p.protect(prompt, options);       // Transform::run -> (T, H) tensor
//   std::string body = p.upstream_body(sent, upstream);    // {"model", "prompt_embeds", ...}
//
// The same steps as `sgt transform --chat CHAT.json --add-generation-prompt --format
// vllm-completions`: encode_chat with the default ChatMaskPolicy, Transform::run, encode_tensor,
// vllm_completions_body. Buffers holding the clean prompt are WipedVectors (TransformResult) or
// wiped here before they are released.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/audit/recovery_audit.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/io/encoded_tensor.hpp"
#include "sgt/io/vllm_request_writer.hpp"
#include "sgt/model/transform.hpp"
#include "sgt/text/chat/chat_input.hpp"
#include "sgt/text/chat/chat_template.hpp"
#include "sgt/text/chat/prompt_encoder.hpp"
#include "sgt/text/chat/tokenizer_config.hpp"
#include "sgt/text/tokenizer/tokenizer.hpp"

namespace sgt::serve {
SGT_ISA_BEGIN

// The protected prompt as it leaves the process.
struct ProtectedChat {
  std::size_t prompt_tokens = 0, protected_tokens = 0;
  EncodedTensor embeddings;  // (T, H) in the output dtype
  double transform_ms = 0;
};

// What POST /v1/stainedglass asks to see besides the token pieces.
struct VerificationFlags {
  bool plain_text_embeddings = false;
  bool transformed_embeddings = false;
  bool reconstructed_prompt = false;
  bool obfuscation_score = false;
};

class ChatProtection {
 public:
  explicit ChatProtection(const std::string& sgt_dir)
      : transform_(sgt_dir), tokenizer_(text::Tokenizer::load(sgt_dir + "/tokenizer.json")) {
    const text::TokenizerConfig config = text::read_tokenizer_config(sgt_dir);
    if (!config.chat_template)
      throw Error("has no chat_template (and there is no chat_template.jinja beside it)")
          .at_file(sgt_dir + "/tokenizer_config.json");
    template_.emplace(*config.chat_template, config.chat_template_source);
    specials_ = config.specials;
  }

  const Transform& transform() const noexcept { return transform_; }
  const text::Tokenizer& tokenizer() const noexcept { return tokenizer_; }

  // The chat as the model's template renders it, answer header last, with the noise mask of the
  // default ChatMaskPolicy (every role's content and the tool schemas protected).
  text::EncodedPrompt encode(const text::ChatInput& chat) const {
    return text::encode_chat(tokenizer_, *template_, specials_, chat,
                             /*add_generation_prompt=*/true, text::ChatMaskPolicy{});
  }

  ProtectedChat protect(const text::EncodedPrompt& prompt, const RunOptions& options,
                        DType output_dtype) const {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const TransformResult r = transform_.run(prompt.input, options);
    ProtectedChat out;
    out.transform_ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
    out.prompt_tokens = prompt.input.seq_len;
    for (std::size_t t = 0; t < prompt.input.seq_len; ++t)
      out.protected_tokens += prompt.input.is_protected(t);
    out.embeddings =
        encode_tensor(output_dtype, {r.seq_len, r.hidden}, r.transformed.data());
    return out;
  }

  // The upstream's request: the model name, the protected embeddings and the sampling fields;
  // nothing of the prompt's text or ids.
  static std::string upstream_body(const ProtectedChat& sent, const VllmCompletionsRequest& r) {
    return vllm_completions_body(r, {sent.embeddings});
  }

  // POST /v1/stainedglass: the tokens (each id decoded alone), and on request the clean and the
  // protected embeddings ([T][H] numbers), the prompt as the L2-nearest vocabulary rows read the
  // protected embeddings (the audit's reconstruction, one draw), and the obfuscation score: the
  // share of protected tokens whose L2-nearest vocabulary row is not the original token (1: a
  // nearest-neighbour inversion recovers none of them; 0: all; null when nothing is protected).
  // `options` chooses the noise (secure, or torch-seeded for tests) as for protect().
  nlohmann::ordered_json verify(const text::EncodedPrompt& prompt, const RunOptions& options,
                                const VerificationFlags& flags) const {
    using json = nlohmann::ordered_json;
    const TransformInput& in = prompt.input;
    RunOptions run = options;
    run.keep_intermediates = true;  // the clean embeddings, and eps for the audit's one draw
    const TransformResult r = transform_.run(in, run);
    const std::size_t S = r.seq_len, H = r.hidden;
    json out;
    auto rows = [&](const WipedVector<float>& v) {
      json m = json::array();
      for (std::size_t s = 0; s < S; ++s)
        m.push_back(std::vector<float>(v.begin() + s * H, v.begin() + (s + 1) * H));
      return m;
    };
    json pieces = json::array();
    for (const std::int64_t id : in.input_ids)
      pieces.push_back(tokenizer_.decode({static_cast<std::int32_t>(id)}, false));
    out["tokenized_plain_text"] = pieces;
    if (flags.plain_text_embeddings) out["plain_text_embeddings"] = rows(r.embeddings);
    if (flags.transformed_embeddings) out["transformed_embeddings"] = rows(r.transformed);
    if (flags.reconstructed_prompt || flags.obfuscation_score) {
      AuditOptions audit;
      static_cast<ExecOptions&>(audit) = options;
      // The same eps again: the audit's draw is the transformed embeddings returned above.
      audit.injected_draws = TensorView<const float>(r.noise.data(), {1, S, H});
      const AuditReport report = audit_transform(transform_, in, audit);
      if (flags.reconstructed_prompt)
        out["reconstructed_prompt"] = tokenizer_.decode(report.reconstructed_ids(0, 0, in), false);
      if (flags.obfuscation_score)
        out["obfuscation_score"] =
            report.protected_tokens ? json(1.0 - report.recovery_l2) : json(nullptr);
    }
    return out;
  }

 private:
  Transform transform_;
  text::Tokenizer tokenizer_;
  std::optional<text::ChatTemplate> template_;
  text::TokenizerSpecialStrings specials_;
};

SGT_ISA_END
}  // namespace sgt::serve
