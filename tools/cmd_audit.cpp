// `lowbit audit --ckpt FILE --data PATH|synthetic`: runs N training batches of a quantized model
// without updating it and reports, per quantizer node, bits, step/clip, clip fractions, gradient
// norms, cos(STE, full-precision backward) and level changes (METHODS.md "Gradient estimators to
// audit"). The loop and the report are tools/audit_report.h; this file loads and wires. With
// --device cuda both passes run on the GPU; the report is the same table and JSON.
#include <CLI/CLI.hpp>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/cuda/kernels.h"
#include "core/parallel.h"
#include "core/safetensors.h"
#include "layers/layers.h"
#include "quant/quantize_model.h"
#include "tools/audit_report.h"
#include "tools/commands.h"
#include "tools/device_option.h"
#include "tools/trainer.h"

namespace lowbit {

namespace {

// The learning rate the run ended with: the last "train" line's lr in metrics.jsonl beside the
// checkpoint. False when there is none.
bool lr_from_run(const std::string& ckpt, double* lr, std::string* source) {
  const size_t slash = ckpt.rfind('/');
  const std::string metrics = (slash == std::string::npos ? "." : ckpt.substr(0, slash)) + "/metrics.jsonl";
  std::ifstream f(metrics);
  if (!f.good()) return false;
  bool found = false;
  std::string line;
  while (std::getline(f, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("type", "") == "train" && j.contains("lr") && j["lr"].is_number() &&
        j["lr"].get<double>() > 0)
      *lr = j["lr"].get<double>(), found = true;
  }
  if (found) *source = metrics;
  return found;
}

void set_fp_backward(const std::vector<QuantizerRef>& refs, bool on) {
  for (const QuantizerRef& r : refs) {
    if (auto* q = dynamic_cast<QuantizableLayer*>(r.layer)) q->fp_backward = on;
  }
}

}  // namespace

int cmd_audit(int argc, char** argv) {
  CLI::App app{"Audit the gradient estimators of a quantized model's quantizers on training batches",
               "lowbit audit"};
  std::string ckpt, data_spec = "synthetic", json_path;
  int64_t batches = 4, batch = 128;
  double lr = 0;
  int threads = 0;
  uint64_t seed = 1;
  app.add_option("--ckpt", ckpt, "model checkpoint of a quantized model (model.safetensors)")->required();
  app.add_option("--data", data_spec, "PATH or 'synthetic'")->capture_default_str();
  app.add_option("--batches", batches, "training batches to run (fixed order, no augmentation)")
      ->capture_default_str();
  app.add_option("--batch", batch, "batch size")->capture_default_str();
  app.add_option("--lr", lr, "learning rate of the level-change step (default: the run's last, else 0.01)");
  app.add_option("--json", json_path, "also write the report as JSON to this file");
  app.add_option("--threads", threads, "0: all cores")->capture_default_str();
  app.add_option("--seed", seed, "seed of the synthetic set")->capture_default_str();
  std::string device = "cpu";
  bool deterministic = false;
  app.add_option("--device", device, "cpu | cuda (a GPU build: make GPU=1)")->capture_default_str();
  app.add_flag("--deterministic", deterministic,
               "cuda: only deterministic cuDNN algorithms, so two audits of a checkpoint agree to the bit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  LB_CHECK(batches >= 1, "audit: --batches must be >= 1, got ", batches);
  LB_CHECK(batch >= 1, "audit: --batch must be >= 1, got ", batch);
  std::string lr_source = "--lr";
  if (app.count("--lr")) {
    LB_CHECK(std::isfinite(lr) && lr > 0, "audit: --lr must be > 0, got ", lr);
  } else if (!lr_from_run(ckpt, &lr, &lr_source)) {
    lr = 0.01, lr_source = "default";
  }
  set_num_threads(threads);
  const Device dev = select_device(device, deterministic);  // before any work: a clear error first

  LoadedModel m = load_model_checkpoint(ckpt);
  const std::vector<QuantizerRef> refs = list_quantizers(*m.model);
  LB_CHECK(!refs.empty(), "audit: --ckpt '", ckpt, "' (", m.model_name,
           ") has no quantizers; audit needs a model trained with --wq/--aq");

  DataOptions dopt;
  dopt.seed = seed;
  dopt.limit_train = batches * batch;
  dopt.limit_test = 1;  // only the training split is used
  DataSplit data = load_data(data_spec, dopt);
  LB_CHECK(data.train.num_classes == m.num_classes, "audit: --ckpt '", ckpt, "' has ", m.num_classes,
           " classes, --data '", data_spec, "' has ", data.train.num_classes);
  LoaderOptions lo;
  lo.batch = batch;
  lo.shuffle = false;
  lo.augment = false;
  lo.norm = eval_normalization(m, data);
  Loader loader(data.train, lo);
  loader.start_epoch(0);
  // The checkpoint is device-independent; run_audit runs where the model is and copies the
  // loader's host batches there.
  m.model->to_device(dev);
  if (dev != Device::cpu) std::printf("device: %s\n", cuda_describe().c_str());

  AuditReport rep = run_audit(
      *m.model, [&](Batch& b) { return loader.next(b); }, batches, lr,
      [&](bool on) { set_fp_backward(refs, on); });
  std::printf("audit: %s (%s), %lld batch(es) of %lld from %s, lr %.4g (%s)\n", ckpt.c_str(),
              m.model_name.c_str(), (long long)rep.batches, (long long)batch, data.train.source.c_str(),
              lr, lr_source.c_str());
  if (rep.batches < batches)
    std::printf("audit: the training split holds only %lld batch(es)\n", (long long)rep.batches);
  std::printf("%s", audit_table(rep).c_str());
  if (!json_path.empty()) {
    nlohmann::json j = audit_json(rep);
    j["ckpt"] = ckpt;
    j["model"] = m.model_name;
    j["data"] = data.train.source;
    j["batch"] = batch;
    j["lr_source"] = lr_source;
    write_file_atomic(json_path, j.dump(2) + "\n");
    std::printf("audit: wrote %s\n", json_path.c_str());
  }
  return 0;
}

}  // namespace lowbit
