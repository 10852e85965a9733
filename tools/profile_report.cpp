// `lowbit bench --profile`'s report: per row, forward, backward and total time per step, each with
// its share of the mean profiled step; the caller's sections and "other" only have a total.
#include "tools/profile_report.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace lowbit {

namespace {
struct PerStep {
  double step_ms;  // mean profiled step
  double scale;    // seconds summed over steps -> ms per step
  double ms(double s) const { return s * scale; }
  double pct(double s) const { return step_ms > 0 ? 100.0 * ms(s) / step_ms : 0.0; }
};
PerStep per_step(const OpProfiler& p) {
  const double n = p.steps() > 0 ? (double)p.steps() : 1.0;
  return {1e3 * p.step_s() / n, 1e3 / n};
}
}  // namespace

nlohmann::json profile_json(const OpProfiler& p) {
  const PerStep u = per_step(p);
  const int64_t n = p.steps() > 0 ? p.steps() : 1;
  nlohmann::json rows = nlohmann::json::array();
  for (const OpProfiler::Row& r : p.rows())
    rows.push_back({{"kind", r.name},
                    {"forward_ms", u.ms(r.forward_s)}, {"forward_pct", u.pct(r.forward_s)},
                    {"backward_ms", u.ms(r.backward_s)}, {"backward_pct", u.pct(r.backward_s)},
                    {"total_ms", u.ms(r.total_s())}, {"total_pct", u.pct(r.total_s())},
                    {"forward_calls", r.forward_calls / n}, {"backward_calls", r.backward_calls / n}});
  return {{"steps", p.steps()}, {"step_ms", u.step_ms}, {"device_sync", p.sync_device()},
          {"rows", rows}};
}

std::string profile_table(const OpProfiler& p, double timed_step_s, const char* device) {
  const PerStep u = per_step(p);
  const int64_t n = p.steps() > 0 ? p.steps() : 1;
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line,
                "profile (%s): %lld training steps, %.2f ms per profiled step (timed median %.2f "
                "ms); per step:\n",
                device, (long long)p.steps(), u.step_ms, 1e3 * timed_step_s);
  out += line;
  if (p.sync_device())
    out += "  (the device is synchronised at every clock read, so each op is charged its own GPU "
           "work, but host and device no longer overlap: the profiled step is slower)\n";
  std::snprintf(line, sizeof line, "  %-22s %9s %9s %6s %9s %6s %9s %6s\n", "kind", "calls",
                "fwd ms", "fwd%", "bwd ms", "bwd%", "total ms", "total%");
  out += line;
  // "-" where a row has no time in a phase (the engine rows have no forward, sections neither).
  auto cell = [&](char* buf, size_t size, double s) {
    if (s > 0)
      std::snprintf(buf, size, "%9.3f %6.1f", u.ms(s), u.pct(s));
    else
      std::snprintf(buf, size, "%9s %6s", "-", "-");
  };
  for (const OpProfiler::Row& r : p.rows()) {
    char calls[32], fwd[32], bwd[32];
    if (r.forward_calls || r.backward_calls)
      std::snprintf(calls, sizeof calls, "%lld/%lld", (long long)(r.forward_calls / n),
                    (long long)(r.backward_calls / n));
    else
      std::snprintf(calls, sizeof calls, "-");
    cell(fwd, sizeof fwd, r.forward_s);
    cell(bwd, sizeof bwd, r.backward_s);
    std::snprintf(line, sizeof line, "  %-22s %9s %s %s %9.3f %6.1f\n", r.name.c_str(), calls, fwd,
                  bwd, u.ms(r.total_s()), u.pct(r.total_s()));
    out += line;
  }
  out += "  calls: forward/backward per step. An op's forward is the time from the previous op's "
         "end to its own (core/profiler.h)\n";
  return out;
}

}  // namespace lowbit
