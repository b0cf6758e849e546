// The report's tables (report_tables.h), one layout per benchmark.
#include "perf/report_tables.h"

#include <fmt/format.h>

#include <functional>
#include <map>

#include "perf/report_format.h"

namespace ferry::bench::report {
namespace {

using nlohmann::json;
constexpr double kMiB = 1024.0 * 1024.0;

const json& cases_of(const json& e) {
  static const json none = json::array();
  const json& c = field(field(e, "figures"), "cases");
  return c.is_array() ? c : none;
}

std::string error_or(const json& c, const std::string& otherwise) {
  return c.contains("error") ? "error: " + c["error"].get<std::string>() : otherwise;
}

std::string dipc_rtt(const json& e) {
  Table t({"payload", "path", "p50 us", "p99 us", "mean us"});
  const auto& f = field(e, "figures");
  const auto& r = field(e, "reference");
  for (const char* size : {"32", "4096"}) {
    const std::string s = size;
    auto add = [&](const std::string& label, const json& x) {
      if (x.is_object()) t.row({s + " B", label, num(x["p50"]), num(x["p99"]), num(x["mean"])});
    };
    add("raw libfabric send/recv", field(r, "raw_" + s));
    add("DIPC Ping/Pong", field(f, "dipc_" + s));
    add("DIPC, client never spins", field(f, "dipc_no_spin_" + s));
  }
  return t.str();
}

std::string restore(const json& e) {
  Table t({"target", "VMAs", "p50 ms", "p90 ms", "max ms", "build p50 ms"});
  const auto& f = field(e, "figures");
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"sleep", "/bin/sleep (minimal dynamic)"},
      {"dynamic", "typical dynamic binary (fork)"},
      {"vmas_10", "fork + 10 VMAs"},
      {"vmas_100", "fork + 100 VMAs"},
      {"vmas_1000", "fork + 1000 VMAs"}};
  for (const auto& [key, label] : rows) {
    if (!f.contains(key)) continue;
    const auto& x = f[key];
    if (x.contains("error")) {
      t.row({label, "error: " + x["error"].get<std::string>()});
      continue;
    }
    t.row(
        {label, num(x["vmas"]), num(x["p50"]), num(x["p90"]), num(x["max"]), num(x["build_p50"])});
  }
  Table c({"page copy", "MiB/s"});
  c.row({"read_pages into the restored process, 256 MiB", num(field(f, "copy_mib_s"))});
  c.row({"memcpy in one process (reference)", num(field(field(e, "reference"), "memcpy_mib_s"))});
  return t.str() + "\n" + c.str();
}

std::string fault_latency(const json& e) {
  Table t({"", "p50 us", "p90 us", "p99 us", "max us", "samples"});
  const auto& p = field(field(e, "figures"), "fault");
  const auto& r = field(field(e, "reference"), "raw_4k_request_reply");
  if (p.is_object())
    t.row({"pager fault service", num(p["p50"]), num(p["p90"]), num(p["p99"]), num(p["max"]),
           num(field(p, "n"))});
  if (r.is_object())
    t.row({"raw libfabric 4 KiB request/reply", num(r["p50"]), num(r["p90"]), num(r["p99"]),
           num(r["max"]), num(field(r, "n"))});
  return t.str() + fmt::format(
                       "\nAs the faulting process sees it: {} us per fault (including "
                       "the check of the page).\n",
                       num(field(field(e, "figures"), "process_us_per_fault")));
}

std::string prefetch_throughput(const json& e) {
  const auto& f = field(e, "figures");
  const auto& r = field(field(e, "reference"), "raw_bulk_1mib");
  Table t({"", "MiB", "ms", "MiB/s"});
  t.row({"pager prefetch (bytes on the wire / time to the last page)",
         num(get(f, "bytes_on_wire") / kMiB), num(field(f, "ms_to_last_page")),
         num(field(f, "mib_s"))});
  t.row({"pager, steady state (median 100 ms window)", "", "", num(field(f, "steady_mib_s"))});
  if (r.is_object())
    t.row({"raw libfabric, 1 MiB replies, 4 in flight (best of 3)", num(get(r, "bytes") / kMiB),
           num(r["ms"]), num(r["mib_s"])});
  return t.str() + fmt::format("\nPager CPU during the move: n1 {} ms, n2 {} ms.\n",
                               num(field(f, "n1_cpu_ms")), num(field(f, "n2_cpu_ms")));
}

