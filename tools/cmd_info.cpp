// `lowbit info --model NAME [--classes 10] [--size 32]`: a model's layer table (output shapes,
// parameters, multiply-accumulates per image) and totals, from one forward of a single image.
// --state-dict prints "name shape" lines instead, the format of bench/torch_models.py, so the
// names can be diffed against the PyTorch reference definitions.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "models/models.h"
#include "tools/commands.h"

namespace lowbit {

int cmd_info(int argc, char** argv) {
  CLI::App app{"Print a model's layer table: output shapes, parameters, MACs per image.",
               "lowbit info"};
  std::string model_name;
  int64_t classes = 10, size = 32;
  bool list = false, state_dict = false;
  app.add_option("--model", model_name, "model name (--list shows them)");
  app.add_option("--classes", classes, "number of classes (default 10)")->check(CLI::PositiveNumber);
  app.add_option("--size", size, "input height and width (default 32)")->check(CLI::PositiveNumber);
  app.add_flag("--list", list, "list the model names");
  app.add_flag("--state-dict", state_dict, "print the state_dict names and shapes instead");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (list) {
    for (const std::string& n : model_names()) std::printf("%s\n", n.c_str());
    return 0;
  }
  LB_CHECK(!model_name.empty(), "info: --model NAME is required (lowbit info --list shows the names)");
  ModelPtr model = build_model(model_name, classes);  // the weights do not matter here
  if (state_dict) {
    for (const auto& [name, t] : model->state_dict())
      std::printf("%s %s\n", name.c_str(), shape_str(t.shape()).c_str());
    std::printf("# parameters: %lld\n", (long long)model->num_parameters());
    return 0;
  }
  std::vector<LayerInfo> rows = model_info(*model, {1, 3, size, size});
  std::printf("%s (%lld classes, input 3x%lldx%lld)\n", model_name.c_str(), (long long)classes,
              (long long)size, (long long)size);
  std::printf("%s", format_model_info(rows).c_str());
  // Parameters outside the listed layers (none in the zoo today) would show as a difference here.
  std::printf("model parameters: %lld\n", (long long)model->num_parameters());
  return 0;
}

}  // namespace lowbit
