// One migration with the real CLI, its freeze and its last page (migration_run.h).
#include "perf/migration_run.h"

#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <regex>
#include <thread>

#include "perf/bench.h"
#include "perf/bench_process.h"
#include "xmm/xmm.capnp.h"

namespace ferry::bench {
namespace {

using namespace std::chrono_literals;

// Stops separated by less than this much running are one stop (the hand-over after the
// commit lets the frozen process go for an instant before its SIGSTOP holds it again).
constexpr double kMergeStopsMs = 5;

// Reads a process's state every 0.5 ms on its own thread and records its stops; says every
// second how long the migration has taken (an eager one stands still for seconds).
class StopWatcher {
 public:
  StopWatcher(pid_t pid, std::string what) : pid_(pid), what_(std::move(what)) {
    thread_ = std::thread([this] {
      bool stopped = false;
      const double started = mono_ms();
      double said = started;
      while (!quit_) {
        if (mono_ms() - said >= 1000) {
          said = mono_ms();
          progress(fmt::format("{} ({:.0f} s{})", what_, (said - started) / 1000,
                               stopped ? ", the job stands still" : ", the job runs"));
        }
        char s = process_state(pid_);
        double now = mono_ms();
        bool is_stop = s == 't' || s == 'T';
        if (s == 0 || s == 'Z' || s == 'X') break;  // gone: it never ran again
        if (is_stop && !stopped) {
          if (!stops_.empty() && now - stops_.back().second < kMergeStopsMs)
            stops_.back().second = Migration::kNever;
          else
            stops_.emplace_back(now, Migration::kNever);
        } else if (!is_stop && stopped) {
          stops_.back().second = now;
        }
        stopped = is_stop;
        std::this_thread::sleep_for(500us);
      }
    });
  }
  ~StopWatcher() { stop(); }
  std::vector<std::pair<double, double>> stop() {
    quit_ = true;
    if (thread_.joinable()) thread_.join();
    return stops_;
  }

