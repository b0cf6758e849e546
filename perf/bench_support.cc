// What every benchmark shares (bench.h): the registry, summaries, the machine's description,
// verdicts, interruption, progress lines, helper processes, arguments.
#include <fmt/format.h>
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <thread>

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

std::atomic<bool> interrupted{false};

void on_interrupt(int) { interrupted = true; }

std::string first_line_with(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return line;
  return "";
}

}  // namespace

Register::Register(Benchmark b) { mutable_registry().emplace(b.name, std::move(b)); }
const std::map<std::string, Benchmark>& registry() { return mutable_registry(); }
RegisterHelper::RegisterHelper(const std::string& name,
                               std::function<int(const std::string&, int)> fn) {
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

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

nlohmann::json to_json(const Summary& s) {
  return {{"p50", s.p50},   {"p90", s.p90}, {"p99", s.p99},
          {"mean", s.mean}, {"max", s.max}, {"n", s.n}};
}

std::string machine_description() {
  utsname u{};
  uname(&u);
  std::string cpu = first_line_with("/proc/cpuinfo", "model name");
  if (auto colon = cpu.find(':'); colon != std::string::npos) cpu = cpu.substr(colon + 2);
  std::string mem = first_line_with("/proc/meminfo", "MemTotal:");
  double gib = mem.empty() ? 0 : std::atof(mem.c_str() + 9) / (1024.0 * 1024.0);
  std::string os = first_line_with("/etc/os-release", "PRETTY_NAME=");
  if (!os.empty()) {
    os = os.substr(12);
    os.erase(std::remove(os.begin(), os.end(), '"'), os.end());
  }
  std::string d = cpu.empty() ? "" : cpu + ", ";
  d += fmt::format("{}, {} CPUs, {:.0f} GiB RAM, Linux {}", u.machine,
                   sysconf(_SC_NPROCESSORS_ONLN), gib, u.release);
  if (!os.empty()) d += ", " + os;
  return d;
}

nlohmann::json check(const std::string& what, double figure, const std::string& unit,
                     std::optional<double> reference, std::optional<double> ratio,
                     const std::string& target, std::optional<bool> met) {
  nlohmann::json c{{"what", what}, {"figure", figure}, {"unit", unit}, {"target", target}};
  c["reference"] = reference ? nlohmann::json(*reference) : nlohmann::json();
  c["ratio"] = ratio ? nlohmann::json(*ratio) : nlohmann::json();
  c["met"] = met ? nlohmann::json(*met) : nlohmann::json();
  return c;
}

nlohmann::json error_entry(const std::string& name, const std::string& what) {
  std::cout << name << ": error: " << what << "\n";
  return {{"name", name}, {"error", what}, {"machine", machine_description()}};
}

const char* verdict(bool met) { return met ? "met" : "missed"; }

void print_checks(const nlohmann::json& checks) {
  for (const auto& c : checks) {
    std::string ref = c["reference"].is_number()
                          ? fmt::format("reference {:.4g}, ", c["reference"].get<double>())
                          : "";
    std::string ratio =
        c["ratio"].is_number() ? fmt::format("ratio {:.3g}; ", c["ratio"].get<double>()) : "";
    std::cout << fmt::format("  {}: {:.4g} {} ({}{}target {}: {})\n", c["what"].get<std::string>(),
                             c["figure"].get<double>(), c["unit"].get<std::string>(), ref, ratio,
                             c["target"].get<std::string>(),
                             c["met"].is_null() ? "-" : verdict(c["met"].get<bool>()));
  }
}

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
}

void check_interrupted() {
  if (interrupted) throw Interrupted();
}

bool was_interrupted() { return interrupted; }

void pause_ms(double ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(long(ms * 1000));
  while (std::chrono::steady_clock::now() < until) {
    check_interrupted();
    auto left = until - std::chrono::steady_clock::now();
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(50)));
  }
}

namespace {
bool progress_shown = false;
std::chrono::steady_clock::time_point progress_last{};
}  // namespace

void progress(const std::string& text) {
  static const bool tty = isatty(2);
  auto now = std::chrono::steady_clock::now();
  if (tty) {
    std::cerr << "\r\033[K  .. " << text << std::flush;
    progress_shown = true;
  } else if (now - progress_last > std::chrono::seconds(5)) {
    std::cerr << "  .. " << text << "\n";
    progress_last = now;
  }
}

void progress_done() {
  if (progress_shown) std::cerr << "\r\033[K" << std::flush;
  progress_shown = false;
  progress_last = {};
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

double arg_number(const std::vector<std::string>& args, size_t i, double fallback) {
  if (i >= args.size() || args[i].empty() || args[i] == "-") return fallback;
  char* end = nullptr;
  double v = std::strtod(args[i].c_str(), &end);
  if (end == args[i].c_str()) throw std::invalid_argument("not a number: " + args[i]);
  return v;
}

std::string arg_text(const std::vector<std::string>& args, size_t i, const std::string& fallback) {
  return i >= args.size() || args[i].empty() || args[i] == "-" ? fallback : args[i];
}

std::vector<std::string> arg_list(const std::vector<std::string>& args, size_t i,
                                  const std::vector<std::string>& fallback) {
  if (i >= args.size() || args[i].empty() || args[i] == "-") return fallback;
  std::vector<std::string> out;
  std::stringstream in(args[i]);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace ferry::bench
