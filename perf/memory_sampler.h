// Resident memory over time, for the memory benchmarks: every `period` (20 ms), the summed RSS
// of each of a few groups of processes, on a thread of its own. The groups are asked for again
// every 100 ms (processes come and go during a migration: the restored copy appears, the
// source's shell ends). for_cluster() makes the usual four groups of a migration from n1 to n2:
// the processes whose parent is the source's agent (the job, then its memory shell), the
// source's pager, the processes of the destination's agent (the restored job), its pager.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "perf/bench_cluster.h"

namespace ferry::bench {

class MemorySampler {
 public:
  using Groups = std::function<std::vector<std::vector<pid_t>>()>;
  struct Sample {
    double t_ms = 0;        // mono
    std::vector<long> kib;  // per group
    long total() const;
  };

  MemorySampler(Groups groups, std::chrono::milliseconds period);
  static Groups for_cluster(const Cluster& cluster, const std::string& source,
                            const std::string& destination);
  MemorySampler(const MemorySampler&) = delete;
  MemorySampler& operator=(const MemorySampler&) = delete;
  ~MemorySampler();

  // Stops sampling (idempotent) and returns the samples.
  const std::vector<Sample>& stop();
  // The sample with the largest total (after stop()).
  Sample peak() const;

 private:
  Groups groups_;
  std::atomic<bool> quit_{false};
  std::vector<Sample> samples_;
  std::thread thread_;
};

}  // namespace ferry::bench
