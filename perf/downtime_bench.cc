// downtime: how long a job stands still when it migrates, against its memory size, for lazy,
// eager (stop-and-copy, the reference) and precopy migration.
//
// How: a memory_job (random-10% by default) runs on n1 of a 2-node local cluster, is moved to n2
// with `ferry migrate --to n2 [--eager|--precopy]` after 1.5 s and followed until its last page
// arrived. Its downtime is read from its own output: the gap between its last progress line
// before the freeze and its first after the resume (lines come every 0.5 ms while it runs; the
// freeze is the source process's stop seen in /proc, so the stalls on faults after a lazy resume
// are not taken for it; the job reads its clock after every access, so its first line after the
// resume follows its first access there). Ferry's own freeze_to_resume_ms is recorded beside it,
// and the part of the gap after it (the first access, waiting for its page). Three runs per size
// for lazy and precopy (the median is the figure), one for eager. Reference: eager's downtime at
// the same size. Targets: lazy under 20 ms at every size, and flat (8 GiB / 256 MiB <= 1.5).
//
//   ferry-bench downtime [SIZES_MIB=256,1024,4096,8192] [MODES=lazy,eager,precopy]
//                        [PATTERN=random-10%] [RUNS=3 (eager: 1)]
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>

#include "perf/bench.h"
#include "perf/migration_case.h"

