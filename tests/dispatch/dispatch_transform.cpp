// One transform, its output bits to a file: the program tests/dispatch/check_dispatch.sh builds
// twice over -- once with sgt::dispatch (baseline code, every instruction set's kernels) and once
// header-only per instruction set -- to check that a dispatched run gives exactly the bits of the
// header-only build of the instruction set it ran.
//
//   dispatch_transform MODEL_DIR SEQ_LEN f32|bf16|auto OUT.bin
//
// Prints the instruction set of the kernels that ran, and with `auto` the precision it became. The ids are fixed, the noise is torch's
// randn with seed 7 (the same on every x86-64 build), two threads.
#include <cstdio>
#include <cstdlib>
#include <string>

#include <sgt/sgt.hpp>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s MODEL_DIR SEQ_LEN f32|bf16|auto OUT.bin\n", argv[0]);
    return 2;
  }
  try {
    const sgt::Transform model(argv[1]);
    const std::size_t S = std::strtoul(argv[2], nullptr, 10);
    const std::string precision = argv[3];
    std::vector<std::int64_t> ids(S);
    for (std::size_t i = 0; i < S; ++i)
      ids[i] = static_cast<std::int64_t>((i * 7919 + 13) % model.config().vocab_size);
    sgt::ThreadPool pool(2);
    sgt::RunOptions options;
    options.pool = &pool;
    options.noise = sgt::NoiseSource::Torch;
    options.seed = 7;
    options.precision = precision == "bf16"   ? sgt::Precision::Bf16
                        : precision == "auto" ? sgt::Precision::Auto
                                              : sgt::Precision::F32;
    const sgt::TransformResult out = model.run(sgt::TransformInput::single(ids), options);
    std::FILE* f = std::fopen(argv[4], "wb");
    if (!f || std::fwrite(out.transformed.data(), sizeof(float), out.transformed.size(), f) !=
                  out.transformed.size())
      throw sgt::Error(std::string("cannot write ") + argv[4]);
    std::fclose(f);
    std::printf("kernels: %s\n", sgt::kernels::default_kernel_table().isa);
    if (options.precision == sgt::Precision::Auto)
      std::printf("precision auto: %s\n",
                  sgt::precision_name(model.resolve_precision(options.precision)));
  } catch (const sgt::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
