// The lazy restore variant with a real userfaultfd: a process is rebuilt with its anonymous
// memory empty and registered, and this test, holding the uffd (pulled out with pidfd_getfd),
// serves every fault from the frozen original, page by page, and pushes the rest between
// faults. The program's output must equal an undisturbed run's. (The pager serves the same
// faults over libfabric; here the kernel path is tested on its own.)
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <random>
#include <thread>

#include "pm/capture.h"
#include "pm/restore.h"
#include "tests/pm/corpus.h"
#include "xmm/userfault.h"

namespace ferry::xmm {
namespace {

using namespace std::chrono_literals;
using pm::slurp;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kFeatures = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP;

struct Traffic {
  uint64_t faults = 0, copied = 0, zeroed = 0, pushed = 0, removed = 0;
};

// One registered range: which pages the source has (present) and which are settled here
// (installed, or removed by the process so that a later touch must read zero).
struct Range {
  uint64_t start, end;
  std::vector<bool> present, settled;
  size_t next = 0;  // push cursor
};

// Serves a lazily restored process from its frozen original.
class LocalServer {
 public:
  LocalServer(pm::FrozenProcess& source, pm::wire::ProcessImage::Reader image, UniqueFd uffd, pid_t pid)
      : source_(source), uffd_(std::move(uffd)), pid_(pid) {
    for (auto v : image.getVmas()) {
      if (!pm::is_lazy(v)) continue;
      Range r{v.getStart(), v.getEnd(), {}, {}};
      size_t pages = (r.end - r.start) / kPage;
      r.present.resize(pages);
      r.settled.resize(pages);
      auto bits = v.getPresent();
      for (size_t p = 0; p < pages && p / 8 < bits.size(); ++p) r.present[p] = (bits[p / 8] >> (p % 8)) & 1;
      ranges_.push_back(std::move(r));
    }
  }

  // Until every page has arrived (and then the source is no longer needed), or, with
  // `until_exit`, until the process has exited. Returns its exit status then, else -1.
  // Pushing starts after a while, so that small processes fault too.
  int serve(bool until_exit) {
    auto push_from = std::chrono::steady_clock::now() + 30ms;
    for (;;) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      bool pushing = std::chrono::steady_clock::now() < push_from || push_some();
      if (!pushing && !until_exit) return -1;
      pollfd p{uffd_.fd(), POLLIN, 0};
      poll(&p, 1, pushing ? 1 : 10);
      std::vector<UserfaultEvent> events;
      Status s = uffd_.read_events(events);
      EXPECT_TRUE(s.ok()) << s.error().message;
      for (const auto& e : events) handle(e);
    }
  }
  const Traffic& traffic() const { return traffic_; }

 private:
  Range* find(uint64_t a) {
    for (auto& r : ranges_)
      if (a >= r.start && a < r.end) return &r;
    return nullptr;
  }

  void handle(const UserfaultEvent& e) {
    switch (e.kind) {
      case UserfaultEvent::Kind::kPageFault: {
        ++traffic_.faults;
        Range* r = find(e.address);
        ASSERT_NE(r, nullptr) << "fault outside every registered range at " << std::hex << e.address;
        install(*r, (e.address - r->start) / kPage, 1);
        break;
      }
      case UserfaultEvent::Kind::kRemove:
      case UserfaultEvent::Kind::kUnmap:
        for (uint64_t a = e.address; a < e.end; a += kPage)
          if (Range* r = find(a)) {
            size_t p = (a - r->start) / kPage;
            r->present[p] = false;  // a later touch reads zero
            if (!r->settled[p]) ++traffic_.removed;
            r->settled[p] = true;
          }
        break;
      default: ADD_FAILURE() << "unexpected userfaultfd event " << int(e.kind);
    }
  }

  // Installs pages [p, p + n) of `r`: the source's bytes, or zeros.
  void install(Range& r, size_t p, size_t n) {
    uint64_t at = r.start + p * kPage;
    Result<Resolve> done = Resolve::kDone;
    if (r.present[p] && !r.settled[p]) {
      buffer_.resize(n * kPage);
      Status s = source_.tracee().read_memory(at, buffer_);
      ASSERT_TRUE(s.ok()) << s.error().message;
      done = uffd_.copy(at, buffer_);
      traffic_.copied += n;
    } else {
      done = uffd_.zero(at, n * kPage);
      traffic_.zeroed += n;
    }
    ASSERT_TRUE(done.ok()) << done.error().message;
    for (size_t i = p; i < p + n; ++i) r.settled[i] = true;
  }

