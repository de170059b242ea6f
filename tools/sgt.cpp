// sgt: the command-line tool of docs/format.md section 6.
//
//   sgt info MODEL_DIR
//   sgt transform MODEL_DIR --input IN.json --output OUT [--noise NOISE.safetensors]
//       [--seed N] [--rng secure|torch] [--threads N] [--attention sdpa|flash]
//       [--precision auto|f32|bf16]
//       [--dump-intermediates] [--format safetensors|torch|vllm-completions]
//       [--output-dtype f32|bf16|f16] [--model-name NAME] [--max-tokens N]
//   sgt audit MODEL_DIR (--input IN.json | --text T | --chat CHAT.json) [--draws N]
//       [--threads N] [--precision auto|f32|bf16] [--noise-draws DRAWS.safetensors] [--json-only]
//       [--plot HEAT.png] [--base BASE_DIR [--base-new-tokens N]]
//   sgt generate BASE_DIR (--text T | --chat CHAT.json) [--protect SGT_DIR [--noise-seed N]]
//       [--max-new-tokens N] [--temperature T [--top-p P] [--seed N]] [--threads N]
//       [--precision auto|f32|bf16] [--json]
//
// Exit status 0 on success. On any bad input: status 1 (2 for a bad command line), one line on
// stderr that names the problem, and no output file (the writer renames a finished temp file).
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/sgt.hpp>
#if defined(SGT_DISPATCH)
#include <sgt/dispatch/dispatch.hpp>
#endif
#if SGT_HAVE_TEXT
#include <sgt/text/tokenizer/decode_stream.hpp>
#include <sgt/text/chat/prompt_encoder.hpp>
#endif

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* kUsage =
    "usage: sgt info MODEL_DIR\n"
    "       sgt tokenize MODEL_DIR (--text TEXT | --chat CHAT.json) [PROMPT OPTIONS]\n"
    "       sgt transform MODEL_DIR (--input IN.json | --text TEXT | --chat CHAT.json) --output OUT\n"
    "           [PROMPT OPTIONS]\n"
    "           [--noise NOISE.safetensors] [--seed N] [--rng secure|torch] [--threads N]\n"
    "           [--attention sdpa|flash] [--precision auto|f32|bf16] [--dump-intermediates]\n"
    "           [--format safetensors|torch|vllm-completions]  (default safetensors)\n"
    "           [--output-dtype f32|bf16|f16]  (default f32 for safetensors, bf16 otherwise)\n"
    "           [--model-name NAME] [--max-tokens N]  (vllm-completions: the request's model,\n"
    "               default MODEL_DIR's base name, and max_tokens, default 16)\n"
    "       sgt audit MODEL_DIR (--input IN.json | --text TEXT | --chat CHAT.json) [--draws N]\n"
    "           [PROMPT OPTIONS] [--threads N] [--precision auto|f32|bf16]\n"
    "           [--noise-draws DRAWS.safetensors] [--json-only]\n"
    "           [--plot HEAT.png]  (JSON report on stdout, a table on stderr unless --json-only;\n"
    "           --draws default 16; --noise-draws: F32 tensor 'noise' [N, S, H] of stored eps,\n"
    "           not secure draws)\n"
    "           [--base BASE_DIR [--base-new-tokens N]]  (what the noise costs the base model:\n"
    "           KL, top-1 agreement and rank per position, N greedy tokens of both answers;\n"
    "           default 16)\n"
    "       sgt generate BASE_DIR (--text TEXT | --chat CHAT.json) [PROMPT OPTIONS]\n"
    "           [--protect SGT_DIR [--noise-seed N]] [--max-new-tokens N]  (default 32)\n"
    "           [--temperature T [--top-p P] [--seed N]]  (default 0: greedy)\n"
    "           [--threads N] [--precision auto|f32|bf16] [--json]\n"
    "       sgt generate BASE_DIR --inputs-embeds OUT.safetensors [...]  (the prompt as sgt\n"
    "           transform wrote it: tensor 'transformed', F32/BF16/F16)\n"
    "           (BASE_DIR: a Hugging Face causal LM with its tokenizer; the answer streams to\n"
    "           stdout, or one JSON document with --json; --protect feeds the model the SGT\n"
    "           model's protected embeddings of the prompt, noise from the OS or --noise-seed)\n"
    "prompt options: --no-special-tokens (--text: no BOS), --add-generation-prompt (--chat),\n"
    "    --protect-roles ROLE,ROLE (--chat; default every role), --no-protect-tool-schemas\n"
    "    (--chat; default: tool schemas are protected), --transform-all-tokens\n";

nlohmann::ordered_json estimator_info(const sgt::EstimatorConfig& e) {
  const sgt::DecoderConfig& d = e.decoder;
  nlohmann::ordered_json j;
  j["model_type"] = sgt::model_type_name(d.model_type);
  j["layers"] = d.num_hidden_layers;
  j["hidden_size"] = d.hidden_size;
  j["intermediate_size"] = d.intermediate_size;
  j["num_attention_heads"] = d.num_attention_heads;
  j["num_key_value_heads"] = d.num_key_value_heads;
  j["head_dim"] = d.head_dim;
  j["final_norm"] = e.final_norm;
  j["head"] =
      e.has_head ? nlohmann::ordered_json{{"bias", e.head_bias}} : nlohmann::ordered_json(nullptr);
  j["parameterization"] = sgt::parameterization_type_name(e.parameterization.type);
  return j;
}

// MODEL_DIR's tokenizer.json and tokenizer_config.json, if it has them (null otherwise).
nlohmann::ordered_json tokenizer_info(const std::string& dir) {
  if (!std::filesystem::exists(dir + "/tokenizer.json")) return nullptr;
#if SGT_HAVE_TEXT
  const auto tokenizer = sgt::text::Tokenizer::load(dir + "/tokenizer.json");
  nlohmann::ordered_json j;
  j["model_type"] = tokenizer.model_type();
  j["vocab_size"] = tokenizer.vocab_size();
  j["special_tokens"] = tokenizer.special_tokens();
  bool chat_template = false;
  if (std::filesystem::exists(dir + "/tokenizer_config.json")) {
    const sgt::text::TokenizerConfig c = sgt::text::read_tokenizer_config(dir);
    chat_template = c.chat_template.has_value();
    if (c.specials.bos_token) j["bos_token"] = *c.specials.bos_token;
    if (c.specials.eos_token) j["eos_token"] = *c.specials.eos_token;
  }
  j["chat_template"] = chat_template;
  return j;
#else
  return "present (this sgt was built without the text front end)";
#endif
}

