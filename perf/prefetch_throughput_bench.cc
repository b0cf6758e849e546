// prefetch-throughput: the pager's prefetcher alone against raw libfabric bulk transfer of the
// same bytes, measured in the same run.
//
// How: a 1 GiB region moved by the pagers of a 2-node local cluster (pager_move.h) with prefetch
// on while the process stays idle (no faults): bytes on the wire / time to the last page, and
// the median 100 ms window, against raw 1 MiB replies with 4 in flight (as many bytes in flight as
// the prefetcher, raw_fabric.h), the best of 3 transfers. Every byte is checked afterwards. Target:
// >= 0.8x raw.
//
//   ferry-bench prefetch-throughput [MiB=1024]
#include <fmt/format.h>

#include <algorithm>
#include <iostream>

#include "perf/bench.h"
#include "perf/pager_move.h"
#include "perf/raw_fabric.h"

namespace ferry::bench {
namespace {

using namespace std::chrono_literals;
constexpr double kMiB = 1024.0 * 1024.0;

nlohmann::json run(const std::vector<std::string>& args) {
  const std::string name = "prefetch-throughput";
  const uint64_t mib = uint64_t(std::max(64.0, arg_number(args, 0, 1024)));
  std::cout << fmt::format(
      "prefetch-throughput: {} MiB region, prefetch on, the process idle until the last page "
      "arrived; raw: 1 MiB replies, {} in flight, provider {}, {} -> {}\n",
      mib, kBulkInFlight, kRawProvider, kServerHost, kClientHost);
  ImportView v;
  double wall_ms = 0, n1_cpu_ms = 0, n2_cpu_ms = 0;
  Exported exported;
  std::string verified;
  bool source_gone = false;
  {
    Move m;
    if (auto err = m.prepare(mib, "2", "seq"); !err.empty()) return error_entry(name, err);
    Clock::time_point t0;
    pid_t p1 = m.cluster->pager_pid("n1"), p2 = m.cluster->pager_pid("n2");
    double cpu1 = cpu_ms(p1), cpu2 = cpu_ms(p2);
    if (auto err = m.export_and_import(true, &t0); !err.empty()) return error_entry(name, err);
    exported = m.exported;
    progress("prefetching " + std::to_string(mib) + " MiB");
    v = wait_ended(*m.cluster, m.label, 120s, 20ms);
    wall_ms = ms_since(t0);
    n1_cpu_ms = cpu_ms(p1) - cpu1;
    n2_cpu_ms = cpu_ms(p2) - cpu2;
    if (v.state != "complete") return error_entry(name, "import ended '" + v.state + "'");
    source_gone = m.source_gone(5s);
    verified = m.verify();  // every byte, now local
  }
  if (v.bytes == 0 || v.ms_to_last_page <= 0) return error_entry(name, "nothing moved");
  const double mib_s = double(v.bytes) / kMiB / (v.ms_to_last_page / 1000.0);
  const double steady = steady_mib_s(v.window_bytes);
  progress_done();
  progress("raw libfabric bulk transfer");
  nlohmann::json raw = raw_bulk_best(v.bytes, 3);
  progress_done();
  if (raw.contains("error")) return error_entry(name, raw["error"].get<std::string>());
  const double raw_mib_s = raw["mib_s"];
  const double ratio = mib_s / raw_mib_s;

  std::cout << fmt::format("{:<44} {:>10} {:>10} {:>10}\n", "", "MiB", "ms", "MiB/s");
  std::cout << fmt::format("{:<44} {:>10.0f} {:>10.0f} {:>10.0f}\n",
                           "pager prefetch (bytes on wire / ms to last page)",
                           double(v.bytes) / kMiB, v.ms_to_last_page, mib_s);
  std::cout << fmt::format("{:<44} {:>10.0f} {:>10.0f} {:>10.0f}\n",
                           "raw libfabric, 1 MiB replies (best of 3)",
                           raw["bytes"].get<double>() / kMiB, raw["ms"].get<double>(), raw_mib_s);
  std::cout << fmt::format(
      "  pager steady state (median 100 ms window): {:.0f} MiB/s; wall time seen here {:.0f} ms; "
      "export took {:.0f} ms\n",
      steady, wall_ms, exported.ms);
  std::cout << fmt::format(
      "  pager CPU during the move: n1 (exporter) {:.0f} ms = {:.0f}% of a CPU, n2 (importer) "
      "{:.0f} ms "
      "= {:.0f}%\n",
      n1_cpu_ms, 100 * n1_cpu_ms / wall_ms, n2_cpu_ms, 100 * n2_cpu_ms / wall_ms);
  std::cout << fmt::format(
      "  pages: {} with data, {} prefetched, {} on demand, {} faults, {} zero, {} duplicates\n",
      v.present, v.prefetched, v.on_demand, v.faults, v.zero, v.duplicates);
  std::cout << fmt::format("  check of every byte afterwards: {}; source shell gone: {}\n",
                           verified.empty() ? "ok" : verified, source_gone ? "yes" : "no");
  std::cout << fmt::format("  ratio pager/raw: {:.2f} (target >= 0.8: {})\n", ratio,
                           verdict(ratio >= 0.8));
  nlohmann::json figures{{"mib_s", mib_s},
                         {"steady_mib_s", steady},
                         {"bytes_on_wire", v.bytes},
                         {"ms_to_last_page", v.ms_to_last_page},
                         {"export_ms", exported.ms},
                         {"n1_cpu_ms", n1_cpu_ms},
                         {"n2_cpu_ms", n2_cpu_ms},
                         {"prefetched_pages", v.prefetched},
                         {"on_demand_pages", v.on_demand},
                         {"duplicate_pages", v.duplicates},
                         {"region_mib", mib},
                         {"verified", verified.empty()}};
  if (!verified.empty()) figures["verify_error"] = verified;
  return {{"name", name},
          {"unit", "MiB/s"},
          {"figures", figures},
          {"reference", {{"raw_bulk_1mib", raw}}},
          {"ratio", {{"throughput", ratio}}},
          {"target", {{"throughput_ratio_min", 0.8}}},
          {"checks",
           {check("prefetch throughput", mib_s, "MiB/s", raw_mib_s, ratio, ">= 0.8x raw",
                  ratio >= 0.8)}},
          {"provider", kRawProvider},
          {"machine", machine_description()}};
}

Register reg(
    {"prefetch-throughput",
     "pager prefetch MiB/s over 1 GiB vs raw libfabric 1 MiB replies, 4 in flight",
     run,
     {"256"},
     "A 1 GiB region moved by the pagers' prefetcher alone (prefetch on, the process idle): "
     "bytes on the wire over the time to the last page, against raw libfabric 1 MiB "
     "replies with 4 in flight (4 MiB in flight, as the prefetcher keeps: 8 x 512 KiB) carrying "
     "the same bytes, in the "
     "same run. Target: at least 0.8x raw.",
     "[MiB=1024]"});

}  // namespace
}  // namespace ferry::bench
