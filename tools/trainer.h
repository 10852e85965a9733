// The training loop behind `lowbit train`: data, model, SGD with a schedule, per-epoch evaluation,
// metrics.jsonl, summary.json and atomic checkpoints that a run can resume from exactly.
#pragma once
#include <cstdint>
#include <string>

#include "datasets/dataset.h"
#include "layers/module.h"
#include "layers/optim.h"
#include "quant/quantize_model.h"

namespace lowbit {

struct TrainConfig {
  std::string model = "resnet20";
  std::string data = "synthetic";
  int64_t epochs = 30;
  int64_t batch = 128;
  double lr = 0.1;
  std::string sched = "cosine";  // constant | step | cosine | onecycle
  double warmup_epochs = 0;
  std::string milestones = "";   // step schedule, in epochs, e.g. "15,25"
  double gamma = 0.1;
  double wd = 5e-4;
  double momentum = 0.9;
  bool nesterov = true;
  double label_smoothing = 0;
  uint64_t seed = 1;
  int threads = 0;  // 0: all cores
  std::string conv = "winograd";  // CPU 3x3 stride-1 kernels: winograd | direct (tools/conv_option.h)
  std::string out = "runs/default";
  // Quantization-aware training (quant/quantize_model.h): empty wq and aq = full precision.
  std::string wq, aq;             // METHOD:BITS[:pc], e.g. lsq:4
  std::string first_last = "8";   // fp | 8 | same
  std::string bits_config;        // per-layer bits JSON file
  double wq_lr_factor = 1.0;      // lr of the weight quantizers' parameters = lr * this, no wd
  double aq_lr_factor = 1.0;      // the same for the activation quantizers
  std::string ste = "default";    // default | fp (full-precision backward)
  // Model checkpoint to start from. Full precision into a quantized model: every non-quantizer
  // entry must match; quantizer entries absent from the file initialise from the first batch.
  std::string init;
  std::string resume;  // model checkpoint of an interrupted run (its train_state beside it)
  bool augment = true;
  int64_t limit_train = 0, limit_test = 0;  // 0: the whole split
  int64_t stop_after_epochs = 0;  // stop (as if killed) after this many epochs; tests resume with it
  bool progress = true;           // a progress bar when stderr is a terminal
  std::string device = "cpu";     // cpu | cuda (tools/device_option.h)
  bool deterministic = false;     // cuda: only deterministic cuDNN algorithms
  std::string command_line;       // recorded in summary.json
};

struct TrainResult {
  double final_test_acc = 0, final_test_loss = 0, best_test_acc = 0;
  double final_train_acc = 0, final_train_loss = 0;
  double seconds_per_epoch = 0;
  int64_t epochs_done = 0;
  std::string out_dir;  // the run directory (a resumed run's own, not --out)
};

TrainResult train(const TrainConfig& cfg);

// The optimizer's groups: "all" (every non-quantizer parameter, weight decay --wd), then "wq" and
// "aq" (the weight / activation quantizers' learnable parameters, lr factors --wq-lr-factor /
// --aq-lr-factor, no weight decay: seed 003 §2.2 trains step sizes with their own learning rates,
// and decay would only pull a step toward 0). Empty groups are left out.
std::vector<ParamGroup> make_param_groups(Module& model, const TrainConfig& cfg);

struct EvalResult {
  double loss = 0, acc = 0;
  int64_t n = 0;
};
// Top-1 accuracy and mean cross-entropy of the model (in eval mode) on a data set.
EvalResult evaluate(Module& model, const Dataset& data, const Normalization& norm, int64_t batch);

// The quantization part of a TrainConfig.
QuantConfig quant_config_of(const TrainConfig& cfg);

// Model checkpoint files: the model file holds exactly the model's state_dict; its metadata
// records the model name and class count, and for a quantized model the quant config as JSON
// (key "quant"), so `lowbit eval` can rebuild it. A full-precision checkpoint has no "quant" key
// and its tensors are exactly the torch model's state_dict.
// The input normalisation the model was trained with is recorded too ("norm": six numbers), so
// evaluation feeds exactly the inputs training did, whatever split limits the run used.
void save_model_checkpoint(const std::string& path, Module& model, const std::string& model_name,
                           int64_t num_classes, int64_t epoch,
                           const QuantConfig& quant = QuantConfig(),
                           const Normalization* norm = nullptr);
struct LoadedModel {
  std::shared_ptr<Module> model;
  std::string model_name;
  int64_t num_classes = 0;
  int64_t epoch = 0;
  QuantConfig quant;  // empty wq/aq for a full-precision checkpoint
  bool has_norm = false;  // false for checkpoints written without it (e.g. converted from torch)
  Normalization norm{{0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}};
};
// The normalisation to evaluate `m` on `data` with: the checkpoint's when it has one, else the
// data set's (CIFAR constants, or statistics of the whole train split).
Normalization eval_normalization(const LoadedModel& m, const DataSplit& data);
LoadedModel load_model_checkpoint(const std::string& path);
// The quant config recorded in a model checkpoint's metadata (empty for full precision).
QuantConfig checkpoint_quant_config(const std::string& path);
// --init: loads `path` into a (possibly quantized) model as described at TrainConfig::init.
void load_init_weights(Module& model, const std::string& path);

}  // namespace lowbit