int cmd_info(const std::string& dir) {
  const sgt::Transform model(dir);
  const auto& c = model.config();
  std::map<std::string, std::size_t> dtypes;
  std::uint64_t params = 0, bytes = 0;
  for (const auto& name : model.tensors().names()) {
    const auto& info = model.tensors().info(name);
    dtypes[sgt::dtype_name(info.dtype)]++;
    std::uint64_t n = 1;
    for (auto d : info.shape) n *= d;
    params += n;
    bytes += info.byte_size();
  }
  nlohmann::ordered_json j;
  j["format"] = "sgt4t";
  j["format_version"] = c.format_version;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["value_range"] = {
      c.value_min ? nlohmann::ordered_json(*c.value_min) : nlohmann::ordered_json(nullptr),
      c.value_max ? nlohmann::ordered_json(*c.value_max) : nlohmann::ordered_json(nullptr)};
  j["mean_estimator"] = estimator_info(c.mean_estimator);
  j["std_estimator"] = estimator_info(c.std_estimator);
  j["tensors"] = model.tensors().size();
  j["dtypes"] = dtypes;
  j["params"] = params;
  j["bytes"] = bytes;
  // The instruction set of the kernels that run (with sgt::dispatch: the one chosen for this CPU,
  // and the others this binary has).
  const sgt::kernels::KernelTable& kernels = sgt::kernels::default_kernel_table();
  j["kernels"] = kernels.isa;
#if defined(SGT_DISPATCH)
  j["dispatch"] = {{"compiled", sgt::dispatch::compiled_isas()},
                   {"runnable", sgt::dispatch::runnable_isas()}};
#else
  j["dispatch"] = nullptr;
#endif
  // What --precision auto runs for this model, and how bf16 products are made by those kernels.
  j["precision"] = sgt::precision_name(model.resolve_precision(sgt::Precision::Auto));
  j["bf16_dot_product"] = kernels.bf16_dot_product ? "avx512_bf16" : "emulated with f32 fma";
  j["tokenizer"] = tokenizer_info(dir);
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

sgt::Precision parse_precision(const std::string& v) {
  if (v == "auto") return sgt::Precision::Auto;
  if (v == "f32") return sgt::Precision::F32;
  if (v == "bf16") return sgt::Precision::Bf16;
  throw UsageError("--precision must be auto, f32 or bf16, got '" + v + "'");
}

std::uint64_t parse_u64(const std::string& flag, const std::string& v) {
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos)
    throw UsageError(flag + " takes a non-negative integer, got '" + v + "'");
  errno = 0;
  const unsigned long long n = std::strtoull(v.c_str(), nullptr, 10);
  if (errno == ERANGE) throw UsageError(flag + " value '" + v + "' is out of range");
  return n;
}

// The flags `sgt transform` and `sgt audit` share: --threads N and --precision P. Returns whether
// `a` was one of them (and consumed its value).
template <class Value>
bool parse_run_flag(const std::string& a, Value&& value, std::size_t& threads,
                    sgt::Precision& precision) {
  if (a == "--threads") {
    threads = static_cast<std::size_t>(parse_u64(a, value()));
    if (threads == 0 || threads > 1024) throw UsageError("--threads must be between 1 and 1024");
    return true;
  }
  if (a == "--precision") {
    precision = parse_precision(value());
    return true;
  }
  return false;
}

// What `sgt transform` writes (docs/output_formats.md).
enum class OutputFormat { Safetensors, Torch, VllmCompletions };

// A command's one positional argument, MODEL_DIR; anything else that is not a known flag is an
// error.
void take_model_dir(const std::string& a, std::string& dir) {
  if (!a.empty() && a[0] == '-') throw UsageError("unknown option " + a);
  if (!dir.empty()) throw UsageError("unexpected argument '" + a + "'");
  dir = a;
}

// Where the request comes from: IN.json (ids and masks made elsewhere), or text / a chat that the
// model directory's tokenizer (and chat template) turn into ids and a noise mask.
struct PromptArgs {
  std::string input, text, chat;
  bool have_text = false, no_special_tokens = false, add_generation_prompt = false,
       transform_all_tokens = false, no_protect_tool_schemas = false;
  std::vector<std::string> protect_roles;  // empty: every role
};

