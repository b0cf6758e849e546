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

// Prints every line above info level of each daemon's log under a cluster's directory
// (master/master.log, NODE/agent.log, NODE/pager.log), at most `limit` lines per log: the
// post-mortem of a failed test.
inline void print_daemon_warnings(const std::filesystem::path& cluster_dir, size_t limit = 40) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(cluster_dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it.depth() > 1 || it->path().extension() != ".log") continue;
    std::istringstream log(slurp(it->path()));
    std::vector<std::string> lines;
    for (std::string line; std::getline(log, line);)
      if (line.find(" info [") == std::string::npos && line.find(" debug [") == std::string::npos) lines.push_back(line);
    if (lines.empty()) continue;
    std::fprintf(stderr, "--- %s: %zu warnings and errors%s\n", it->path().c_str(), lines.size(),
                 lines.size() > limit ? " (the last ones)" : "");
    for (size_t i = lines.size() > limit ? lines.size() - limit : 0; i < lines.size(); ++i)
      std::fprintf(stderr, "%s\n", lines[i].c_str());
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
