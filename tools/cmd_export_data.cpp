// `lowbit export-data --data PATH|synthetic --out DIR`: writes one split as DIR/x.npy (float32
// (N,3,32,32), normalised, no augmentation: the tensors `evaluate` feeds the model) and DIR/y.npy
// (int64), so PyTorch (bench/torch_interop.py) can evaluate on the very same inputs.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/npy.h"
#include "datasets/dataset.h"
#include "tools/commands.h"
#include "tools/trainer.h"

namespace lowbit {

int cmd_export_data(int argc, char** argv) {
  CLI::App app{"Write a split's normalised images and labels as x.npy / y.npy", "lowbit export-data"};
  std::string data_spec, split = "test", out;
  int64_t limit = 0, norm_limit = 0;
  uint64_t seed = 1;
  app.add_option("--data", data_spec, "PATH or 'synthetic'")->required();
  app.add_option("--split", split, "test or train")->check(CLI::IsMember({"test", "train"}))->capture_default_str();
  app.add_option("--limit", limit, "only N images (evenly spaced; synthetic: the first N); 0: all");
  app.add_option("--seed", seed, "seed of the synthetic set")->capture_default_str();
  app.add_option("--norm-limit-train", norm_limit,
                 "synthetic/image folders: normalisation statistics from N train images, as "
                 "`lowbit train --limit-train N` computes them (0: the whole train split)");
  std::string ckpt;
  app.add_option("--ckpt", ckpt, "take the normalisation recorded in this model checkpoint");
  app.add_option("--out", out, "output directory (created)")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  LB_CHECK(limit >= 0, "export-data: --limit must be >= 0, got ", limit);
  LB_CHECK(norm_limit >= 0, "export-data: --norm-limit-train must be >= 0, got ", norm_limit);

  // The normalisation is that of the train split limited as training limits it; the exported
  // split is limited by --limit. For --split train with different limits, load the data twice.
  DataOptions dopt;
  dopt.seed = seed;
  dopt.limit_train = norm_limit;
  dopt.limit_test = split == "test" ? limit : 1;
  auto load = [&] {
    try {
      return load_data(data_spec, dopt);
    } catch (const Error& e) {
      LB_FAIL("export-data: --data '", data_spec, "': ", e.what());
    }
  };
  DataSplit data = load();
  Normalization norm = cifar_normalization(data);
  if (!ckpt.empty()) {
    LoadedModel m = load_model_checkpoint(ckpt);
    LB_CHECK(m.has_norm, "export-data: --ckpt '", ckpt, "' records no normalisation");
    norm = m.norm;
  }
  const Dataset* set = split == "test" ? &data.test : &data.train;
  DataSplit again;
  if (split == "train" && limit != norm_limit) {
    dopt.limit_train = limit;
    again = load();
    set = &again.train;
  }
  const int64_t n = set->size();
  LB_CHECK(n > 0, "export-data: --data '", data_spec, "' has no ", split, " images");
  LB_CHECK(set->images.dim() == 4 && set->images.size(3) == 3, "export-data: --data '", data_spec,
           "': expected (N, H, W, 3) images, got ", shape_str(set->images.shape()));

  // The loader evaluate() uses, with the same options: in order, no augmentation.
  LoaderOptions lo;
  lo.batch = 256;
  lo.shuffle = false;
  lo.augment = false;
  lo.norm = norm;
  Loader loader(*set, lo);
  loader.start_epoch(0);
  Tensor x = Tensor::empty({n, 3, set->images.size(1), set->images.size(2)}, DType::f32);
  Tensor y = Tensor::empty({n}, DType::i64);
  const int64_t per = x.numel() / n;
  int64_t at = 0;
  Batch b;
  while (loader.next(b)) {
    const int64_t bs = b.y.numel();
    LB_CHECK(at + bs <= n && b.x.numel() == bs * per, "export-data: loader returned an unexpected batch");
    std::memcpy(x.data<float>() + at * per, b.x.data<float>(), (size_t)(bs * per) * sizeof(float));
    std::memcpy(y.data<int64_t>() + at, b.y.data<int64_t>(), (size_t)bs * sizeof(int64_t));
    at += bs;
  }
  LB_CHECK(at == n, "export-data: loader gave ", at, " of ", n, " images");

  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  LB_CHECK(!ec && std::filesystem::is_directory(out), "export-data: --out '", out,
           "': cannot create the directory (", ec.message(), ")");
  write_npy(out + "/x.npy", x);
  write_npy(out + "/y.npy", y);
  std::printf("export-data: %lld %s images of %s (%lld classes) -> %s/x.npy, y.npy\n", (long long)n,
              split.c_str(), set->source.c_str(), (long long)set->num_classes, out.c_str());
  std::printf("normalisation: mean %.6f %.6f %.6f  std %.6f %.6f %.6f\n", norm.mean[0], norm.mean[1],
              norm.mean[2], norm.std[0], norm.std[1], norm.std[2]);
  return 0;
}

}  // namespace lowbit