std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= list.size()) {
    const std::size_t comma = std::min(list.find(',', at), list.size());
    if (comma == at) throw UsageError("--protect-roles takes a comma-separated list of role names");
    out.push_back(list.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

// Takes a's prompt flag (and its value) if it is one; false if `a` is not a prompt flag.
template <class Value>
bool parse_prompt_flag(const std::string& a, Value&& value, PromptArgs& p) {
  if (a == "--input") {
    p.input = value();
  } else if (a == "--text") {
    p.text = value();
    p.have_text = true;
  } else if (a == "--chat") {
    p.chat = value();
  } else if (a == "--no-special-tokens") {
    p.no_special_tokens = true;
  } else if (a == "--add-generation-prompt") {
    p.add_generation_prompt = true;
  } else if (a == "--transform-all-tokens") {
    p.transform_all_tokens = true;
  } else if (a == "--protect-roles") {
    p.protect_roles = split_commas(value());
  } else if (a == "--no-protect-tool-schemas") {
    p.no_protect_tool_schemas = true;
  } else {
    return false;
  }
  return true;
}

void check_prompt_args(const PromptArgs& p, bool allow_input, const char* command) {
  const int sources = int(!p.input.empty()) + int(p.have_text) + int(!p.chat.empty());
  const std::string choices = allow_input ? "--input IN.json, --text TEXT or --chat CHAT.json"
                                          : "--text TEXT or --chat CHAT.json";
  if (sources != 1) throw UsageError(std::string(command) + " needs exactly one of " + choices);
  if (!p.input.empty() && !allow_input) throw UsageError(std::string(command) + " takes no --input");
  if (!p.input.empty() && (p.no_special_tokens || p.add_generation_prompt || p.transform_all_tokens))
    throw UsageError("--no-special-tokens, --add-generation-prompt and --transform-all-tokens need "
                     "--text or --chat");
  if (p.have_text && p.add_generation_prompt)
    throw UsageError("--add-generation-prompt needs --chat");
  if (!p.chat.empty() && p.no_special_tokens)
    throw UsageError("--no-special-tokens needs --text (a chat template writes its own)");
  if (p.chat.empty() && (!p.protect_roles.empty() || p.no_protect_tool_schemas))
    throw UsageError("--protect-roles and --no-protect-tool-schemas need --chat");
}

#if SGT_HAVE_TEXT
// Text or a chat, through MODEL_DIR's tokenizer.json (and tokenizer_config.json's template).
sgt::text::EncodedPrompt encode_prompt(const std::string& dir, const PromptArgs& p) {
  const sgt::text::Tokenizer tokenizer = sgt::text::Tokenizer::load(dir + "/tokenizer.json");
  sgt::text::EncodedPrompt e;
  if (p.have_text) {
    e = sgt::text::encode_text(tokenizer, p.text, !p.no_special_tokens);
  } else {
    sgt::text::ChatMaskPolicy policy;
    policy.protected_roles = p.protect_roles;
    policy.protect_tool_schemas = !p.no_protect_tool_schemas;
    e = sgt::text::encode_chat_file(dir, tokenizer, p.chat, p.add_generation_prompt, policy);
  }
  if (p.transform_all_tokens) sgt::text::protect_all_tokens(e);
  return e;
}
#endif

// The request: IN.json as it is, or text / a chat encoded with the model's tokenizer.
sgt::TransformInput load_request(const std::string& dir, const PromptArgs& p) {
  if (!p.input.empty()) return sgt::load_transform_input(p.input);
#if SGT_HAVE_TEXT
  return encode_prompt(dir, p).input;
#else
  (void)dir;
  throw sgt::Error("this sgt was built without the text front end (SGT_TEXT=OFF): use --input");
#endif
}

// `sgt transform`'s command line, parsed and checked for consistency.
struct TransformArgs {
  PromptArgs prompt;
  std::string dir, output, noise_path, rng;
  bool have_seed = false, dump_intermediates = false;
  std::uint64_t seed = 0;
  std::size_t threads = 0;  // 0 = all cores
  sgt::AttentionAlgorithm attention = sgt::AttentionAlgorithm::Auto;
  sgt::Precision precision = sgt::Precision::Auto;
  OutputFormat format = OutputFormat::Safetensors;
  sgt::DType output_dtype = sgt::DType::F32;  // default: see parse_transform_args
  std::string model_name;                     // vllm-completions; default: MODEL_DIR's base name
  std::uint64_t max_tokens = 16;
};

// MODEL_DIR's last path component ("models/demo/" -> "demo").
std::string directory_base_name(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const std::size_t slash = dir.find_last_of('/');
  return slash == std::string::npos ? dir : dir.substr(slash + 1);
}

TransformArgs parse_transform_args(const std::vector<std::string>& args) {
  TransformArgs t;
  std::optional<sgt::DType> dtype;
  bool have_max_tokens = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw UsageError(a + " needs a value");
      return args[++i];
    };
    if (parse_prompt_flag(a, value, t.prompt)) {
    } else if (a == "--output") {
      t.output = value();
    } else if (a == "--noise") {
      t.noise_path = value();
    } else if (a == "--seed") {
      t.seed = parse_u64(a, value());
      t.have_seed = true;
    } else if (a == "--rng") {
      t.rng = value();
      if (t.rng != "secure" && t.rng != "torch")
        throw UsageError("--rng must be secure or torch, got '" + t.rng + "'");
    } else if (parse_run_flag(a, value, t.threads, t.precision)) {
    } else if (a == "--attention") {
      const std::string v = value();
      if (v == "sdpa")
        t.attention = sgt::AttentionAlgorithm::Sdpa;
      else if (v == "flash")
        t.attention = sgt::AttentionAlgorithm::Flash;
      else
        throw UsageError("--attention must be sdpa or flash, got '" + v + "'");
    } else if (a == "--dump-intermediates") {
      t.dump_intermediates = true;
    } else if (a == "--format") {
      const std::string v = value();
      if (v == "safetensors")
        t.format = OutputFormat::Safetensors;
      else if (v == "torch")
        t.format = OutputFormat::Torch;
      else if (v == "vllm-completions")
        t.format = OutputFormat::VllmCompletions;
      else
        throw UsageError("--format must be safetensors, torch or vllm-completions, got '" + v +
                         "'");
    } else if (a == "--output-dtype") {
      const std::string v = value();
      if (v == "f32")
        dtype = sgt::DType::F32;
      else if (v == "bf16")
        dtype = sgt::DType::BF16;
      else if (v == "f16")
        dtype = sgt::DType::F16;
      else
        throw UsageError("--output-dtype must be f32, bf16 or f16, got '" + v + "'");
    } else if (a == "--model-name") {
      t.model_name = value();
      if (t.model_name.empty()) throw UsageError("--model-name must not be empty");
    } else if (a == "--max-tokens") {
      t.max_tokens = parse_u64(a, value());
      if (t.max_tokens == 0) throw UsageError("--max-tokens must be at least 1");
      have_max_tokens = true;
    } else {
      take_model_dir(a, t.dir);
    }
  }
  if (t.dir.empty()) throw UsageError("transform needs MODEL_DIR");
  check_prompt_args(t.prompt, true, "transform");
  if (t.output.empty()) throw UsageError("transform needs --output OUT");
  // Safetensors keeps today's exact f32 by default; the server formats default to bf16, the dtype
  // servers run models in (vLLM casts to the model's dtype anyway), at half the payload.
  t.output_dtype =
      dtype.value_or(t.format == OutputFormat::Safetensors ? sgt::DType::F32 : sgt::DType::BF16);
  if (t.dump_intermediates && t.format != OutputFormat::Safetensors)
    throw UsageError("--dump-intermediates needs --format safetensors");
  if (t.format != OutputFormat::VllmCompletions && (!t.model_name.empty() || have_max_tokens))
    throw UsageError("--model-name and --max-tokens need --format vllm-completions");
  if (t.format == OutputFormat::VllmCompletions && t.model_name.empty())
    t.model_name = directory_base_name(t.dir);
  if (!t.noise_path.empty() && (t.have_seed || !t.rng.empty()))
    throw UsageError("--noise gives eps itself: it cannot be combined with --seed or --rng");
  if (t.rng == "torch" && !t.have_seed) throw UsageError("--rng torch needs --seed N");
  if (t.rng == "secure" && t.have_seed)
    throw UsageError("--rng secure takes no seed: it is keyed from the OS");
  return t;
}

// Opens NOISE.safetensors and points the options at its F32 tensor `noise`; the library checks its
// shape against the request (Transform::run). The file must outlive the run.
std::unique_ptr<sgt::SafetensorsFile> load_injected_noise(const std::string& path,
                                                          sgt::RunOptions& options) {
  auto file = std::make_unique<sgt::SafetensorsFile>(path);
  try {
    if (!file->contains("noise")) throw sgt::Error("has no tensor 'noise'");
    const sgt::AnyTensorView n = file->tensor("noise");
    if (n.dtype() != sgt::DType::F32)
      throw sgt::Error("must be F32, is " + std::string(sgt::dtype_name(n.dtype())))
          .at_tensor("noise");
    options.noise = sgt::NoiseSource::Injected;
    options.injected_noise = n.as<float>();
  } catch (sgt::Error& e) {
    e.at_file(path);
    throw;
  }
  return file;
}

