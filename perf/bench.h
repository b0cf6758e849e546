// ferry-bench: Ferry's benchmarks. Each benchmark measures a figure and, in the same run, the
// reference it is judged against (raw libfabric, memcpy, stop-and-copy), prints a table for
// people and ends with one line of JSON: name, figures, reference, ratio, target.
// Benchmarks report; they never fail on a missed target (tests assert, benchmarks measure).
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace ferry::bench {

struct Benchmark {
  std::string name;
  std::string what;  // one line for `ferry-bench list`
  std::function<nlohmann::json(const std::vector<std::string>& args)> run;  // returns the JSON line
};

// Registers a benchmark at static-initialization time.
struct Register {
  explicit Register(Benchmark b);
};
const std::map<std::string, Benchmark>& registry();

// p50/p90/p99/mean/max of samples (microseconds or any unit).
struct Summary {
  double p50 = 0, p90 = 0, p99 = 0, mean = 0, max = 0;
  size_t n = 0;
};
Summary summarize(std::vector<double> samples);
nlohmann::json to_json(const Summary& s);

// "x86_64, 2 CPUs, Linux 6.18" for the record.
std::string machine_description();

// If this process was started as a benchmark's helper process (by spawn_helper), runs the
// helper named in the environment and exits. Called first thing in main().
void maybe_run_helper();
// Registers a helper: a function run in a fresh process (fork+exec of ferry-bench itself, so
// no libfabric state is inherited). It gets `arg` and a pipe fd to report to the parent.
struct RegisterHelper {
  RegisterHelper(const std::string& name, std::function<int(const std::string& arg, int report_fd)> fn);
};
// Starts helper `name` with `arg`; returns its pid and the first line it writes to its pipe.
std::pair<int, std::string> spawn_helper(const std::string& name, const std::string& arg);

}  // namespace ferry::bench
