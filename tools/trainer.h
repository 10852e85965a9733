// The training loop behind `lowbit train`: data, model, SGD with a schedule, per-epoch evaluation,
// metrics.jsonl, summary.json and atomic checkpoints that a run can resume from exactly.
#pragma once
#include <cstdint>
#include <string>

#include "datasets/dataset.h"
#include "layers/module.h"

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
  std::string out = "runs/default";
  std::string init;    // model checkpoint to start from (weights only)
  std::string resume;  // model checkpoint of an interrupted run (its train_state beside it)
  bool augment = true;
  int64_t limit_train = 0, limit_test = 0;  // 0: the whole split
  int64_t stop_after_epochs = 0;  // stop (as if killed) after this many epochs; tests resume with it
  bool progress = true;           // a progress bar when stderr is a terminal
  std::string command_line;       // recorded in summary.json
};

struct TrainResult {
  double final_test_acc = 0, final_test_loss = 0, best_test_acc = 0;
  double final_train_acc = 0, final_train_loss = 0;
  double seconds_per_epoch = 0;
  int64_t epochs_done = 0;
};

TrainResult train(const TrainConfig& cfg);

struct EvalResult {
  double loss = 0, acc = 0;
  int64_t n = 0;
};
// Top-1 accuracy and mean cross-entropy of the model (in eval mode) on a data set.
EvalResult evaluate(Module& model, const Dataset& data, const Normalization& norm, int64_t batch);

// Model checkpoint files: the model file holds exactly the model's state_dict; its metadata
// records the model name and class count so `lowbit eval` can rebuild it.
void save_model_checkpoint(const std::string& path, Module& model, const std::string& model_name,
                           int64_t num_classes, int64_t epoch);
struct LoadedModel {
  std::shared_ptr<Module> model;
  std::string model_name;
  int64_t num_classes = 0;
  int64_t epoch = 0;
};
LoadedModel load_model_checkpoint(const std::string& path);

}  // namespace lowbit