// Writes the result to `path`: the protected embeddings, and with --dump-intermediates what they
// were made of. The one place an output format is chosen; every writer leaves no partial file.
//   safetensors: "transformed" [B, S, H] (padding rows included, as the transform returns them);
//   torch: torch.save of one (T, H) tensor for B = 1, of a list of (T_b, H) tensors for B > 1;
//   vllm-completions: the request body, one prompt_embeds string per sequence.
// The server formats drop padding rows (attention_mask 0): a server is sent only real tokens.
void write_result(const TransformArgs& args, const sgt::TransformInput& in,
                  const sgt::TransformResult& r) {
  const sgt::DType dtype = args.output_dtype;
  if (args.format == OutputFormat::Safetensors) {
    const std::vector<std::uint64_t> shape{r.batch, r.seq_len, r.hidden};
    sgt::SafetensorsWriter writer;
    writer.add_from_f32("transformed", dtype, shape, r.transformed.data());
    if (args.dump_intermediates) {
      writer.add_from_f32("embeddings", dtype, shape, r.embeddings.data());
      writer.add_from_f32("mean", dtype, shape, r.mean.data());
      writer.add_from_f32("std", dtype, shape, r.sigma.data());
      writer.add_from_f32("noise", dtype, shape, r.noise.data());
    }
    writer.write(args.output);
    return;
  }
  const auto rows =
      sgt::real_token_rows(r.transformed, r.batch, r.seq_len, r.hidden, in.attention_mask);
  std::vector<sgt::EncodedTensor> sequences;
  for (const auto& row : rows)
    sequences.push_back(
        sgt::encode_tensor(dtype, {r.hidden ? row.size() / r.hidden : 0, r.hidden}, row.data()));
  if (args.format == OutputFormat::Torch) {
    if (sequences.size() == 1)
      sgt::write_torch_file(args.output, sequences[0]);
    else
      sgt::write_torch_file(args.output, sequences);
  } else {
    sgt::write_vllm_completions_body(args.output, {args.model_name, args.max_tokens}, sequences);
  }
}

// How much of the prompt is protected and how far the protected embeddings moved.
// The clean embeddings are looked up again one row at a time, so that a transform call need not
// keep a copy of all of them (keep_intermediates) just for this line.
void print_summary(const TransformArgs& args, const sgt::Transform& model,
                   const sgt::TransformInput& in, const sgt::RunOptions& options,
                   const sgt::TransformResult& r, double load_ms, double run_ms,
                   std::size_t threads, sgt::Precision precision) {
  const std::size_t H = r.hidden;
  std::size_t real = 0, protected_tokens = 0;
  double dist = 0, norm = 0;
  sgt::WipedVector<float> clean(H);
  for (std::size_t t = 0; t < r.batch * r.seq_len; ++t) {
    const bool is_real = in.attention_mask.empty() || in.attention_mask[t];
    real += is_real;
    if (!is_real || !in.noise_mask[t]) continue;
    ++protected_tokens;
    sgt::kernels::embedding_lookup(model.embedding_table(), &in.input_ids[t], 1,
                                   sgt::TensorView<float>(clean.data(), {1, H}));
    double d2 = 0, n2 = 0;
    for (std::size_t i = 0; i < H; ++i) {
      const double d = double(r.transformed[t * H + i]) - double(clean[i]);
      d2 += d * d;
      n2 += double(clean[i]) * clean[i];
    }
    dist += std::sqrt(d2);
    norm += std::sqrt(n2);
  }
  const char* noise_name = options.noise == sgt::NoiseSource::Secure  ? "secure"
                           : options.noise == sgt::NoiseSource::Torch ? "torch-seeded"
                                                                      : "injected";
  std::printf("transformed [%zu, %zu, %zu] -> %s\n", r.batch, r.seq_len, r.hidden,
              args.output.c_str());
  std::printf("protected tokens: %zu of %zu real (%.0f%%), noise: %s\n", protected_tokens, real,
              real ? 100.0 * protected_tokens / real : 0.0, noise_name);
  if (protected_tokens)
    std::printf("mean L2 distance clean -> protected: %.4f (clean norm %.4f, ratio %.2f)\n",
                dist / protected_tokens, norm / protected_tokens, norm > 0 ? dist / norm : 0.0);
  std::printf("time: load %.1f ms, transform %.1f ms (%zu threads, %s, precision %s)\n", load_ms,
              run_ms, threads, sgt::kernels::default_kernel_table().isa,
              sgt::precision_name(precision));
}

// The output's folder must exist before anything runs: a typo in --output should not cost a model
// load and a transform. (The writers check again: the folder could vanish meanwhile.)
void check_output_folder(const std::string& output) {
  const std::filesystem::path folder = std::filesystem::path(output).parent_path();
  std::error_code ec;
  if (!folder.empty() && !std::filesystem::is_directory(folder, ec))
    throw sgt::Error("cannot create: the folder " + folder.string() + " does not exist")
        .at_file(output);
}

int cmd_transform(const std::vector<std::string>& argv) {
  const TransformArgs args = parse_transform_args(argv);
  check_output_folder(args.output);

  const auto t0 = std::chrono::steady_clock::now();
  const sgt::Transform model(args.dir);
  const sgt::TransformInput in = load_request(args.dir, args.prompt);

  sgt::RunOptions options;
  options.attention = args.attention;
  options.precision = args.precision;
  // Intermediates only when they are written: on a long prompt they are 4 more [S, H] buffers.
  options.keep_intermediates = args.dump_intermediates;
  std::unique_ptr<sgt::SafetensorsFile> noise_file;
  if (!args.noise_path.empty()) {
    noise_file = load_injected_noise(args.noise_path, options);
  } else if (args.have_seed) {
    options.noise = sgt::NoiseSource::Torch;
    options.seed = args.seed;
  }
  sgt::ThreadPool pool(args.threads);
  options.pool = &pool;

  const auto t1 = std::chrono::steady_clock::now();
  sgt::TransformResult r;
  try {
    r = model.run(in, options);
  } catch (sgt::Error& e) {
    if (noise_file && e.tensor() == "noise") e.at_file(args.noise_path);
    throw;
  }
  const auto t2 = std::chrono::steady_clock::now();

  write_result(args, in, r);
  using ms = std::chrono::duration<double, std::milli>;
  print_summary(args, model, in, options, r, ms(t1 - t0).count(), ms(t2 - t1).count(),
                pool.num_threads(),
                model.resolve_precision(options.precision));
  return 0;
}

// `sgt tokenize`: the request text or a chat would make, as IN.json plus each token's byte span.
int cmd_tokenize(const std::vector<std::string>& argv) {
  std::string dir;
  PromptArgs p;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argv.size()) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (!parse_prompt_flag(a, value, p)) take_model_dir(a, dir);
  }
  if (dir.empty()) throw UsageError("tokenize needs MODEL_DIR");
  check_prompt_args(p, false, "tokenize");
#if SGT_HAVE_TEXT
  const sgt::text::EncodedPrompt e = encode_prompt(dir, p);
  nlohmann::ordered_json j;
  j["input_ids"] = e.input.input_ids;
  j["noise_mask"] = e.input.noise_mask;
  nlohmann::ordered_json offsets = nlohmann::ordered_json::array();
  for (const auto& o : e.offsets) offsets.push_back({o.begin, o.end});
  j["offsets"] = offsets;
  std::printf("%s\n", j.dump().c_str());
  return 0;
#else
  throw sgt::Error("this sgt was built without the text front end (SGT_TEXT=OFF)");
#endif
}

// `sgt audit`'s command line.
struct AuditArgs {
  PromptArgs prompt;
  std::string dir, noise_draws, plot, base;
  std::uint64_t draws = 16, base_new_tokens = 16;
  bool have_draws = false, json_only = false, have_base_new_tokens = false;
  std::size_t threads = 0;  // 0 = all cores
  sgt::Precision precision = sgt::Precision::Auto;
};

