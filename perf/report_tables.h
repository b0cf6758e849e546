// The report's tables: for each benchmark of results.json, its figures laid out for people
// (sizes by modes, patterns, percentiles), and the checks table (figure, reference, ratio,
// target, met/missed) that every entry carries.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace ferry::bench::report {

// The benchmark's own table(s) of figures, in Markdown ("" for a benchmark without one).
std::string figures_tables(const nlohmann::json& entry);
// Its checks: what | figure | reference | ratio | target | verdict.
std::string checks_table(const nlohmann::json& entry);

}  // namespace ferry::bench::report