  // Pushes the next run of up to 64 unsettled pages of equal kind; false when none is left.
  bool push_some() {
    for (auto& r : ranges_) {
      while (r.next < r.settled.size() && r.settled[r.next]) ++r.next;
      if (r.next == r.settled.size()) continue;
      size_t p = r.next, n = 1;
      while (p + n < r.settled.size() && n < 64 && !r.settled[p + n] && r.present[p + n] == r.present[p]) ++n;
      install(r, p, n);
      traffic_.pushed += n;
      return true;
    }
    return false;
  }

  pm::FrozenProcess& source_;
  Userfault uffd_;
  pid_t pid_;
  std::vector<Range> ranges_;
  std::vector<std::byte> buffer_;
  Traffic traffic_;
};

// Moves `pid` once, lazily, and serves it until all its pages arrived (`until_exit`: until it
// ended, returning its status). Returns the new pid through `moved`.
int lazy_move(pid_t pid, pid_t& moved, Traffic& traffic, bool until_exit, pm::RestoreStats* stats = nullptr) {
  auto frozen = pm::FrozenProcess::freeze(pid);
  EXPECT_TRUE(frozen.ok()) << frozen.error().message;
  if (!frozen) return -2;
  capnp::MallocMessageBuilder message;
  auto image = message.initRoot<pm::wire::ProcessImage>();
  Status captured = frozen.value()->capture(image);
  EXPECT_TRUE(captured.ok()) << captured.error().message;
  if (!captured) return -2;
  // Eagerly only what cannot be registered and what the kernel writes during the restore.
  auto eager_part = [&](const pm::PageSink& sink) { return frozen.value()->read_eager_pages(image.asReader(), sink); };
  pm::RestoreOptions options;
  options.stub = std::string(FERRY_BIN_DIR) + "/ferry-restore-stub";
  options.lazy = true;
  options.uffd_features = kFeatures;
  auto restored = pm::RestoredProcess::build(image.asReader(), eager_part, options);
  EXPECT_TRUE(restored.ok()) << restored.error().message;
  if (!restored) return -2;
  if (stats) *stats = restored.value()->stats();
  moved = restored.value()->pid();
  LocalServer server(*frozen.value(), image.asReader(), restored.value()->take_userfault(), moved);
  EXPECT_TRUE(restored.value()->start().ok());
  int status = server.serve(until_exit);
  frozen.value()->kill();
  traffic = server.traffic();
  return status;
}

struct Run {
  std::string output;
  int status = -1;
  Traffic total;
  int hops = 0;
};

Run run(const std::vector<std::string>& argv, int hops, uint32_t seed) {
  pm::TempDir dir;
  auto out = dir.path / "out.txt";
  pid_t pid = pm::start(argv, out, -1, dir.path);
  Run r;
  std::mt19937 rng(seed);
  for (int i = 0; i < hops && r.status < 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 150));
    Traffic t;
    pid_t moved = -1;
    bool last = i + 1 == hops;
    r.status = lazy_move(pid, moved, t, last);
    if (r.status == -2) {
      kill(pid, SIGKILL);
      pm::wait_exit(pid);
      return r;
    }
    pid = moved;
    ++r.hops;
    r.total.faults += t.faults;
    r.total.copied += t.copied;
    r.total.zeroed += t.zeroed;
    r.total.pushed += t.pushed;
  }
  if (r.status < 0) r.status = pm::wait_exit(pid);
  r.output = slurp(out);
  return r;
}

void expect_survives_lazy_moves(const std::vector<std::string>& argv, int hops) {
  Run reference = run(argv, 0, 0);
  ASSERT_EQ(reference.status, 0) << reference.output;
  uint32_t seed = std::random_device{}();
  Run moved = run(argv, hops, seed);
  EXPECT_EQ(moved.hops, hops) << "seed " << seed;
  EXPECT_EQ(moved.status, 0) << moved.output << " (seed " << seed << ")";
  EXPECT_EQ(moved.output, reference.output) << "seed " << seed;
  EXPECT_GT(moved.total.faults, 0u) << "the moved process never faulted: its memory was not lazy";
  EXPECT_GT(moved.total.copied, 0u);
  std::cout << "hops " << moved.hops << ": faults " << moved.total.faults << ", pages copied " << moved.total.copied
            << " (pushed " << moved.total.pushed << "), zero pages " << moved.total.zeroed << "\n";
}