AuditArgs parse_audit_args(const std::vector<std::string>& args) {
  AuditArgs t;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw UsageError(a + " needs a value");
      return args[++i];
    };
    if (parse_prompt_flag(a, value, t.prompt)) {
    } else if (a == "--draws") {
      t.draws = parse_u64(a, value());
      if (t.draws == 0 || t.draws > 100000)
        throw UsageError("--draws must be between 1 and 100000");
      t.have_draws = true;
    } else if (parse_run_flag(a, value, t.threads, t.precision)) {
    } else if (a == "--noise-draws") {
      t.noise_draws = value();
    } else if (a == "--json-only") {
      t.json_only = true;
    } else if (a == "--plot") {
      t.plot = value();
      if (t.plot.empty()) throw UsageError("--plot needs a file name");
    } else if (a == "--base") {
      t.base = value();
      if (t.base.empty()) throw UsageError("--base needs a directory");
    } else if (a == "--base-new-tokens") {
      t.base_new_tokens = parse_u64(a, value());
      if (t.base_new_tokens > 4096) throw UsageError("--base-new-tokens must be at most 4096");
      t.have_base_new_tokens = true;
    } else {
      take_model_dir(a, t.dir);
    }
  }
  if (t.dir.empty()) throw UsageError("audit needs MODEL_DIR");
  check_prompt_args(t.prompt, true, "audit");
  if (t.have_draws && !t.noise_draws.empty())
    throw UsageError("--noise-draws gives the draws itself: it cannot be combined with --draws");
  if (t.have_base_new_tokens && t.base.empty())
    throw UsageError("--base-new-tokens needs --base BASE_DIR");
  return t;
}

// A JSON number, or null for a value that only protected tokens have.
nlohmann::ordered_json protected_value(bool is_protected, double v) {
  return is_protected ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

// --plot: a heat map of protected tokens (rows, in prompt order) x draws (columns), kCell pixels a
// cell. Red: the draw's L2 nearest neighbour is the original token (recovered). Otherwise yellow
// (rank 1) to dark blue (rank vocab_size - 1), on a log scale of the original id's L2 rank.
void write_heat_map(const std::string& path, const sgt::AuditReport& r) {
  constexpr std::size_t kCell = 8;
  std::vector<const sgt::TokenAudit*> rows;
  for (const auto& a : r.tokens)
    if (a.is_protected) rows.push_back(&a);
  if (rows.empty()) throw sgt::Error("nothing to plot: no token is protected").at_file(path);
  const std::size_t width = r.draws * kCell, height = rows.size() * kCell;
  std::vector<std::uint8_t> rgb(width * height * 3);
  const double log_vocab = std::log(double(std::max<std::size_t>(r.vocab_size, 2)));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    for (std::size_t d = 0; d < r.draws; ++d) {
      const std::uint64_t rank = rows[i]->rank_l2[d];
      double c[3] = {200, 30, 30};
      if (rank > 0) {
        const double f = std::min(1.0, std::log(double(rank) + 1.0) / log_vocab);
        const double lo[3] = {255, 220, 80}, hi[3] = {30, 60, 160};
        for (int k = 0; k < 3; ++k) c[k] = lo[k] + f * (hi[k] - lo[k]);
      }
      for (std::size_t y = i * kCell; y < (i + 1) * kCell; ++y)
        for (std::size_t x = d * kCell; x < (d + 1) * kCell; ++x) {
          const bool grid = y % kCell == kCell - 1 || x % kCell == kCell - 1;
          for (int k = 0; k < 3; ++k)
            rgb[(y * width + x) * 3 + k] = grid ? 255 : static_cast<std::uint8_t>(c[k] + 0.5);
        }
    }
  }
  sgt::write_png_rgb(path, width, height, rgb);
}

