// One measured migration, the unit of the migration benchmarks (downtime, last-page,
// full-speed, peak-memory, traffic): a memory_job started on n1 with `ferry run -d`, left to
// run, moved to n2 with `ferry migrate` (lazy, eager or precopy), followed until its last page
// arrived, left to run a little more, and killed. What the job printed is lined up with what
// the benchmark saw (the freeze, the import's start and last page) on the machine's monotonic
// clock, and summarised. A case that cannot run (not enough free memory, a mode the CLI does
// not have, a failed migration) comes back with `error` set and leaves nothing running.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "perf/bench_cluster.h"
#include "perf/job_timeline.h"
#include "perf/memory_job_run.h"
#include "perf/memory_sampler.h"
#include "perf/migration_run.h"

namespace ferry::bench {

struct CaseSpec {
  JobSpec job;
  MigrationSpec migration;
  double run_before_ms = 1500;  // running before the migration (its full-speed rate)
  double run_after_ms = 500;    // running after the last page arrived
  bool sample_memory = false;   // RSS of both sides every 20 ms
  std::string what;             // for progress lines: "downtime 1024 MiB lazy"
};

struct CaseResult {
  std::string error;
  CaseSpec spec;
  std::vector<ProgressPoint> points;
  Migration migration;
  Arrival arrival;
  FreezeGap gap;
  double rate_before = 0;  // accesses per second before the freeze
  long job_rss_kib = 0;    // the job's own RSS before the migration
  std::vector<MemorySampler::Sample> memory;

  double downtime_ms() const { return gap.found ? gap.gap_ms() : -1; }
  double resume_ms() const { return gap.first_after_ms; }
  // mono ms of the freeze: the job's last line before it.
  double freeze_ms() const { return gap.last_before_ms; }
  // Freeze to last page, ms (-1 unknown).
  double last_page_after_freeze_ms() const;
  // Figures for an entry: downtime, ferry's own account, last page, bytes, stalls, latency.
  nlohmann::json summary() const;
};

CaseResult run_case(Cluster& cluster, const CaseSpec& spec);

// MiB that must be free before a job of `mib` migrates in `mode` (both copies for eager and
// precopy, about one for lazy), with room for the rest of the machine.
long memory_needed_mib(uint64_t mib, const std::string& mode);

// A cluster for a benchmark, (re)started when needed: after an error the benchmark drops it
// (reset()) and the next case starts a fresh one. "" or why it could not start.
std::string ensure_cluster(std::unique_ptr<Cluster>& cluster, const std::string& tag);

}  // namespace ferry::bench
