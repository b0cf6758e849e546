// The report's plots through gnuplot (report_plots.h).
#include "perf/report_plots.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <random>

#include "perf/bench_process.h"
#include "perf/report_format.h"

namespace ferry::bench::report {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr double kMiB = 1024.0 * 1024.0;

const char* kTerminal = "set terminal pngcairo size 960,540 font 'DejaVu Sans,11' noenhanced\n";
const char* kStyle =
    "set grid lc rgb '#dddddd'\nset border lc rgb '#555555'\nset key box opaque\n"
    "set style line 1 lc rgb '#1f77b4' lw 2 pt 7\nset style line 2 lc rgb '#d62728' lw 2 pt 5\n"
    "set style line 3 lc rgb '#2ca02c' lw 2 pt 9\nset style line 4 lc rgb '#ff7f0e' lw 2 pt 11\n"
    "set style line 5 lc rgb '#9467bd' lw 2 pt 13\nset style line 6 lc rgb '#8c564b' lw 2 pt 3\n"
    "set style line 9 lc rgb '#888888' lw 1 dt 2\n";

// A scratch directory for one plot's data and script, removed afterwards.
class Scratch {
 public:
  Scratch() {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("ferry-report-{}-{}", getpid(), rd() % 1000000);
    fs::create_directories(dir_);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Writes a data file; its path, quoted for gnuplot.
  std::string data(const std::string& name, const std::string& content) {
    std::ofstream(dir_ / name) << content;
    return "'" + (dir_ / name).string() + "'";
  }
  fs::path path(const std::string& name) const { return dir_ / name; }

 private:
  fs::path dir_;
};

// Runs gnuplot on `script`; "" or its complaint.
std::string gnuplot(Scratch& s, const std::string& script) {
  std::ofstream(s.path("plot.gp")) << script;
  const fs::path err = s.path("stderr");
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) dup2(fd, 2);
    execlp("gnuplot", "gnuplot", s.path("plot.gp").c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return "cannot run gnuplot";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  std::string text = slurp(err);
  return text.empty() ? "gnuplot failed" : text.substr(0, 400);
}

std::string head(const fs::path& out, const std::string& title) {
  return fmt::format("{}{}set output '{}'\nset title \"{}\"\n", kTerminal, kStyle, out.string(),
                     title);
}

const json& cases_of(const json& e) {
  static const json none = json::array();
  const json& c = field(field(e, "figures"), "cases");
  return c.is_array() ? c : none;
}

const json* entry_named(const json& all, const std::string& name) {
  for (const auto& e : field(all, "benchmarks"))
    if (e.value("name", "") == name && !e.contains("error")) return &e;
  return nullptr;
}

double num(const json& j, const char* key, double fallback = -1) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : fallback;
}

// ---------------------------------------------------------------------------------------------

std::string downtime(const json& e, const fs::path& out, Scratch& s) {
  std::map<std::string, std::string> rows;
  std::string ferry_rows, tics;
  std::map<double, bool> sizes;
  const json& summary = field(field(e, "figures"), "summary");
  for (const auto& c : summary.is_array() ? summary : json::array()) {
    if (c.contains("error") || !c.contains("downtime_ms")) continue;
    const double size = num(c, "size_mib");
    rows[c.value("mode", "")] += fmt::format("{} {} {} {}\n", size, num(c, "downtime_ms"),
                                             num(c, "downtime_ms_min"), num(c, "downtime_ms_max"));
    if (c.value("mode", "") == "lazy")
      ferry_rows += fmt::format("{} {}\n", size, num(c, "freeze_to_resume_ms"));
    sizes[size] = true;
  }
  if (rows.empty()) return "no cases";
  for (const auto& [size, _] : sizes)
    tics += fmt::format("{}\"{:.0f}\" {}", tics.empty() ? "" : ", ", size, size);
  std::string plot = "plot ";
  int style = 1;
  for (const char* mode : {"lazy", "eager", "precopy"}) {
    if (!rows.count(mode)) continue;
    plot += fmt::format("{} using 1:2:3:4 with yerrorlines ls {} title '{} (median, min-max)', ",
                        s.data(std::string(mode) + ".dat", rows[mode]), style++, mode);
  }
  if (!ferry_rows.empty())
    plot += fmt::format(
        "{} using 1:2 with linespoints ls 4 dt 3 title 'lazy, ferry own freeze-to-resume', ",
        s.data("ferry.dat", ferry_rows));
  plot += "20 with lines ls 9 title 'lazy target 20 ms'\n";
  return head(out, "Downtime against memory size (the job's own output)") +
         "set logscale xy 2\nset offsets graph 0.04, graph 0.04, 0, 0\n"
         "set xlabel 'job memory (MiB)'\nset ylabel 'downtime (ms)'\n"
         "set format y '%g'\nset key top left\nset xtics (" +
         tics + ")\n" + plot;
}

// Percentile rows "value percentile": 101 values, or the few the summary has.
std::string cdf_rows(const json& summary) {
  std::string rows;
  if (summary.contains("percentiles") && summary["percentiles"].is_array() &&
      summary["percentiles"].size() >= 2) {
    const auto& p = summary["percentiles"];
    for (size_t i = 0; i < p.size(); ++i)
      if (p[i].is_number() && p[i].get<double>() > 0)
        rows +=
            fmt::format("{} {}\n", p[i].get<double>(), 100.0 * double(i) / double(p.size() - 1));
    return rows;
  }
  for (auto [key, pct] : std::vector<std::pair<const char*, double>>{
           {"p50", 50}, {"p90", 90}, {"p99", 99}, {"max", 100}})
    if (num(summary, key) > 0) rows += fmt::format("{} {}\n", num(summary, key), pct);
  return rows;
}

std::string fault_latency(const json& e, const json& all, const fs::path& out, Scratch& s) {
  const json pager = field(field(e, "figures"), "fault");
  const json raw = field(field(e, "reference"), "raw_4k_request_reply");
  std::string p = cdf_rows(pager), r = cdf_rows(raw);
  if (p.empty() || r.empty()) return "no percentiles";
  const bool pager_full = pager.contains("percentiles");
  std::string plot = fmt::format(
      "plot {} using 1:2 with lines ls 2 title 'raw libfabric 4 KiB request/reply', "
      "{} using 1:2 with {} ls 1 title 'pager fault service, prefetch off{}'",
      s.data("raw.dat", r), s.data("pager.dat", p), pager_full ? "lines" : "linespoints",
      pager_full ? "" : " (p50, p90, p99, max)");
  if (const json* t = entry_named(all, "traffic")) {
    json during = field(field(*t, "figures"), "fault_latency_us");
    const json& percentiles = field(field(*t, "figures"), "latency_percentiles");
    if (during.is_object() && percentiles.is_array()) during["percentiles"] = percentiles;
    if (std::string d = cdf_rows(during); !d.empty())
      plot += fmt::format(
          ", {} using 1:2 with {} ls 3 title 'pager faults during a lazy migration "
          "(prefetch on)'",
          s.data("during.dat", d), during.contains("percentiles") ? "lines" : "linespoints");
  }
  return head(out, "Fault service latency: pager against raw libfabric (CDF)") +
         "set logscale x 10\nset xlabel 'latency (us)'\nset ylabel 'percentile'\n"
         "set yrange [0:100]\nset key bottom right\n" +
         plot + "\n";
}

std::string full_speed(const json& e, const fs::path& out, Scratch& s) {
  std::string plot = "plot ";
  int style = 1, n = 0;
  for (const auto& c : cases_of(e)) {
    if (c.contains("error") || !c.contains("curve")) continue;
    std::string rows;
    for (const auto& w : c["curve"])
      rows += fmt::format("{} {}\n", w[0].get<double>() / 1000, w[1].get<double>());
    const std::string label =
        fmt::format("{:.0f} MiB {}", num(c, "size_mib"), c.value("pattern", ""));
    plot += fmt::format("{} using 1:2 with lines ls {} title '{}', ",
                        s.data(fmt::format("c{}.dat", n++), rows), style, label);
    style = style % 6 + 1;
  }
  if (n == 0) return "no curves";
  plot += "0.9 with lines ls 9 title '90% of the rate before'\n";
  return head(out, "Back to full speed: the job's rate after a lazy migration (100 ms windows)") +
         "set xlabel 's from the resume'\nset ylabel 'rate / rate before the migration'\n"
         "set yrange [0:1.4]\nset key bottom right\nset arrow from 0, graph 0 to 0, graph 1 nohead "
         "ls 9\n" +
         plot;
}

std::string traffic(const json& e, const fs::path& out, Scratch& s) {
  const auto& f = field(e, "figures");
  if (!f.is_object() || !f.contains("series") || f["series"].empty()) return "no series";
  std::string rows;
  for (const auto& r : f["series"]) {
    for (const auto& v : r) rows += fmt::format("{} ", v.get<double>());
    rows += "\n";
  }
  const std::string d = s.data("traffic.dat", rows);
  return head(out, "") +
         fmt::format(
             "set multiplot layout 2,1 title \"Page traffic of one lazy migration ({:.0f} "
             "MiB {})\"\n",
             num(f, "size_mib"), f.value("pattern", "")) +
         "set lmargin 12\nset rmargin 12\n"
         "set ylabel 'MiB/s on the wire'\nset y2label 'job rate / rate before'\nset y2tics\n"
         "set yrange [0:*]\nset y2range [0:1.4]\nset key top right\n"
         "plot " +
         d + " using 1:5 with steps ls 1 title 'bytes on the wire', " + d +
         " using 1:6 axes x1y2 with steps ls 3 title 'job rate'\n"
         "unset y2tics\nunset y2label\nset xlabel 's from the freeze'\nset ylabel 'per second'\n"
         "set logscale y 10\nset yrange [1:*]\n"
         "plot " +
         d + " using 1:($4+1) with steps ls 1 title 'pages prefetched', " + d +
         " using 1:($3+1) with steps ls 2 title 'pages on demand', " + d +
         " using 1:($2+1) with steps ls 4 title 'faults'\nunset multiplot\n";
}

std::string memory(const json& e, const fs::path& out, Scratch& s) {
  std::string plot = "plot ", lazy;
  int style = 1, n = 0;
  for (const auto& c : cases_of(e)) {
    if (c.contains("error") || !c.contains("curve")) continue;
    std::string rows;
    for (const auto& r : c["curve"]) {
      double total = 0;
      for (size_t i = 1; i < r.size(); ++i) total += r[i].get<double>();
      rows += fmt::format("{} {} {} {}\n", r[0].get<double>(), total,
                          r[1].get<double>() + r[2].get<double>(),
                          r[3].get<double>() + r[4].get<double>());
    }
    const std::string mode = c.value("mode", "");
    const std::string d = s.data(fmt::format("m{}.dat", n++), rows);
    plot += fmt::format("{} using 1:2 with lines ls {} title '{}: both nodes', ", d, style, mode);
    if (mode == "lazy")
      plot += fmt::format(
          "{} using 1:3 with lines ls {} dt 2 title 'lazy: n1 (source)', "
          "{} using 1:4 with lines ls {} dt 3 title 'lazy: n2 (destination)', ",
          d, style, d, style);
    ++style;
  }
  if (n == 0) return "no curves";
  const double job = num(cases_of(e)[0], "job_rss_mib", 0);
  plot += fmt::format("{} with lines ls 9 title 'the job alone'\n", job);
  return head(out, fmt::format("Memory of both nodes during a migration ({:.0f} MiB job)", job)) +
         "set xlabel 's from the freeze'\nset ylabel 'RSS (MiB): jobs, shells, pagers'\n"
         "set yrange [0:*]\nset key top right\n" +
         plot;
}

std::string last_page(const json& e, const fs::path& out, Scratch& s) {
  std::map<double, std::map<std::string, double>> by_size;
  for (const auto& c : cases_of(e))
    if (!c.contains("error"))
      by_size[num(c, "size_mib")][c.value("mode", "")] = num(c, "last_page_after_freeze_ms") / 1000;
  const json raws = field(field(e, "reference"), "raw_bulk_1mib");
  for (const auto& [size, r] : raws.items())
    if (!r.contains("error"))
      by_size[std::atof(size.c_str())]["raw"] =
          num(r, "ms_for_migrated_bytes", num(r, "ms")) / 1000;
  if (by_size.empty()) return "no cases";
  std::string rows;
  for (auto& [size, m] : by_size)
    rows += fmt::format("\"{:.0f} MiB\" {} {} {}\n", size, m.count("lazy") ? m["lazy"] : 0,
                        m.count("eager") ? m["eager"] : 0, m.count("raw") ? m["raw"] : 0);
  const std::string d = s.data("lastpage.dat", rows);
  return head(out, "Time until the last page arrived (from the freeze)") +
         "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 "
         "border -1\n"
         "set ylabel 's'\nset yrange [0:*]\nset key top left\n"
         "plot " +
         d +
         " using 2:xtic(1) ls 1 title 'lazy', '' using 3 ls 2 title 'eager (stop-and-copy)', "
         "'' using 4 ls 3 title 'raw libfabric, same bytes'\n";
}

std::string slowdown(const json& e, const fs::path& out, Scratch& s) {
  std::string rows;
  for (const auto& c : cases_of(e))
    if (!c.contains("error"))
      rows += fmt::format("\"{}\" {} {}\n", c.value("pattern", ""), num(c, "unmigrated_s"),
                          num(c, "migrated_s"));
  if (rows.empty()) return "no cases";
  const std::string d = s.data("slowdown.dat", rows);
  return head(out, "Completion time: migrated once mid-run against not migrated") +
         "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 "
         "border -1\n"
         "set ylabel 's'\nset yrange [0:*]\nset key top left\n"
         "plot " +
         d +
         " using 2:xtic(1) ls 3 title 'not migrated', '' using 3 ls 1 title 'migrated once "
         "(lazy)'\n";
}

struct Drawing {
  std::string file, caption;
  std::function<std::string(const json&, const json&, const fs::path&, Scratch&)> script;
};

const std::map<std::string, std::vector<Drawing>>& drawings() {
  static const std::map<std::string, std::vector<Drawing>> d = {
      {"downtime",
       {{"downtime.png",
         "Downtime against memory size, per mode (log-log); the dotted line is ferry's own "
         "freeze-to-resume for lazy.",
         [](const json& e, const json&, const fs::path& o, Scratch& s) {
           return downtime(e, o, s);
         }}}},
      {"fault-latency",
       {{"fault-latency.png",
         "Fault service latency, pager against raw libfabric 4 KiB request/reply (CDF).",
         [](const json& e, const json& a, const fs::path& o, Scratch& s) {
           return fault_latency(e, a, o, s);
         }}}},
      {"full-speed",
       {{"full-speed.png",
         "The job's rate after its resume, as a share of its rate before, per 100 ms window.",
         [](const json& e, const json&, const fs::path& o, Scratch& s) {
           return full_speed(e, o, s);
         }}}},
      {"traffic",
       {{"traffic.png",
         "Bytes on the wire and the job's rate (top); pages prefetched, on demand and faults "
         "per second (bottom, log scale).",
         [](const json& e, const json&, const fs::path& o, Scratch& s) {
           return traffic(e, o, s);
         }}}},
      {"peak-memory",
       {{"memory.png", "Summed RSS of both nodes (jobs, memory shell, pagers) over time, per mode.",
         [](const json& e, const json&, const fs::path& o, Scratch& s) {
           return memory(e, o, s);
         }}}},
      {"last-page",
       {{"last-page.png",
         "Time from the freeze until the last page arrived: lazy, eager, and raw libfabric "
         "carrying the same bytes.",
         [](const json& e, const json&, const fs::path& o, Scratch& s) {
           return last_page(e, o, s);
         }}}},
      {"slowdown",
       {{"slowdown.png",
         "Completion time of the same job, migrated once half-way and not migrated.",
         [](const json& e, const json&, const fs::path& o, Scratch& s) {
           return slowdown(e, o, s);
         }}}},
  };
  return d;
}

}  // namespace

bool have_gnuplot() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

std::vector<Plot> draw_plots(const json& entry, const json& all, const fs::path& dir,
                             std::vector<std::string>& problems) {
  std::vector<Plot> out;
  if (entry.contains("error")) return out;
  auto it = drawings().find(entry.value("name", ""));
  if (it == drawings().end()) return out;
  fs::create_directories(dir);
  for (const auto& d : it->second) {
    Scratch s;
    std::string script;
    try {
      script = d.script(entry, all, dir / d.file, s);
    } catch (const std::exception& ex) {
      script = std::string("cannot read the entry: ") + ex.what();
    }
    if (script.rfind("set terminal", 0) != 0) {
      problems.push_back(d.file + ": " + script);
      continue;
    }
    if (std::string err = gnuplot(s, script); !err.empty()) {
      problems.push_back(d.file + ": " + err);
      continue;
    }
    out.push_back({d.file, d.caption});
  }
  return out;
}

}  // namespace ferry::bench::report