std::string pager_rss(const json& e) {
  const auto& f = field(e, "figures");
  auto gib = [](const json& kib) {
    return kib.is_number() ? num(kib.get<double>() / 1048576) : "-";
  };
  Table t({"", "GiB"});
  t.row({"source RSS before the move (reference)",
         gib(field(field(e, "reference"), "source_rss_kib"))});
  t.row({"peak of the sum during the move", gib(field(f, "peak_sum_kib"))});
  t.row({"of which source shell", gib(field(f, "peak_source_kib"))});
  t.row({"of which destination process", gib(field(f, "peak_destination_kib"))});
  t.row({"of which both pagers", gib(field(f, "peak_pagers_kib"))});
  t.row({"both pagers before the move", gib(field(f, "pagers_before_kib"))});
  return t.str();
}

std::string downtime(const json& e) {
  Table t({"size MiB", "mode", "runs", "downtime ms (job's output), median", "min - max",
           "ferry's freeze-to-resume ms", "first access after resume ms",
           "capture / install / commit ms", "last page after freeze s", "MiB on the wire",
           "precopy rounds / MiB sent"},
          2);
  const json& summary = field(field(e, "figures"), "summary");
  for (const auto& c : summary.is_array() ? summary : json::array()) {
    const std::string size = num(field(c, "size_mib")), mode = c.value("mode", "");
    if (c.contains("error")) {
      t.row({size, mode, "0", error_or(c, "")});
      continue;
    }
    std::string pre = "-";
    if (mode == "precopy")
      pre = num(field(c, "precopy_rounds")) + " / " +
            num(get(c, "precopy_pages_sent", 0) * 4096 / kMiB);
    t.row({size, mode, num(field(c, "runs")), num(field(c, "downtime_ms")),
           num(field(c, "downtime_ms_min")) + " - " + num(field(c, "downtime_ms_max")),
           num(field(c, "freeze_to_resume_ms")), num(field(c, "after_resume_ms")),
           num(field(c, "capture_ms")) + " / " + num(field(c, "install_ms")) + " / " +
               num(field(c, "commit_ms")),
           num(get(c, "last_page_after_freeze_ms") / 1000), num(get(c, "bytes_on_wire") / kMiB),
           pre});
  }
  return t.str();
}

std::string last_page(const json& e) {
  Table t({"size MiB", "mode", "last page after freeze s", "import s", "MiB on the wire", "MiB/s",
           "downtime ms"});
  for (const auto& c : cases_of(e)) {
    const std::string size = num(field(c, "size_mib")), mode = c.value("mode", "");
    if (c.contains("error")) {
      t.row({size, mode, error_or(c, "")});
      continue;
    }
    t.row({size, mode, num(get(c, "last_page_after_freeze_ms") / 1000),
           num(get(c, "ms_to_last_page") / 1000), num(get(c, "bytes_on_wire") / kMiB),
           num(field(c, "transfer_mib_s")), num(field(c, "downtime_ms"))});
  }
  const json raws = field(field(e, "reference"), "raw_bulk_1mib");
  for (const auto& [size, r] : raws.items()) {
    if (r.contains("error")) continue;
    // The link's bandwidth (best of 3 transfers of up to 1 GiB), and its time for the bytes the
    // lazy migration moved.
    const double bytes =
        get(r, "migrated_bytes",
            get(r, "ms_for_migrated_bytes", get(r, "ms")) / 1000 * get(r, "mib_s", 0) * kMiB);
    t.row({size, "raw libfabric (the link: best of 3)", "",
           num(get(r, "ms_for_migrated_bytes", get(r, "ms")) / 1000), num(bytes / kMiB),
           num(field(r, "mib_s")), ""});
  }
  return t.str();
}

std::string full_speed(const json& e) {
  Table t({"case", "rate before (accesses/s)", "time to full speed s", "last page after freeze s",
           "downtime ms", "stalled until last page s"});
  for (const auto& c : cases_of(e)) {
    const std::string label = num(field(c, "size_mib")) + " MiB " + c.value("pattern", "");
    if (c.contains("error")) {
      t.row({label, error_or(c, "")});
      continue;
    }
    const auto& full = field(c, "time_to_full_speed_ms");
    t.row({label, fmt::format("{:.3g}", get(c, "rate_before_per_s", 0)),
           full.is_number() ? num(full.get<double>() / 1000) : "never (in the run)",
           num(get(c, "last_page_after_freeze_ms") / 1000), num(field(c, "downtime_ms")),
           num(get(c, "stalled_ms_until_last_page") / 1000)});
  }
  return t.str();
}

// "8.35 (8.35, 9.10)": the figure, then every run.
std::string with_runs(const json& c, const char* key, const char* runs_key) {
  std::string out = num(field(c, key));
  const json& runs = field(c, runs_key);
  if (!runs.is_array() || runs.size() < 2) return out;
  std::string list;
  for (const auto& r : runs) list += (list.empty() ? "" : ", ") + num(r);
  return out + " (" + list + ")";
}

