// What the migration tests compare: a job's output, and the output of the same program run
// undisturbed (nobody moves it), which depends only on its arguments.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ferry::testing {

inline std::string program(const std::string& name) { return std::string(FERRY_PROGRAMS_DIR) + "/" + name; }

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The post-mortem of a failed test: for each daemon's log under a cluster's directory
// (master/master.log, NODE/agent.log, NODE/pager.log), its last `warnings` lines above info
// level and its last `tail` lines of any level (what it was doing when the test gave up).
inline void print_daemon_logs(const std::filesystem::path& cluster_dir, size_t warnings = 30, size_t tail = 15) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(cluster_dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it.depth() > 1 || it->path().extension() != ".log") continue;
    std::istringstream log(slurp(it->path()));
    std::vector<std::string> all, above_info;
    for (std::string line; std::getline(log, line);) {
      if (line.find(" info [") == std::string::npos && line.find(" debug [") == std::string::npos) above_info.push_back(line);
      all.push_back(line);
    }
    auto last = [](const std::vector<std::string>& lines, size_t n) {
      for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) std::fprintf(stderr, "  %s\n", lines[i].c_str());
    };
    std::fprintf(stderr, "--- %s: %zu warnings and errors, the last %zu:\n", it->path().c_str(), above_info.size(),
                 std::min(above_info.size(), warnings));
    last(above_info, warnings);
    std::fprintf(stderr, "--- %s: its last %zu lines:\n", it->path().c_str(), std::min(all.size(), tail));
    last(all, tail);
  }
}

// What `argv` prints (stdout and stderr) when run here, in `cwd`, unmigrated.
inline std::string undisturbed(const std::vector<std::string>& argv, const std::filesystem::path& cwd = ".") {
  std::string cmd = "cd '" + cwd.string() + "' &&";
  for (const auto& a : argv) cmd += " '" + a + "'";
  cmd += " 2>&1";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

}  // namespace ferry::testing
