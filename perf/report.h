// `ferry-bench report`: docs/PERFORMANCE.md and its plots (docs/perf/*.png, drawn by gnuplot)
// from perf/results.json alone, so the report can be made again without running anything.
#pragma once

#include <filesystem>

namespace ferry::bench {

// Writes DOCS/PERFORMANCE.md and DOCS/perf/*.png from `results`; 0, or 1 if the results cannot
// be read. Without gnuplot the report is written without its plots, and says so.
int write_report(const std::filesystem::path& results, const std::filesystem::path& docs);

}  // namespace ferry::bench
