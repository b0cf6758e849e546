// ferry-bench: Ferry's benchmarks. Each benchmark measures a figure and, in the same run, the
// reference it is judged against (raw libfabric, memcpy, stop-and-copy, the job unmigrated),
// prints a table for people and returns one JSON entry: name, figures, reference, ratio, target,
// and `checks`, the verdicts the report shows ("met"/"missed"). Benchmarks report; they never
// fail on a missed target (tests assert, benchmarks measure). A benchmark that cannot measure
// returns an entry with an "error" member, and the suite goes on.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ferry::bench {

struct Benchmark {
  std::string name;
  std::string what;  // one line for `ferry-bench list` and the report
  std::function<nlohmann::json(const std::vector<std::string>& args)> run;  // returns the entry
  std::vector<std::string> quick_args = {};  // `ferry-bench all --quick`: small sizes
  std::string how = "";    // a paragraph for the report: what is measured, how, against what
  std::string usage = "";  // its arguments: "[MiB=256] [ROUNDS=10000]" ("-" keeps a default)
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
// The median (the mean of the middle two for an even count); 0 for none.
double median(std::vector<double> samples);
nlohmann::json to_json(const Summary& s);

// "AMD EPYC, x86_64, 2 CPUs, 24 GiB RAM, Linux 6.1.0, Debian 12" for the record.
std::string machine_description();

// One verdict for the report: `figure` (in `unit`) against `reference`, their ratio, the
// target in words, and whether it was met (nullopt: could not be judged).
nlohmann::json check(const std::string& what, double figure, const std::string& unit,
                     std::optional<double> reference, std::optional<double> ratio,
                     const std::string& target, std::optional<bool> met);
// An entry for a benchmark that could not measure: prints the reason and returns
// {name, error, machine}.
nlohmann::json error_entry(const std::string& name, const std::string& what);
const char* verdict(bool met);  // "met" / "missed"
// Prints checks as "  what: figure unit (reference R, ratio X; target T: met)".
void print_checks(const nlohmann::json& checks);

// Ctrl-C / SIGTERM: long waits call check_interrupted(), which throws Interrupted, so that the
// benchmark's handles (clusters, jobs) unwind and stop what they started.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};
void install_interrupt_handler();
void check_interrupted();
bool was_interrupted();
// Sleeps `ms` in small steps, checking for an interruption.
void pause_ms(double ms);

// Progress on long work, on stderr: a line rewritten in place on a terminal, else one line
// every few seconds. progress_done() ends the line.
void progress(const std::string& text);
void progress_done();

// If this process was started as a benchmark's helper process (by spawn_helper), runs the
// helper named in the environment and exits. Called first thing in main().
void maybe_run_helper();
// Registers a helper: a function run in a fresh process (fork+exec of ferry-bench itself, so
// no libfabric state is inherited). It gets `arg` and a pipe fd to report to the parent.
struct RegisterHelper {
  RegisterHelper(const std::string& name,
                 std::function<int(const std::string& arg, int report_fd)> fn);
};
// Starts helper `name` with `arg`; returns its pid and the first line it writes to its pipe.
std::pair<int, std::string> spawn_helper(const std::string& name, const std::string& arg);

// Arguments: args[i] as a number, or `fallback` when absent or "-".
double arg_number(const std::vector<std::string>& args, size_t i, double fallback);
// args[i], or `fallback` when absent or "-".
std::string arg_text(const std::vector<std::string>& args, size_t i, const std::string& fallback);
// args[i] split at commas ("256,1024"), or `fallback`.
std::vector<std::string> arg_list(const std::vector<std::string>& args, size_t i,
                                  const std::vector<std::string>& fallback);

}  // namespace ferry::bench
