// The table and JSON of `lowbit bench --profile` (tools/cmd_bench.cpp): an OpProfiler's rows
// (core/profiler.h) as milliseconds per step and shares of the profiled step.
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "core/profiler.h"

namespace lowbit {

// {"steps", "step_ms" (mean profiled step), "device_sync", "rows": [{"kind", "forward_ms",
// "forward_pct", "backward_ms", "backward_pct", "total_ms", "total_pct", "forward_calls",
// "backward_calls"}]}: times and calls per step, rows sorted by total; the total_pct sum to 100.
nlohmann::json profile_json(const OpProfiler& p);

// The same as a text table, headed by the profiled step against `timed_step_s` (the unprofiled
// median) and, when the device was synchronised at every clock read, a note saying so.
std::string profile_table(const OpProfiler& p, double timed_step_s, const char* device);

}  // namespace lowbit