std::string slowdown(const json& e) {
  Table t({"pattern", "accesses", "unmigrated s (runs)", "migrated s (runs)", "slowdown",
           "downtime ms", "checksums"});
  for (const auto& c : cases_of(e)) {
    const std::string pattern = c.value("pattern", "");
    if (c.contains("error")) {
      t.row({pattern, error_or(c, "")});
      continue;
    }
    t.row({pattern, num(field(c, "accesses")), with_runs(c, "unmigrated_s", "unmigrated_runs_s"),
           with_runs(c, "migrated_s", "migrated_runs_s"), num(field(c, "slowdown")) + "x",
           num(field(c, "downtime_ms")),
           c.value("checksums_match", false)
               ? "match"
               : "**MISMATCH** " + c.value("checksum_unmigrated", "") + " vs " +
                     c.value("checksum_migrated", "")});
  }
  return t.str();
}

std::string peak_memory(const json& e) {
  Table t({"mode", "job RSS before MiB", "peak MiB", "n1 jobs", "n1 pager", "n2 jobs", "n2 pager",
           "peak / job", "peak at s (from freeze)"});
  for (const auto& c : cases_of(e)) {
    const std::string mode = c.value("mode", "");
    if (c.contains("error")) {
      t.row({mode, error_or(c, "")});
      continue;
    }
    t.row({mode, num(field(c, "job_rss_mib")), num(field(c, "peak_total_mib")),
           num(field(c, "peak_source_jobs_mib")), num(field(c, "peak_source_pager_mib")),
           num(field(c, "peak_destination_jobs_mib")), num(field(c, "peak_destination_pager_mib")),
           num(field(c, "peak_vs_job")) + "x", num(field(c, "peak_at_s"))});
  }
  return t.str();
}

std::string traffic(const json& e) {
  const auto& f = field(e, "figures");
  if (!f.is_object()) return "";
  const auto& l = field(f, "fault_latency_us");
  Table t({"size MiB", "pattern", "faults", "pages on demand", "pages prefetched",
           "MiB on the wire", "peak MiB/s", "fault p50 / p99 us", "last page after freeze s"});
  t.row({num(field(f, "size_mib")), f.value("pattern", ""), num(field(f, "faults")),
         num(field(f, "on_demand_pages")), num(field(f, "prefetched_pages")),
         num(field(f, "wire_mib")), num(field(f, "peak_mib_s")),
         num(field(l, "p50")) + " / " + num(field(l, "p99")),
         num(get(f, "last_page_after_freeze_ms") / 1000)});
  return t.str();
}

std::string threads(const json& e) {
  const json& f = field(e, "figures");
  Table t({"threads", "downtime ms", "ferry freeze to resume ms", "capture ms", "install ms"});
  for (const auto& r : field(f, "rows"))
    t.row({num(field(r, "threads")), num(field(r, "downtime_ms")), num(field(r, "freeze_to_resume_ms")),
           num(field(r, "capture_ms")), num(field(r, "install_ms"))});
  std::string out = t.str();
  if (f.contains("per_thread_us")) out += fmt::format("\nCost per thread: {} us.\n", num(f["per_thread_us"]));
  return out;
}

}  // namespace

std::string figures_tables(const json& entry) {
  static const std::map<std::string, std::function<std::string(const json&)>> layouts = {
      {"dipc-rtt", dipc_rtt},
      {"restore", restore},
      {"fault-latency", fault_latency},
      {"prefetch-throughput", prefetch_throughput},
      {"pager-rss", pager_rss},
      {"downtime", downtime},
      {"last-page", last_page},
      {"full-speed", full_speed},
      {"slowdown", slowdown},
      {"peak-memory", peak_memory},
      {"traffic", traffic},
      {"threads", threads}};
  if (entry.contains("error") || !entry.contains("figures")) return "";
  auto it = layouts.find(entry.value("name", ""));
  if (it == layouts.end()) return "";
  try {
    return it->second(entry);
  } catch (const std::exception& ex) {  // an entry of another shape: say so, go on
    return fmt::format("(figures not shown: {})\n", ex.what());
  }
}

std::string checks_table(const json& entry) {
  Table t({"check", "figure", "reference", "ratio", "target", "verdict"});
  for (const auto& c : field(entry, "checks")) {
    const std::string unit = c.value("unit", "");
    t.row({c.value("what", ""), num(field(c, "figure")) + " " + unit,
           c["reference"].is_number() ? num(c["reference"]) + " " + unit : "-",
           c["ratio"].is_number() ? num(c["ratio"]) + "x" : "-", c.value("target", "-"),
           verdict_text(field(c, "met"))});
  }
  return t.str();
}

}  // namespace ferry::bench::report
