// peak-memory: the memory a migration costs the two nodes: the peak of the summed RSS of the
// job on the source (then its memory shell), the job on the destination and both pagers during
// a migration, per mode, against the job's own RSS before it.
//
// How: a running memory_job (random-10%, 4 GiB) on n1 of a 2-node local cluster is moved to n2
// with `ferry migrate` (lazy, eager, precopy) and followed until its last page arrived; every
// 20 ms the RSS of the processes of each node's agent and of each pager is summed
// (memory_sampler.h). The curve over time is kept for the report's plot. Reference: the job's
// RSS before the migration. Target: lazy <= 1.1x (the source frees what was sent).
//
//   ferry-bench peak-memory [MiB=4096] [MODES=lazy,eager,precopy] [PATTERN=random-10%]
#include <fmt/format.h>

#include <algorithm>
#include <iostream>

#include "perf/bench.h"
#include "perf/migration_case.h"

namespace ferry::bench {
namespace {

constexpr double kLazyRatioMax = 1.1;
constexpr double kKiBPerMiB = 1024.0;

nlohmann::json run(const std::vector<std::string>& args) {
  const std::string name = "peak-memory";
  const uint64_t mib = uint64_t(std::max(64.0, arg_number(args, 0, 4096)));
  const auto modes = arg_list(args, 1, {"lazy", "eager", "precopy"});
  const std::string pattern = arg_text(args, 2, "random-10%");
  std::cout << fmt::format(
      "peak-memory: memory_job {} MiB {} on n1 -> n2, modes {}; RSS of "
      "both nodes' jobs and pagers every 20 ms\n",
      mib, pattern, fmt::join(modes, ","));
  std::cout << fmt::format("{:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7}\n", "mode",
                           "job MiB", "peak MiB", "n1 jobs", "n1 pager", "n2 jobs", "n2 pager",
                           "ratio");
  std::unique_ptr<Cluster> cluster;
  nlohmann::json cases = nlohmann::json::array(), checks = nlohmann::json::array();
  nlohmann::json reference = nlohmann::json::object(), ratio = nlohmann::json::object();
  uint64_t seed = 400;
  for (const auto& mode : modes) {
    CaseSpec spec;
    spec.job = {mib, pattern, 0, seed++, "n1"};
    spec.migration.mode = mode;
    spec.sample_memory = true;
    spec.run_after_ms = 1000;
    spec.what = fmt::format("peak-memory {}", mode);
    CaseResult c;
    if (std::string err = ensure_cluster(cluster, "pm"); !err.empty())
      c.error = err;
    else
      c = run_case(*cluster, spec);
    progress_done();
    nlohmann::json s = c.summary();
    if (c.error.empty() && (c.memory.empty() || c.job_rss_kib <= 0)) c.error = "no RSS samples";
    if (!c.error.empty()) {
      s["error"] = c.error;
      std::cout << fmt::format("{:<8} error: {}\n", mode, c.error);
      if (c.error.rfind("skipped", 0) != 0) cluster.reset();
      cases.push_back(s);
      continue;
    }
    MemorySampler::Sample peak;
    for (const auto& m : c.memory)
      if (peak.kib.empty() || m.total() > peak.total()) peak = m;
    const double r = double(peak.total()) / double(c.job_rss_kib);
    // The curve: every 100 ms, seconds from the freeze, MiB per group.
    nlohmann::json curve = nlohmann::json::array();
    double next = -1e18;
    for (const auto& m : c.memory) {
      if (m.t_ms < next && &m != &c.memory.back()) continue;
      next = m.t_ms + 100;
      nlohmann::json row{(m.t_ms - c.freeze_ms()) / 1000};
      for (long k : m.kib) row.push_back(double(k) / kKiBPerMiB);
      curve.push_back(row);
    }
    s.update({{"peak_total_mib", double(peak.total()) / kKiBPerMiB},
              {"peak_source_jobs_mib", double(peak.kib[0]) / kKiBPerMiB},
              {"peak_source_pager_mib", double(peak.kib[1]) / kKiBPerMiB},
              {"peak_destination_jobs_mib", double(peak.kib[2]) / kKiBPerMiB},
              {"peak_destination_pager_mib", double(peak.kib[3]) / kKiBPerMiB},
              {"peak_at_s", (peak.t_ms - c.freeze_ms()) / 1000},
              {"job_rss_mib", double(c.job_rss_kib) / kKiBPerMiB},
              {"peak_vs_job", r},
              {"samples", c.memory.size()},
              {"curve_columns",
               {"s_from_freeze", "n1_jobs_mib", "n1_pager_mib", "n2_jobs_mib", "n2_pager_mib"}},
              {"curve", curve}});
    cases.push_back(s);
    reference[mode + "_job_rss_mib"] = double(c.job_rss_kib) / kKiBPerMiB;
    ratio[mode] = r;
    std::cout << fmt::format(
                     "{:<8} {:>10.0f} {:>10.0f} {:>10.0f} {:>10.0f} {:>10.0f} {:>10.0f} "
                     "{:>7.3f}\n",
                     mode, double(c.job_rss_kib) / kKiBPerMiB, double(peak.total()) / kKiBPerMiB,
                     double(peak.kib[0]) / kKiBPerMiB, double(peak.kib[1]) / kKiBPerMiB,
                     double(peak.kib[2]) / kKiBPerMiB, double(peak.kib[3]) / kKiBPerMiB, r)
              << std::flush;
    const bool lazy = mode == "lazy";
    checks.push_back(check(fmt::format("peak RSS of both nodes, {}", mode),
                           double(peak.total()) / kKiBPerMiB, "MiB",
                           double(c.job_rss_kib) / kKiBPerMiB, r, lazy ? "<= 1.1x the job's" : "-",
                           lazy ? std::optional<bool>(r <= kLazyRatioMax) : std::nullopt));
  }
  cluster.reset();
  std::cout << "\n";
  print_checks(checks);
  return {{"name", name},
          {"unit", "MiB"},
          {"figures", {{"size_mib", mib}, {"pattern", pattern}, {"cases", cases}}},
          {"reference", reference},
          {"ratio", ratio},
          {"target", {{"lazy_ratio_max", kLazyRatioMax}}},
          {"checks", checks},
          {"provider", "tcp;ofi_rxm"},
          {"machine", machine_description()}};
}

Register reg({"peak-memory",
              "peak RSS of source + destination (jobs, shell, pagers) during a migration, per mode",
              run,
              {"512"},
              "A running 4 GiB memory_job (random-10%) is moved n1 -> n2 in each mode; every "
              "20 ms the RSS of the processes of each node's agent (the job, its memory shell, "
              "its restored copy) and of each pager is summed, until its last page arrived. "
              "Reference: the job's own RSS before the migration. Target: lazy <= 1.1x (the "
              "source frees what was sent). The pagers' own memory (about 90 MiB each, mostly "
              "rxm bounce buffers) is counted too.",
              "[MiB=4096] [MODES=lazy,eager,precopy] [PATTERN=random-10%]"});

}  // namespace
}  // namespace ferry::bench