TEST(LazyRestore, ChecksumLoopOver256MiBOfHeapMovedFiveTimes) {
  expect_survives_lazy_moves({pm::program("checksum_heap"), "256", "30"}, 5);
}
TEST(LazyRestore, StaticChecksumLoop) { expect_survives_lazy_moves({pm::program("checksum_heap_static"), "64", "40"}, 5); }
TEST(LazyRestore, SignalsBrkVdsoAndFiles) {
  expect_survives_lazy_moves({pm::program("signals")}, 3);
  expect_survives_lazy_moves({pm::program("brk_vdso_files"), "data.bin"}, 3);
}
TEST(LazyRestore, CxxStreams) { expect_survives_lazy_moves({pm::program("cxx_streams")}, 5); }

// Before it runs, the restored process holds almost none of its heap: the registered ranges
// are empty and marked for userfaultfd in smaps.
TEST(LazyRestore, AnonymousMemoryIsLeftEmptyAndRegistered) {
  pm::TempDir dir;
  pid_t pid = pm::start({pm::program("checksum_heap"), "256", "1000"}, dir.path / "out.txt", -1, dir.path);
  for (int i = 0; i < 500 && slurp(dir.path / "out.txt").find("round 1 ") == std::string::npos; ++i)
    std::this_thread::sleep_for(10ms);
  auto frozen = pm::FrozenProcess::freeze(pid);
  ASSERT_TRUE(frozen.ok());
  capnp::MallocMessageBuilder message;
  auto image = message.initRoot<pm::wire::ProcessImage>();
  ASSERT_TRUE(frozen.value()->capture(image).ok());
  pm::RestoreOptions options;
  options.stub = std::string(FERRY_BIN_DIR) + "/ferry-restore-stub";
  options.lazy = true;
  options.uffd_features = kFeatures;
  // Without the pages the kernel writes during the restore, it fails and says which.
  auto refused = pm::RestoredProcess::build(
      image.asReader(), [](const pm::PageSink&) { return Status::Ok(); }, options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("(rseq area)"), std::string::npos) << refused.error().message;
  auto needed = pm::pages_written_by_restore(image.asReader());
  ASSERT_FALSE(needed.empty()) << "glibc registers rseq";
  auto restored = pm::RestoredProcess::build(
      image.asReader(),
      [&](const pm::PageSink& sink) {
        std::vector<std::byte> page(kPage);
        for (uint64_t at : needed) {
          if (Status s = frozen.value()->tracee().read_memory(at, page); !s) return s;
          if (Status s = sink(at, page); !s) return s;
        }
        return Status::Ok();
      },
      options);
  ASSERT_TRUE(restored.ok()) << restored.error().message;
  auto uffd = restored.value()->take_userfault();
  EXPECT_TRUE(uffd);
  EXPECT_GE(restored.value()->stats().lazy_pages, 65536u);
  std::string status = slurp("/proc/" + std::to_string(restored.value()->pid()) + "/status");
  auto rss_at = status.find("VmRSS:");
  ASSERT_NE(rss_at, std::string::npos);
  long rss_kib = std::atol(status.c_str() + rss_at + 6);
  EXPECT_LT(rss_kib, 16 * 1024) << "a lazily restored 256 MiB process already holds " << rss_kib << " KiB";
  std::string smaps = slurp("/proc/" + std::to_string(restored.value()->pid()) + "/smaps");
  size_t registered = 0;
  for (size_t at = smaps.find("VmFlags:"); at != std::string::npos; at = smaps.find("VmFlags:", at + 1)) {
    std::string flags = smaps.substr(at, smaps.find('\n', at) - at);
    if (flags.find(" um") != std::string::npos) ++registered;
  }
  EXPECT_EQ(registered, restored.value()->lazy_ranges().size());
  EXPECT_GE(registered, 2u) << "heap and stack at least";
  // The fd is not in the restored process.
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(restored.value()->pid()) + "/fd")) {
    std::error_code ec;
    EXPECT_EQ(std::filesystem::read_symlink(e.path(), ec).string().find("userfaultfd"), std::string::npos);
  }
  frozen.value()->kill();
  pm::wait_exit(pid);
}

}  // namespace
}  // namespace ferry::xmm
