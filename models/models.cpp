// make_model: the model zoo by name ("resnet20", "resnet56b", "wrn-40-4", ...), each model built
// by its own file and initialised from a seed.
#include "models/models.h"

#include <cstdlib>

namespace lowbit {

namespace {

// Parses "wrn-D-K" into depth and width; false when the name has another form.
bool parse_wrn(const std::string& name, int& depth, int& widen) {
  if (name.rfind("wrn-", 0) != 0) return false;
  const std::string rest = name.substr(4);
  const size_t dash = rest.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == rest.size()) return false;
  const std::string d = rest.substr(0, dash), k = rest.substr(dash + 1);
  for (char ch : d + k)
    if (ch < '0' || ch > '9') return false;
  if (d.size() > 4 || k.size() > 4) return false;
  depth = std::atoi(d.c_str());
  widen = std::atoi(k.c_str());
  return true;
}

ModelPtr build(const std::string& name, int64_t num_classes) {
  for (int depth : {20, 32, 44, 56, 110}) {
    const std::string base = "resnet" + std::to_string(depth);
    if (name == base) return make_resnet_cifar(depth, false, num_classes);
    if (name == base + "b") return make_resnet_cifar(depth, true, num_classes);
  }
  if (name == "resnet18") return make_resnet18(num_classes);
  if (name == "shufflenetv2" || name == "shufflenetv2_1.0") return make_shufflenetv2(1.0, num_classes);
  if (name == "shufflenetv2_0.5") return make_shufflenetv2(0.5, num_classes);
  if (name == "shufflenetv2_1.5") return make_shufflenetv2(1.5, num_classes);
  if (name == "shufflenetv2_2.0") return make_shufflenetv2(2.0, num_classes);
  if (name == "mobilenetv2") return make_mobilenetv2(num_classes);
  if (name == "smallcnn") return make_smallcnn(num_classes);
  int depth = 0, widen = 0;
  if (parse_wrn(name, depth, widen)) return make_wrn(depth, widen, num_classes);
  std::string names;
  for (const std::string& n : model_names()) names += (names.empty() ? "" : ", ") + n;
  LB_FAIL("make_model: unknown model '", name, "' (models: ", names, "; wrn-D-K for any D = 6n+4)");
}

}  // namespace

std::vector<std::string> model_names() {
  return {"resnet20",     "resnet32",         "resnet44",         "resnet56",
          "resnet110",    "resnet20b",        "resnet32b",        "resnet44b",
          "resnet56b",    "resnet110b",       "resnet18",         "shufflenetv2",
          "shufflenetv2_0.5", "shufflenetv2_1.0", "shufflenetv2_1.5", "shufflenetv2_2.0",
          "mobilenetv2",  "wrn-40-4",         "wrn-28-10",        "smallcnn"};
}

ModelPtr build_model(const std::string& name, int64_t num_classes) {
  LB_CHECK(num_classes > 0, "make_model: num_classes must be positive, got ", num_classes,
           " (model '", name, "')");
  return build(name, num_classes);
}

ModelPtr make_model(const std::string& name, int64_t num_classes, uint64_t seed) {
  ModelPtr model = build_model(name, num_classes);
  model->init(seed);
  return model;
}

}  // namespace lowbit
