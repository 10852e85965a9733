// The training loop (see trainer.h). One epoch: shuffled, augmented batches from the background
// loader; forward, softmax cross-entropy, backward, SGD step at the scheduled learning rate; then
// evaluation on the test split, one metrics line each, and an atomic checkpoint pair.
#include "tools/trainer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/cuda/kernels.h"
#include "core/parallel.h"
#include "core/safetensors.h"
#include "layers/optim.h"
#include "layers/quant_module.h"
#include "layers/schedule.h"
#include "models/models.h"
#include "quant/quant_stats.h"
#include "tools/conv_option.h"
#include "tools/device_option.h"
#include "tools/progress.h"
#include "tools/train_config_json.h"

namespace lowbit {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Number of rows of logits (N, K) whose arg-max equals the target.
int64_t count_correct(const Tensor& logits, const Tensor& target) {
  const int64_t n = logits.size(0), k = logits.size(1);
  const float* p = logits.data<float>();
  const int64_t* t = target.data<int64_t>();
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < k; ++j)
      if (p[i * k + j] > p[i * k + best]) best = j;
    c += best == t[i];
  }
  return c;
}

void make_dirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty()) {
        if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
          LB_FAIL("train: cannot create directory '", cur, "': ", std::strerror(errno));
      }
    }
    if (i < path.size()) cur += path[i];
  }
}

std::string dir_of(const std::string& path) {
  size_t s = path.rfind('/');
  return s == std::string::npos ? "." : path.substr(0, s);
}

std::vector<int64_t> parse_milestones(const std::string& s, int64_t steps_per_epoch) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t c = s.find(',', pos);
    std::string tok = s.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
    char* end = nullptr;
    double e = std::strtod(tok.c_str(), &end);
    LB_CHECK(end && *end == 0 && !tok.empty() && e >= 0, "train: --milestones: '", tok,
             "' is not a number of epochs");
    out.push_back((int64_t)std::llround(e * (double)steps_per_epoch));
    if (c == std::string::npos) break;
    pos = c + 1;
  }
  return out;
}

void append_line(const std::string& path, const nlohmann::json& j) {
  std::ofstream f(path, std::ios::app);
  LB_CHECK(f.good(), "train: cannot write '", path, "'");
  f << j.dump() << "\n";
  f.flush();
}

}  // namespace

EvalResult evaluate(Module& model, const Dataset& data, const Normalization& norm, int64_t batch) {
  NoGradGuard ng;
  bool was_training = model.training();
  model.eval();
  LoaderOptions lo;
  lo.batch = batch;
  lo.shuffle = false;
  lo.augment = false;
  lo.norm = norm;
  Loader loader(data, lo);
  loader.start_epoch(0);
  Batch b;
  double loss_sum = 0;
  int64_t correct = 0, n = 0;
  const Device dev = module_device(model);
  while (loader.next(b)) {
    Tensor logits = model(to_device_if(b.x, dev));
    const int64_t bs = b.y.numel();
    loss_sum += softmax_cross_entropy(logits, to_device_if(b.y, dev)).item<double>() * (double)bs;
    correct += count_correct(to_device_if(logits, Device::cpu), b.y);
    n += bs;
  }
  model.train(was_training);
  EvalResult r;
  r.n = n;
  r.loss = n ? loss_sum / (double)n : 0;
  r.acc = n ? (double)correct / (double)n : 0;
  return r;
}

QuantConfig quant_config_of(const TrainConfig& cfg) {
  QuantConfig q;
  q.wq = cfg.wq;
  q.aq = cfg.aq;
  q.first_last = cfg.first_last;
  q.bits_config = cfg.bits_config;
  q.ste = cfg.ste;
  return q;
}

