// perf/results.json: what the report is made from. One object:
//   {"machine": "...", "provider": "tcp;ofi_rxm", "updated": "2025-..Z", "commit": "abc1234",
//    "benchmarks": [ENTRY, ...]}
// with one ENTRY per benchmark (name, what, figures, reference, ratio, target, checks, machine,
// provider, args, seconds, ran_at; or name and error), in the suite's order. Saving an entry
// replaces the entry of the same name, so re-running one benchmark updates only its part.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ferry::bench {

// The source tree this ferry-bench was built from (perf/results.json, docs/ live there).
std::filesystem::path source_dir();
std::filesystem::path default_results_path();

// The file's content, or an empty results object if it does not exist or does not parse.
nlohmann::json load_results(const std::filesystem::path& file);
// Writes `entry` into the file (atomically: a temporary file renamed over it), ordering the
// entries by `order` (names not in it go last).
void save_result(const std::filesystem::path& file, const nlohmann::json& entry,
                 const std::vector<std::string>& order);

// "2025-01-31T12:00:00Z"
std::string utc_now();
// The short commit of the source tree ($FERRY_BENCH_COMMIT for a tree without .git), "" if
// unknown.
std::string source_commit();

}  // namespace ferry::bench
