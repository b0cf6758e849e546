// restore: freeze-to-running time for a process's state alone (memory excluded), for targets
// with about 10, 100 and 1000 VMAs and a typical dynamic binary (a fork of ferry-bench), and the
// throughput of the eager memory copy (read_pages into a restored process) against memcpy,
// measured in the same run. Target: state alone under 5 ms for ~50 VMAs, growing with VMAs.
#include <capnp/message.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "perf/bench.h"
#include "pm/capture.h"
#include "pm/restore.h"

namespace ferry::bench {
namespace {

using Clock = std::chrono::steady_clock;
using pm::FrozenProcess;
using pm::PageSink;
using pm::RestoredProcess;
using pm::RestoreOptions;
namespace fs = std::filesystem;

constexpr size_t kMiB = size_t(1) << 20;
constexpr size_t kCopyBytes = 256 * kMiB;
constexpr int kStateRounds = 20;
constexpr int kCopyRounds = 3;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Leaves the child with only /dev/null on 0-2 and `keep`: anything else may refuse the move.
void isolate_fds(int keep) {
  int null = open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; ++fd) dup2(null, fd);
  for (int fd = 3; fd < 1024; ++fd)
    if (fd != keep) close(fd);
}

// A target that parks forever once it has made its mappings. `vmas` > 0: that many small
// anonymous regions of alternating protection (so none merge), one page of each touched.
// `heap_bytes` > 0: one region of that size, every page written. Returns once it is ready.
pid_t spawn_target(int vmas, size_t heap_bytes) {
  int p[2];
  if (pipe(p) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    isolate_fds(p[1]);
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    volatile char sum = 0;
    for (int i = 0; i < vmas; ++i) {
      int prot = i % 2 ? PROT_READ | PROT_WRITE : PROT_READ;
      auto* r =
          static_cast<char*>(mmap(nullptr, 2 * page, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      if (r == MAP_FAILED) _exit(1);
      if (prot & PROT_WRITE)
        r[0] = char(i);
      else
        sum = sum + r[0];
    }
    if (heap_bytes > 0) {
      auto* h = static_cast<char*>(malloc(heap_bytes));
      if (!h) _exit(1);
      for (size_t i = 0; i < heap_bytes; i += page) h[i] = char(i / page + 1);
    }
    [[maybe_unused]] ssize_t n = write(p[1], "r", 1);
    close(p[1]);
    for (;;) pause();
  }
  close(p[1]);
  // Ready once it has written "r" and closed its end (an open pipe end would refuse the move).
  char c = 0;
  ssize_t n = pid > 0 ? read(p[0], &c, 1) : 0;
  while (n == 1 && read(p[0], &c, 1) > 0) {
  }
  close(p[0]);
  if (n != 1) {
    if (pid > 0) kill(pid, SIGKILL), waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

// A minimal dynamic binary: /bin/sleep (libc only, ~20 VMAs), ready once it sleeps.
pid_t spawn_sleep() {
  pid_t pid = fork();
  if (pid == 0) {
    isolate_fds(-1);
    execl("/bin/sleep", "sleep", "infinity", nullptr);
    _exit(127);
  }
  if (pid < 0) return -1;
  const std::string stat = "/proc/" + std::to_string(pid) + "/stat";
  const std::string exe = "/proc/" + std::to_string(pid) + "/exe";
  for (int i = 0; i < 1000; ++i) {
    std::error_code ec;
    std::ifstream f(stat);
    std::string line;
    std::getline(f, line);
    auto paren = line.rfind(')');
    bool sleeping = paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'S';
    if (sleeping && fs::read_symlink(exe, ec).filename() == "sleep") return pid;
    usleep(1000);
  }
  kill(pid, SIGKILL), waitpid(pid, nullptr, 0);
  return -1;
}

void stop(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

int count_vmas(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) ++n;
  return n;
}

RestoreOptions options() {
  RestoreOptions o;
  o.stub = fs::read_symlink("/proc/self/exe").parent_path() / "ferry-restore-stub";
  for (int& fd : o.stdio) fd = -1;
  return o;
}

struct StateCase {
  Summary ms;
  int vmas = 0;
  int injected_syscalls = 0;
  double build_ms = 0;  // the restore's own p50, from fork of the stub to ready
  std::string error;
};

// Freeze + capture + build with no pages, repeated on the same original (which runs on
// between rounds); the restored copy is killed by its destructor.
StateCase state_only(pid_t pid) {
  StateCase c;
  c.vmas = count_vmas(pid);
  const RestoreOptions o = options();
  std::vector<double> samples, builds;
  for (int i = 0; i < kStateRounds; ++i) {
    auto t0 = Clock::now();
    auto frozen = FrozenProcess::freeze(pid);
    if (!frozen) return c.error = frozen.error().message, c;
    capnp::MallocMessageBuilder message;
    auto image = message.initRoot<pm::wire::ProcessImage>();
    if (Status s = frozen.value()->capture(image); !s) return c.error = s.error().message, c;
    auto restored = RestoredProcess::build(
        image.asReader(), [](const PageSink&) { return Status::Ok(); }, o);
    if (!restored) return c.error = restored.error().message, c;
    samples.push_back(ms_since(t0));
    builds.push_back(restored.value()->stats().build_ms);
    c.injected_syscalls = restored.value()->stats().injected_syscalls;
  }
  c.ms = summarize(samples);
  c.build_ms = summarize(builds).p50;
  return c;
}

struct CopyCase {
  double mib_s = 0;  // best of kCopyRounds
  uint64_t bytes = 0;
  std::string error;
};

// The eager path: read_pages from the frozen original straight into the restored process.
CopyCase copy_throughput(pid_t pid) {
  CopyCase c;
  const RestoreOptions o = options();
  for (int i = 0; i < kCopyRounds; ++i) {
    auto frozen = FrozenProcess::freeze(pid);
    if (!frozen) return c.error = frozen.error().message, c;
    capnp::MallocMessageBuilder message;
    auto image = message.initRoot<pm::wire::ProcessImage>();
    if (Status s = frozen.value()->capture(image); !s) return c.error = s.error().message, c;
    uint64_t bytes = 0;
    double ms = 0;
    auto feed = [&](const PageSink& sink) {
      auto t0 = Clock::now();
      Status s = frozen.value()->read_pages(image.asReader(),
                                            [&](uint64_t a, std::span<const std::byte> b) {
                                              bytes += b.size();
                                              return sink(a, b);
                                            });
      ms = ms_since(t0);
      return s;
    };
    auto restored = RestoredProcess::build(image.asReader(), feed, o);
    if (!restored) return c.error = restored.error().message, c;
    c.bytes = bytes;
    c.mib_s = std::max(c.mib_s, double(bytes) / double(kMiB) / (ms / 1000.0));
  }
  return c;
}

// memcpy between two warmed 256 MiB buffers in this process: best of kCopyRounds.
double memcpy_mib_s() {
  std::vector<char> a(kCopyBytes, 'a'), b(kCopyBytes, 'b');
  std::memcpy(b.data(), a.data(), kCopyBytes);
  double best = 0;
  for (int i = 0; i < kCopyRounds; ++i) {
    a[size_t(i)] = char(i);
    auto t0 = Clock::now();
    std::memcpy(b.data(), a.data(), kCopyBytes);
    double ms = ms_since(t0);
    best = std::max(best, double(kCopyBytes) / double(kMiB) / (ms / 1000.0));
  }
  if (b[0] != a[0]) std::cerr << "restore: memcpy mismatch\n";
  return best;
}

nlohmann::json run(const std::vector<std::string>&) {
  nlohmann::json figures, reference, ratio;
  std::cout << fmt::format("restore: freeze + capture + build (no pages), {} rounds per row\n",
                           kStateRounds);
  std::cout << fmt::format("{:<34} {:>6} {:>8} {:>8} {:>8} {:>9} {:>8}\n", "", "VMAs", "p50 ms",
                           "p90 ms", "max ms", "build ms", "syscalls");
  struct Target {
    std::string key, label;
    int vmas;
  };
  // A fork of ferry-bench starts from its ~140 VMAs: the N-VMA rows add N to that baseline.
  const std::vector<Target> targets = {{"sleep", "/bin/sleep (minimal dynamic)", -1},
                                       {"dynamic", "typical dynamic binary (fork)", 0},
                                       {"vmas_10", "fork + 10 VMAs", 10},
                                       {"vmas_100", "fork + 100 VMAs", 100},
                                       {"vmas_1000", "fork + 1000 VMAs", 1000}};
  double p50_dynamic = 0;
  for (const Target& t : targets) {
    pid_t pid = t.vmas < 0 ? spawn_sleep() : spawn_target(t.vmas, 0);
    if (pid < 0) {
      std::cout << fmt::format("{:<34} could not start the target\n", t.label);
      continue;
    }
    StateCase c = state_only(pid);
    stop(pid);
    if (!c.error.empty()) {
      std::cout << fmt::format("{:<34} error: {}\n", t.label, c.error);
      figures[t.key] = {{"error", c.error}};
      continue;
    }
    std::cout << fmt::format("{:<34} {:>6} {:>8.2f} {:>8.2f} {:>8.2f} {:>9.2f} {:>8}\n", t.label,
                             c.vmas, c.ms.p50, c.ms.p90, c.ms.max, c.build_ms, c.injected_syscalls);
    figures[t.key] = {{"p50", c.ms.p50},         {"p90", c.ms.p90},
                      {"max", c.ms.max},         {"vmas", c.vmas},
                      {"build_p50", c.build_ms}, {"injected_syscalls", c.injected_syscalls}};
    if (t.vmas == 0) p50_dynamic = c.ms.p50;
  }

  pid_t pid = spawn_target(0, kCopyBytes);
  CopyCase copy = pid < 0 ? CopyCase{0, 0, "could not start the target"} : copy_throughput(pid);
  if (pid >= 0) stop(pid);
  double reference_mib_s = memcpy_mib_s();
  std::cout << fmt::format("{:<34} {:>10}\n", "", "MiB/s");
  if (copy.error.empty())
    std::cout << fmt::format("{:<34} {:>10.0f}  ({} MiB copied)\n",
                             "read_pages into restored, 256 MiB", copy.mib_s, copy.bytes / kMiB);
  else
    std::cout << fmt::format("{:<34} error: {}\n", "read_pages into restored, 256 MiB", copy.error);
  std::cout << fmt::format("{:<34} {:>10.0f}\n", "memcpy in process, 256 MiB", reference_mib_s);
  double copy_ratio = copy.mib_s / reference_mib_s;
  std::cout << fmt::format("  ratio copy/memcpy: {:.2f}\n", copy_ratio);
  std::cout << fmt::format("  state p50 for the dynamic binary: {:.2f} ms (target < 5 ms: {})\n",
                           p50_dynamic, verdict(p50_dynamic > 0 && p50_dynamic < 5));

  figures["copy_mib_s"] = copy.mib_s;
  if (!copy.error.empty()) figures["copy_error"] = copy.error;
  reference["memcpy_mib_s"] = reference_mib_s;
  ratio["copy_vs_memcpy"] = copy_ratio;
  ratio["p50_50vmas_vs_target_5ms"] = p50_dynamic / 5.0;
  nlohmann::json checks = {
      check("state alone, typical dynamic binary (p50)", p50_dynamic, "ms", std::nullopt,
            std::nullopt, "< 5 ms", p50_dynamic > 0 && p50_dynamic < 5),
      check("page copy into the restored process", copy.mib_s, "MiB/s", reference_mib_s, copy_ratio,
            "-", std::nullopt)};
  return {{"name", "restore"},  {"unit", "ms"},
          {"figures", figures}, {"reference", reference},
          {"ratio", ratio},     {"target", {{"state_ms_for_50_vmas", 5}}},
          {"checks", checks},   {"machine", machine_description()}};
}

Register reg(
    {"restore",
     "freeze-to-running for state alone (10/100/1000 VMAs, dynamic binary); page copy vs memcpy",
     run,
     {},
     "Freeze, capture and rebuild of a process's state with no pages (registers, memory map, "
     "files), for /bin/sleep, a fork of ferry-bench and that fork with 10, 100 and 1000 more "
     "VMAs; and the eager page copy (read_pages into the restored process) against memcpy in "
     "the same run. Target: state alone under 5 ms for a typical dynamic binary.",
     "(no arguments)"});

}  // namespace
}  // namespace ferry::bench
