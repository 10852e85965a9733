// model_info: the per-layer table of a model (output shape, parameters, multiply-accumulates per
// image), read from the graph of one forward: each layer names its node with its module path, so
// matching node names to module paths gives every layer's output shape without hooks.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <sstream>

#include "core/autograd.h"
#include "layers/layers.h"
#include "models/models.h"

namespace lowbit {

namespace {

bool reported(Module* m) {
  return dynamic_cast<Conv2d*>(m) || dynamic_cast<Linear*>(m) || dynamic_cast<BatchNorm2d*>(m) ||
         dynamic_cast<MaxPool2d*>(m) || dynamic_cast<AvgPool2d*>(m) ||
         dynamic_cast<GlobalAvgPool*>(m);
}

// Multiply-accumulates per image of a layer whose output (batch `n`) has shape `out`.
int64_t layer_macs(Module* m, const Shape& out, int64_t n) {
  const int64_t per_image = n > 0 ? shape_numel(out) / n : 0;
  if (auto* c = dynamic_cast<Conv2d*>(m))
    return per_image * (c->in_channels / c->opts.groups) * c->kernel_size * c->kernel_size;
  if (auto* l = dynamic_cast<Linear*>(m)) return per_image * l->in_features;
  return 0;
}

std::string with_commas(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return v < 0 ? "-" + out : out;
}

}  // namespace

std::vector<LayerInfo> model_info(Module& model, const Shape& input) {
  LB_CHECK(input.size() == 4 && input[0] > 0, "model_info: input must be (N, C, H, W) with N > 0, got ",
           shape_str(input));
  LB_CHECK(grad_enabled(), "model_info: grad mode is off; the layer shapes are read from the "
           "recorded graph, so call it outside a NoGradGuard");
  // Eval mode: batch statistics of one image are not wanted, nor running-average updates.
  const bool was_training = model.training();
  model.eval();
  Tensor out;
  try {
    Tensor x = Tensor::zeros(input).set_requires_grad(true);
    out = model.forward(x);
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);

  std::map<std::string, Module*> by_path;
  std::vector<std::pair<std::string, Module*>> modules = model.named_modules();
  for (auto& [path, m] : modules)
    if (reported(m)) by_path[path] = m;

  // The last node a layer recorded is its output (a quantized layer may record more, e.g.
  // "layer1.0.conv1/wq", under other names). Rows in execution order: by the first node's seq.
  struct Seen { int64_t first_seq, last_seq; Shape out_shape; };
  std::map<std::string, Seen> seen;
  for (const auto& node : graph_nodes(out)) {
    if (!by_path.count(node->name)) continue;
    auto s = seen.find(node->name);
    if (s == seen.end()) {
      seen[node->name] = {node->seq, node->seq, node->out_shape};
      continue;
    }
    s->second.first_seq = std::min(s->second.first_seq, node->seq);
    if (node->seq > s->second.last_seq) {
      s->second.last_seq = node->seq;
      s->second.out_shape = node->out_shape;
    }
  }

  std::vector<std::pair<int64_t, LayerInfo>> ordered;
  int64_t unseen = 0;
  for (auto& [path, m] : modules) {
    if (!reported(m)) continue;
    LayerInfo row;
    row.name = path;
    row.kind = m->kind();
    row.describe = m->describe();
    row.params = m->num_parameters();
    auto s = seen.find(path);
    int64_t order;
    if (s != seen.end()) {
      row.out_shape = s->second.out_shape;
      row.macs = layer_macs(m, row.out_shape, input[0]);
      order = s->second.first_seq;
    } else {
      // Not reached by the forward (or its op records no named node): listed last, no shape.
      row.describe += row.describe.empty() ? "(not reached)" : " (not reached)";
      order = INT64_MAX / 2 + unseen++;
    }
    ordered.push_back({order, row});
  }
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<LayerInfo> rows;
  for (auto& o : ordered) rows.push_back(std::move(o.second));
  return rows;
}

std::string format_model_info(const std::vector<LayerInfo>& rows) {
  const std::vector<std::string> head = {"layer", "kind", "config", "output", "params", "MACs"};
  std::vector<std::vector<std::string>> cells;
  int64_t params = 0, macs = 0;
  for (const LayerInfo& r : rows) {
    cells.push_back({r.name, r.kind, r.describe, r.out_shape.empty() ? "-" : shape_str(r.out_shape),
                     with_commas(r.params), with_commas(r.macs)});
    params += r.params;
    macs += r.macs;
  }
  cells.push_back({"total", "", "", "", with_commas(params), with_commas(macs)});
  std::vector<size_t> width(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    width[c] = head[c].size();
    for (const auto& row : cells) width[c] = std::max(width[c], row[c].size());
  }
  std::ostringstream os;
  auto line = [&](const std::vector<std::string>& row) {
    for (size_t c = 0; c < row.size(); ++c) {
      const bool right = c >= 4;  // numbers right-aligned
      const size_t pad = width[c] - row[c].size();
      if (c) os << "  ";
      if (right) os << std::string(pad, ' ') << row[c];
      else os << row[c] << (c + 1 < row.size() ? std::string(pad, ' ') : "");
    }
    os << "\n";
  };
  line(head);
  size_t total_width = 2 * (head.size() - 1);
  for (size_t w : width) total_width += w;
  os << std::string(total_width, '-') << "\n";
  for (size_t i = 0; i + 1 < cells.size(); ++i) line(cells[i]);
  os << std::string(total_width, '-') << "\n";
  line(cells.back());
  char buf[128];
  std::snprintf(buf, sizeof buf, "%.3f M parameters, %.2f M MACs per image\n", params / 1e6,
                macs / 1e6);
  os << buf;
  return os.str();
}

}  // namespace lowbit
