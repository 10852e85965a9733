// `lowbit eval --ckpt FILE --data PATH`: rebuilds the model named in the checkpoint (quantized as
// its metadata records), loads it (strict) and reports test accuracy and loss. --skip-bits evaluates
// chosen layers at fewer bits without fine-tuning (METHODS.md "Mixed precision: Bit skipping").
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/parallel.h"
#include "tools/commands.h"
#include "tools/device_option.h"
#include "tools/trainer.h"

namespace lowbit {

int cmd_eval(int argc, char** argv) {
  CLI::App app{"Evaluate a model checkpoint on a data set's test split", "lowbit eval"};
  std::string ckpt, data_spec = "synthetic";
  int64_t batch = 256, limit = 0;
  int threads = 0;
  uint64_t seed = 1;
  bool json = false;
  app.add_option("--ckpt", ckpt, "model checkpoint (model.safetensors)")->required();
  app.add_option("--data", data_spec, "PATH or 'synthetic'")->capture_default_str();
  app.add_option("--batch", batch)->capture_default_str();
  app.add_option("--threads", threads, "0: all cores")->capture_default_str();
  app.add_option("--seed", seed, "seed of the synthetic set")->capture_default_str();
  app.add_option("--limit-test", limit, "use only the first N test images");
  app.add_flag("--json", json, "print the result as JSON");
  std::string device = "cpu";
  app.add_option("--device", device, "cpu | cuda (a GPU build: make GPU=1)")->capture_default_str();
  std::string skip_bits;
  app.add_option("--skip-bits", skip_bits,
                 "JSON {\"layer\": {\"w\": t, \"a\": t}}: evaluate those quantizers at t bits by bit skipping");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  set_num_threads(threads);
  const Device dev = select_device(device, false);
  LoadedModel m = load_model_checkpoint(ckpt);
  if (!skip_bits.empty()) {
    LB_CHECK(quant_enabled(m.quant), "eval: --skip-bits: checkpoint '", ckpt, "' is full precision");
    apply_skip_bits(*m.model, read_json_file(skip_bits, "--skip-bits"), skip_bits);
  }
  DataOptions dopt;
  dopt.seed = seed;
  dopt.limit_test = limit;
  // The train split is read only for the normalisation of checkpoints that do not record theirs.
  dopt.limit_train = m.has_norm ? 1 : 0;
  DataSplit data = load_data(data_spec, dopt);
  LB_CHECK(data.test.num_classes == m.num_classes, "eval: checkpoint '", ckpt, "' has ",
           m.num_classes, " classes, data '", data_spec, "' has ", data.test.num_classes);
  m.model->to_device(dev);  // the checkpoint is device-independent; evaluate follows the model
  EvalResult r = evaluate(*m.model, data.test, eval_normalization(m, data), batch);
  if (json)
    std::printf("%s\n", nlohmann::json({{"ckpt", ckpt}, {"model", m.model_name}, {"data", data.test.source},
                                        {"images", r.n}, {"acc", r.acc}, {"loss", r.loss},
                                        {"quant", quant_enabled(m.quant) ? quant_config_to_json(m.quant) : nlohmann::json()},
                                        {"skip_bits", skip_bits}}).dump().c_str());
  else
    std::printf("%s on %s: test accuracy %.2f%%, loss %.4f (%lld images)\n", m.model_name.c_str(),
                data.test.source.c_str(), 100 * r.acc, r.loss, (long long)r.n);
  return 0;
}

}  // namespace lowbit
