// A memory_job on a benchmark's cluster (memory_job_run.h).
#include "perf/memory_job_run.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "perf/bench.h"
#include "perf/bench_process.h"

namespace ferry::bench {

std::string JobSpec::describe() const { return fmt::format("{} MiB {}", mib, pattern); }

MemoryJob::MemoryJob(Cluster& cluster, JobSpec s) : spec(std::move(s)), cluster_(cluster) {}

MemoryJob::~MemoryJob() {
  stop();
  if (fd_ >= 0) close(fd_);
}

std::string MemoryJob::start() {
  const std::string program = perf_program("memory_job");
  if (access(program.c_str(), X_OK) != 0) return "missing " + program + " (build perf_memory_job)";
  std::vector<std::string> args{"run", "--node", spec.node, "-d", "--", program, std::to_string(spec.mib),
                                spec.pattern, std::to_string(spec.accesses), std::to_string(spec.seed)};
  if (spec.threads > 1) args.push_back(std::to_string(spec.threads));
  auto r = cluster_.cli(args);
  if (r.status != 0) return "ferry run: " + r.text();
  gpid = std::strtoull(r.out.c_str(), nullptr, 10);
  if (gpid == 0) return "ferry run printed '" + r.out + "'";
  auto j = info(spec.node);
  if (!j.is_object()) return "ferry ps --json has no gpid " + std::to_string(gpid);
  output = j.value("output", "");
  pid = pid_t(j.value("pid", 0));
  // Filling takes about a second per GiB here; give it room on a busy machine.
  const double timeout_ms = 60000 + double(spec.mib) * 20;
  if (!wait_until([&] { return !points.empty(); }, timeout_ms,
                  fmt::format("gpid {}: {} filling its memory", gpid, spec.describe()))) {
    if (ended) return fmt::format("the job ended before its first access (its log: '{}')", other_);
    return fmt::format("the job did not start its accesses within {:.0f} s (log: '{}', state {})",
                       timeout_ms / 1000, other_, info().value("state", "?"));
  }
  return "";
}

nlohmann::json MemoryJob::info(const std::string& node) const {
  auto r = cluster_.cli({"ps", "--json"}, node);
  auto list = nlohmann::json::parse(r.out, nullptr, false);
  if (!list.is_array()) return nullptr;
  for (const auto& p : list)
    if (p.value("gpid", uint64_t(0)) == gpid) return p;
  return nullptr;
}

void MemoryJob::parse(const std::string& line) {
  if (line.size() > 2 && line[0] == 'p' && line[1] == ' ') {
    char* end = nullptr;
    double t_us = std::strtod(line.c_str() + 2, &end);
    uint64_t count = std::strtoull(end, nullptr, 10);
    points.push_back({t_us / 1000.0, count});
    return;
  }
  other_ = line;
  std::istringstream in(line);
  std::string word;
  in >> word;
  if (word == "ready") in >> pages;
  if (word == "done") {
    in >> done_count >> checksum;
    done = true;
  }
}

void MemoryJob::poll() {
  if (fd_ < 0 && !output.empty()) fd_ = open(output.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) return;
  char buf[65536];
  for (;;) {
    ssize_t n = pread(fd_, buf, sizeof buf, off_t(offset_));
    if (n <= 0) break;
    offset_ += uint64_t(n);
    partial_.append(buf, size_t(n));
  }
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1)
    parse(partial_.substr(start, nl - start));
  partial_.erase(0, start);
}

bool MemoryJob::wait_until(const std::function<bool()>& cond, double timeout_ms,
                           const std::string& what) {
  auto t0 = Clock::now();
  auto last_growth = t0;
  uint64_t seen = offset_;
  for (;;) {
    poll();
    if (cond()) return true;
    double waited = ms_since(t0);
    if (waited >= timeout_ms) return false;
    if (offset_ != seen) seen = offset_, last_growth = Clock::now();
    // A log that stopped growing: is the job still there?
    if (ms_since(last_growth) > 3000) {
      auto j = info();
      std::string state = j.is_object() ? j.value("state", "") : "gone";
      if (state != "running" && state != "migrating") {
        poll();
        ended = true;
        return cond();
      }
      last_growth = Clock::now();
    }
    progress(fmt::format("{} ({:.1f} s)", what, waited / 1000));
    pause_ms(5);
  }
}

bool MemoryJob::run_for(double ms, const std::string& what) {
  poll();
  if (points.empty()) return false;
  const double until = mono_ms() + ms;
  return wait_until([&] { return !points.empty() && points.back().t_ms >= until; }, ms + 30000,
                    what);
}

bool MemoryJob::wait_done(double timeout_ms, const std::string& what) {
  return wait_until([&] { return done; }, timeout_ms, what);
}

std::string MemoryJob::stop() {
  if (gpid == 0 || stopped_ || !cluster_.is_up()) return "";
  stopped_ = true;
  auto k = cluster_.cli({"kill", "-KILL", std::to_string(gpid)});
  auto w = cluster_.cli({"wait", std::to_string(gpid)});
  poll();
  if (k.status != 0 && !done) return "ferry kill: " + k.text();
  return "";
}

}  // namespace ferry::bench
