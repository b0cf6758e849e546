// The migration benchmarks' job (perf/programs/memory_job.c) running on a benchmark's cluster:
// started with `ferry run -d`, its progress read from its log (the file `ferry ps --json` names
// as "output", which follows the job across nodes), stopped with `ferry kill -KILL` + `ferry
// wait`. The job's progress lines carry CLOCK_MONOTONIC, the clock of mono_ms(), so the
// benchmark lines them up with what it saw itself (the migrate call, the freeze).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "perf/bench_cluster.h"

namespace ferry::bench {

struct JobSpec {
  uint64_t mib = 1024;
  std::string pattern = "random-10%";  // seq, random-10%, random-100%
  uint64_t accesses = 0;               // 0: runs until stopped
  uint64_t seed = 1;
  std::string node = "n1";
  int threads = 1;                     // > 1: that many threads in all, the others idle
  std::string describe() const;  // "1024 MiB random-10%"
};

// One `p T_US COUNT` line: when (mono ms) and how many accesses so far.
struct ProgressPoint {
  double t_ms = 0;
  uint64_t count = 0;
};

class MemoryJob {
 public:
  MemoryJob(Cluster& cluster, JobSpec spec);
  MemoryJob(const MemoryJob&) = delete;
  MemoryJob& operator=(const MemoryJob&) = delete;
  ~MemoryJob();  // stop()

  // `ferry run -d`, then waits until the job has filled its memory and printed its first
  // progress line. "" or what went wrong.
  std::string start();
  // Reads what its log has gained since the last call.
  void poll();
  // Polls every 5 ms until `done()` holds (true), the job ended or `timeout_ms` passed (false).
  // `what` is shown as progress.
  bool wait_until(const std::function<bool()>& done, double timeout_ms, const std::string& what);
  // Until the job's own clock shows `ms` more of running (a progress line that much later).
  bool run_for(double ms, const std::string& what);
  // Until its `done` line (a job with a number of accesses).
  bool wait_done(double timeout_ms, const std::string& what);
  // Kills it wherever it is and waits for its end; "" or what went wrong. Idempotent.
  std::string stop();
  // Its entry of `ferry ps --json` asked from `node` (RSS is known only where it runs).
  nlohmann::json info(const std::string& node = "") const;
  // The last line of its log that is not a progress line (an error message, "done ...").
  const std::string& last_other_line() const { return other_; }

  const JobSpec spec;
  uint64_t gpid = 0;
  pid_t pid = 0;       // on its first node
  std::string output;  // the log file
  uint64_t pages = 0;  // from "ready PAGES"
  bool ended = false;  // ferry ps says exited or lost
  bool done = false;   // "done COUNT CHECKSUM" seen
  uint64_t done_count = 0;
  std::string checksum;
  std::vector<ProgressPoint> points;

 private:
  void parse(const std::string& line);
  Cluster& cluster_;
  int fd_ = -1;
  uint64_t offset_ = 0;
  std::string partial_, other_;
  bool stopped_ = false;
};

}  // namespace ferry::bench
