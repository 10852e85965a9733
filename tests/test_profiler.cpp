// The op-level profiler (core/profiler.h) as the autograd engine drives it: which rows a forward
// and backward pass charge, how many calls, that the scope ends the charging, and that "other" is
// the step time nobody was charged. Times are not asserted beyond their signs and sums.
#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <thread>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/profiler.h"

using namespace lowbit;

namespace {
std::map<std::string, OpProfiler::Row> by_name(const OpProfiler& p) {
  std::map<std::string, OpProfiler::Row> m;
  for (const OpProfiler::Row& r : p.rows()) m[r.name] = r;
  return m;
}
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

TEST_CASE("profiler: forward and backward calls per op kind, engine rows, scope") {
  Tensor x = Tensor::from_vector<double>({3}, {1, 2, 3}).set_requires_grad(true);
  OpProfiler prof(/*sync_device=*/false);
  {
    ProfileScope scope(prof);
    const double t0 = now_s();
    prof.mark();
    Tensor y = sum(add(mul(x, x), mul(x, x)));  // mul twice, add once, sum once
    {
      NoGradGuard ng;  // recorded nothing: charged to nobody
      mul(x, x);
    }
    backward(y);
    prof.mark();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    prof.charge("optimizer update", OpProfiler::Phase::section);
    prof.add_step(now_s() - t0);
  }
  Tensor z = mul(x, x);  // outside the scope: not charged
  backward(sum(z));

  auto rows = by_name(prof);
  REQUIRE(rows.count("mul"));
  CHECK(rows["mul"].forward_calls == 2);
  CHECK(rows["mul"].backward_calls == 2);
  CHECK(rows["add"].forward_calls == 1);
  CHECK(rows["add"].backward_calls == 1);
  CHECK(rows["sum"].forward_calls == 1);
  CHECK(rows["sum"].backward_calls == 1);
  // The engine's rows time backward work but count no op calls.
  REQUIRE(rows.count("grad accumulate"));
  REQUIRE(rows.count("autograd engine"));
  CHECK(rows["grad accumulate"].backward_calls == 0);
  CHECK(rows["grad accumulate"].forward_s == 0);
  CHECK(rows["optimizer update"].section_s >= 0.002);
  CHECK(rows["optimizer update"].forward_calls + rows["optimizer update"].backward_calls == 0);
  REQUIRE(rows.count("other"));
  CHECK(prof.steps() == 1);

  // The rows partition the step: disjoint intervals inside it, "other" the rest.
  double total = 0;
  for (const OpProfiler::Row& r : prof.rows()) {
    CHECK(r.forward_s >= 0);
    CHECK(r.backward_s >= 0);
    CHECK(r.section_s >= 0);
    total += r.total_s();
  }
  CHECK(total == doctest::Approx(prof.step_s()).epsilon(1e-9));
  // Sorted by total, longest first.
  const auto sorted = prof.rows();
  for (size_t i = 1; i < sorted.size(); ++i) CHECK(sorted[i - 1].total_s() >= sorted[i].total_s());
}

TEST_CASE("profiler: scopes nest and restore the outer profiler") {
  Tensor x = Tensor::from_vector<double>({2}, {1, 2}).set_requires_grad(true);
  OpProfiler outer(false), inner(false);
  {
    ProfileScope a(outer);
    {
      ProfileScope b(inner);
      mul(x, x);
    }
    add(x, x);
  }
  auto o = by_name(outer), i = by_name(inner);
  CHECK(i.count("mul") == 1);
  CHECK(i.count("add") == 0);
  CHECK(o.count("mul") == 0);
  CHECK(o["add"].forward_calls == 1);
}
