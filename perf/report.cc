// `ferry-bench report`: docs/PERFORMANCE.md from perf/results.json (report.h). The page: how to
// run the benchmarks, the machine and provider, a summary of every check, then one section per
// benchmark with what it measures, its figures, its plots and its checks.
#include "perf/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "perf/report_format.h"
#include "perf/report_plots.h"
#include "perf/report_tables.h"
#include "perf/results_file.h"

namespace ferry::bench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using report::num;

const char* kHowToRun = R"(## How to run

```sh
make bench                                    # builds (Release), installs gnuplot-nox if missing, runs
                                              # every benchmark, writes perf/results.json and this page
build/bin/ferry-bench list                    # the benchmarks and what each measures
build/bin/ferry-bench downtime 256,1024 lazy  # one benchmark, with smaller arguments (printed only;
build/bin/ferry-bench --save downtime         #   --save puts its entry into perf/results.json)
build/bin/ferry-bench all --quick             # every benchmark at small sizes, a few minutes
build/bin/ferry-bench all --only downtime,traffic
build/bin/ferry-bench report                  # this page and docs/perf/*.png again, from
                                              # perf/results.json alone
```

Every benchmark starts its own local cluster (`ferry cluster up`, a name of its own, a private
state root under /tmp), runs real processes with `ferry run` and moves them with `ferry migrate`,
and takes everything down at its end, also after an error or Ctrl-C. Each figure is judged against
a reference measured in the same run (raw libfabric, stop-and-copy, the job unmigrated, the job's
own rate or memory). Targets are goals, not assertions: a missed target is reported as missed, and
a benchmark that cannot measure records an error and the suite goes on. The arguments of each
benchmark are in the first lines of its source (`perf/*_bench.cc`) and in `ferry-bench list`.
)";

std::string summary(const json& results) {
  report::Table t({"benchmark", "check", "figure", "reference", "ratio", "target", "verdict"}, 2);
  for (const auto& e : results["benchmarks"]) {
    const std::string name = e.value("name", "?");
    if (e.contains("error")) {
      t.row({name, "error: " + e["error"].get<std::string>()});
      continue;
    }
    for (const auto& c : e.value("checks", json::array())) {
      const std::string unit = c.value("unit", "");
      t.row({"[" + name + "](#" + name + ")", c.value("what", ""),
             num(c.value("figure", json())) + " " + unit,
             c["reference"].is_number() ? num(c["reference"]) + " " + unit : "-",
             c["ratio"].is_number() ? num(c["ratio"]) + "x" : "-", c.value("target", "-"),
             report::verdict_text(c.value("met", json()))});
    }
  }
  return t.str();
}

std::string machine_table(const json& results, double minutes, bool quick) {
  report::Table t({"", ""}, 2);
  t.row({"machine", results.value("machine", "?")});
  t.row({"provider", "libfabric " + results.value("provider", "tcp;ofi_rxm") +
                         "; every node of the local cluster on this one machine (loopback "
                         "127.0.0.x), so the link is memory and the CPUs are shared"});
  t.row({"source", "commit " + results.value("commit", "?")});
  t.row({"results updated", results.value("updated", "?")});
  t.row({"benchmark time",
         fmt::format("{:.0f} min in all{}", minutes,
                     quick ? " (some entries from --quick runs: small sizes)" : "")});
  // How busy the machine was: the 1-minute load average as each benchmark began.
  double lo = 1e9, hi = 0;
  for (const auto& e : results["benchmarks"])
    if (e.contains("loadavg")) {
      const double l = std::atof(e["loadavg"].get<std::string>().c_str());
      lo = std::min(lo, l), hi = std::max(hi, l);
    }
  if (hi > 0)
    t.row({"load average", fmt::format("{} to {} as the benchmarks began (each section says its "
                                       "own); the machine was shared with other work, which "
                                       "shows as noise",
                                       num(lo), num(hi))});
  return t.str();
}

std::string section(const json& e, const json& all, const fs::path& plots_dir,
                    std::vector<std::string>& problems, bool plots) {
  const std::string name = e.value("name", "?");
  std::string s = fmt::format("<a id=\"{}\"></a>\n## {}\n\n", name, name);
  if (!e.value("what", "").empty()) s += "*" + e.value("what", "") + "*\n\n";
  if (!e.value("how", "").empty()) s += e.value("how", "") + "\n\n";
  if (e.contains("error")) {
    s += "**Error:** " + e["error"].get<std::string>() + "\n\n";
  } else {
    if (std::string t = report::figures_tables(e); !t.empty()) s += t + "\n";
    if (plots)
      for (const auto& p : report::draw_plots(e, all, plots_dir, problems))
        s += fmt::format("![{}](perf/{})\n\n*{}*\n\n", p.caption, p.file, p.caption);
    if (std::string t = report::checks_table(e); !t.empty()) s += t + "\n";
    if (e.value("checksum_mismatch", false))
      s += "**A migrated job computed a different checksum than the unmigrated one.**\n\n";
  }
  std::string args;
  for (const auto& a : e.value("args", json::array())) args += " " + a.get<std::string>();
  s += fmt::format("<sub>`ferry-bench {}{}`: {:.0f} s, {}{}{}</sub>\n\n", name, args,
                   e.value("seconds", 0.0), e.value("ran_at", "?"),
                   e.contains("loadavg") ? ", load average " + e["loadavg"].get<std::string>() : "",
                   e.value("quick", false) ? ", **quick run (small sizes)**" : "");
  return s;
}

}  // namespace

int write_report(const fs::path& results_path, const fs::path& docs) {
  if (!fs::exists(results_path)) {
    std::cerr << "ferry-bench report: no " << results_path.string()
              << " (run ferry-bench all first)\n";
    return 1;
  }
  json results = load_results(results_path);
  const bool plots = report::have_gnuplot();
  const fs::path plots_dir = docs / "perf";
  std::vector<std::string> problems;
  double seconds = 0;
  bool quick = false;
  for (const auto& e : results["benchmarks"]) {
    seconds += e.value("seconds", 0.0);
    quick |= e.value("quick", false);
  }

  std::string md = "# Ferry performance\n\n";
  md += fmt::format(
      "Generated by `ferry-bench report` from [perf/results.json](../perf/results.json)"
      " ({}); do not edit by hand: run the benchmarks again, or `ferry-bench report`"
      " to regenerate this page from the results alone.\n\n",
      results.value("updated", "?"));
  md += kHowToRun;
  md += "\n## Machine and provider\n\n" + machine_table(results, seconds / 60, quick) + "\n";
  md += "## Summary\n\n" + summary(results) + "\n";
  for (const auto& e : results["benchmarks"]) md += section(e, results, plots_dir, problems, plots);
  if (!plots)
    md +=
        "*The plots are missing: gnuplot was not found (`bash scripts/install-deps.sh bench`).*\n";
  for (const auto& p : problems) std::cerr << "ferry-bench report: plot " << p << "\n";

  fs::create_directories(docs);
  const fs::path out = docs / "PERFORMANCE.md";
  std::ofstream(out) << md;
  std::cout << fmt::format("ferry-bench report: wrote {} ({} benchmarks){}\n", out.string(),
                           results["benchmarks"].size(),
                           plots ? " and its plots in " + plots_dir.string() : ", without plots");
  return 0;
}

}  // namespace ferry::bench
