// One measured migration (migration_case.h).
#include "perf/migration_case.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "perf/bench.h"
#include "perf/bench_process.h"

namespace ferry::bench {

long memory_needed_mib(uint64_t mib, const std::string& mode) {
  const double copies = mode == "lazy" ? 1.25 : 2.2;
  return long(double(mib) * copies) + 1024;
}

std::string ensure_cluster(std::unique_ptr<Cluster>& cluster, const std::string& tag) {
  if (cluster && cluster->is_up()) return "";
  cluster = std::make_unique<Cluster>(tag);
  progress("ferry cluster up --nodes 2");
  std::string err = cluster->up();
  if (!err.empty()) cluster.reset();
  return err;
}

double CaseResult::last_page_after_freeze_ms() const {
  if (!gap.found || arrival.last_page_ms <= 0) return -1;
  return arrival.last_page_ms - gap.last_before_ms;
}

nlohmann::json CaseResult::summary() const {
  nlohmann::json j{
      {"size_mib", spec.job.mib}, {"pattern", spec.job.pattern}, {"mode", spec.migration.mode}};
  if (!error.empty()) j["error"] = error;
  if (!migration.reply.is_null()) j["ferry"] = migration.reply;  // its own account
  if (!gap.found) return j;
  j["downtime_ms"] = downtime_ms();
  j["downtime_from"] = migration.stops.empty() ? "largest output gap during the migrate call"
                                               : "output gap around the freeze seen in /proc";
  j["freeze_to_resume_ms"] = migration.reply_number("freeze_to_resume_ms", -1);
  // Where the gap's time went: before the freeze was seen, and after ferry's resume (the
  // resumed job's first access, waiting for its pages).
  if (double f = migration.freeze_ms(); !std::isnan(f)) {
    j["gap_before_freeze_ms"] = f - gap.last_before_ms;
    j["gap_after_resume_ms"] =
        gap.first_after_ms - f - migration.reply_number("freeze_to_resume_ms", 0);
  }
  j["migrate_cli_ms"] = migration.cli_end_ms - migration.cli_start_ms;
  j["rate_before_per_s"] = rate_before;
  j["job_rss_kib"] = job_rss_kib;
  if (arrival.last_page_ms > 0) {
    j["last_page_after_freeze_ms"] = last_page_after_freeze_ms();
    j["ms_to_last_page"] = arrival.ms_to_last_page;
    auto [stalled, n] = stalls(points, resume_ms(), arrival.last_page_ms);
    j["stalled_ms_until_last_page"] = stalled;
    j["stalls_until_last_page"] = n;
  }
  j["bytes_on_wire"] = arrival.bytes_on_wire;
  j["present_pages"] = arrival.present_pages;
  if (arrival.import.is_object()) {
    for (const char* k : {"faults", "on_demand_pages", "prefetched_pages", "zero_pages",
                          "duplicate_pages", "fault_latency_us"})
      if (arrival.import.contains(k)) j[k] = arrival.import[k];
    if (arrival.import.contains("staged_pages")) j["staged_pages"] = arrival.import["staged_pages"];
  }
  return j;
}

CaseResult run_case(Cluster& cluster, const CaseSpec& spec) {
  CaseResult c;
  c.spec = spec;
  const std::string& what = spec.what;
  const long need = memory_needed_mib(spec.job.mib, spec.migration.mode);
  if (long free = available_mib(); free < need) {
    c.error = fmt::format("skipped: needs {} MiB free, {} MiB available", need, free);
    return c;
  }
  MemoryJob job(cluster, spec.job);
  if (std::string err = job.start(); !err.empty()) {
    c.error = err;
    return c;
  }
  // Memory is sampled from half a second before the migration (the plot's baseline).
  const double sampled_before_ms = spec.sample_memory ? std::min(500.0, spec.run_before_ms) : 0;
  if (!job.run_for(spec.run_before_ms - sampled_before_ms,
                   what + ": running before the migration")) {
    c.error = "the job stopped before its migration: " + job.last_other_line();
    return c;
  }
  if (auto i = job.info(spec.job.node); i.is_object()) c.job_rss_kib = i.value("rss_kib", 0L);
  std::unique_ptr<MemorySampler> sampler;
  if (spec.sample_memory) {
    sampler = std::make_unique<MemorySampler>(
        MemorySampler::for_cluster(cluster, spec.job.node, spec.migration.to),
        std::chrono::milliseconds(20));
    if (!job.run_for(sampled_before_ms, what + ": running before the migration")) {
      c.error = "the job stopped before its migration: " + job.last_other_line();
      return c;
    }
  }
  progress(what + ": ferry migrate");
  c.migration = migrate(cluster, job, spec.migration, what);
  if (c.migration.error.empty()) {
    const double timeout_ms = 60000 + double(spec.job.mib) * 60;  // >= 17 MiB/s
    c.arrival = wait_last_page(cluster, job, c.migration, timeout_ms, what);
    if (!c.arrival.error.empty()) c.error = c.arrival.error;
    if (c.error.empty() && !job.run_for(spec.run_after_ms, what + ": running after the last page"))
      c.error = "the job stopped after its migration: " + job.last_other_line();
  } else {
    c.error = c.migration.error;
  }
  if (sampler) c.memory = sampler->stop();
  job.poll();
  c.points = job.points;
  c.gap = freeze_gap(c.points, c.migration.freeze_ms(), c.migration.cli_start_ms,
                     c.migration.cli_end_ms);
  if (c.gap.found) c.rate_before = rate_before(c.points, c.gap.last_before_ms);
  if (c.error.empty() && !c.gap.found) c.error = "no gap in the job's output around the migration";
  progress(what + ": stopping the job");
  if (std::string err = job.stop(); !err.empty() && c.error.empty()) c.error = err;
  return c;
}

}  // namespace ferry::bench
