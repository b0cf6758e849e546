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
