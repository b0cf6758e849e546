// The report's plots, drawn by gnuplot (Debian: gnuplot-nox; the pngcairo terminal) from
// results.json entries: downtime against memory size per mode, fault latency CDF of the pager
// against raw libfabric, the full-speed curves, the traffic of one migration, memory over time
// per mode, time to the last page and the slowdown. Each plot writes its data and script into
// a scratch directory and runs gnuplot on it, so a plot that cannot be drawn costs only itself.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ferry::bench::report {

struct Plot {
  std::string file;     // "downtime.png", in the plots directory
  std::string caption;  // one line under it
};

// gnuplot is on the PATH.
bool have_gnuplot();

// Draws the plots of one benchmark's entry into `dir` (docs/perf); what was drawn. `all` is
// the whole results (some plots use two entries: the latency CDF adds the traffic run's
// faults). Failures are appended to `problems`.
std::vector<Plot> draw_plots(const nlohmann::json& entry, const nlohmann::json& all,
                             const std::filesystem::path& dir, std::vector<std::string>& problems);

}  // namespace ferry::bench::report
