// threads: what threads cost a migration. The downtime of a 1 GiB job with 1, 8, 64 and 256
// threads (the job's own output shows it, as in `downtime`), the cost per thread, and the
// pager's fault service with 16 threads faulting at once against raw libfabric round trips
// with 16 requests in flight (the same queueing on the wire), and one at a time.
//
// How: a memory_job (random-10%) with THREADS - 1 more threads waiting on a condition variable
// (a runtime's idle pool) runs on n1 of a 2-node local cluster and is moved lazily to n2; three
// runs per thread count, the median is the figure. The cost per thread is the slope between the
// fewest and the most threads. Then `fault-latency` with 16 faulting threads. Targets: downtime
// below 10 ms + 50 us per thread; fault p50 within 1.5x raw.
//
//   ferry-bench threads [THREADS=1,8,64,256] [MIB=1024] [RUNS=3] [FAULT_MIB=256]
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <map>

#include "perf/bench.h"
#include "perf/migration_case.h"

namespace ferry::bench {
namespace {

constexpr double kBaseMs = 10, kPerThreadMs = 0.05;

nlohmann::json run(const std::vector<std::string>& args) {
  const std::string name = "threads";
  const auto counts = arg_list(args, 0, {"1", "8", "64", "256"});
  const uint64_t mib = uint64_t(std::max(16.0, arg_number(args, 1, 1024)));
  const int runs = int(std::max(1.0, arg_number(args, 2, 3)));
  const std::string fault_mib = std::to_string(uint64_t(std::max(16.0, arg_number(args, 3, 256))));
  std::cout << fmt::format("threads: memory_job {} MiB random-10% with {} threads, lazy n1 -> n2, {} runs each; "
                           "then fault service with 16 threads faulting at once\n",
                           mib, fmt::join(counts, ","), runs);
  std::cout << fmt::format("{:>8} {:>12} {:>10} {:>10} {:>10}\n", "threads", "downtime ms", "ferry ms", "capture ms",
                           "install ms");
  std::unique_ptr<Cluster> cluster;
  nlohmann::json cases = nlohmann::json::array(), rows = nlohmann::json::array(), checks = nlohmann::json::array();
  std::map<int, double> downtime;
  uint64_t seed = 1;
  for (const auto& c : counts) {
    const int threads = std::max(1, std::stoi(c));
    std::vector<double> down, ferry, capture, install;
    for (int r = 0; r < runs; ++r) {
      CaseSpec spec;
      spec.job = {mib, "random-10%", 0, seed++, "n1"};
      spec.job.threads = threads;
      spec.migration.mode = "lazy";
      spec.what = fmt::format("threads {} ({}/{})", threads, r + 1, runs);
      CaseResult res;
      if (std::string err = ensure_cluster(cluster, "th"); !err.empty())
        res.error = err;
      else
        res = run_case(*cluster, spec);
      progress_done();
      nlohmann::json s = res.summary();
      s["threads"] = threads;
      if (!res.error.empty()) {
        s["error"] = res.error;
        cases.push_back(s);
        std::cout << fmt::format("{:>8} error: {}\n", threads, res.error);
        cluster.reset();
        continue;
      }
      cases.push_back(s);
      down.push_back(res.downtime_ms());
      ferry.push_back(res.migration.reply_number("freeze_to_resume_ms", -1));
      capture.push_back(res.migration.reply_number("capture_ms", -1));
      install.push_back(res.migration.reply_number("install_ms", -1));
    }
    if (down.empty()) continue;
    downtime[threads] = median(down);
    rows.push_back({{"threads", threads},
                    {"downtime_ms", median(down)},
                    {"freeze_to_resume_ms", median(ferry)},
                    {"capture_ms", median(capture)},
                    {"install_ms", median(install)},
                    {"runs", down.size()}});
    std::cout << fmt::format("{:>8} {:>12.1f} {:>10.1f} {:>10.1f} {:>10.1f}\n", threads, median(down), median(ferry),
                             median(capture), median(install))
              << std::flush;
    const double target = kBaseMs + kPerThreadMs * threads;
    checks.push_back(check(fmt::format("downtime with {} threads", threads), median(down), "ms", std::nullopt,
                           std::nullopt, fmt::format("< {:.1f} ms", target), median(down) < target));
  }
  cluster.reset();
  nlohmann::json figures{{"rows", rows}, {"size_mib", mib}};
  if (downtime.size() >= 2) {
    auto [few, d_few] = *downtime.begin();
    auto [many, d_many] = *downtime.rbegin();
    const double per_thread_us = (d_many - d_few) * 1000 / double(many - few);
    figures["per_thread_us"] = per_thread_us;
    std::cout << fmt::format("  cost per thread: {:.1f} us (from {} to {} threads; target <= {:.0f} us: {})\n",
                             per_thread_us, few, many, kPerThreadMs * 1000, verdict(per_thread_us <= kPerThreadMs * 1000));
    checks.push_back(check("downtime per thread", per_thread_us, "us", std::nullopt, std::nullopt, "<= 50 us",
                           per_thread_us <= kPerThreadMs * 1000));
  }
  // Sixteen threads faulting at once, against raw libfabric in the same run.
  nlohmann::json faults = registry().at("fault-latency").run({fault_mib, "5000", "16"});
  if (faults.contains("checks"))
    for (auto c : faults["checks"]) {
      c["what"] = c.value("what", std::string()) + " (16 threads)";
      checks.push_back(c);
    }
  figures["fault_16_threads"] = faults.value("figures", nlohmann::json::object());
  print_checks(checks);
  return {{"name", name},
          {"unit", "ms"},
          {"figures", figures},
          {"cases", cases},
          {"reference", faults.value("reference", nlohmann::json::object())},
          {"ratio", faults.value("ratio", nlohmann::json::object())},
          {"checks", checks},
          {"machine", machine_description()}};
}

Register reg({"threads",
              "downtime of a 1 GiB job with 1/8/64/256 threads and the cost per thread; fault service with 16 "
              "threads faulting at once vs raw libfabric",
              run,
              {"1,16", "128", "1", "64"},
              "A memory_job (1 GiB, random-10%) with 1, 8, 64 and 256 threads, the others idle on a condition "
              "variable, moved lazily between the two nodes of a local cluster: its downtime from its own output, "
              "three runs each (median), and the cost per thread (the slope). Then the pager's fault service with 16 "
              "threads faulting at once against a raw libfabric 4 KiB request/reply with 16 requests in flight "
              "(and one at a time), in the same run. Targets: downtime below 10 ms + 50 us per thread; fault p50 "
              "within 1.5x raw.",
              "[THREADS=1,8,64,256] [MIB=1024] [RUNS=3] [FAULT_MIB=256]"});

}  // namespace
}  // namespace ferry::bench