// `sgt audit`: nearest-neighbour recovery of the protected tokens over N draws (audit/recovery_audit.hpp),
// and with --base what the noise costs the base model (audit/utility_audit.hpp).
// The JSON report goes to stdout; a table for people to stderr, so stdout stays one JSON document.
int cmd_audit(const std::vector<std::string>& argv) {
  const AuditArgs args = parse_audit_args(argv);
  if (!args.plot.empty()) check_output_folder(args.plot);
  const sgt::Transform model(args.dir);
  const sgt::TransformInput in = load_request(args.dir, args.prompt);
#if SGT_HAVE_TEXT
  std::optional<sgt::text::Tokenizer> tokenizer;
  if (std::filesystem::exists(args.dir + "/tokenizer.json"))
    tokenizer = sgt::text::Tokenizer::load(args.dir + "/tokenizer.json");
#endif

  sgt::ThreadPool pool(args.threads);
  sgt::AuditOptions options;
  options.pool = &pool;
  options.draws = static_cast<std::size_t>(args.draws);
  options.precision = args.precision;
  // --base: the base model runs each draw's protected prompt as the audit makes it.
  std::optional<sgt::CausalLM> base;
  std::optional<sgt::UtilityAudit> utility;
  if (!args.base.empty()) {
    base.emplace(sgt::CausalLM::load(args.base));
    sgt::check_base_compatible(model, *base);
    sgt::UtilityOptions u;
    u.new_tokens = static_cast<std::size_t>(args.base_new_tokens);
    u.stop_tokens = sgt::load_eos_token_ids(args.base);
    u.run.pool = &pool;
    u.run.precision = args.precision;
    utility.emplace(*base, in, u);
    options.on_draw = [&](std::size_t, sgt::TensorView<const float> protected_embeds) {
      utility->add_draw(protected_embeds);
    };
  }
  std::unique_ptr<sgt::SafetensorsFile> noise_file;
  sgt::AuditReport report;
  try {
    if (!args.noise_draws.empty()) {
      sgt::RunOptions unused;
      noise_file = load_injected_noise(args.noise_draws, unused);
      options.injected_draws = unused.injected_noise;
    }
    report = sgt::audit_transform(model, in, options);
  } catch (sgt::Error& e) {
    if (noise_file && e.tensor() == "noise") e.at_file(args.noise_draws);
    throw;
  }

  // Text of a token or a sequence, when the model directory has a tokenizer; null otherwise.
  auto text_of = [&](const std::vector<std::int32_t>& ids) -> nlohmann::ordered_json {
#if SGT_HAVE_TEXT
    if (tokenizer) return tokenizer->decode(ids, false);
#endif
    (void)ids;
    return nullptr;
  };

  nlohmann::ordered_json j;
  j["draws"] = report.draws;
  j["precision"] = sgt::precision_name(model.resolve_precision(args.precision));
  j["noise"] = args.noise_draws.empty() ? "secure" : "injected";
  j["vocab_size"] = report.vocab_size;
  nlohmann::ordered_json tokens = nlohmann::ordered_json::array();
  for (std::size_t t = 0; t < report.tokens.size(); ++t) {
    const sgt::TokenAudit& a = report.tokens[t];
    nlohmann::ordered_json tj;
    if (report.batch > 1) tj["row"] = t / report.seq_len;
    tj["position"] = t % report.seq_len;
    tj["id"] = a.id;
    tj["text"] = text_of({static_cast<std::int32_t>(a.id)});
    tj["protected"] = a.is_protected;
    tj["recovery_l2"] = protected_value(a.is_protected, a.recovery_l2);
    tj["recovery_cosine"] = protected_value(a.is_protected, a.recovery_cosine);
    tj["mean_rank_l2"] = protected_value(a.is_protected, a.mean_rank_l2);
    tj["mean_cosine"] = protected_value(a.is_protected, a.mean_cosine);
    tj["nearest_l2"] = a.nearest_l2;
    tj["nearest_cosine"] = a.nearest_cosine;
    tj["rank_l2"] = a.rank_l2;
    tokens.push_back(tj);
  }
  nlohmann::ordered_json overall;
  overall["protected_tokens"] = report.protected_tokens;
  overall["recovery_l2"] = report.recovery_l2;
  overall["recovery_cosine"] = report.recovery_cosine;
  overall["mean_rank_l2"] = report.mean_rank_l2;
  overall["mean_cosine"] = report.mean_cosine;
  overall["sigma"] = {
      {"min", report.sigma_min}, {"mean", report.sigma_mean}, {"max", report.sigma_max}};
  j["overall"] = overall;
  j["tokens"] = tokens;
  nlohmann::ordered_json sequences = nlohmann::ordered_json::array();
  for (std::size_t b = 0; b < report.batch; ++b) {
    std::vector<std::int32_t> original;
    for (std::size_t s = 0; s < report.seq_len; ++s) {
      const std::size_t t = b * report.seq_len + s;
      if (in.attention_mask.empty() || in.attention_mask[t])
        original.push_back(static_cast<std::int32_t>(in.input_ids[t]));
    }
    const auto reconstructed = report.reconstructed_ids(0, b, in);
    sequences.push_back({{"original_ids", original},
                         {"reconstructed_ids", reconstructed},
                         {"original", text_of(original)},
                         {"reconstructed", text_of(reconstructed)}});
  }
  j["sequences"] = sequences;  // reconstructed: draw 0's L2 nearest neighbours

#if SGT_HAVE_TEXT
  std::optional<sgt::text::Tokenizer> base_tokenizer;
  if (base && std::filesystem::exists(args.base + "/tokenizer.json"))
    base_tokenizer = sgt::text::Tokenizer::load(args.base + "/tokenizer.json");
#endif
  // Text through BASE_DIR's tokenizer (the answers are the base model's); null without one.
  auto base_text = [&](const std::vector<std::int64_t>& ids,
                       bool skip_special) -> nlohmann::ordered_json {
#if SGT_HAVE_TEXT
    if (base_tokenizer)
      return base_tokenizer->decode(std::vector<std::int32_t>(ids.begin(), ids.end()),
                                    skip_special);
#endif
    (void)ids;
    (void)skip_special;
    return nullptr;
  };
  std::string clean_answer, protected_answer;
  if (utility) {
    const sgt::UtilityReport& u = utility->report();
    nlohmann::ordered_json uj;
    uj["base"] = args.base;
    uj["precision"] = sgt::precision_name(base->resolve_precision(args.precision));
    uj["draws"] = u.draws;
    uj["new_tokens"] = args.base_new_tokens;
    uj["overall"] = {{"reached_positions", u.reached_positions},
                     {"mean_kl", u.mean_kl},
                     {"top1_agreement", u.top1_agreement},
                     {"mean_rank", u.mean_rank}};
    nlohmann::ordered_json positions = nlohmann::ordered_json::array();
    for (std::size_t t = 0; t < u.positions.size(); ++t) {
      const sgt::PositionUtility& p = u.positions[t];
      positions.push_back({{"position", t},
                           {"clean_top1", p.clean_top1},
                           {"clean_top1_text", base_text({p.clean_top1}, false)},
                           {"reached", p.reached},
                           {"mean_kl", p.mean_kl},
                           {"top1_agreement", p.top1_agreement},
                           {"mean_rank", p.mean_rank},
                           {"kl", p.kl},
                           {"protected_top1", p.protected_top1},
                           {"rank", p.rank}});
    }
    uj["positions"] = positions;
    const nlohmann::ordered_json clean_text = base_text(u.clean_answer, true),
                                 protected_text = base_text(u.protected_answer, true);
    uj["answers"] = {
        {"clean", {{"ids", u.clean_answer}, {"text", clean_text}}},
        {"protected", {{"draw", 0}, {"ids", u.protected_answer}, {"text", protected_text}}}};
    j["utility"] = uj;
    if (clean_text.is_string()) clean_answer = clean_text.get<std::string>();
    if (protected_text.is_string()) protected_answer = protected_text.get<std::string>();
  }
  if (!args.plot.empty()) write_heat_map(args.plot, report);  // before stdout: all or nothing
  std::printf("%s\n",
              j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());

  if (args.json_only) return 0;
  std::fprintf(stderr, "%5s %8s %-16s %6s %6s %9s %7s\n", "pos", "id", "text", "recL2", "recCos",
               "rankL2", "cos");
  for (std::size_t t = 0; t < report.tokens.size(); ++t) {
    const sgt::TokenAudit& a = report.tokens[t];
    const nlohmann::ordered_json text = tokens[t]["text"];
    std::string piece = text.is_string() ? text.get<std::string>() : "";
    for (char& c : piece)
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    if (piece.size() > 16) piece = piece.substr(0, 16);
    if (!a.is_protected) {
      std::fprintf(stderr, "%5zu %8lld %-16s %6s\n", t % report.seq_len,
                   static_cast<long long>(a.id), piece.c_str(), "clean");
      continue;
    }
    std::fprintf(stderr, "%5zu %8lld %-16s %6.2f %6.2f %9.1f %7.3f\n", t % report.seq_len,
                 static_cast<long long>(a.id), piece.c_str(), a.recovery_l2, a.recovery_cosine,
                 a.mean_rank_l2, a.mean_cosine);
  }
  std::fprintf(stderr,
               "%zu protected tokens, %zu draws: recovery L2 %.3f, cosine %.3f, mean L2 rank %.1f, "
               "mean cosine %.3f; sigma min %.4g mean %.4g max %.4g\n",
               report.protected_tokens, report.draws, report.recovery_l2, report.recovery_cosine,
               report.mean_rank_l2, report.mean_cosine, report.sigma_min, report.sigma_mean,
               report.sigma_max);
  if (utility) {
    const sgt::UtilityReport& u = utility->report();
    auto flat = [](std::string text) {  // one line each, whatever a random model answers
      for (char& c : text)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
      return text;
    };
    std::fprintf(stderr,
                 "utility for %s, %zu positions from the first protected token, %zu draws: "
                 "KL(clean||protected) %.4f nats, top-1 agreement %.3f, mean rank of the clean "
                 "top-1 %.1f\n",
                 args.base.c_str(), u.reached_positions, u.draws, u.mean_kl, u.top1_agreement,
                 u.mean_rank);
    std::fprintf(stderr, "  clean answer:     %s\n", flat(clean_answer).c_str());
    std::fprintf(stderr, "  protected answer: %s  (draw 0)\n", flat(protected_answer).c_str());
  }
  return 0;
}

