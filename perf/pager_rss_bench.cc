// pager-rss: the memory a move costs: the peak of the summed RSS of the source's shell, the
// destination process and both pagers while the pagers move a region, against the source's
// own RSS before the move.
//
// How: a 4 GiB region (3.5 GiB with data) moved by the pagers of a 2-node local cluster
// (pager_move.h) with prefetch on and the process idle, sampled every 20 ms (memory_sampler.h);
// every byte is checked afterwards. Target: <= 1.1x (the source frees what was sent).
//
//   ferry-bench pager-rss [MiB=4096]
#include <fmt/format.h>

#include <algorithm>
#include <iostream>

#include "perf/bench.h"
#include "perf/memory_sampler.h"
#include "perf/pager_move.h"

namespace ferry::bench {
namespace {

using namespace std::chrono_literals;
constexpr double kMiB = 1024.0 * 1024.0;

nlohmann::json run(const std::vector<std::string>& args) {
  const std::string name = "pager-rss";
  const uint64_t mib = uint64_t(std::max(64.0, arg_number(args, 0, 4096)));
  std::cout << fmt::format(
      "pager-rss: {} MiB region, prefetch on, process idle; RSS of source shell + destination "
      "process + both pagers every 20 ms\n",
      mib);
  ImportView v;
  long source_kib = 0, pagers_before = 0, peak = 0;
  std::vector<long> at_peak;
  size_t samples = 0;
  std::string verified;
  bool source_gone = false;
  double wall_ms = 0;
  {
    Move m;
    if (auto err = m.prepare(mib, "2", "stride"); !err.empty()) return error_entry(name, err);
    source_kib = m.source_rss_kib;
    pid_t p1 = m.cluster->pager_pid("n1"), p2 = m.cluster->pager_pid("n2");
    pagers_before = rss_kib(p1) + rss_kib(p2);
    auto t0 = Clock::now();
    {
      const pid_t source = m.source->pid, faulter = m.faulter->pid;
      MemorySampler sampler(
          [=] {
            return std::vector<std::vector<pid_t>>{{source}, {faulter}, {p1}, {p2}};
          },
          20ms);
      if (auto err = m.export_and_import(true); !err.empty()) return error_entry(name, err);
      progress("moving " + std::to_string(mib) + " MiB");
      v = wait_ended(*m.cluster, m.label, 180s);
      source_gone = m.source_gone(5s);
      samples = sampler.stop().size();
      peak = sampler.peak().total();
      at_peak = sampler.peak().kib;
    }
    wall_ms = ms_since(t0);
    if (v.state != "complete") return error_entry(name, "import ended '" + v.state + "'");
    verified = m.verify();
  }
  progress_done();
  if (source_kib <= 0 || at_peak.size() != 4) return error_entry(name, "no RSS samples");
  const double ratio = double(peak) / double(source_kib);
  auto gib = [](long kib) { return double(kib) / (1024.0 * 1024.0); };
  std::cout << fmt::format("{:<44} {:>10}\n", "", "GiB");
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "source RSS before export (reference)",
                           gib(source_kib));
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "peak of the sum during the move", gib(peak));
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "  of which source shell", gib(at_peak[0]));
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "  of which destination process", gib(at_peak[1]));
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "  of which pager n1 + pager n2",
                           gib(at_peak[2] + at_peak[3]));
  std::cout << fmt::format("{:<44} {:>10.3f}\n", "pagers n1 + n2 before the move",
                           gib(pagers_before));
  std::cout << fmt::format(
      "  {} samples; move took {:.0f} ms to the last page ({:.0f} MiB/s), {:.0f} ms in all\n",
      samples, v.ms_to_last_page,
      v.ms_to_last_page > 0 ? double(v.bytes) / kMiB / (v.ms_to_last_page / 1000) : 0.0, wall_ms);
  std::cout << fmt::format("  check afterwards: {}; source shell gone: {}\n",
                           verified.empty() ? "ok" : verified, source_gone ? "yes" : "no");
  std::cout << fmt::format("  ratio peak/source: {:.3f} (target <= 1.1: {})\n", ratio,
                           verdict(ratio <= 1.1));
  nlohmann::json figures{{"peak_sum_kib", peak},
                         {"peak_source_kib", at_peak[0]},
                         {"peak_destination_kib", at_peak[1]},
                         {"peak_pagers_kib", at_peak[2] + at_peak[3]},
                         {"pagers_before_kib", pagers_before},
                         {"samples", samples},
                         {"ms_to_last_page", v.ms_to_last_page},
                         {"bytes_on_wire", v.bytes},
                         {"region_mib", mib},
                         {"verified", verified.empty()}};
  if (!verified.empty()) figures["verify_error"] = verified;
  return {{"name", name},
          {"unit", "KiB"},
          {"figures", figures},
          {"reference", {{"source_rss_kib", source_kib}}},
          {"ratio", {{"peak_vs_source", ratio}}},
          {"target", {{"ratio_max", 1.1}}},
          {"checks",
           {check("peak RSS, source + destination + pagers", double(peak) / 1024, "MiB",
                  double(source_kib) / 1024, ratio, "<= 1.1x the source's", ratio <= 1.1)}},
          {"machine", machine_description()}};
}

Register reg(
    {"pager-rss",
     "peak RSS of source + destination + pagers while 4 GiB moves, vs the source's own",
     run,
     {"512"},
     "A 4 GiB region (3.5 GiB with data) moved by the pagers with prefetch on: the peak of "
     "the summed RSS of the source's shell, the destination process and both pagers, "
     "sampled every 20 ms, against the source's RSS before the move. Target: <= 1.1x.",
     "[MiB=4096]"});

}  // namespace
}  // namespace ferry::bench
