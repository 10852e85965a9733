// `lowbit plot runs/NAME`: loss and accuracy curves (train and test per epoch) from metrics.jsonl,
// drawn to runs/NAME/curves.png (or --out FILE). `--quant`: the quantizer lines of the log (step or
// clip value and clip fractions per node per epoch; METHODS.md "Gradient estimators to audit") to
// runs/NAME/quant.png.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tools/commands.h"
#include "tools/plot_canvas.h"

namespace lowbit {

namespace {

// The JSON objects of metrics.jsonl that have a type and an epoch.
std::vector<nlohmann::json> read_metrics(const std::string& metrics, const std::string& run) {
  std::ifstream f(metrics);
  LB_CHECK(f.good(), "plot: cannot open '", metrics, "' (is '", run, "' a run directory?)");
  std::vector<nlohmann::json> out;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      LB_FAIL("plot: '", metrics, "' line ", lineno, ": not JSON (", e.what(), ")");
    }
    if (j.is_object() && j.contains("type") && j["type"].is_string() && j.contains("epoch") &&
        j["epoch"].is_number())
      out.push_back(std::move(j));
  }
  return out;
}

double num_or_nan(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::nan("");
}

void draw_curves(const std::vector<nlohmann::json>& lines, const std::string& metrics,
                 const std::string& out) {
  Series tr_loss{"train", {}, {}, {31, 119, 180}}, te_loss{"test", {}, {}, {214, 39, 40}};
  Series tr_acc{"train", {}, {}, {31, 119, 180}}, te_acc{"test", {}, {}, {214, 39, 40}};
  for (const nlohmann::json& j : lines) {
    const double ep = j["epoch"].get<double>();
    const std::string type = j["type"].get<std::string>();
    Series* loss = type == "train" ? &tr_loss : type == "eval" ? &te_loss : nullptr;
    Series* acc = type == "train" ? &tr_acc : type == "eval" ? &te_acc : nullptr;
    if (!loss) continue;
    if (j.contains("loss")) loss->x.push_back(ep), loss->y.push_back(j["loss"].get<double>());
    if (j.contains("acc")) acc->x.push_back(ep), acc->y.push_back(100 * j["acc"].get<double>());
  }
  LB_CHECK(!tr_loss.x.empty() || !te_loss.x.empty(), "plot: '", metrics, "' has no epochs yet");
  Canvas c(1000, 420);
  draw_panel(c, 0, 0, 500, 420, "loss", "epoch", {tr_loss, te_loss});
  draw_panel(c, 500, 0, 500, 420, "accuracy (%)", "epoch", {tr_acc, te_acc});
  c.save_png(out);
}

// At most k of n indices: all when n <= k, else the first, the last and evenly spaced between.
std::vector<size_t> pick_indices(size_t n, size_t k) {
  std::vector<size_t> idx;
  for (size_t m = 0; m < std::min(n, k); ++m)  // n > k: distinct, as the spacing exceeds 1
    idx.push_back(n <= k ? m : (size_t)std::llround((double)m * (double)(n - 1) / (double)(k - 1)));
  return idx;
}

std::string short_label(const std::string& s, size_t max_chars) {
  return s.size() <= max_chars ? s : ".." + s.substr(s.size() - (max_chars - 2));
}

struct NodeCurves {
  std::string node;
  bool is_weight = false;
  Series step, low, high;
};

void draw_quant(const std::vector<nlohmann::json>& lines, const std::string& metrics,
                const std::string& out) {
  std::vector<NodeCurves> nodes;
  for (const nlohmann::json& j : lines) {
    if (j["type"] != "quant") continue;
    LB_CHECK(j.contains("node") && j["node"].is_string(), "plot: '", metrics,
             "': a quant line without a node name");
    const std::string name = j["node"].get<std::string>();
    NodeCurves* nc = nullptr;
    for (NodeCurves& c : nodes)
      if (c.node == name) nc = &c;
    if (!nc) {
      nodes.push_back(NodeCurves());
      nc = &nodes.back();
      nc->node = name;
      nc->is_weight = j.contains("is_weight") && j["is_weight"].is_boolean() && j["is_weight"].get<bool>();
    }
    const double ep = j["epoch"].get<double>();
    nc->step.x.push_back(ep), nc->step.y.push_back(num_or_nan(j, "step"));
    nc->low.x.push_back(ep), nc->low.y.push_back(100 * num_or_nan(j, "clip_low"));
    nc->high.x.push_back(ep), nc->high.y.push_back(100 * num_or_nan(j, "clip_high"));
  }
  LB_CHECK(!nodes.empty(), "plot --quant: '", metrics, "' has no quantizer lines ({\"type\":\"quant\"}); "
           "was the run trained with quantizers?");
  static const Rgb palette[12] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
                                  {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127},
                                  {188, 189, 34},  {23, 190, 207}, {0, 0, 128},     {128, 0, 0}};
  const std::vector<size_t> shown = pick_indices(nodes.size(), 12);
  std::vector<Series> wstep, astep, low, high;
  for (size_t k = 0; k < shown.size(); ++k) {
    NodeCurves& nc = nodes[shown[k]];
    for (Series* s : {&nc.step, &nc.low, &nc.high}) s->label = short_label(nc.node, 18), s->color = palette[k];
    (nc.is_weight ? wstep : astep).push_back(nc.step);
    low.push_back(nc.low);
    high.push_back(nc.high);
  }
  const bool note = shown.size() < nodes.size();
  Canvas c(1200, note ? 860 : 840);
  draw_panel(c, 0, 0, 600, 420, "weight step / clip", "epoch", wstep);
  draw_panel(c, 600, 0, 600, 420, "activation step / clip", "epoch", astep);
  draw_panel(c, 0, 420, 600, 420, "clipped low (%)", "epoch", low);
  draw_panel(c, 600, 420, 600, 420, "clipped high (%)", "epoch", high);
  if (note) {
    const std::string msg = str_cat("showing ", shown.size(), " of ", nodes.size(),
                                    " quantizer nodes: the first, the last and evenly spaced between");
    c.text(10, 844, msg, {60, 60, 60});
    std::printf("plot --quant: %s\n", msg.c_str());
  }
  c.save_png(out);
}

}  // namespace

int cmd_plot(int argc, char** argv) {
  CLI::App app{"Draw a run's loss and accuracy curves (or its quantizer statistics) to a PNG file",
               "lowbit plot"};
  std::string run, out;
  bool quant = false;
  app.add_option("run", run, "run directory (holds metrics.jsonl)")->required();
  app.add_option("--out", out, "image file (default RUN/curves.png, with --quant RUN/quant.png)");
  app.add_flag("--quant", quant, "draw step sizes and clip fractions per quantizer node vs epoch");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const std::string metrics = run + "/metrics.jsonl";
  const std::vector<nlohmann::json> lines = read_metrics(metrics, run);
  if (out.empty()) out = run + (quant ? "/quant.png" : "/curves.png");
  if (quant)
    draw_quant(lines, metrics, out);
  else
    draw_curves(lines, metrics, out);
  std::printf("%s\n", out.c_str());
  return 0;
}

}  // namespace lowbit