// `sgt generate`'s command line.
struct GenerateArgs {
  PromptArgs prompt;
  std::string dir, protect_dir, inputs_embeds;
  std::size_t max_new_tokens = 32;
  sgt::SamplingOptions sampling;
  bool have_seed = false, have_top_p = false, have_noise_seed = false, json = false;
  std::uint64_t noise_seed = 0;
  std::size_t threads = 0;
  sgt::Precision precision = sgt::Precision::Auto;
};

double parse_double(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE || !std::isfinite(d))
    throw UsageError(flag + " needs a number, got '" + v + "'");
  return d;
}

GenerateArgs parse_generate_args(const std::vector<std::string>& args) {
  GenerateArgs g;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw UsageError(a + " needs a value");
      return args[++i];
    };
    if (parse_prompt_flag(a, value, g.prompt)) {
    } else if (parse_run_flag(a, value, g.threads, g.precision)) {
    } else if (a == "--protect") {
      g.protect_dir = value();
    } else if (a == "--inputs-embeds") {
      g.inputs_embeds = value();
    } else if (a == "--noise-seed") {
      g.noise_seed = parse_u64(a, value());
      g.have_noise_seed = true;
    } else if (a == "--max-new-tokens") {
      const std::uint64_t n = parse_u64(a, value());
      if (n == 0 || n > (1u << 20)) throw UsageError("--max-new-tokens must be between 1 and 1048576");
      g.max_new_tokens = static_cast<std::size_t>(n);
    } else if (a == "--temperature") {
      g.sampling.temperature = parse_double(a, value());
      if (g.sampling.temperature < 0) throw UsageError("--temperature must be >= 0");
    } else if (a == "--top-p") {
      g.sampling.top_p = parse_double(a, value());
      if (!(g.sampling.top_p > 0 && g.sampling.top_p <= 1))
        throw UsageError("--top-p must be in (0, 1]");
      g.have_top_p = true;
    } else if (a == "--seed") {
      g.sampling.seed = parse_u64(a, value());
      g.have_seed = true;
    } else if (a == "--json") {
      g.json = true;
    } else {
      take_model_dir(a, g.dir);
    }
  }
  if (g.dir.empty()) throw UsageError("generate needs BASE_DIR");
  if (!g.inputs_embeds.empty()) {
    if (!g.prompt.input.empty() || g.prompt.have_text || !g.prompt.chat.empty() ||
        !g.protect_dir.empty())
      throw UsageError("--inputs-embeds is the whole prompt: it takes no --text, --chat or --protect");
  } else {
    check_prompt_args(g.prompt, false, "generate");
  }
  if (g.sampling.temperature == 0 && (g.have_seed || g.have_top_p))
    throw UsageError("--seed and --top-p shape sampling: they need --temperature > 0");
  if (g.have_noise_seed && g.protect_dir.empty())
    throw UsageError("--noise-seed seeds the protection's noise: it needs --protect SGT_DIR");
  return g;
}

// --inputs-embeds FILE: the prompt as embeddings a server would receive, the safetensors file
// `sgt transform` writes (tensor "transformed", [1, S, H] or [S, H], F32, BF16 or F16), widened to
// f32 exactly.
sgt::WipedVector<float> read_inputs_embeds(const std::string& path, std::size_t hidden,
                                           std::size_t& seq_len) {
  try {
    const sgt::SafetensorsFile file(path);
    if (!file.contains("transformed")) throw sgt::Error("has no tensor 'transformed'");
    const sgt::AnyTensorView t = file.tensor("transformed");
    const bool shape_ok = (t.rank() == 3 && t.dim(0) == 1) || t.rank() == 2;
    if (!shape_ok || t.dim(t.rank() - 1) != hidden || t.size() == 0)
      throw sgt::Error("must be [1, S, " + std::to_string(hidden) + "] or [S, " +
                       std::to_string(hidden) + "] (the base model's hidden size), is " +
                       t.shape_string())
          .at_tensor("transformed");
    seq_len = t.size() / hidden;
    sgt::WipedVector<float> out(t.size());
    auto widen = [&](auto typed) {
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = sgt::to_float(typed.data()[i]);
    };
    switch (t.dtype()) {
      case sgt::DType::F32: widen(t.as<float>()); break;
      case sgt::DType::BF16: widen(t.as<sgt::bfloat16>()); break;
      case sgt::DType::F16: widen(t.as<sgt::float16>()); break;
      default:
        throw sgt::Error("must be F32, BF16 or F16, is " + std::string(sgt::dtype_name(t.dtype())))
            .at_tensor("transformed");
    }
    for (std::size_t i = 0; i < out.size(); ++i)
      if (!std::isfinite(out[i]))
        throw sgt::Error("holds a non-finite value at element " + std::to_string(i))
            .at_tensor("transformed");
    return out;
  } catch (sgt::Error& e) {
    e.at_file(path);
    throw;
  }
}