void save_model_checkpoint(const std::string& path, Module& model, const std::string& model_name,
                           int64_t num_classes, int64_t epoch, const QuantConfig& quant,
                           const Normalization* norm) {
  std::map<std::string, std::string> meta = {{"format", "lowbit-model"},
                                             {"model", model_name},
                                             {"num_classes", std::to_string(num_classes)},
                                             {"epoch", std::to_string(epoch)}};
  if (quant_enabled(quant)) meta["quant"] = quant_config_to_json(quant).dump();
  if (norm) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g,%.9g,%.9g,%.9g", norm->mean[0], norm->mean[1],
                  norm->mean[2], norm->std[0], norm->std[1], norm->std[2]);
    meta["norm"] = buf;
  }
  // Checkpoints hold host copies: the file does not depend on the device that trained.
  std::vector<std::pair<std::string, Tensor>> sd = model.state_dict();
  for (auto& e : sd)
    if (e.second.device() != Device::cpu) e.second = e.second.to_device(Device::cpu);
  save_safetensors(path, sd, meta);
}

QuantConfig checkpoint_quant_config(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  auto it = f.metadata.find("quant");
  if (it == f.metadata.end()) return QuantConfig();
  try {
    return quant_config_from_json(nlohmann::json::parse(it->second));
  } catch (const nlohmann::json::exception& e) {
    LB_FAIL("checkpoint '", path, "': metadata 'quant' is not valid JSON: ", e.what());
  } catch (const Error& e) {
    LB_FAIL("checkpoint '", path, "': ", e.what());
  }
}

void load_init_weights(Module& model, const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  std::set<std::string> given;
  for (auto& e : f.tensors) given.insert(e.first);
  std::vector<std::string> missing;
  for (auto& e : model.state_dict())
    if (!given.count(e.first) && !is_quantizer_entry(model, e.first)) missing.push_back(e.first);
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 5; ++i) list += (i ? ", " : "") + missing[i];
    LB_FAIL("--init '", path, "': ", missing.size(), " model entries missing (", list,
            missing.size() > 5 ? ", ..." : "", "); only quantizer entries may be absent");
  }
  try {
    // Not strict only for the quantizer entries checked above; unexpected names stay errors.
    std::set<std::string> own;
    for (auto& e : model.state_dict()) own.insert(e.first);
    for (auto& e : f.tensors)
      LB_CHECK(own.count(e.first), "unexpected key '", e.first, "'");
    model.load_state_dict(f.tensors, false);
  } catch (const Error& e) {
    LB_FAIL("--init '", path, "': ", e.what());
  }
}

