// ferry-bench NAME [args] | all | list
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <stdexcept>

#include "perf/bench.h"

namespace ferry::bench {
namespace {

std::map<std::string, Benchmark>& mutable_registry() {
  static std::map<std::string, Benchmark> r;
  return r;
}
std::map<std::string, std::function<int(const std::string&, int)>>& helpers() {
  static std::map<std::string, std::function<int(const std::string&, int)>> h;
  return h;
}

}  // namespace

Register::Register(Benchmark b) { mutable_registry().emplace(b.name, std::move(b)); }
const std::map<std::string, Benchmark>& registry() { return mutable_registry(); }
RegisterHelper::RegisterHelper(const std::string& name, std::function<int(const std::string&, int)> fn) {
  helpers().emplace(name, std::move(fn));
}

Summary summarize(std::vector<double> v) {
  Summary s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, size_t(q * double(v.size())))]; };
  s.p50 = at(0.50);
  s.p90 = at(0.90);
  s.p99 = at(0.99);
  s.max = v.back();
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  return s;
}

nlohmann::json to_json(const Summary& s) {
  return {{"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"mean", s.mean}, {"max", s.max}, {"n", s.n}};
}

std::string machine_description() {
  utsname u{};
  uname(&u);
  return std::string(u.machine) + ", " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs, Linux " + u.release;
}

void maybe_run_helper() {
  const char* name = std::getenv("FERRY_BENCH_HELPER");
  if (!name) return;
  auto it = helpers().find(name);
  if (it == helpers().end()) _exit(127);
  const char* arg = std::getenv("FERRY_BENCH_ARG");
  const char* fd = std::getenv("FERRY_BENCH_FD");
  _exit(it->second(arg ? arg : "", fd ? std::atoi(fd) : -1));
}

std::pair<int, std::string> spawn_helper(const std::string& name, const std::string& arg) {
  int p[2];
  if (pipe(p) != 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    setenv("FERRY_BENCH_HELPER", name.c_str(), 1);
    setenv("FERRY_BENCH_ARG", arg.c_str(), 1);
    setenv("FERRY_BENCH_FD", std::to_string(p[1]).c_str(), 1);
    execl("/proc/self/exe", "ferry-bench-helper", nullptr);
    _exit(127);
  }
  close(p[1]);
  std::string line;
  char c;
  while (read(p[0], &c, 1) == 1 && c != '\n') line += c;
  close(p[0]);
  return {pid, line};
}

}  // namespace ferry::bench

int main(int argc, char** argv) {
  using namespace ferry::bench;
  maybe_run_helper();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "list" || args[0] == "--help") {
    std::cout << "usage: ferry-bench NAME [args] | all | list\n";
    for (const auto& [name, b] : registry()) std::cout << "  " << name << ": " << b.what << "\n";
    return args.empty() ? 2 : 0;
  }
  std::vector<std::string> names;
  if (args[0] == "all")
    for (const auto& [name, b] : registry()) names.push_back(name);
  else
    names.push_back(args[0]);
  for (const auto& name : names) {
    auto it = registry().find(name);
    if (it == registry().end()) {
      std::cerr << "ferry-bench: no benchmark named " << name << " (ferry-bench list)\n";
      return 2;
    }
    auto result = it->second.run(std::vector<std::string>(args.begin() + 1, args.end()));
    std::cout << result.dump() << std::endl;
  }
  return 0;
}