// `sgt generate`: BASE_DIR's tokenizer makes the prompt's ids (and noise mask); with --protect
// the SGT model turns them into protected embeddings; BASE_DIR's causal LM answers from the ids or
// those embeddings. The answer streams to stdout as it is generated (or, with --json, one JSON
// document at the end); a summary goes to stderr.
int cmd_generate(const std::vector<std::string>& argv) {
  const GenerateArgs args = parse_generate_args(argv);
#if SGT_HAVE_TEXT
  using clock = std::chrono::steady_clock;
  using ms = std::chrono::duration<double, std::milli>;
  const auto t0 = clock::now();
  const sgt::CausalLM lm = sgt::CausalLM::load(args.dir);
  const sgt::text::Tokenizer tokenizer = sgt::text::Tokenizer::load(args.dir + "/tokenizer.json");
  PromptArgs prompt_args = args.prompt;
  // A chat is answered: the template's assistant header goes last.
  if (!prompt_args.chat.empty()) prompt_args.add_generation_prompt = true;
  sgt::text::EncodedPrompt prompt;
  sgt::WipedVector<float> stored_embeds;
  const std::size_t H = lm.hidden_size();
  if (args.inputs_embeds.empty()) {
    prompt = encode_prompt(args.dir, prompt_args);
  } else {
    stored_embeds = read_inputs_embeds(args.inputs_embeds, H, prompt.input.seq_len);
    prompt.input.batch = 1;
  }
  const std::size_t S = prompt.input.seq_len;
  if (S == 0) throw sgt::Error("the prompt has no tokens");
  for (std::size_t s = 0; s < prompt.input.input_ids.size(); ++s)
    if (prompt.input.input_ids[s] < 0 ||
        static_cast<std::uint64_t>(prompt.input.input_ids[s]) >= lm.vocab_size())
      throw sgt::Error("the tokenizer's id " + std::to_string(prompt.input.input_ids[s]) +
                       " is outside the model's vocabulary (vocab_size " +
                       std::to_string(lm.vocab_size()) + ")")
          .at_file(args.dir + "/tokenizer.json")
          .at_position(static_cast<std::int64_t>(s));
  const double load_ms = ms(clock::now() - t0).count();

  sgt::ThreadPool pool(args.threads);
  sgt::GenerateOptions options;
  options.max_new_tokens = args.max_new_tokens;
  options.stop_tokens = sgt::load_eos_token_ids(args.dir);
  options.sampling = args.sampling;
  if (!sgt::TokenSampler(args.sampling).greedy() && !args.have_seed)
    sgt::fill_os_entropy(&options.sampling.seed, sizeof(options.sampling.seed));
  options.run.pool = &pool;
  options.run.precision = args.precision;

  sgt::LmInput in;
  in.batch = 1;
  in.seq_len = S;
  std::size_t protected_tokens = 0;
  sgt::TransformResult protected_prompt;
  double transform_ms = 0;
  if (!args.protect_dir.empty()) {
    const auto ts = clock::now();  // the SGT model's load included: it is the client's cost
    const sgt::Transform transform(args.protect_dir);
    if (transform.config().vocab_size != lm.vocab_size() || transform.hidden_size() != H)
      throw sgt::Error("the SGT model (vocab_size " + std::to_string(transform.config().vocab_size) +
                       ", hidden_size " + std::to_string(transform.hidden_size()) +
                       ") was not made for this base model (vocab_size " +
                       std::to_string(lm.vocab_size()) + ", hidden_size " + std::to_string(H) + ")")
          .at_file(args.protect_dir + "/config.json");
    sgt::RunOptions run;
    run.pool = &pool;
    run.precision = args.precision;
    if (args.have_noise_seed) {
      run.noise = sgt::NoiseSource::Torch;
      run.seed = args.noise_seed;
    }
    protected_prompt = transform.run(prompt.input, run);
    transform_ms = ms(clock::now() - ts).count();
    for (std::uint8_t m : prompt.input.noise_mask) protected_tokens += m != 0;
    in.inputs_embeds = sgt::TensorView<const float>(protected_prompt.transformed.data(), {1, S, H});
  } else if (!stored_embeds.empty()) {
    in.inputs_embeds = sgt::TensorView<const float>(stored_embeds.data(), {1, S, H});
  } else {
    in.input_ids = prompt.input.input_ids;
  }

  sgt::KvCache cache = lm.make_cache(1, S + args.max_new_tokens);
  sgt::LmWorkspace ws;
  sgt::text::DecodeStream stream(tokenizer, /*skip_special_tokens=*/true);
  std::vector<std::int32_t> new_ids;
  const auto t1 = clock::now();
  clock::time_point first_token;
  sgt::generate(lm, in, options, cache, ws, [&](std::size_t, std::int64_t id) {
    if (new_ids.empty()) first_token = clock::now();
    new_ids.push_back(static_cast<std::int32_t>(id));
    if (args.json) return;
    if (const std::optional<std::string> piece = stream.step(static_cast<std::int32_t>(id))) {
      std::fwrite(piece->data(), 1, piece->size(), stdout);
      std::fflush(stdout);
    }
  });
  const auto t2 = clock::now();
  const double prefill_ms = ms(first_token - t1).count(), decode_ms = ms(t2 - first_token).count();
  const bool stopped = !new_ids.empty() && std::find(options.stop_tokens.begin(),
                                                     options.stop_tokens.end(),
                                                     new_ids.back()) != options.stop_tokens.end();
  const char* precision = sgt::precision_name(lm.resolve_precision(args.precision));
  if (args.json) {
    nlohmann::ordered_json j;
    j["prompt_ids"] = args.inputs_embeds.empty() ? nlohmann::ordered_json(prompt.input.input_ids)
                                                 : nlohmann::ordered_json(nullptr);
    j["protected_tokens"] = args.protect_dir.empty() ? nlohmann::ordered_json(nullptr)
                                                     : nlohmann::ordered_json(protected_tokens);
    j["new_ids"] = new_ids;
    j["answer"] = tokenizer.decode(new_ids, true);
    j["stop"] = stopped ? "eos" : "max_new_tokens";
    j["sampling"] = sgt::TokenSampler(args.sampling).greedy()
                        ? nlohmann::ordered_json("greedy")
                        : nlohmann::ordered_json{{"temperature", options.sampling.temperature},
                                                 {"top_p", options.sampling.top_p},
                                                 {"seed", options.sampling.seed}};
    j["precision"] = precision;
    std::printf("%s\n",
                j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
  }
  char protection[512] = "clean";
  if (!args.inputs_embeds.empty())
    std::snprintf(protection, sizeof protection, "embeddings from %s", args.inputs_embeds.c_str());
  if (!args.protect_dir.empty())
    std::snprintf(protection, sizeof protection, "%zu protected by %s, transform %.1f ms",
                  protected_tokens, args.protect_dir.c_str(), transform_ms);
  std::fprintf(stderr,
               "%zu prompt tokens (%s), %zu new tokens (stop: %s); load %.1f ms, prefill %.1f ms, "
               "decode %.1f ms (%.1f tokens/s); %zu threads, %s, precision %s\n",
               S, protection, new_ids.size(), stopped ? "eos" : "max new tokens", load_ms,
               prefill_ms, decode_ms,
               new_ids.size() > 1 ? 1000.0 * double(new_ids.size() - 1) / decode_ms : 0.0,
               pool.num_threads(), sgt::kernels::default_kernel_table().isa, precision);
  return 0;
#else
  (void)args;
  throw sgt::Error("this sgt was built without the text front end (SGT_TEXT=OFF)");
#endif
}

// One line on stderr, whatever the message holds.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty()) throw UsageError("usage: sgt info|tokenize|transform|audit|generate MODEL_DIR ...");
    if (args[0] == "-h" || args[0] == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (args[0] == "info") {
      if (args.size() != 2) throw UsageError("info takes exactly one MODEL_DIR");
      return cmd_info(args[1]);
    }
    if (args[0] == "transform") return cmd_transform({args.begin() + 1, args.end()});
    if (args[0] == "tokenize") return cmd_tokenize({args.begin() + 1, args.end()});
    if (args[0] == "audit") return cmd_audit({args.begin() + 1, args.end()});
    if (args[0] == "generate") return cmd_generate({args.begin() + 1, args.end()});
    throw UsageError("unknown command '" + args[0] +
                     "' (info, tokenize, transform, audit, generate)");
  } catch (const UsageError& e) {
    std::fprintf(stderr, "sgt: %s (see sgt --help)\n", one_line(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sgt: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
}
