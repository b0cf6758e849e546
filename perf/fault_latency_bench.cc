// fault-latency: the pager's 4 KiB fault service time against a raw libfabric 4 KiB
// request/reply, measured in the same run.
//
// How: a 256 MiB region moved by the pagers of a 2-node local cluster (pager_move.h) with
// prefetch off, faulted at random by one thread (the fault-around window stays at one page):
// (or by THREADS threads at once: `ferry-bench threads` asks for 16; then the reference keeps
// THREADS raw requests in flight, as the faulting threads keep THREADS faults, and the ratio
// against one raw request at a time is printed too)
// the importer's own latency histogram (ferry stat: p50/p90/p99/max, and p0..p100 when the pager
// gives them) against a raw fi_send/fi_recv request with a 4 KiB reply between two processes on
// the same addresses and provider (raw_fabric.h). Target: p50 <= 1.5x raw.
//
//   ferry-bench fault-latency [MiB=256] [raw rounds=10000] [THREADS=1]
#include <fmt/format.h>

#include <algorithm>
#include <iostream>

#include "perf/bench.h"
#include "perf/pager_move.h"
#include "perf/raw_fabric.h"

namespace ferry::bench {
namespace {

using namespace std::chrono_literals;
constexpr double kTargetRatio = 1.5;

// The import's entry of `ferry stat --json` (for the percentiles the CLI may carry).
nlohmann::json stat_entry(const Cluster& cluster, const std::string& label) {
  auto nodes = nlohmann::json::parse(cluster.cli({"stat", "--json"}).out, nullptr, false);
  if (nodes.is_array())
    for (const auto& n : nodes)
      for (const auto& i : n.value("imports", nlohmann::json::array()))
        if (i.value("label", "") == label) return i;
  return nullptr;
}

nlohmann::json run(const std::vector<std::string>& args) {
  const std::string name = "fault-latency";
  const uint64_t mib = uint64_t(std::max(16.0, arg_number(args, 0, 256)));
  const int rounds = int(std::max(100.0, arg_number(args, 1, 10000)));
  const int threads = int(std::clamp(arg_number(args, 2, 1), 1.0, 64.0));
  std::cout << fmt::format(
      "fault-latency: random faults by {} thread{} over {} MiB, prefetch off; "
      "raw: {} round trips, provider {}, {} -> {}\n",
      threads, threads == 1 ? "" : "s at once", mib, rounds, kRawProvider, kClientHost, kServerHost);
  ImportView v;
  nlohmann::json entry;
  double wall_ms = 0;
  bool source_gone = false;
  {
    Move m;
    if (auto err = m.prepare(mib, std::to_string(threads), "random"); !err.empty()) return error_entry(name, err);
    if (auto err = m.export_and_import(false); !err.empty()) return error_entry(name, err);
    progress("faulting " + std::to_string(mib) + " MiB at random");
    auto t0 = Clock::now();
    if (auto err = m.verify(); !err.empty()) return error_entry(name, err);
    wall_ms = ms_since(t0);
    v = wait_ended(*m.cluster, m.label, 10s);
    entry = stat_entry(*m.cluster, m.label);
    source_gone = m.source_gone(5s);
  }
  progress_done();
  if (!v.found || v.count == 0)
    return error_entry(name, "no import statistics (state '" + v.state + "')");
  progress("raw libfabric request/reply");
  nlohmann::json single = raw_request_reply(rounds, 4096);
  progress_done();
  if (single.contains("error")) return error_entry(name, single["error"].get<std::string>());
  // Faults from many threads at once queue behind each other on the wire as raw requests do:
  // their reference is raw with as many requests in flight.
  nlohmann::json raw = single;
  if (threads > 1) {
    progress("raw libfabric request/reply, " + std::to_string(threads) + " in flight");
    raw = raw_request_reply_in_flight(rounds, 4096, threads);
    progress_done();
    if (raw.contains("error")) return error_entry(name, raw["error"].get<std::string>());
  }
  const double raw_p50 = raw["p50"], raw_p99 = raw["p99"];
  const double e2e = wall_ms * 1000.0 / double(std::max<uint64_t>(1, v.faults));
  const double ratio = v.p50 / raw_p50, ratio99 = v.p99 / raw_p99;

  std::cout << fmt::format("{:<44} {:>9} {:>9} {:>9} {:>9}\n", "", "p50 us", "p90 us", "p99 us",
                           "max us");
  std::cout << fmt::format("{:<44} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}\n",
                           "pager fault service (ferry stat)", v.p50, v.p90, v.p99, v.max);
  std::cout << fmt::format("{:<44} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}\n",
                           "raw libfabric 4 KiB request/reply", single["p50"].get<double>(), single["p90"].get<double>(),
                           single["p99"].get<double>(), single["max"].get<double>());
  if (threads > 1)
    std::cout << fmt::format("{:<44} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}\n",
                             fmt::format("raw, {} requests in flight", threads), raw_p50, raw["p90"].get<double>(),
                             raw_p99, raw["max"].get<double>());
  std::cout << fmt::format(
      "  faults {} ({} pages on demand, {} zero pages without traffic, {} "
      "duplicates), state {}\n",
      v.faults, v.on_demand, v.zero, v.duplicates, v.state);
  std::cout << fmt::format(
      "  as the process sees it: {:.0f} ms for the run, {:.1f} us per fault "
      "(includes checking the page)\n",
      wall_ms, e2e);
  if (!source_gone)
    std::cout << "  note: the source's shell outlived the import (killed at cluster down)\n";
  std::cout << fmt::format("  ratio pager/raw{} p50: {:.2f} (target <= 1.5: {}), p99: {:.2f}\n",
                           threads > 1 ? fmt::format(" ({} in flight)", threads) : "", ratio,
                           verdict(ratio <= kTargetRatio), ratio99);
  if (threads > 1)
    std::cout << fmt::format("  against one request at a time: p50 {:.2f}x\n", v.p50 / single["p50"].get<double>());
  nlohmann::json fault{
      {"p50", v.p50}, {"p90", v.p90}, {"p99", v.p99}, {"max", v.max}, {"n", v.count}};
  if (entry.is_object() && entry.contains("latency_percentiles"))
    fault["percentiles"] = entry["latency_percentiles"];
  return {{"name", name},
          {"unit", "us"},
          {"figures",
           {{"fault", fault},
            {"faults", v.faults},
            {"on_demand_pages", v.on_demand},
            {"zero_pages", v.zero},
            {"duplicate_pages", v.duplicates},
            {"process_us_per_fault", e2e},
            {"faulting_threads", threads},
            {"region_mib", mib}}},
          {"reference", threads > 1 ? nlohmann::json{{"raw_4k_request_reply_in_flight", raw}, {"raw_4k_request_reply", single}}
                                    : nlohmann::json{{"raw_4k_request_reply", raw}}},
          {"ratio", {{"p50", ratio}, {"p99", ratio99}}},
          {"target", {{"p50_ratio_max", kTargetRatio}}},
          {"checks",
           {check("fault service p50", v.p50, "us", raw_p50, ratio,
                  threads > 1 ? fmt::format("<= 1.5x raw, {} in flight", threads) : "<= 1.5x raw", ratio <= kTargetRatio),
            check("fault service p99", v.p99, "us", raw_p99, ratio99, "-", std::nullopt)}},
          {"provider", kRawProvider},
          {"machine", machine_description()}};
}

Register reg({"fault-latency",
              "pager 4 KiB fault service p50/p99 (prefetch off) vs raw libfabric 4 KiB "
              "request/reply",
              run,
              {"64", "2000"},
              "A 256 MiB region moved by the pagers of a 2-node local cluster with prefetch off, "
              "faulted at random by one thread: the importer's fault service time (ferry stat) "
              "against a raw libfabric request with a 4 KiB reply between two processes on the "
              "same addresses and provider, in the same run. Target: p50 within 1.5x of raw.",
              "[MiB=256] [RAW_ROUNDS=10000] [THREADS=1]"});

}  // namespace
}  // namespace ferry::bench