namespace ferry::bench {
namespace {

constexpr double kLazyTargetMs = 20;
constexpr double kFlatnessMax = 1.5;

// The runs of one size and mode, summed up for the report's table and plot.
nlohmann::json aggregate(uint64_t mib, const std::string& mode,
                         const std::vector<CaseResult>& runs) {
  std::vector<double> down, ferry, after, last, capture, install, commit;
  for (const auto& c : runs) {
    down.push_back(c.downtime_ms());
    ferry.push_back(c.migration.reply_number("freeze_to_resume_ms", -1));
    if (double f = c.migration.freeze_ms(); !std::isnan(f))
      after.push_back(c.gap.first_after_ms - f -
                      c.migration.reply_number("freeze_to_resume_ms", 0));
    last.push_back(c.last_page_after_freeze_ms());
    capture.push_back(c.migration.reply_number("capture_ms", -1));
    install.push_back(c.migration.reply_number("install_ms", -1));
    commit.push_back(c.migration.reply_number("commit_ms", -1));
  }
  const CaseResult& any = runs.front();
  return {{"size_mib", mib},
          {"mode", mode},
          {"runs", runs.size()},
          {"downtime_ms", median(down)},
          {"downtime_ms_min", *std::min_element(down.begin(), down.end())},
          {"downtime_ms_max", *std::max_element(down.begin(), down.end())},
          {"freeze_to_resume_ms", median(ferry)},
          {"after_resume_ms", median(after)},
          {"capture_ms", median(capture)},
          {"install_ms", median(install)},
          {"commit_ms", median(commit)},
          {"last_page_after_freeze_ms", median(last)},
          {"bytes_on_wire", any.arrival.bytes_on_wire},
          {"precopy_rounds", any.migration.reply_number("precopy_rounds", 0)},
          {"precopy_pages_sent", any.migration.reply_number("precopy_pages_sent", 0)}};
}

nlohmann::json run(const std::vector<std::string>& args) {
  const std::string name = "downtime";
  const auto sizes = arg_list(args, 0, {"256", "1024", "4096", "8192"});
  const auto modes = arg_list(args, 1, {"lazy", "eager", "precopy"});
  const std::string pattern = arg_text(args, 2, "random-10%");
  // Runs per size: lazy and precopy are cheap and noisy (the first fault after the resume),
  // eager is long and steady.
  const int repeats = int(std::max(1.0, arg_number(args, 3, 3)));
  std::cout << fmt::format(
      "downtime: memory_job {} on n1 -> n2, sizes {} MiB, modes {}, {} runs each (eager: 1); "
      "downtime from the job's own output\n",
      pattern, fmt::join(sizes, ","), fmt::join(modes, ","), repeats);
  std::unique_ptr<Cluster> cluster;
  nlohmann::json cases = nlohmann::json::array(), summary = nlohmann::json::array();
  std::map<std::string, std::map<uint64_t, double>> downtime;  // mode -> size -> median ms
  std::cout << fmt::format("{:>9} {:<8} {:>12} {:>10} {:>13} {:>11} {:>10}\n", "size MiB", "mode",
                           "downtime ms", "ferry ms", "after resume", "last page s", "wire MiB");
  uint64_t seed = 1;
  for (const auto& size_s : sizes) {
    const uint64_t mib = std::stoull(size_s);
    for (const auto& mode : modes) {
      std::vector<CaseResult> good;
      const int runs = mode == "eager" ? 1 : repeats;
      for (int r = 0; r < runs; ++r) {
        CaseSpec spec;
        spec.job = {mib, pattern, 0, seed++, "n1"};
        spec.migration.mode = mode;
        spec.what = fmt::format("downtime {} MiB {} ({}/{})", mib, mode, r + 1, runs);
        CaseResult c;
        if (std::string err = ensure_cluster(cluster, "dt"); !err.empty())
          c.error = err;
        else
          c = run_case(*cluster, spec);
        progress_done();
        nlohmann::json s = c.summary();
        s["run"] = r + 1;
        if (!c.error.empty()) s["error"] = c.error;
        cases.push_back(s);
        if (!c.error.empty()) {
          std::cout << fmt::format("{:>9} {:<8} error: {}\n", mib, mode, c.error);
          if (c.error.rfind("skipped", 0) != 0 &&
              c.error.find("this ferry has no") == std::string::npos)
            cluster.reset();  // a fresh cluster for the next case
          if (c.error.rfind("skipped", 0) == 0 ||
              c.error.find("this ferry has no") != std::string::npos)
            break;  // the other runs would say the same
          continue;
        }
        std::cout << fmt::format("{:>9} {:<8} {:>12.1f} {:>10.1f} {:>13.1f} {:>11.2f} {:>10.0f}\n",
                                 mib, mode, c.downtime_ms(), s.value("freeze_to_resume_ms", -1.0),
                                 s.value("gap_after_resume_ms", -1.0),
                                 c.last_page_after_freeze_ms() / 1000,
                                 double(c.arrival.bytes_on_wire) / (1 << 20))
                  << std::flush;
        good.push_back(std::move(c));
      }
      if (good.empty()) {
        summary.push_back(
            {{"size_mib", mib}, {"mode", mode}, {"error", cases.back().value("error", "")}});
        continue;
      }
      summary.push_back(aggregate(mib, mode, good));
      downtime[mode][mib] = summary.back()["downtime_ms"];
    }
  }
  cluster.reset();
  nlohmann::json checks = nlohmann::json::array(), reference = nlohmann::json::object(),
                 ratio = nlohmann::json::object();
  for (const auto& size_s : sizes) {
    const uint64_t mib = std::stoull(size_s);
    std::optional<double> eager;
    if (downtime["eager"].count(mib)) eager = downtime["eager"][mib];
    if (eager) reference[size_s + "_mib_eager_ms"] = *eager;
    for (const char* mode : {"lazy", "precopy"}) {
      if (!downtime[mode].count(mib)) continue;
      const double ms = downtime[mode][mib];
      std::optional<double> r;
      if (eager && *eager > 0)
        r = ms / *eager, ratio[fmt::format("{}_vs_eager_{}_mib", mode, mib)] = *r;
      if (std::string(mode) == "lazy")
        checks.push_back(check(fmt::format("lazy downtime, {} MiB", mib), ms, "ms", eager, r,
                               "< 20 ms", ms < kLazyTargetMs));
      else
        checks.push_back(check(fmt::format("precopy downtime, {} MiB", mib), ms, "ms", eager, r,
                               "below eager's",
                               eager ? std::optional<bool>(ms < *eager) : std::nullopt));
    }
  }
  auto& lazy = downtime["lazy"];
  if (lazy.size() >= 2) {
    const double small = lazy.begin()->second, big = lazy.rbegin()->second;
    const double flat = small > 0 ? big / small : 0;
    ratio["lazy_largest_vs_smallest"] = flat;
    checks.push_back(check(
        fmt::format("lazy flatness, {} MiB / {} MiB", lazy.rbegin()->first, lazy.begin()->first),
        flat, "x", std::nullopt, flat, "<= 1.5 (flat)", flat <= kFlatnessMax));
  }
  std::cout << "\n";
  print_checks(checks);
  return {{"name", name},
          {"unit", "ms"},
          {"figures",
           {{"pattern", pattern}, {"runs", repeats}, {"summary", summary}, {"cases", cases}}},
          {"reference", reference},
          {"ratio", ratio},
          {"target", {{"lazy_ms_max", kLazyTargetMs}, {"lazy_flatness_max", kFlatnessMax}}},
          {"checks", checks},
          {"provider", "tcp;ofi_rxm"},
          {"machine", machine_description()}};
}

Register reg(
    {"downtime",
     "job downtime (its own output) vs memory size, lazy / eager / precopy; ref: eager",
     run,
     {"256,1024"},
     "A memory_job (random-10% of its pages) runs on n1 of a 2-node local cluster and is "
     "moved to n2 with `ferry migrate` (lazy, `--eager`, `--precopy`). Its downtime is "
     "read from its own output: the gap between its last progress line before the freeze "
     "(the source process's stop, seen in /proc) and its first after the resume; the job "
     "reads its clock after every access, so the gap includes the first access it could "
     "make once resumed. Ferry's own freeze-to-resume time is shown beside it. Reference: "
     "eager at the same size. Targets: lazy under 20 ms at every size, and flat "
     "(largest / smallest size <= 1.5).",
     "[SIZES_MIB=256,1024,4096,8192] [MODES=lazy,eager,precopy] [PATTERN=random-10%] [RUNS=3]"});

}  // namespace
}  // namespace ferry::bench
