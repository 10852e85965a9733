// Quantizer statistics from the autograd graph (quant/quant_stats.h): clip fractions computed as
// each op computes its range, in the op's dtype; step values and gradient norms from the inputs.
// METHODS.md "Uniform quantizers", "Non-uniform quantizers", "Gradient estimators to audit".
#include "quant/quant_stats.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "quant/levels.h"
#include "quant/minmax.h"

namespace lowbit {

namespace {

const std::set<std::string>& quant_kinds() {
  static const std::set<std::string> k = {"lsq",    "lsqplus", "pact",   "dorefa_w",      "dorefa_a",
                                          "apot_w", "apot_a",  "pot_w",  "pot_a",         "minmax",
                                          "nearest_round",     "stochastic_round",       "midrise"};
  return k;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const Tensor* input_named(const Node& n, const char* name) {
  for (size_t i = 0; i < n.inputs.size(); ++i)
    if (n.input_names[i] == name && n.inputs[i].defined()) return &n.inputs[i];
  return nullptr;
}

double mean_of(const std::vector<double>& v) {
  if (v.empty()) return kNaN;
  double s = 0;
  for (double e : v) s += e;
  return s / (double)v.size();
}

// Counts the elements of x (channels blocks of x.numel()/channels) that side(i, c) puts below
// (-1) or above (+1) the range, into st's fractions.
template <class F>
void count_sides(int64_t n, int64_t channels, F side, QuantNodeStats& st) {
  int64_t lo = 0, hi = 0;
  const int64_t inner = channels > 0 ? n / channels : n;
  for (int64_t i = 0; i < n; ++i) {
    const int s = side(i, inner > 0 ? i / inner : 0);
    lo += s < 0;
    hi += s > 0;
  }
  st.clip_low = n ? (double)lo / (double)n : kNaN;
  st.clip_high = n ? (double)hi / (double)n : kNaN;
}

// Fills step and the clip fractions, with the arithmetic in T (the op's dtype) as the op does it.
template <class T>
void fill_stats(const Node& n, const Tensor& x, QuantNodeStats& st) {
  const std::string& k = n.kind;
  const T* p = x.data<T>();
  const int64_t N = x.numel();
  const bool per_channel = n.attr("per_channel", 0) != 0;
  auto param = [&](const char* name) {
    const Tensor* t = input_named(n, name);
    return t ? t->to_vector<T>() : std::vector<T>();
  };
  if (k == "lsq" || k == "lsqplus") {
    const std::vector<T> s = param("s"), b = k == "lsqplus" ? param("beta") : std::vector<T>();
    if (s.empty() || (k == "lsqplus" && b.size() != s.size())) return;
    st.param_name = "s";
    st.step = mean_of(std::vector<double>(s.begin(), s.end()));
    const QuantRange r = quant_range(st.bits, n.attr("signed", 1) != 0);
    const T lo = (T)-r.qn, hi = (T)r.qp;
    const int64_t C = per_channel ? (int64_t)s.size() : 1;
    count_sides(N, C, [&](int64_t i, int64_t c) {
      const T v = (p[i] - (b.empty() ? (T)0 : b[c])) / s[c];
      return v <= lo ? -1 : (v >= hi ? 1 : 0);
    }, st);
  } else if (k == "pact") {
    const std::vector<T> a = param("alpha");
    if (a.empty()) return;
    st.param_name = "alpha";
    st.step = (double)a[0];
    count_sides(N, 1, [&](int64_t i, int64_t) { return p[i] < 0 ? -1 : (p[i] >= a[0] ? 1 : 0); }, st);
  } else if (k == "dorefa_a") {
    count_sides(N, 1, [&](int64_t i, int64_t) { return p[i] < 0 ? -1 : (p[i] > 1 ? 1 : 0); }, st);
  } else if (k == "dorefa_w") {
    st.clip_low = st.clip_high = N ? 0.0 : kNaN;
  } else if (k == "apot_w" || k == "pot_w" || k == "apot_a" || k == "pot_a") {
    const std::vector<T> a = param("alpha");
    if (a.empty()) return;
    st.param_name = "alpha";
    st.step = (double)a[0];
    const bool w = k == "apot_w" || k == "pot_w";
    if (w && !(n.has_attr("mean") && n.has_attr("std"))) return;
    const T mean = (T)n.attr("mean", 0), sd = (T)n.attr("std", 1);
    count_sides(N, 1, [&](int64_t i, int64_t) {
      const T u = w ? (p[i] - mean) / sd / a[0] : p[i] / a[0];
      return u < (T)-1 ? -1 : (u > (T)1 ? 1 : 0);
    }, st);
  } else if (k == "minmax") {
    const bool sym = n.attr("symmetric", 0) != 0;
    const int64_t qmin = (int64_t)n.attr("qmin", 0), qmax = (int64_t)n.attr("qmax", 0);
    std::vector<T> S, Z;
    if (!per_channel && n.has_attr("scale")) {
      S = {(T)n.attr("scale", 1)}, Z = {(T)n.attr("zero", 0)};
    } else if (per_channel && n.attr("range_from_x", 0) != 0) {
      // The range came from x itself: recompute it per channel as the op did.
      auto [mn, mx] = minmax_range(x, true);
      const std::vector<double> a = mn.to_vector<double>(), b = mx.to_vector<double>();
      for (size_t c = 0; c < a.size(); ++c) {
        double sc, z;
        minmax_scale_zero(a[c], b[c], st.bits, sym, &sc, &z);
        S.push_back((T)sc), Z.push_back((T)z);
      }
    } else {
      return;  // per-channel ranges from outside are not on the node
    }
    st.param_name = "scale";
    st.step = mean_of(std::vector<double>(S.begin(), S.end()));
    count_sides(N, (int64_t)S.size(), [&](int64_t i, int64_t c) {
      const T q = round_half_even(p[i] / S[c]) + Z[c];
      return q < (T)qmin ? -1 : (q > (T)qmax ? 1 : 0);
    }, st);
  } else {  // nearest_round, stochastic_round, midrise: a fixed step, per-tensor on the node
    if (per_channel || !n.has_attr("step")) return;
    const T s = (T)n.attr("step", 1), lo = (T)n.attr("lo", 0), hi = (T)n.attr("hi", 0);
    st.param_name = "step";
    st.step = (double)s;
    count_sides(N, 1, [&](int64_t i, int64_t) {
      const T v = p[i] / s;
      return v <= lo ? -1 : (v >= hi ? 1 : 0);
    }, st);
  }
}

double l2_norm(const Tensor& g) {
  double s = 0;
  for (double v : g.to_vector<double>()) s += v * v;
  return std::sqrt(s);
}

nlohmann::json num_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

}  // namespace

bool is_quant_kind(const std::string& kind) { return quant_kinds().count(kind) > 0; }

std::vector<std::pair<std::string, std::shared_ptr<Node>>> quant_nodes(const Tensor& root) {
  std::vector<std::pair<std::string, std::shared_ptr<Node>>> out;
  int64_t k = 0;
  for (auto& n : graph_nodes(root)) {
    if (!is_quant_kind(n->kind)) continue;
    out.emplace_back(n->name.empty() ? n->kind + "#" + std::to_string(k) : n->name, n);
    ++k;
  }
  return out;
}

bool is_weight_quant_node(const Node& n) {
  if (ends_with(n.kind, "_w")) return true;
  if (ends_with(n.kind, "_a")) return false;
  if (ends_with(n.name, "/wq")) return true;
  if (ends_with(n.name, "/aq")) return false;
  return !n.inputs.empty() && n.inputs[0].defined() && !n.inputs[0].node() && n.inputs[0].requires_grad();
}

QuantNodeStats quant_node_stats(const Node& n, const std::string& key) {
  QuantNodeStats st;
  st.node = key;
  st.kind = n.kind;
  st.bits = (int)n.attr("bits", 0);
  st.is_weight = is_weight_quant_node(n);
  if (n.inputs.empty() || !n.inputs[0].defined()) return st;
  const Tensor& x = n.inputs[0];
  st.numel = x.numel();
  if (st.bits > 0) {
    // Statistics are counted on the host: a device input is copied once.
    const Tensor xh = x.device() == Device::cpu ? x : x.to_device(Device::cpu);
    LB_DISPATCH_FLOAT(x.dtype(), "collect_quant_stats", [&] { fill_stats<scalar_t>(n, xh, st); });
  }
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const Tensor& in = n.inputs[i];
    if (!in.defined() || in.node() || !in.requires_grad()) continue;
    Tensor g = in.grad();
    if (g.defined()) st.grad_norms.emplace_back(n.input_names[i], l2_norm(g));
  }
  return st;
}

std::vector<QuantNodeStats> collect_quant_stats(const Tensor& root) {
  std::vector<QuantNodeStats> out;
  for (auto& [key, n] : quant_nodes(root)) out.push_back(quant_node_stats(*n, key));
  return out;
}

void QuantStatsAccumulator::add(const std::vector<QuantNodeStats>& batch) {
  ++batches_;
  for (const QuantNodeStats& s : batch) {
    Entry* e = nullptr;
    for (Entry& c : entries_)
      if (c.first.node == s.node) e = &c;
    if (!e) {
      entries_.push_back(Entry());
      e = &entries_.back();
      e->first = s;
    }
    if (std::isfinite(s.step)) e->step_sum += s.step, ++e->step_n;
    if (std::isfinite(s.clip_low) && std::isfinite(s.clip_high)) {
      e->low += s.clip_low * (double)s.numel;
      e->high += s.clip_high * (double)s.numel;
      e->clip_elems += s.numel;
    }
    e->numel += s.numel;
    for (const auto& [name, v] : s.grad_norms) {
      auto it = e->grads.begin();
      while (it != e->grads.end() && it->first != name) ++it;
      if (it == e->grads.end()) it = e->grads.insert(it, {name, {0.0, 0}});
      it->second.first += v, ++it->second.second;
    }
  }
}

std::vector<QuantNodeStats> QuantStatsAccumulator::result() const {
  std::vector<QuantNodeStats> out;
  for (const Entry& e : entries_) {
    QuantNodeStats s = e.first;
    s.step = e.step_n ? e.step_sum / (double)e.step_n : kNaN;
    s.clip_low = e.clip_elems ? e.low / (double)e.clip_elems : kNaN;
    s.clip_high = e.clip_elems ? e.high / (double)e.clip_elems : kNaN;
    s.numel = e.numel;
    s.grad_norms.clear();
    for (const auto& [name, sc] : e.grads) s.grad_norms.emplace_back(name, sc.first / (double)sc.second);
    out.push_back(s);
  }
  return out;
}

nlohmann::json quant_node_json(const QuantNodeStats& s) {
  nlohmann::json g = nlohmann::json::object();
  for (const auto& [name, v] : s.grad_norms) g[name] = num_or_null(v);
  return {{"node", s.node},         {"kind", s.kind},
          {"bits", s.bits},         {"is_weight", s.is_weight},
          {"param", s.param_name},  {"step", num_or_null(s.step)},
          {"clip_low", num_or_null(s.clip_low)}, {"clip_high", num_or_null(s.clip_high)},
          {"numel", s.numel},       {"grad_norms", g}};
}

nlohmann::json quant_stats_json(const std::vector<QuantNodeStats>& stats, int64_t epoch) {
  nlohmann::json lines = nlohmann::json::array();
  for (const QuantNodeStats& s : stats) {
    nlohmann::json j = quant_node_json(s);
    j.erase("grad_norms");
    j.erase("numel");
    nlohmann::json line = {{"type", "quant"}, {"epoch", epoch}};
    line.update(j);
    lines.push_back(line);
  }
  return lines;
}

}  // namespace lowbit
