// The pager benchmarks' unit (fault-latency, prefetch-throughput, pager-rss): one memory region
// moved by the pagers of a real 2-node local cluster, without the agents: a pattern_source on
// n1 (tests/programs) is frozen, handed over and exported by n1's pager; a pattern_faulter
// waits with its own userfaultfd, which n2's pager imports; its pages are then checked byte by
// byte. The pagers are driven through their control sockets (ExportMemory, ImportMemory,
// PagerStat), as the agents drive them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "perf/bench_cluster.h"
#include "perf/bench_process.h"

namespace ferry::bench {

inline constexpr uint64_t kPatternBase = 0x600000000000ull;  // tests/programs/pattern.h
inline constexpr uint64_t kPageBytes = 4096;

struct Exported {
  uint64_t id = 0;
  std::string token, pager;
  uint64_t present = 0, total = 0;
  double ms = 0;  // freeze + hand over + ExportMemory
};

// What n2's pager says of an import (PagerStat).
struct ImportView {
  bool found = false;
  std::string state;
  uint64_t faults = 0, on_demand = 0, prefetched = 0, zero = 0, bytes = 0, duplicates = 0,
           present = 0, arrived = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
  uint64_t count = 0;
  double ms_to_last_page = 0, elapsed_ms = 0;
  std::vector<uint64_t> window_bytes;  // per 100 ms
};

ImportView import_stat(const Cluster& cluster, const std::string& label);
// Polls n2's view until the import ended (complete, ended, failed) or `timeout` passed.
ImportView wait_ended(const Cluster& cluster, const std::string& label,
                      std::chrono::milliseconds timeout,
                      std::chrono::milliseconds every = std::chrono::milliseconds(50));
// Median throughput (MiB/s) over the full 100 ms windows that moved bytes (first and last
// dropped: the ramp and the tail).
double steady_mib_s(const std::vector<uint64_t>& windows);

struct Move {
  std::unique_ptr<Cluster> cluster = std::make_unique<Cluster>("pg");
  std::unique_ptr<Child> source, faulter;
  Exported exported;
  uint64_t mib = 0, end = 0;
  std::string label;
  long source_rss_kib = 0;  // before the export

  // Up to the import: cluster up, source ready, faulter waiting. "" or what went wrong.
  // `mode` is the faulter's access pattern (random, seq, stride).
  std::string prepare(uint64_t mib, const std::string& faulter_threads, const std::string& mode);
  // Exports the source's region and imports it into the faulter (prefetch on or off).
  std::string export_and_import(bool prefetch, Clock::time_point* import_started = nullptr);
  // Lets the faulter check its pages; "" if every byte matched.
  std::string verify(std::chrono::milliseconds timeout = std::chrono::seconds(120));
  // The shell is killed by its pager once everything was sent or the import released it.
  bool source_gone(std::chrono::milliseconds timeout) { return source->wait(timeout) >= 0; }
  // Cluster down first (its pagers kill their shells), then anything left.
  ~Move();
};

}  // namespace ferry::bench
