// Markdown pieces for the report (report_format.h).
#include "perf/report_format.h"

#include <fmt/format.h>

#include <cmath>

namespace ferry::bench::report {

std::string num(double v) {
  if (std::isnan(v) || std::isinf(v)) return "-";
  const double a = std::fabs(v);
  if (a == 0) return "0";
  if (a < 1e15 && v == std::floor(v)) return fmt::format("{:.0f}", v);
  if (a >= 100) return fmt::format("{:.0f}", v);
  if (a >= 10) return fmt::format("{:.1f}", v);
  if (a >= 1) return fmt::format("{:.2f}", v);
  if (a >= 0.01) return fmt::format("{:.3f}", v);
  return fmt::format("{:.2g}", v);
}

std::string num(const nlohmann::json& v) {
  if (v.is_number()) return num(v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return "-";
}

const nlohmann::json& field(const nlohmann::json& j, const std::string& key) {
  static const nlohmann::json null;
  if (!j.is_object()) return null;
  auto it = j.find(key);
  return it == j.end() ? null : *it;
}

double get(const nlohmann::json& j, const std::string& key, double fallback) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return fallback;
  return j[key].get<double>();
}

std::string verdict_text(const nlohmann::json& met) {
  if (!met.is_boolean()) return "-";
  return met.get<bool>() ? "met" : "**missed**";
}

Table::Table(std::vector<std::string> header, size_t left)
    : header_(std::move(header)), left_(left) {}

Table& Table::row(std::vector<std::string> cells) {
  cells.resize(header_.size());
  rows_.push_back(std::move(cells));
  return *this;
}

std::string Table::str() const {
  if (rows_.empty()) return "";
  auto line = [](const std::vector<std::string>& cells) {
    std::string s = "|";
    for (const auto& c : cells) {
      std::string cell = c;
      for (size_t at; (at = cell.find('|')) != std::string::npos;) cell.replace(at, 1, "/");
      for (char& ch : cell)
        if (ch == '\n' || ch == '\r') ch = ' ';
      while (!cell.empty() && cell.back() == ' ') cell.pop_back();
      s += " " + cell + " |";
    }
    return s + "\n";
  };
  std::string out = line(header_);
  out += "|";
  for (size_t i = 0; i < header_.size(); ++i) out += i < left_ ? "---|" : "---:|";
  out += "\n";
  for (const auto& r : rows_) out += line(r);
  return out;
}

}  // namespace ferry::bench::report
