// The quantizer ops registered for `lowbit grad`: every op named in the brief is there once, with
// its learnable parameters as inputs and the options its definition has.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>

#include "core/op_registry.h"

using namespace lowbit;

namespace {
std::vector<std::string> input_names(const RegisteredOp& op) {
  std::vector<std::string> v;
  for (const auto& i : op.inputs) v.push_back(i.name);
  return v;
}
bool has_option(const RegisteredOp& op, const std::string& name) {
  return std::any_of(op.options.begin(), op.options.end(), [&](const OpOption& o) { return o.name == name; });
}
}  // namespace

TEST_CASE("quant registry: ops, inputs and options for lowbit grad") {
  std::vector<RegisteredOp> table;
  add_quant_grad_ops(table);
  std::map<std::string, const RegisteredOp*> by_name;
  for (const auto& op : table) {
    CHECK_MESSAGE(by_name.count(op.name) == 0, "duplicate op ", op.name);
    by_name[op.name] = &op;
    CHECK(op.run);
    CHECK(!op.summary.empty());
    CHECK(has_option(op, "bits"));
    for (const auto& o : op.options) CHECK_MESSAGE(!o.help.empty(), op.name, ".", o.name);
  }
  const std::map<std::string, std::vector<std::string>> want = {
      {"lsq", {"x", "s"}},         {"lsqplus", {"x", "s", "beta"}}, {"pact", {"x", "alpha"}},
      {"dorefa_w", {"w"}},         {"dorefa_a", {"x"}},             {"apot_w", {"w", "alpha"}},
      {"apot_a", {"x", "alpha"}},  {"pot_w", {"w", "alpha"}},       {"pot_a", {"x", "alpha"}},
      {"minmax", {"x"}},           {"stochastic_round", {"x"}},     {"midrise", {"x"}}};
  CHECK(table.size() == want.size());
  for (const auto& [name, inputs] : want) {
    REQUIRE_MESSAGE(by_name.count(name), "missing op ", name);
    CHECK_MESSAGE(input_names(*by_name[name]) == inputs, name);
  }
  for (const char* n : {"lsq", "lsqplus"})
    for (const char* o : {"signed", "per_channel", "grad_scale", "ste"}) CHECK_MESSAGE(has_option(*by_name[n], o), n, " ", o);
  CHECK(has_option(*by_name["minmax"], "symmetric"));
  CHECK(has_option(*by_name["minmax"], "per_channel"));
  CHECK(has_option(*by_name["stochastic_round"], "seed"));
  CHECK(has_option(*by_name["stochastic_round"], "step"));
  CHECK(has_option(*by_name["midrise"], "step"));
  CHECK_FALSE(has_option(*by_name["dorefa_w"], "ste"));  // no clip: no choice
  for (const char* n : {"pact", "dorefa_a", "apot_w", "apot_a", "pot_w", "pot_a", "minmax"})
    CHECK_MESSAGE(has_option(*by_name[n], "ste"), n);
}
