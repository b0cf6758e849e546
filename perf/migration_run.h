// One migration of a benchmark's job with the real CLI, and what the benchmark sees of it:
//   migrate()          `ferry migrate GPID --to NODE [--eager | --precopy[=N]] --json` (lazy has
//                      no flag). While it runs, the source process's state is read from /proc
//                      every 0.5 ms: the start of its last stop is the freeze, which tells the
//                      freeze's gap in the job's output from the stalls on faults that follow a
//                      lazy resume. A CLI without --json is read from its text; a CLI without
//                      the mode's flag is an error for that mode, not a crash.
//   wait_last_page()   the destination pager's import of the job's memory, polled every 50 ms
//                      on its control socket until the last page arrived; its start on our clock
//                      (from its elapsed time); then its entry and the export's from `ferry stat
//                      GPID --json` (time series, latency).
#pragma once

#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "perf/bench_cluster.h"
#include "perf/memory_job_run.h"

namespace ferry::bench {

struct MigrationSpec {
  std::string to = "n2";
  std::string mode = "lazy";  // lazy, eager, precopy
  int precopy_rounds = 0;     // 0: the CLI's default
};

struct Migration {
  MigrationSpec spec;
  std::string error;     // the CLI refused or failed: its words
  nlohmann::json reply;  // freeze_to_resume_ms, capture_ms, ... (from --json or the text)
  std::string migration_id, from;
  double cli_start_ms = 0, cli_end_ms = 0;  // mono
  // The source process's stops seen while the CLI ran (mono ms; end = +inf: never ran again).
  std::vector<std::pair<double, double>> stops;
  bool used_json = false;

  static constexpr double kNever = std::numeric_limits<double>::infinity();
  // The start of the last stop (the freeze), NaN if none was seen.
  double freeze_ms() const;
  std::string label(uint64_t gpid) const;  // the pagers' label of its import
  double reply_number(const char* key, double fallback = 0) const;
};

// `what` names the migration in progress lines.
Migration migrate(Cluster& cluster, const MemoryJob& job, const MigrationSpec& spec,
                  const std::string& what);

struct Arrival {
  std::string error;
  std::string state;           // the import's final state ("complete")
  bool found = false;          // the destination pager had an import for it
  double import_start_ms = 0;  // mono, estimated from its elapsed time
  double last_page_ms = 0;     // mono
  double ms_to_last_page = 0;  // from the import's start
  uint64_t bytes_on_wire = 0, present_pages = 0, arrived_pages = 0;
  nlohmann::json import;    // its entry of `ferry stat GPID --json`
  nlohmann::json exported;  // the source's export entry
};

// Waits until every page of the migration has arrived (or `timeout_ms`); an eager migration
// whose pages came with the state (no import) arrived when the CLI returned.
Arrival wait_last_page(Cluster& cluster, const MemoryJob& job, const Migration& m,
                       double timeout_ms, const std::string& what);

// The CLI flags for a mode ("--eager", "--precopy=3"; none for lazy).
std::vector<std::string> mode_flags(const MigrationSpec& spec);

}  // namespace ferry::bench
