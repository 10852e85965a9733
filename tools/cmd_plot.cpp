// `lowbit plot runs/NAME`: loss and accuracy curves (train and test per epoch) from metrics.jsonl,
// drawn to runs/NAME/curves.png (or --out FILE).
#include <CLI/CLI.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tools/commands.h"
#include "tools/plot_canvas.h"

namespace lowbit {

int cmd_plot(int argc, char** argv) {
  CLI::App app{"Draw a run's loss and accuracy curves to a PNG file", "lowbit plot"};
  std::string run, out;
  app.add_option("run", run, "run directory (holds metrics.jsonl)")->required();
  app.add_option("--out", out, "image file (default RUN/curves.png)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const std::string metrics = run + "/metrics.jsonl";
  std::ifstream f(metrics);
  LB_CHECK(f.good(), "plot: cannot open '", metrics, "' (is '", run, "' a run directory?)");
  Series tr_loss{"train", {}, {}, {31, 119, 180}}, te_loss{"test", {}, {}, {214, 39, 40}};
  Series tr_acc{"train", {}, {}, {31, 119, 180}}, te_acc{"test", {}, {}, {214, 39, 40}};
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
    if (!j.is_object() || !j.contains("type") || !j.contains("epoch")) continue;
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
  if (out.empty()) out = run + "/curves.png";
  c.save_png(out);
  std::printf("%s\n", out.c_str());
  return 0;
}

}  // namespace lowbit
