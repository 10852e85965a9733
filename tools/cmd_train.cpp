// `lowbit train`: flags (or a TOML --config file, flags override it) into a TrainConfig.
#include <CLI/CLI.hpp>

#include "tools/commands.h"
#include "tools/conv_option.h"
#include "tools/quant_flags.h"
#include "tools/trainer.h"

namespace lowbit {

int cmd_train(int argc, char** argv) {
  CLI::App app{"Train a model on CIFAR-10/100, an image folder or the synthetic set", "lowbit train"};
  TrainConfig c;
  app.set_config("--config", "", "read settings from a TOML file (key = value, names as the flags)");
  app.add_option("--model", c.model, "model name (lowbit info --list)")->capture_default_str();
  app.add_option("--data", c.data, "PATH (layout detected) or 'synthetic'")->capture_default_str();
  app.add_option("--epochs", c.epochs)->capture_default_str();
  app.add_option("--batch", c.batch)->capture_default_str();
  app.add_option("--lr", c.lr, "base learning rate")->capture_default_str();
  app.add_option("--sched", c.sched, "constant|step|cosine|onecycle")->capture_default_str();
  app.add_option("--warmup-epochs", c.warmup_epochs, "linear warm-up length")->capture_default_str();
  app.add_option("--milestones", c.milestones, "step schedule: epochs, e.g. 15,25");
  app.add_option("--gamma", c.gamma, "step schedule factor")->capture_default_str();
  app.add_option("--wd", c.wd, "weight decay")->capture_default_str();
  app.add_option("--momentum", c.momentum)->capture_default_str();
  bool no_nesterov = false;
  app.add_flag("--no-nesterov", no_nesterov, "plain momentum instead of Nesterov");
  app.add_option("--label-smoothing", c.label_smoothing)->capture_default_str();
  app.add_option("--seed", c.seed)->capture_default_str();
  app.add_option("--threads", c.threads, "0: all cores")->capture_default_str();
  add_conv_option(app, c.conv);
  app.add_option("--out", c.out, "run directory")->capture_default_str();
  app.add_option("--init", c.init,
                 "start from this model checkpoint's weights (a full-precision one into a quantized "
                 "model: quantizers initialise from the first batch)");
  add_quant_flags(app, c.wq, c.aq, c.first_last);
  app.add_option("--bits-config", c.bits_config,
                 "JSON {\"layer\": {\"w\": b, \"a\": b}} per-layer bit widths");
  app.add_option("--wq-lr-factor", c.wq_lr_factor, "lr factor of the weight quantizers' parameters")
      ->capture_default_str();
  app.add_option("--aq-lr-factor", c.aq_lr_factor, "lr factor of the activation quantizers' parameters")
      ->capture_default_str();
  app.add_option("--ste", c.ste, "default | fp (full-precision backward of quantized layers)")
      ->capture_default_str();
  app.add_option("--resume", c.resume,
                 "continue the run whose model checkpoint this is (its settings; --threads, "
                 "--device, --deterministic, --stop-after and --no-progress are this command's)");
  bool no_augment = false;
  app.add_flag("--no-augment", no_augment, "no random crop and flip");
  app.add_option("--limit-train", c.limit_train, "use only the first N training images")->capture_default_str();
  app.add_option("--limit-test", c.limit_test, "use only the first N test images")->capture_default_str();
  app.add_option("--stop-after", c.stop_after_epochs, "stop after N epochs of this invocation (resume later)");
  bool no_progress = false;
  app.add_flag("--no-progress", no_progress, "no progress bar");
  app.add_option("--device", c.device, "cpu | cuda (a GPU build: make GPU=1)")->capture_default_str();
  app.add_flag("--deterministic", c.deterministic,
               "cuda: only deterministic cuDNN algorithms, so two runs give identical weights");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  c.nesterov = !no_nesterov;
  c.augment = !no_augment;
  c.progress = !no_progress;
  for (int i = 0; i < argc; ++i) c.command_line += std::string(i ? " " : "lowbit ") + argv[i];
  TrainResult r = train(c);
  std::printf("final test accuracy %.2f%% (best %.2f%%), %.1f s per epoch; run in %s\n",
              100 * r.final_test_acc, 100 * r.best_test_acc, r.seconds_per_epoch, r.out_dir.c_str());
  return 0;
}

}  // namespace lowbit