LoadedModel load_model_checkpoint(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  auto get = [&](const char* key) {
    auto it = f.metadata.find(key);
    LB_CHECK(it != f.metadata.end(), "checkpoint '", path, "': metadata has no '", key,
             "' (not a lowbit model checkpoint?)");
    return it->second;
  };
  LoadedModel m;
  m.model_name = get("model");
  m.num_classes = std::stoll(get("num_classes"));
  m.epoch = f.metadata.count("epoch") ? std::stoll(f.metadata["epoch"]) : 0;
  m.model = make_model(m.model_name, m.num_classes, 0);
  m.quant = checkpoint_quant_config(path);
  if (f.metadata.count("norm")) {
    float v[6];
    char tail = 0;
    const std::string& t = f.metadata["norm"];
    LB_CHECK(std::sscanf(t.c_str(), "%f,%f,%f,%f,%f,%f%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                         &tail) == 6 && v[3] > 0 && v[4] > 0 && v[5] > 0,
             "checkpoint '", path, "': metadata 'norm' must be six numbers (3 means, 3 positive "
             "stds), got '", t, "'");
    for (int c = 0; c < 3; ++c) m.norm.mean[c] = v[c], m.norm.std[c] = v[3 + c];
    m.has_norm = true;
  }
  try {
    quantize_model(*m.model, m.quant);
    m.model->load_state_dict(f.tensors, true);
  } catch (const Error& e) {
    LB_FAIL("checkpoint '", path, "': ", e.what());
  }
  return m;
}

Normalization eval_normalization(const LoadedModel& m, const DataSplit& data) {
  return m.has_norm ? m.norm : cifar_normalization(data);
}

std::vector<ParamGroup> make_param_groups(Module& model, const TrainConfig& cfg) {
  std::vector<ParamGroup> groups(1);
  groups[0].name = "all";
  groups[0].weight_decay = cfg.wd;
  ParamGroup gw{"wq", {}, cfg.wq_lr_factor, 0.0}, ga{"aq", {}, cfg.aq_lr_factor, 0.0};
  std::set<const TensorImpl*> quant_params;
  for (auto& r : list_quantizers(model))
    for (auto& p : r.qm->named_parameters()) {
      (r.role == "wq" ? gw : ga).params.push_back({p.second.name(), p.second});
      quant_params.insert(p.second.impl_ptr().get());
    }
  for (auto& p : model.named_parameters())
    if (!quant_params.count(p.second.impl_ptr().get())) groups[0].params.push_back(p);
  if (!gw.params.empty()) groups.push_back(gw);
  if (!ga.params.empty()) groups.push_back(ga);
  return groups;
}

TrainResult train(const TrainConfig& cfg_in) {
  TrainConfig cfg = cfg_in;
  std::string state_path;
  nlohmann::json resume_state;
  if (!cfg.resume.empty()) {
    // Settings come from the interrupted run; only how it runs (threads, device, deterministic
    // mode, display, stop) is this invocation's: checkpoints are device-independent.
    state_path = dir_of(cfg.resume) + "/train_state.safetensors";
    SafetensorsFile st = load_safetensors(state_path);
    LB_CHECK(st.metadata.count("config"), "train: '", state_path, "' has no saved config");
    TrainConfig saved = config_from_json(nlohmann::json::parse(st.metadata["config"]));
    saved.threads = cfg.threads;
    saved.progress = cfg.progress;
    saved.stop_after_epochs = cfg.stop_after_epochs;
    saved.device = cfg.device;
    saved.deterministic = cfg.deterministic;
    saved.resume = cfg.resume;
    saved.out = dir_of(cfg.resume);
    cfg = saved;
  }
  set_num_threads(cfg.threads);
  const ScopedConvOption conv_choice(cfg.conv);
  LB_CHECK(cfg.epochs >= 1, "train: --epochs must be >= 1, got ", cfg.epochs);
  LB_CHECK(cfg.batch >= 1, "train: --batch must be >= 1, got ", cfg.batch);
  LB_CHECK(cfg.lr > 0, "train: --lr must be > 0, got ", cfg.lr);
  LB_CHECK(cfg.wq_lr_factor > 0, "train: --wq-lr-factor must be > 0, got ", cfg.wq_lr_factor);
  LB_CHECK(cfg.aq_lr_factor > 0, "train: --aq-lr-factor must be > 0, got ", cfg.aq_lr_factor);
  // A resumed run rebuilds its quantizers from the model checkpoint (bits inline there), so it
  // does not depend on a --bits-config file still being where it was.
  QuantConfig qcfg = cfg.resume.empty() ? quant_config_of(cfg) : checkpoint_quant_config(cfg.resume);
  check_quant_config(qcfg);
  if (!qcfg.bits_config.empty()) {  // read once: every checkpoint of the run records the same bits
    qcfg.bits = read_json_file(qcfg.bits_config, "--bits-config");
    qcfg.bits_config.clear();
  }

  DataOptions dopt;
  dopt.seed = cfg.seed;
  dopt.limit_train = cfg.limit_train;
  dopt.limit_test = cfg.limit_test;
  DataSplit data = load_data(cfg.data, dopt);
  Normalization norm = cifar_normalization(data);
  std::printf("data: %s (%lld train, %lld test, %lld classes)\n", data.train.source.c_str(),
              (long long)data.train.labels.numel(), (long long)data.test.labels.numel(),
              (long long)data.train.num_classes);

  const Device dev = select_device(cfg.device, cfg.deterministic);
  std::shared_ptr<Module> model = make_model(cfg.model, data.train.num_classes, cfg.seed);
  std::printf("model: %s, %lld parameters\n", cfg.model.c_str(), (long long)model->num_parameters());
  quantize_model(*model, qcfg);
  if (quant_enabled(qcfg))
    std::printf("quantized: wq %s, aq %s, first/last %s, ste %s, %zu quantizers\n",
                qcfg.wq.empty() ? "fp" : qcfg.wq.c_str(), qcfg.aq.empty() ? "fp" : qcfg.aq.c_str(),
                qcfg.first_last.c_str(), qcfg.ste.c_str(), list_quantizers(*model).size());
  if (!cfg.init.empty() && cfg.resume.empty()) {
    load_init_weights(*model, cfg.init);
    std::printf("init: weights from %s\n", cfg.init.c_str());
  }

  model->to_device(dev);  // before the optimizer and any resume: those copy into these tensors
  if (dev != Device::cpu) std::printf("device: %s\n", cuda_describe().c_str());
  SGD opt(make_param_groups(*model, cfg), cfg.momentum, 0.0, cfg.nesterov);

  LoaderOptions lo;
  lo.batch = cfg.batch;
  lo.augment = cfg.augment;
  lo.seed = cfg.seed;
  lo.norm = norm;
  Loader loader(data.train, lo);
  const int64_t spe = loader.num_batches();
  LrSchedule sched;
  sched.kind = cfg.sched;
  sched.base_lr = cfg.lr;
  sched.warmup_steps = (int64_t)std::llround(cfg.warmup_epochs * (double)spe);
  sched.milestones = parse_milestones(cfg.milestones, spe);
  sched.gamma = cfg.gamma;
  const int64_t total_steps = spe * cfg.epochs;
  lr_at(sched, 0, total_steps);  // validates the schedule before any work

  make_dirs(cfg.out);
  const std::string model_path = cfg.out + "/model.safetensors";
  state_path = cfg.out + "/train_state.safetensors";
  const std::string metrics_path = cfg.out + "/metrics.jsonl";
  int64_t start_epoch = 0;
  if (!cfg.resume.empty()) {
    SafetensorsFile st = load_safetensors(state_path);
    start_epoch = std::stoll(st.metadata.at("epoch"));
    SafetensorsFile mf = load_safetensors(cfg.resume);
    LB_CHECK(mf.metadata.count("epoch") && std::stoll(mf.metadata["epoch"]) == start_epoch,
             "train: --resume: '", cfg.resume, "' and '", state_path,
             "' are from different epochs (the run was killed between the two writes); resume "
             "from the previous pair is not possible");
    model->load_state_dict(mf.tensors, true);
    opt.load_state_dict(st.tensors);
    std::printf("resume: from epoch %lld of %s\n", (long long)start_epoch, cfg.out.c_str());
  } else {
    std::ofstream(metrics_path, std::ios::trunc);  // a new run starts a new log
  }

  TrainResult res;
  res.out_dir = cfg.out;
  double epoch_seconds_sum = 0;
  int64_t epochs_timed = 0;
  Progress progress(cfg.progress);
  for (int64_t epoch = start_epoch; epoch < cfg.epochs; ++epoch) {
    model->train();
    loader.start_epoch(epoch);
    auto t0 = Clock::now();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    Batch b;
    int64_t step_in_epoch = 0;
    while (loader.next(b)) {
      const int64_t step = epoch * spe + step_in_epoch;
      const double lr = lr_at(sched, step, total_steps);
      opt.set_lr(lr);
      Tensor logits = (*model)(to_device_if(b.x, dev));  // batches are made on the host
      Tensor loss = softmax_cross_entropy(logits, to_device_if(b.y, dev), cfg.label_smoothing);
      opt.zero_grad();
      backward(loss);
      if (step_in_epoch + 1 == spe) {
        // Step sizes and clip fractions of every quantizer node, read from the last batch's graph
        // before the update changes the parameters in place (nothing for a full-precision model).
        for (auto& line : quant_stats_json(collect_quant_stats(loss), epoch + 1))
          append_line(metrics_path, line);
      }
      opt.step();
      const int64_t bs = b.y.numel();
      loss_sum += loss.item<double>() * (double)bs;
      correct += count_correct(to_device_if(logits, Device::cpu), b.y);
      seen += bs;
      ++step_in_epoch;
      progress.update(epoch + 1, cfg.epochs, step_in_epoch, spe, loss_sum / (double)seen,
                      (double)correct / (double)seen, (double)seen / seconds_since(t0),
                      seconds_since(t0));
    }
    progress.finish();
    const double train_seconds = seconds_since(t0);
    EvalResult ev = evaluate(*model, data.test, norm, std::max<int64_t>(cfg.batch, 256));
    const double train_loss = loss_sum / (double)std::max<int64_t>(seen, 1);
    const double train_acc = (double)correct / (double)std::max<int64_t>(seen, 1);
    std::printf("epoch %lld/%lld  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  %.1f s (%.0f img/s)\n",
                (long long)(epoch + 1), (long long)cfg.epochs, train_loss, 100 * train_acc, ev.loss,
                100 * ev.acc, train_seconds, (double)seen / train_seconds);
    std::fflush(stdout);
    append_line(metrics_path, {{"type", "train"}, {"epoch", epoch + 1}, {"loss", train_loss},
                               {"acc", train_acc}, {"lr", lr_at(sched, (epoch + 1) * spe - 1, total_steps)},
                               {"seconds", train_seconds}, {"img_per_s", (double)seen / train_seconds}});
    append_line(metrics_path, {{"type", "eval"}, {"epoch", epoch + 1}, {"loss", ev.loss}, {"acc", ev.acc}});
    // Model first, then the state that points at its epoch: resume checks that they agree.
    save_model_checkpoint(model_path, *model, cfg.model, data.train.num_classes, epoch + 1, qcfg,
                          &norm);
    std::map<std::string, std::string> meta = {{"format", "lowbit-train-state"},
                                               {"epoch", std::to_string(epoch + 1)},
                                               {"step", std::to_string((epoch + 1) * spe)},
                                               {"config", config_to_json(cfg).dump()}};
    save_safetensors(state_path, opt.state_dict(), meta);

    res.final_test_acc = ev.acc;
    res.final_test_loss = ev.loss;
    res.best_test_acc = std::max(res.best_test_acc, ev.acc);
    res.final_train_acc = train_acc;
    res.final_train_loss = train_loss;
    res.epochs_done = epoch + 1;
    epoch_seconds_sum += train_seconds;
    ++epochs_timed;
    if (cfg.stop_after_epochs > 0 && epoch + 1 - start_epoch >= cfg.stop_after_epochs &&
        epoch + 1 < cfg.epochs) {
      std::printf("stopping after %lld epochs as asked (resume with --resume %s)\n",
                  (long long)cfg.stop_after_epochs, model_path.c_str());
      res.seconds_per_epoch = epoch_seconds_sum / (double)epochs_timed;
      return res;
    }
  }
  res.seconds_per_epoch = epochs_timed ? epoch_seconds_sum / (double)epochs_timed : 0;
  nlohmann::json summary = {{"model", cfg.model},
                            {"data", data.train.source},
                            {"epochs", cfg.epochs},
                            {"final_test_acc", res.final_test_acc},
                            {"final_test_loss", res.final_test_loss},
                            {"best_test_acc", res.best_test_acc},
                            {"final_train_acc", res.final_train_acc},
                            {"final_train_loss", res.final_train_loss},
                            {"seconds_per_epoch", res.seconds_per_epoch},
                            {"threads", num_threads()},
                            {"parameters", model->num_parameters()},
                            {"checkpoint", model_path},
                            {"config", config_to_json(cfg)},
                            {"quant", quant_enabled(qcfg) ? quant_config_to_json(qcfg) : nlohmann::json()},
                            {"command", cfg.command_line}};
  write_file_atomic(cfg.out + "/summary.json", summary.dump(2) + "\n");
  return res;
}

}  // namespace lowbit
