// The whole API in one program: load a model, protect a prompt, look at the result.
//   transform_prompt MODEL_DIR "some text"   (MODEL_DIR has the model's tokenizer.json)
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <sgt/sgt.hpp>
#include <sgt/text/chat/prompt_encoder.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR TEXT\n", argv[0]);
    return 2;
  }
  try {
    const sgt::Transform model(argv[1]);  // mmaps the weights, checks them against config.json
    const std::string dir = argv[1];
    const auto tokenizer = sgt::text::Tokenizer::load(dir + "/tokenizer.json");
    // Like tokenizer(text) in Python: BOS first (kept clean), every token of the text protected.
    const sgt::text::EncodedPrompt prompt = sgt::text::encode_text(tokenizer, argv[2], true);

    sgt::ThreadPool pool(2);  // threads are explicit: nothing runs in the background
    sgt::RunOptions options;
    options.pool = &pool;  // noise: fresh ChaCha20 keyed from the OS (the default)
    const sgt::TransformResult out = model.run(prompt.input, options);

    std::printf("%zu tokens -> protected embeddings [%zu, %zu, %zu]\n", prompt.input.seq_len, out.batch,
                out.seq_len, out.hidden);
    std::printf("first values: %.4f %.4f %.4f\n", out.transformed[0], out.transformed[1],
                out.transformed[2]);
  } catch (const sgt::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
