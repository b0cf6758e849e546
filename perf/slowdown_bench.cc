// slowdown: what one migration costs a memory-heavy job: its completion time when migrated
// once mid-run against the same job not migrated, for sequential, random-10% and random-100%
// access, with the checksums of the two runs compared (a mismatch is a loud error).
//
// How: on a 2-node local cluster, a short calibration run of memory_job sets the number of
// accesses that take about 8 s; the job then runs to its end unmigrated on n1 (the reference),
// and again on n1 with `ferry migrate --to n2` once half of its accesses are done, two rounds of
// both, alternated; the shortest run of each is the figure (the machine is shared). Completion
// time is the job's own: from its first progress line to the one after its final checksum; every
// run's checksum must be the same.
// No target: the figure is the ratio.
//
//   ferry-bench slowdown [MiB=2048] [PATTERNS=seq,random-10%,random-100%] [SECONDS=8] [MODE=lazy]
//                        [ROUNDS=2]
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iostream>

#include "perf/bench.h"
#include "perf/bench_process.h"
#include "perf/migration_case.h"

namespace ferry::bench {
namespace {

struct Run {
  std::string error;
  double completion_ms = 0;
  uint64_t count = 0;
  std::string checksum;
  Migration migration;
  double downtime_ms = -1;
  double after_resume_ms = -1;  // of the downtime, after ferry's resume (the first access)
};

// One run to its end; migrated to n2 once `migrate_at` accesses are done (0: never).
Run run_job(Cluster& cluster, const JobSpec& spec, uint64_t migrate_at, const std::string& mode,
            const std::string& what) {
  Run r;
  MemoryJob job(cluster, spec);
  if (r.error = job.start(); !r.error.empty()) return r;
  const double expected_ms = 120000 + double(spec.mib) * 60;
  if (migrate_at > 0) {
    if (!job.wait_until([&] { return job.points.back().count >= migrate_at; }, expected_ms,
                        what + ": running to half-way")) {
      r.error = "the job did not get half-way: " + job.last_other_line();
      return r;
    }
    progress(what + ": ferry migrate");
    r.migration = migrate(cluster, job, {"n2", mode, 0}, what);
    if (!r.migration.error.empty()) {
      r.error = r.migration.error;
      return r;
    }
  }
  if (!job.wait_done(expected_ms, what + ": running to its end")) {
    r.error = "the job did not finish: " + job.last_other_line();
    return r;
  }
  r.completion_ms = job.points.back().t_ms - job.points.front().t_ms;
  r.count = job.done_count;
  r.checksum = job.checksum;
  if (migrate_at > 0) {
    auto g = freeze_gap(job.points, r.migration.freeze_ms(), r.migration.cli_start_ms,
                        r.migration.cli_end_ms);
    if (g.found) r.downtime_ms = g.gap_ms();
    if (g.found && !std::isnan(r.migration.freeze_ms()))
      r.after_resume_ms = g.first_after_ms - r.migration.freeze_ms() -
                          r.migration.reply_number("freeze_to_resume_ms", 0);
  }
  return r;
}

// Accesses per second of the pattern at this size, from 1.5 s of an endless run.
double calibrate(Cluster& cluster, JobSpec spec, const std::string& what) {
  spec.accesses = 0;
  MemoryJob job(cluster, spec);
  if (!job.start().empty() || !job.run_for(1500, what + ": calibrating")) return 0;
  const double end = job.points.back().t_ms;
  return rate(job.points, end - 1000, end);
}

nlohmann::json run(const std::vector<std::string>& args) {
  const std::string name = "slowdown";
  const uint64_t mib = uint64_t(std::max(16.0, arg_number(args, 0, 2048)));
  const auto patterns = arg_list(args, 1, {"seq", "random-10%", "random-100%"});
  const double seconds = std::max(1.0, arg_number(args, 2, 8));
  const std::string mode = arg_text(args, 3, "lazy");
  const int rounds = int(std::max(1.0, arg_number(args, 4, 2)));
  std::cout << fmt::format(
      "slowdown: memory_job {} MiB, about {:.0f} s of accesses, unmigrated vs "
      "migrated n1 -> n2 ({}) half-way, {} rounds (the shortest run of each counts)\n",
      mib, seconds, mode, rounds);
  std::cout << fmt::format("{:<12} {:>12} {:>14} {:>12} {:>9} {:>12}  {}\n", "pattern", "accesses",
                           "unmigrated s", "migrated s", "ratio", "downtime ms", "checksums");
  std::unique_ptr<Cluster> cluster;
  nlohmann::json cases = nlohmann::json::array(), checks = nlohmann::json::array();
  nlohmann::json reference = nlohmann::json::object(), ratio = nlohmann::json::object();
  bool any_mismatch = false;
  uint64_t seed = 300;
  for (const auto& pattern : patterns) {
    nlohmann::json s{{"pattern", pattern}, {"size_mib", mib}, {"mode", mode}};
    auto fail = [&](const std::string& e) {
      s["error"] = e;
      cases.push_back(s);
      std::cout << fmt::format("{:<12} error: {}\n", pattern, e);
      cluster.reset();
    };
    if (long need = memory_needed_mib(mib, mode), free = available_mib(); free < need) {
      fail(fmt::format("skipped: needs {} MiB free, {} MiB available", need, free));
      continue;
    }
    if (std::string err = ensure_cluster(cluster, "sd"); !err.empty()) {
      fail(err);
      continue;
    }
    JobSpec spec{mib, pattern, 0, seed++, "n1"};
    const std::string what = fmt::format("slowdown {}", pattern);
    const double per_s = calibrate(*cluster, spec, what);
    progress_done();
    if (per_s <= 0) {
      fail("calibration failed");
      continue;
    }
    spec.accesses = uint64_t(per_s * seconds);
    // Rounds of (unmigrated, migrated), alternated; the shortest of each is the figure (the
    // machine is shared: the least disturbed run is the job's own cost).
    std::vector<Run> plains, moveds;
    std::string failed;
    for (int round = 1; round <= rounds && failed.empty(); ++round) {
      const std::string of = fmt::format(" ({}/{})", round, rounds);
      Run plain = run_job(*cluster, spec, 0, mode, what + " unmigrated" + of);
      progress_done();
      if (!plain.error.empty()) {
        failed = "unmigrated: " + plain.error;
        break;
      }
      Run moved = run_job(*cluster, spec, spec.accesses / 2, mode, what + " migrated" + of);
      progress_done();
      if (!moved.error.empty()) failed = "migrated: " + moved.error;
      plains.push_back(std::move(plain));
      if (failed.empty()) moveds.push_back(std::move(moved));
    }
    if (!failed.empty()) {
      fail(failed);
      continue;
    }
    auto shortest = [](const std::vector<Run>& runs) {
      return *std::min_element(runs.begin(), runs.end(), [](const Run& a, const Run& b) {
        return a.completion_ms < b.completion_ms;
      });
    };
    const Run plain = shortest(plains), moved = shortest(moveds);
    bool same = true;
    nlohmann::json plain_s = nlohmann::json::array(), moved_s = nlohmann::json::array();
    for (const auto& r : plains) {
      same &= r.checksum == plains[0].checksum && r.count == plains[0].count;
      plain_s.push_back(r.completion_ms / 1000);
    }
    for (const auto& r : moveds) {
      same &= r.checksum == plains[0].checksum && r.count == plains[0].count;
      moved_s.push_back(r.completion_ms / 1000);
    }
    any_mismatch |= !same;
    const double r = moved.completion_ms / plain.completion_ms;
    s.update({{"accesses", spec.accesses},
              {"rounds", rounds},
              {"unmigrated_s", plain.completion_ms / 1000},
              {"migrated_s", moved.completion_ms / 1000},
              {"unmigrated_runs_s", plain_s},
              {"migrated_runs_s", moved_s},
              {"extra_s", (moved.completion_ms - plain.completion_ms) / 1000},
              {"slowdown", r},
              {"downtime_ms", moved.downtime_ms},
              {"freeze_to_resume_ms", moved.migration.reply_number("freeze_to_resume_ms", -1)},
              {"gap_after_resume_ms", moved.after_resume_ms},
              {"checksum_unmigrated", plain.checksum},
              {"checksum_migrated", moved.checksum},
              {"checksums_match", same},
              {"ferry", moved.migration.reply}});
    cases.push_back(s);
    reference[pattern + "_unmigrated_s"] = plain.completion_ms / 1000;
    ratio[pattern] = r;
    std::cout << fmt::format(
                     "{:<12} {:>12} {:>14.2f} {:>12.2f} {:>9.3f} {:>12.1f}  {}\n", pattern,
                     spec.accesses, plain.completion_ms / 1000, moved.completion_ms / 1000, r,
                     moved.downtime_ms,
                     same ? "match" : "MISMATCH " + plain.checksum + " vs " + moved.checksum)
              << std::flush;
    checks.push_back(check(fmt::format("completion time migrated, {}", pattern),
                           moved.completion_ms / 1000, "s", plain.completion_ms / 1000, r,
                           "checksums match", same));
  }
  cluster.reset();
  if (any_mismatch)
    std::cout << "\n*** CHECKSUM MISMATCH: a migrated job computed a different result ***\n";
  std::cout << "\n";
  print_checks(checks);
  nlohmann::json out{{"name", name},
                     {"unit", "s"},
                     {"figures", {{"size_mib", mib}, {"seconds", seconds}, {"cases", cases}}},
                     {"reference", reference},
                     {"ratio", ratio},
                     {"target", "none (the ratio is the figure); checksums must match"},
                     {"checks", checks},
                     {"provider", "tcp;ofi_rxm"},
                     {"machine", machine_description()}};
  if (any_mismatch) out["checksum_mismatch"] = true;
  return out;
}

Register reg(
    {"slowdown",
     "completion time migrated once mid-run vs not migrated (seq, random-10%, random-100%)",
     run,
     {"512", "-", "3", "-", "1"},
     "A memory_job with a fixed number of accesses (about 8 s of work, calibrated) runs "
     "to its end on n1 unmigrated, then again migrated n1 -> n2 (lazy) once half of its "
     "accesses are done. Completion time is the job's own, from its first access to the "
     "end of its final checksum over all of its memory; the two checksums must match. "
     "No target: the ratio is the figure.",
     "[MiB=2048] [PATTERNS=seq,random-10%,random-100%] [SECONDS=8] [MODE=lazy] [ROUNDS=2]"});

}  // namespace
}  // namespace ferry::bench
