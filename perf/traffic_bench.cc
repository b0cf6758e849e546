// traffic: the page-fault traffic of one migration over time: faults per second, pages on
// demand and prefetched per second, bytes per second, in the destination pager's 100 ms windows,
// beside the job's own progress in the same windows.
//
// How: a running memory_job (random-10%, 4 GiB) on n1 of a 2-node local cluster is moved to n2
// with `ferry migrate` (lazy) and followed until its last page arrived (migration_case.h); the
// series is the import's, from `ferry stat GPID --json`, placed on the job's clock by the
// import's start. Reference: the bytes the job holds (present pages); the ratio is the wire's
// overhead (duplicates). No target: this one is for looking at.
//
//   ferry-bench traffic [MiB=4096] [PATTERN=random-10%] [MODE=lazy]
#include <fmt/format.h>

#include <algorithm>
#include <iostream>

#include "perf/bench.h"
#include "perf/migration_case.h"

namespace ferry::bench {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kWindowS = 0.1;

nlohmann::json run(const std::vector<std::string>& args) {
  const std::string name = "traffic";
  const uint64_t mib = uint64_t(std::max(64.0, arg_number(args, 0, 4096)));
  const std::string pattern = arg_text(args, 1, "random-10%");
  const std::string mode = arg_text(args, 2, "lazy");
  std::cout << fmt::format(
      "traffic: memory_job {} MiB {} on n1 -> n2 ({}); the destination "
      "pager's 100 ms windows\n",
      mib, pattern, mode);
  std::unique_ptr<Cluster> cluster;
  if (std::string err = ensure_cluster(cluster, "tr"); !err.empty()) return error_entry(name, err);
  CaseSpec spec;
  spec.job = {mib, pattern, 0, 500, "n1"};
  spec.migration.mode = mode;
  spec.run_after_ms = 1000;
  spec.what = fmt::format("traffic {} MiB {}", mib, pattern);
  CaseResult c = run_case(*cluster, spec);
  cluster.reset();
  progress_done();
  if (!c.error.empty()) return error_entry(name, c.error);
  const auto& series = c.arrival.import.value("series", nlohmann::json::array());
  if (series.empty()) return error_entry(name, "ferry stat --json has no time series");

  // Rows: seconds from the freeze, faults/s, on-demand pages/s, prefetched pages/s, MiB/s,
  // job rate (share of its rate before).
  nlohmann::json rows = nlohmann::json::array();
  double peak_mib_s = 0, peak_faults = 0;
  std::cout << fmt::format("{:>8} {:>10} {:>12} {:>12} {:>9} {:>9}\n", "s", "faults/s",
                           "on-demand/s", "prefetched/s", "MiB/s", "job rate");
  for (const auto& w : series) {
    const double at = c.arrival.import_start_ms + w.value("at_ms", 0.0);
    const double job = c.rate_before > 0 ? rate(c.points, at, at + 100) / c.rate_before : 0;
    const double faults = w.value("faults", 0.0) / kWindowS;
    const double mib_s = w.value("bytes", 0.0) / kMiB / kWindowS;
    nlohmann::json row{(at - c.freeze_ms()) / 1000,
                       faults,
                       w.value("on_demand_pages", 0.0) / kWindowS,
                       w.value("prefetched_pages", 0.0) / kWindowS,
                       mib_s,
                       job};
    peak_mib_s = std::max(peak_mib_s, mib_s);
    peak_faults = std::max(peak_faults, faults);
    if (rows.size() < 12 || &w == &series.back())
      std::cout << fmt::format("{:>8.1f} {:>10.0f} {:>12.0f} {:>12.0f} {:>9.0f} {:>9.2f}\n",
                               row[0].get<double>(), faults, row[2].get<double>(),
                               row[3].get<double>(), mib_s, job);
    else if (rows.size() == 12)
      std::cout << "     ...\n";
    rows.push_back(row);
  }
  const double present_mib = double(c.arrival.present_pages) * 4096 / kMiB;
  const double wire_mib = double(c.arrival.bytes_on_wire) / kMiB;
  const double overhead = present_mib > 0 ? wire_mib / present_mib : 0;
  nlohmann::json s = c.summary();
  s.update({{"series_columns",
             {"s_from_freeze", "faults_per_s", "on_demand_pages_per_s", "prefetched_pages_per_s",
              "mib_per_s", "job_rate_share"}},
            {"series", rows},
            {"peak_mib_s", peak_mib_s},
            {"peak_faults_per_s", peak_faults},
            {"wire_mib", wire_mib}});
  if (c.arrival.import.contains("latency_percentiles"))
    s["latency_percentiles"] = c.arrival.import["latency_percentiles"];
  std::cout << fmt::format(
      "\n  {} faults, {} pages on demand, {} prefetched, {:.0f} MiB on the "
      "wire for {:.0f} MiB held; peak {:.0f} MiB/s; last page {:.2f} s after "
      "the freeze\n",
      s.value("faults", 0), s.value("on_demand_pages", 0), s.value("prefetched_pages", 0), wire_mib,
      present_mib, peak_mib_s, c.last_page_after_freeze_ms() / 1000);
  nlohmann::json checks = {
      check("bytes on the wire", wire_mib, "MiB", present_mib, overhead, "-", std::nullopt)};
  print_checks(checks);
  return {{"name", name},
          {"unit", "per s"},
          {"figures", s},
          {"reference", {{"present_mib", present_mib}}},
          {"ratio", {{"wire_vs_present", overhead}}},
          {"target", "none (for looking at)"},
          {"checks", checks},
          {"provider", "tcp;ofi_rxm"},
          {"machine", machine_description()}};
}

Register reg({"traffic",
              "page-fault traffic of one migration over time (faults/s, MiB/s, on demand vs "
              "prefetched)",
              run,
              {"512"},
              "One lazy migration of a running 4 GiB memory_job (random-10%): the destination "
              "pager's 100 ms windows (ferry stat GPID --json: faults, pages on demand, pages "
              "prefetched, bytes) placed on the job's clock, beside the job's own rate in the same "
              "windows. For looking at: no target.",
              "[MiB=4096] [PATTERN=random-10%] [MODE=lazy]"});

}  // namespace
}  // namespace ferry::bench
