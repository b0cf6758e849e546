// What the benchmarks need of this machine's processes: programs started with pipes (killed
// when their handle goes), helper processes (spawn_helper), the memory and CPU time of a pid
// read from /proc, and where the binaries are. Every handle here kills and reaps what it started
// when it is destroyed, so a benchmark that returns early (or throws) leaves nothing running.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace ferry::bench {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0);
// CLOCK_MONOTONIC in ms: the clock of memory_job's progress lines (steady_clock on Linux).
double mono_ms();
double mono_ms(Clock::time_point t);

// The directory of ferry-bench (build/bin), a test program (build/tests/programs/NAME) and a
// benchmark program (build/perf/programs/NAME).
std::filesystem::path bin_dir();
std::string test_program(const std::string& name);
std::string perf_program(const std::string& name);

std::string slurp(const std::filesystem::path& p);

// VmRSS in KiB; 0 for a process that is gone (or a zombie).
long rss_kib(pid_t pid);
// CPU time (user + system, all threads) of a process so far, in ms.
double cpu_ms(pid_t pid);
// The state letter of /proc/PID/stat (R, S, D, t, T, Z...), 0 if it is gone; and its parent.
char process_state(pid_t pid);
pid_t parent_pid(pid_t pid);
// Every process whose parent is one of `parents`.
std::vector<pid_t> children_of(const std::vector<pid_t>& parents);
// MemAvailable of /proc/meminfo, in MiB.
long available_mib();

// A program with its stdin and stdout on pipes to us; killed on destruction if still running.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv);
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();
  // The next line of its output, or "" after `timeout` or at its end.
  std::string line(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  bool say(const std::string& s);
  // Exit status (128 + signal when killed), or -1 if it still runs after `timeout`.
  int wait(std::chrono::milliseconds timeout);

  pid_t pid = -1;

 private:
  int in_ = -1, out_ = -1;
  std::string buffered_;
};

// A helper process (spawn_helper, bench.h), killed on destruction.
class Helper {
 public:
  Helper(const std::string& name, const std::string& arg);
  Helper(const Helper&) = delete;
  Helper& operator=(const Helper&) = delete;
  ~Helper();
  // Reaps it once it has finished on its own.
  void reap();

  pid_t pid = -1;
  std::string line;  // the first line it reported
};

}  // namespace ferry::bench
