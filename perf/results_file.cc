// perf/results.json, read and merged (results_file.h).
#include "perf/results_file.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>

#include "perf/bench.h"

#ifndef FERRY_SOURCE_DIR
#define FERRY_SOURCE_DIR "."
#endif

namespace ferry::bench {

namespace fs = std::filesystem;

fs::path source_dir() { return FERRY_SOURCE_DIR; }
fs::path default_results_path() { return source_dir() / "perf" / "results.json"; }

nlohmann::json load_results(const fs::path& file) {
  nlohmann::json j;
  if (std::ifstream in(file); in) j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object()) j = nlohmann::json::object();
  if (!j.contains("benchmarks") || !j["benchmarks"].is_array())
    j["benchmarks"] = nlohmann::json::array();
  return j;
}

void save_result(const fs::path& file, const nlohmann::json& entry,
                 const std::vector<std::string>& order) {
  nlohmann::json j = load_results(file);
  auto& list = j["benchmarks"];
  const std::string name = entry.value("name", "");
  auto same = std::find_if(list.begin(), list.end(),
                           [&](const nlohmann::json& e) { return e.value("name", "") == name; });
  if (same != list.end())
    *same = entry;
  else
    list.push_back(entry);
  auto rank = [&](const nlohmann::json& e) {
    auto it = std::find(order.begin(), order.end(), e.value("name", ""));
    return size_t(it - order.begin());
  };
  std::stable_sort(list.begin(), list.end(), [&](const nlohmann::json& a, const nlohmann::json& b) {
    return rank(a) < rank(b);
  });
  j["machine"] = machine_description();
  j["provider"] = entry.value("provider", "tcp;ofi_rxm");
  j["updated"] = utc_now();
  j["commit"] = source_commit();
  fs::create_directories(file.parent_path());
  fs::path tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(1) << "\n";
  }
  fs::rename(tmp, file);
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string source_commit() {
  if (const char* c = std::getenv("FERRY_BENCH_COMMIT")) return c;  // a build from `git archive`
  std::string cmd = "git -C '" + source_dir().string() + "' rev-parse --short HEAD 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return "";
  char buf[64] = {};
  std::string out = fgets(buf, sizeof buf, p) ? buf : "";
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace ferry::bench
