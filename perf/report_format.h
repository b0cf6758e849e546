// Small pieces of Markdown for the report: numbers written for people, tables, and reading
// numbers out of results.json entries that may lack them (an older run, an error).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ferry::bench::report {

// 3 significant digits without exponent for everyday sizes (0.0123, 4.56, 78.9, 1234);
// "-" for null/missing.
std::string num(double v);
std::string num(const nlohmann::json& v);
// j[key] by reference, or a null (never a temporary: safe to hold and to iterate).
const nlohmann::json& field(const nlohmann::json& j, const std::string& key);
// j[key] as a number, or `fallback`.
double get(const nlohmann::json& j, const std::string& key, double fallback = -1);
// "met" / "missed" / "-".
std::string verdict_text(const nlohmann::json& met);

class Table {
 public:
  // The first `left` columns are aligned left (names), the others right (figures).
  explicit Table(std::vector<std::string> header, size_t left = 1);
  Table& row(std::vector<std::string> cells);
  std::string str() const;  // "" when there are no rows
  bool empty() const { return rows_.empty(); }

 private:
  std::vector<std::string> header_;
  size_t left_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace ferry::bench::report
