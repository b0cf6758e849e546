// ferry-bench: runs Ferry's benchmarks and writes the performance report.
//
//   ferry-bench list                       the benchmarks, in the suite's order
//   ferry-bench [--save] NAME [ARGS...]    one benchmark (ARGS: its sizes etc., see list);
//                                          --save puts its entry into perf/results.json
//   ferry-bench all [--quick] [--only A,B] [--skip A,B] [--results FILE] [--docs DIR]
//                                          the suite (`make bench`): each entry saved into
//                                          perf/results.json as it finishes, then the report
//   ferry-bench report [--results FILE] [--docs DIR]
//                                          docs/PERFORMANCE.md and docs/perf/*.png from
//                                          perf/results.json alone
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>

#include "perf/bench.h"
#include "perf/report.h"
#include "perf/results_file.h"

namespace ferry::bench {
namespace {

// The suite's order: the transport and the pager first, then what migration is for.
const std::vector<std::string> kOrder = {
    "dipc-rtt",  "restore",    "fault-latency", "prefetch-throughput", "pager-rss", "downtime",
    "last-page", "full-speed", "slowdown",      "peak-memory",         "traffic",  "threads"};

std::vector<std::string> suite() {
  std::vector<std::string> names;
  for (const auto& n : kOrder)
    if (registry().count(n)) names.push_back(n);
  for (const auto& [n, b] : registry())
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  return names;
}

// The 1, 5 and 15 minute load averages: how busy the machine was when a benchmark began.
std::string slurp_loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

int usage(int status) {
  std::cout
      << "usage: ferry-bench list | [--save] NAME [ARGS...] | all [--quick] [--only A,B] "
         "[--skip A,B] [--results FILE] [--docs DIR] | report [--results FILE] [--docs DIR]\n";
  for (const auto& n : suite())
    std::cout << fmt::format("  {:<20} {}\n  {:<20}   {} {}\n", n, registry().at(n).what, "", n,
                             registry().at(n).usage);
  return status;
}

// Runs one benchmark: its entry, stamped with what the report needs, an "error" member if it
// could not measure (or threw).
nlohmann::json run_one(const Benchmark& b, const std::vector<std::string>& args) {
  std::cout << fmt::format("== {} {}\n", b.name, fmt::join(args, " ")) << std::flush;
  auto t0 = std::chrono::steady_clock::now();
  const std::string load = slurp_loadavg();
  nlohmann::json entry;
  try {
    entry = b.run(args);
  } catch (const Interrupted&) {
    progress_done();
    throw;
  } catch (const std::exception& e) {
    progress_done();
    entry = error_entry(b.name, std::string("exception: ") + e.what());
  }
  progress_done();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  entry["name"] = b.name;
  entry["what"] = b.what;
  entry["how"] = b.how;
  entry["args"] = args;
  entry["seconds"] = seconds;
  entry["ran_at"] = utc_now();
  entry["loadavg"] = load;
  if (!entry.contains("machine")) entry["machine"] = machine_description();
  if (!entry.contains("provider")) entry["provider"] = "tcp;ofi_rxm";
  std::cout << fmt::format("== {} took {:.0f} s{}\n", b.name, seconds,
                           entry.contains("error") ? " (error)" : "");
  return entry;
}

int run_all(const std::vector<std::string>& args) {
  bool quick = false;
  std::vector<std::string> only, skip;
  std::filesystem::path results = default_results_path(), docs = source_dir() / "docs";
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--quick")
      quick = true;
    else if (args[i] == "--only" && i + 1 < args.size())
      only = arg_list(args, ++i, {});
    else if (args[i] == "--skip" && i + 1 < args.size())
      skip = arg_list(args, ++i, {});
    else if (args[i] == "--results" && i + 1 < args.size())
      results = args[++i];
    else if (args[i] == "--docs" && i + 1 < args.size())
      docs = args[++i];
    else
      return usage(2);
  }
  auto names = suite();
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::pair<std::string, std::string>> done;  // name, "ok" / "error"
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& n = names[i];
    if (!only.empty() && std::find(only.begin(), only.end(), n) == only.end()) continue;
    if (std::find(skip.begin(), skip.end(), n) != skip.end()) continue;
    const Benchmark& b = registry().at(n);
    std::cout << fmt::format("\n[{}/{}] ", i + 1, names.size());
    nlohmann::json entry;
    try {
      entry = run_one(b, quick ? b.quick_args : std::vector<std::string>{});
    } catch (const Interrupted&) {
      std::cout << "ferry-bench: interrupted; the benchmarks so far are in " << results.string()
                << "\n";
      return 130;
    }
    if (quick) entry["quick"] = true;
    save_result(results, entry, kOrder);
    done.emplace_back(
        n, entry.contains("error") ? "error: " + entry["error"].get<std::string>() : "ok");
    if (was_interrupted()) {  // after the benchmark's last wait: its entry is whole
      std::cout << "ferry-bench: interrupted; the benchmarks so far are in " << results.string()
                << "\n";
      return 130;
    }
  }
  double minutes =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60;
  std::cout << fmt::format("\nferry-bench all: {} benchmarks in {:.1f} min\n", done.size(),
                           minutes);
  for (const auto& [n, s] : done) std::cout << fmt::format("  {:<20} {}\n", n, s);
  return write_report(results, docs);
}

int report_command(const std::vector<std::string>& args) {
  auto results = default_results_path();
  auto docs = source_dir() / "docs";
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--results" && i + 1 < args.size())
      results = args[++i];
    else if (args[i] == "--docs" && i + 1 < args.size())
      docs = args[++i];
    else
      return usage(2);
  }
  return write_report(results, docs);
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) {
  using namespace ferry::bench;
  maybe_run_helper();
  install_interrupt_handler();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage(2);
  if (args[0] == "list" || args[0] == "--help" || args[0] == "-h") return usage(0);
  if (args[0] == "all") return run_all({args.begin() + 1, args.end()});
  if (args[0] == "report") return report_command({args.begin() + 1, args.end()});
  bool save = false;
  if (args[0] == "--save") {
    save = true;
    args.erase(args.begin());
    if (args.empty()) return usage(2);
  }
  auto it = registry().find(args[0]);
  if (it == registry().end()) {
    std::cerr << "ferry-bench: no benchmark named " << args[0] << " (ferry-bench list)\n";
    return 2;
  }
  try {
    auto entry = run_one(it->second, {args.begin() + 1, args.end()});
    std::cout << entry.dump() << std::endl;
    if (save) save_result(default_results_path(), entry, kOrder);
    if (was_interrupted()) return 130;
  } catch (const Interrupted&) {
    std::cout << "ferry-bench: interrupted\n";
    return 130;
  }
  return 0;
}
