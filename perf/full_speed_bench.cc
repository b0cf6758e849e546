// full-speed: how long after a lazy migration's resume the job runs at full speed again: the
// time from its resume to the end of the first 100 ms window (of its own progress counter) at
// >= 90% of its rate before the migration, for sequential and random-10% access (and random-100%,
// for honesty) at 1 and 4 GiB.
//
// How: a memory_job runs on n1 of a 2-node local cluster for 2 s (its rate before: the median of
// its 100 ms windows over the last second before the freeze), is moved to n2 with `ferry
// migrate` (lazy) and runs on until 1 s after its last page arrived (migration_case.h). The
// curve of its rate (share of the rate before, per 100 ms window from 1 s before the freeze) is
// kept for the report's plot. Reference: the rate before the migration. Target: under 3 s at
// 4 GiB random-10%.
//
//   ferry-bench full-speed [CASES=seq@1024,seq@4096,random-10%@1024,random-10%@4096,
//                                random-100%@1024,random-100%@4096] [MODE=lazy]
#include <fmt/format.h>

#include <iostream>

#include "perf/bench.h"
#include "perf/migration_case.h"

namespace ferry::bench {
namespace {

constexpr double kFraction = 0.9;
constexpr double kTargetS = 3;

nlohmann::json run(const std::vector<std::string>& args) {
  const std::string name = "full-speed";
  const auto list = arg_list(args, 0,
                             {"seq@1024", "seq@4096", "random-10%@1024", "random-10%@4096",
                              "random-100%@1024", "random-100%@4096"});
  const std::string mode = arg_text(args, 1, "lazy");
  std::cout << fmt::format(
      "full-speed: memory_job on n1 -> n2 ({}), time from resume to the first "
      "100 ms window at >= 90% of the rate before\n",
      mode);
  std::cout << fmt::format("{:<18} {:>13} {:>13} {:>12} {:>12} {:>12}\n", "case", "rate before/s",
                           "full speed s", "last page s", "downtime ms", "stalled s");
  std::unique_ptr<Cluster> cluster;
  nlohmann::json cases = nlohmann::json::array(), checks = nlohmann::json::array();
  uint64_t seed = 200;
  for (const auto& item : list) {
    const auto at = item.find('@');
    const std::string pattern = item.substr(0, at);
    const uint64_t mib = at == std::string::npos ? 1024 : std::stoull(item.substr(at + 1));
    CaseSpec spec;
    spec.job = {mib, pattern, 0, seed++, "n1"};
    spec.migration.mode = mode;
    spec.run_before_ms = 2000;
    spec.run_after_ms = 1000;
    spec.what = fmt::format("full-speed {} MiB {}", mib, pattern);
    CaseResult c;
    if (std::string err = ensure_cluster(cluster, "fs"); !err.empty())
      c.error = err;
    else
      c = run_case(*cluster, spec);
    progress_done();
    nlohmann::json s = c.summary();
    const std::string label = fmt::format("{} MiB {}", mib, pattern);
    if (!c.error.empty()) {
      std::cout << fmt::format("{:<18} error: {}\n", label, c.error);
      if (c.error.rfind("skipped", 0) != 0) cluster.reset();
      cases.push_back(s);
      continue;
    }
    auto full = time_to_full_speed(c.points, c.resume_ms(), c.rate_before, kFraction);
    // The curve: share of the rate before, per 100 ms window, from 1 s before the freeze.
    nlohmann::json curve = nlohmann::json::array();
    for (const auto& w : windows(c.points, c.resume_ms(), -1000 - c.downtime_ms(),
                                 c.points.back().t_ms - c.resume_ms()))
      curve.push_back({w.start_ms, w.per_s / c.rate_before});
    s["time_to_full_speed_ms"] = full ? nlohmann::json(*full) : nlohmann::json();
    s["curve"] = curve;
    s["curve_origin"] = "resume";
    auto [stalled, n] = stalls(c.points, c.resume_ms(), c.points.back().t_ms);
    std::cout << fmt::format("{:<18} {:>13.3g} {:>13} {:>12.2f} {:>12.1f} {:>12.2f}\n", label,
                             c.rate_before, full ? fmt::format("{:.2f}", *full / 1000) : "never",
                             c.last_page_after_freeze_ms() / 1000, c.downtime_ms(), stalled / 1000)
              << std::flush;
    const bool targeted = mib == 4096 && pattern == "random-10%";
    checks.push_back(
        check(fmt::format("time to full speed, {}", label), full ? *full / 1000 : -1, "s",
              std::nullopt, std::nullopt, targeted ? "< 3 s" : "-",
              targeted ? std::optional<bool>(full && *full / 1000 < kTargetS) : std::nullopt));
    cases.push_back(s);
  }
  cluster.reset();
  std::cout << "\n";
  print_checks(checks);
  return {{"name", name},
          {"unit", "s"},
          {"figures", {{"mode", mode}, {"fraction", kFraction}, {"cases", cases}}},
          {"reference", "each job's own rate before its migration (rate_before_per_s)"},
          {"ratio", nlohmann::json::object()},
          {"target", {{"random_10_4096_mib_s_max", kTargetS}}},
          {"checks", checks},
          {"provider", "tcp;ofi_rxm"},
          {"machine", machine_description()}};
}

Register reg(
    {"full-speed",
     "time from resume until the job runs at 90% of its rate before (seq, random, 1/4 GiB)",
     run,
     {"seq@512,random-10%@512"},
     "A memory_job runs 2 s on n1 (its rate before: the median 100 ms window of its "
     "last second), is moved to n2 lazily and runs until 1 s after its last page. Time "
     "to full speed: from its resume to the end of the first 100 ms window of its own "
     "progress counter at >= 90% of the rate before. Note that memory_job touches a new "
     "page at every access (tens of millions per second), so a sequential sweep covers "
     "all of its memory within milliseconds: no prefetcher can stay ahead of it, and it "
     "is at full speed only once its memory is (nearly) all there. Target: under 3 s at "
     "4 GiB random-10%.",
     "[CASES=seq@1024,seq@4096,random-10%@1024,random-10%@4096,random-100%@1024,random-100%@4096] "
     "[MODE=lazy]"});

}  // namespace
}  // namespace ferry::bench