 private:
  pid_t pid_;
  std::string what_;
  std::atomic<bool> quit_{false};
  std::vector<std::pair<double, double>> stops_;
  std::thread thread_;
};

// "The following arguments were not expected: --eager --json"
bool cli_refused_flag(const CliResult& r, const std::string& flag) {
  const std::string t = r.text();
  auto at = t.find("not expected");
  if (at == std::string::npos) at = t.find("unknown option");
  if (at == std::string::npos) return false;
  auto line_end = t.find('\n', at);
  std::string rest =
      t.substr(at, line_end == std::string::npos ? std::string::npos : line_end - at);
  return rest.find(flag) != std::string::npos;
}

// The text of ferry migrate before --json existed.
nlohmann::json parse_migrate_text(const std::string& out) {
  static const std::regex re(
      R"(gpid (\d+): (\S+) -> (\S+) \(migration ([^)]+)\): stood still ([0-9.]+) ms \(capture ([0-9.]+) ms, install ([0-9.]+) ms, commit ([0-9.]+) ms\); (\d+) pages follow lazily, (\d+) KiB)");
  std::smatch m;
  if (!std::regex_search(out, m, re)) return nullptr;
  return {{"gpid", std::stoull(m[1])},
          {"from", m[2]},
          {"to", m[3]},
          {"migration_id", m[4]},
          {"freeze_to_resume_ms", std::stod(m[5])},
          {"capture_ms", std::stod(m[6])},
          {"install_ms", std::stod(m[7])},
          {"commit_ms", std::stod(m[8])},
          {"present_pages", std::stoull(m[9])},
          {"eager_bytes", std::stoull(m[10]) * 1024},
          {"mode", "lazy"}};
}

}  // namespace

std::vector<std::string> mode_flags(const MigrationSpec& spec) {
  if (spec.mode == "eager") return {"--eager"};
  if (spec.mode == "precopy")
    return {spec.precopy_rounds > 0 ? "--precopy=" + std::to_string(spec.precopy_rounds)
                                    : "--precopy"};
  return {};
}

double Migration::freeze_ms() const { return stops.empty() ? std::nan("") : stops.back().first; }

std::string Migration::label(uint64_t gpid) const {
  return fmt::format("gpid {} migration {}", gpid, migration_id);
}

double Migration::reply_number(const char* key, double fallback) const {
  if (!reply.is_object() || !reply.contains(key) || !reply[key].is_number()) return fallback;
  return reply[key].get<double>();
}

Migration migrate(Cluster& cluster, const MemoryJob& job, const MigrationSpec& spec,
                  const std::string& what) {
  Migration m;
  m.spec = spec;
  std::vector<std::string> args{"migrate", std::to_string(job.gpid), "--to", spec.to};
  auto flags = mode_flags(spec);
  args.insert(args.end(), flags.begin(), flags.end());
  for (bool json : {true, false}) {
    std::vector<std::string> a = args;
    if (json) a.push_back("--json");
    CliResult r;
    {
      StopWatcher watcher(job.pid, fmt::format("{}: ferry migrate --to {} {}", what, spec.to,
                                               flags.empty() ? "" : flags[0]));
      m.cli_start_ms = mono_ms();
      r = cluster.cli(a);
      m.cli_end_ms = mono_ms();
      std::this_thread::sleep_for(20ms);  // a stop that began as the CLI returned
      m.stops = watcher.stop();
    }
    if (r.status != 0 && !flags.empty() && cli_refused_flag(r, flags[0])) {
      m.error = fmt::format("this ferry has no '{}' ({})", flags[0], r.text().substr(0, 200));
      return m;
    }
    if (r.status != 0 && json && cli_refused_flag(r, "--json")) continue;  // an older CLI
    if (r.status != 0) {
      m.error = "ferry migrate: " + r.text();
      return m;
    }
    m.used_json = json;
    m.reply = json ? nlohmann::json::parse(r.out, nullptr, false) : parse_migrate_text(r.out);
    if (m.reply.is_discarded() || !m.reply.is_object()) {
      m.error = "cannot read ferry migrate's answer: " + r.out;
      return m;
    }
    m.migration_id = m.reply.value("migration_id", "");
    m.from = m.reply.value("from", "");
    if (m.migration_id.empty()) m.error = "ferry migrate named no migration: " + r.out;
    return m;
  }
  return m;
}

Arrival wait_last_page(Cluster& cluster, const MemoryJob& job, const Migration& m,
                       double timeout_ms, const std::string& what) {
  Arrival a;
  const std::string label = m.label(job.gpid);
  const std::string node = m.reply.value("to", m.spec.to);
  auto t0 = Clock::now();
  std::unique_ptr<dipc::LocalClient> pager;
  double best_call_ms = 1e9;
  for (;; pause_ms(50)) {
    const double waited = ms_since(t0);
    if (waited > timeout_ms) {
      a.error = fmt::format("the last page had not arrived after {:.0f} s ({} of {} pages)",
                            timeout_ms / 1000, a.arrived_pages, a.present_pages);
      break;
    }
    if (!pager) {
      auto c = cluster.pager(node);
      if (!c) {
        a.error = "pager of " + node + ": " + c.error().message;
        break;
      }
      pager = std::move(c).value();
    }
    const double before = mono_ms();
    auto r = pager->call<xmm::wire::PagerStat, xmm::wire::PagerStatReply>([](auto) {}, 10s);
    const double after = mono_ms();
    if (!r) {
      a.error = "pager of " + node + ": " + r.error().message;
      break;
    }
    bool seen = false;
    for (auto s : r.value().get().getImports()) {
      if (std::string(s.getLabel().cStr()) != label) continue;
      seen = a.found = true;
      a.state = s.getState().cStr();
      a.present_pages = s.getPresentPages();
      a.arrived_pages = s.getArrivedPages();
      a.bytes_on_wire = s.getBytesOnWire();
      if (after - before < best_call_ms) {  // the tightest call places the start best
        best_call_ms = after - before;
        a.import_start_ms = (before + after) / 2 - s.getElapsedMs();
      }
      if (a.state == "complete") a.ms_to_last_page = s.getMsToLastPage();
    }
    progress(fmt::format("{}: {} of {} pages arrived ({:.1f} s)", what, a.arrived_pages,
                         a.present_pages, waited / 1000));
    if (seen && a.state != "fetching" && a.state != "opening") break;
    if (!seen && waited > 3000) {
      // No import: the pages came with the state (an eager migration), or it never started.
      if (m.spec.mode == "eager" || m.reply_number("present_pages", 1) == 0) {
        a.state = "complete";
        a.import_start_ms = m.cli_start_ms;
        a.last_page_ms = m.cli_end_ms;
      } else {
        a.error = "the pager of " + node + " has no import labelled '" + label + "'";
      }
      break;
    }
  }
  if (a.found && a.state == "complete") a.last_page_ms = a.import_start_ms + a.ms_to_last_page;
  if (a.error.empty() && a.state != "complete") a.error = "the import ended '" + a.state + "'";
  // The details, as the CLI shows them.
  auto s = cluster.cli({"stat", std::to_string(job.gpid), "--json"});
  auto nodes = nlohmann::json::parse(s.out, nullptr, false);
  if (nodes.is_array())
    for (const auto& n : nodes) {
      for (const auto& i : n.value("imports", nlohmann::json::array()))
        if (i.value("label", "") == label) a.import = i, a.import["node"] = n.value("node", "");
      for (const auto& e : n.value("exports", nlohmann::json::array()))
        if (e.value("label", "") == label) a.exported = e, a.exported["node"] = n.value("node", "");
    }
  return a;
}

}  // namespace ferry::bench
