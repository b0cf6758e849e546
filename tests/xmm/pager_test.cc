// The pager end to end: real ferry-pager daemons of a 2-node local cluster (n1 on 127.0.0.2,
// n2 on 127.0.0.3) move memory over libfabric into processes that fault on it through a real
// userfaultfd. Every byte is checked against the pattern the source wrote.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "dipc/local_client.h"
#include "pm/capture.h"
#include "pm/pagemap.h"
#include "pm/restore.h"
#include "tests/cluster/cluster_harness.h"
#include "tests/pm/corpus.h"
#include "xmm/xmm.capnp.h"

namespace ferry::xmm {
namespace {

using namespace std::chrono_literals;
using testing::TestCluster;
constexpr uint64_t kBase = 0x600000000000ull;
constexpr uint64_t kPage = 4096;

// A program with its stdin and stdout on pipes to the test.
struct Child {
  pid_t pid = -1;
  int in = -1, out = -1;
  std::string buffered;

  explicit Child(const std::vector<std::string>& argv) {
    int i[2], o[2];
    if (pipe2(i, O_CLOEXEC) != 0 || pipe2(o, O_CLOEXEC) != 0) return;
    pid = fork();
    if (pid == 0) {
      dup2(i[0], 0);
      dup2(o[1], 1);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(i[0]);
    close(o[1]);
    in = i[1];
    out = o[0];
  }
  ~Child() {
    if (pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (in >= 0) close(in);
    if (out >= 0) close(out);
  }
  // The next line of its output, or "" after `timeout`.
  std::string line(std::chrono::milliseconds timeout = 30s) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buffered.find('\n'); nl != std::string::npos) {
        std::string l = buffered.substr(0, nl);
        buffered.erase(0, nl + 1);
        return l;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "";
      pollfd p{out, POLLIN, 0};
      if (poll(&p, 1, int(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = read(out, buf, sizeof buf);
      if (n <= 0) return "";
      buffered.append(buf, size_t(n));
    }
  }
  void say(const std::string& s) { ASSERT_EQ(write(in, s.data(), s.size()), ssize_t(s.size())); }
  // Exit status (128 + signal when killed), or -1 if it is still running after `timeout`.
  int wait(std::chrono::milliseconds timeout = 120s) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() >= until) return -1;
      std::this_thread::sleep_for(5ms);
    }
  }
};

long rss_kib(pid_t pid) {
  std::string s = pm::slurp("/proc/" + std::to_string(pid) + "/status");
  auto at = s.find("VmRSS:");
  return at == std::string::npos ? -1 : std::atol(s.c_str() + at + 6);
}

class Pager : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = cluster.up({"--nodes", "2"});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  std::unique_ptr<dipc::LocalClient> pager(const std::string& node) {
    auto c = dipc::LocalClient::connect(cluster.dir() / node / "pager.sock");
    EXPECT_TRUE(c.ok()) << c.error().message;
    return c ? std::move(c).value() : nullptr;
  }
  pid_t pager_pid(const std::string& node) {
    return std::atoi(pm::slurp(cluster.dir() / node / "pager.pid").c_str());
  }

  // Freezes `pid`, hands it over and exports [start, end) from n1's pager.
  struct Exported {
    uint64_t id = 0;
    std::string token, pager;
    uint64_t present = 0;
  };
  Exported export_from_n1(pid_t pid, uint64_t start, uint64_t end, const std::string& label) {
    Exported e;
    {
      auto frozen = pm::FrozenProcess::freeze(pid);
      EXPECT_TRUE(frozen.ok());
      if (!frozen) return e;
      EXPECT_TRUE(frozen.value()->hand_over().ok());
    }
    // What the pager will find: the pages of the range that hold data, read by us first.
    uint64_t present_before = 0;
    {
      int fd = ::open(("/proc/" + std::to_string(pid) + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC);
      auto ranges = pm::pagemap::pages_with_content(fd, start, end, /*anonymous=*/true);
      ::close(fd);
      if (ranges)
        for (const auto& x : ranges.value()) present_before += (x.end - x.start) / kPage;
    }
    auto c = pager("n1");
    auto r = c->call<wire::ExportMemory, wire::ExportReply>([&](wire::ExportMemory::Builder b) {
      b.setPid(uint32_t(pid));
      auto rs = b.initRanges(1);
      rs[0].setStart(start);
      rs[0].setEnd(end);
      b.setLabel(label);
    });
    EXPECT_TRUE(r.ok()) << r.error().message;
    if (!r) return e;
    auto cap = r.value().get().getCapability();
    e.id = cap.getObjectId();
    e.token.assign(reinterpret_cast<const char*>(cap.getToken().begin()), cap.getToken().size());
    e.pager = cap.getPager();
    e.present = present_before;  // the pager learns it after answering (off the freeze)
    return e;
  }

  Status import_into_n2(const Exported& e, pid_t holder, int fd, pid_t pid, uint64_t start, uint64_t end, bool prefetch,
                        const std::string& label) {
    auto c = pager("n2");
    auto r = c->call<wire::ImportMemory, wire::ImportReply>([&](wire::ImportMemory::Builder b) {
      auto cap = b.initCapability();
      cap.setObjectId(e.id);
      cap.setToken(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(e.token.data()), e.token.size()));
      cap.setPager(e.pager);
      b.setHolderPid(uint32_t(holder));
      b.setUffdFd(fd);
      b.setPid(uint32_t(pid));
      auto rs = b.initRanges(1);
      rs[0].setStart(start);
      rs[0].setEnd(end);
      b.setPrefetch(prefetch);
      b.setLabel(label);
    });
    if (!r) return r.error();
    return Status::Ok();
  }

  // n2's view of its imports, as JSON-ish text for messages, and the parsed first import.
  struct ImportView {
    std::string state;
    uint64_t faults = 0, on_demand = 0, prefetched = 0, zero = 0, duplicates = 0, present = 0, arrived = 0;
    double p50 = 0;
  };
  ImportView import_stat(const std::string& label) {
    auto c = pager("n2");
    auto r = c->call<wire::PagerStat, wire::PagerStatReply>([](wire::PagerStat::Builder) {});
    EXPECT_TRUE(r.ok());
    ImportView v;
    if (!r) return v;
    for (auto s : r.value().get().getImports())
      if (std::string(s.getLabel()) == label)
        v = {s.getState(), s.getFaults(), s.getOnDemandPages(), s.getPrefetchedPages(), s.getZeroPages(),
             s.getDuplicatePages(), s.getPresentPages(), s.getArrivedPages(), s.getLatency().getP50Us()};
    return v;
  }
  std::string wait_state(const std::string& label, const std::string& prefix, std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    std::string s;
    while (std::chrono::steady_clock::now() < until) {
      s = import_stat(label).state;
      if (s.rfind(prefix, 0) == 0) return s;
      std::this_thread::sleep_for(20ms);
    }
    return s;
  }

  // 1 GiB written by a source on n1, read by `threads` threads of a faulter served by n2.
  void serve_region(const std::string& mode, int threads, bool prefetch, uint64_t mib = 1024) {
    Child source({pm::program("pattern_source"), std::to_string(mib)});
    ASSERT_EQ(source.line(), "ready");
    uint64_t end = kBase + mib * 256 * kPage;
    std::string label = "region " + mode;
    Exported e = export_from_n1(source.pid, kBase, end, label);
    ASSERT_GT(e.present, 0u);
    EXPECT_LT(e.present, mib * 256) << "holes were left untouched: they must not count as pages with data";
    // It holds on after its checks, so that the import can complete while it still exists.
    Child faulter({pm::program("pattern_faulter"), std::to_string(mib), std::to_string(threads), mode, "hold"});
    std::string hello = faulter.line();
    ASSERT_EQ(hello.rfind("uffd ", 0), 0u) << hello;
    int fd = std::atoi(hello.c_str() + 5);
    Status s = import_into_n2(e, faulter.pid, fd, faulter.pid, kBase, end, prefetch, label);
    ASSERT_TRUE(s.ok()) << s.error().message;
    faulter.say("go\n");
    std::string result = faulter.line(180s);
    EXPECT_NE(result.find("mismatches 0"), std::string::npos) << result;
    auto v = import_stat(label);
    EXPECT_EQ(v.duplicates, 0u);
    EXPECT_GT(v.faults, 0u);
    EXPECT_GT(v.zero, 0u) << "the holes are zero pages, installed without traffic";
    if (prefetch) {
      EXPECT_EQ(wait_state(label, "complete", 60s), "complete");
      v = import_stat(label);
      EXPECT_EQ(v.arrived, v.present);
      EXPECT_EQ(v.present, e.present);
      // The source's shell is gone once everything arrived.
      for (int i = 0; i < 200 && source.wait(0ms) < 0; ++i) std::this_thread::sleep_for(10ms);
      EXPECT_EQ(source.pid, -1) << "the memory shell outlived its last page";
      // The same figures through the CLI, with the time series.
      auto st = cluster.run({"stat", "--json"});
      ASSERT_EQ(st.status, 0) << st.err;
      auto j = nlohmann::json::parse(st.out);
      bool found = false;
      for (const auto& n : j)
        for (const auto& i : n["imports"])
          if (i["label"] == label) {
            found = true;
            EXPECT_EQ(n["node"], "n2");
            EXPECT_EQ(i["state"], "complete");
            EXPECT_EQ(i["arrived_pages"], e.present);
            EXPECT_GT(i["ms_to_last_page"].get<double>(), 0);
            EXPECT_FALSE(i["series"].empty());
          }
      EXPECT_TRUE(found) << st.out;
    }
    faulter.say("exit\n");
    EXPECT_EQ(faulter.wait(), 0) << result;
    std::cout << mode << ": faults " << v.faults << ", on demand " << v.on_demand << ", prefetched " << v.prefetched
              << ", zero " << v.zero << ", fault p50 " << v.p50 << " us, state " << v.state << "\n";
  }

  TestCluster cluster{"pg" + std::to_string(getpid())};
};

TEST_F(Pager, SequentialReadsAndWritesOfOneGiBByFourThreads) { serve_region("seq", 4, true); }
TEST_F(Pager, StridedAccessWithoutPrefetch) { serve_region("stride", 3, false, 512); }
TEST_F(Pager, RandomAccessWithConcurrentFaultsOnTheSamePages) { serve_region("random", 8, true); }

// Pages sent are freed at the source: after half of the region was read (no prefetch), the
// shell holds about half of it.
TEST_F(Pager, SourceMemoryIsReleasedAsPagesArrive) {
  const uint64_t mib = 512, end = kBase + mib * 256 * kPage;
  Child source({pm::program("pattern_source"), std::to_string(mib)});
  ASSERT_EQ(source.line(), "ready");
  long before = rss_kib(source.pid);
  Exported e = export_from_n1(source.pid, kBase, end, "release");
  Child faulter({pm::program("pattern_faulter"), std::to_string(mib), "2", "half", "hold"});
  std::string hello = faulter.line();
  ASSERT_EQ(hello.rfind("uffd ", 0), 0u);
  ASSERT_TRUE(import_into_n2(e, faulter.pid, std::atoi(hello.c_str() + 5), faulter.pid, kBase, end, false, "release").ok());
  faulter.say("go\n");
  EXPECT_NE(faulter.line(120s).find("mismatches 0"), std::string::npos);
  long after = before;
  for (int i = 0; i < 200; ++i) {  // freeing is batched
    after = rss_kib(source.pid);
    if (after < before * 6 / 10) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_LT(after, before * 6 / 10) << "source RSS " << before << " KiB before, " << after << " KiB after half was sent";
  EXPECT_GT(after, before * 3 / 10) << "the unsent half must still be there";
  faulter.say("exit\n");
  EXPECT_EQ(faulter.wait(), 0);
}

// The exporting pager dies mid-transfer: the faulting process is killed within the detection
// time, the import says why and how much never arrived, and the source's shell is gone too.
TEST_F(Pager, ExportingPagerKilledMidTransfer) {
  const uint64_t mib = 512, end = kBase + mib * 256 * kPage;
  Child source({pm::program("pattern_source"), std::to_string(mib)});
  ASSERT_EQ(source.line(), "ready");
  Exported e = export_from_n1(source.pid, kBase, end, "doomed");
  Child faulter({pm::program("pattern_faulter"), std::to_string(mib), "4", "random"});
  std::string hello = faulter.line();
  ASSERT_EQ(hello.rfind("uffd ", 0), 0u);
  ASSERT_TRUE(import_into_n2(e, faulter.pid, std::atoi(hello.c_str() + 5), faulter.pid, kBase, end, false, "doomed").ok());
  faulter.say("go\n");
  std::this_thread::sleep_for(100ms);
  ASSERT_EQ(kill(pager_pid("n1"), SIGKILL), 0);
  auto killed_at = std::chrono::steady_clock::now();
  int status = faulter.wait(30s);
  auto took = std::chrono::steady_clock::now() - killed_at;
  EXPECT_EQ(status, 128 + SIGKILL) << "the faulting process must be stopped, not left hanging or fed wrong pages";
  EXPECT_LT(took, 15s);
  std::string state = wait_state("doomed", "failed", 10s);
  EXPECT_NE(state.find("failed: source pager@n1 lost"), std::string::npos) << state;
  EXPECT_NE(state.find("pages never arrived"), std::string::npos) << state;
  // The shell died with its pager (PTRACE_O_EXITKILL).
  for (int i = 0; i < 200 && source.wait(0ms) < 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(source.pid, -1);
}

// A wrong token is refused and nothing is served.
TEST_F(Pager, ImportWithAForgedCapabilityIsRefused) {
  Child source({pm::program("pattern_source"), "16"});
  ASSERT_EQ(source.line(), "ready");
  Exported e = export_from_n1(source.pid, kBase, kBase + 16 * 256 * kPage, "forged");
  e.token[0] = char(e.token[0] ^ 1);
  Child faulter({pm::program("pattern_faulter"), "16", "1", "seq"});
  std::string hello = faulter.line();
  Status s = import_into_n2(e, faulter.pid, std::atoi(hello.c_str() + 5), faulter.pid, kBase, kBase + 16 * 256 * kPage,
                            true, "forged");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("token is wrong"), std::string::npos) << s.error().message;
}

// A real migrated process: checksum_heap frozen on "n1", lazily restored, its memory served
// by n1's pager to n2's over libfabric. Output identical to an undisturbed run.
TEST_F(Pager, LazilyRestoredProcessServedAcrossPagers) {
  pm::TempDir dir;
  std::vector<std::string> argv{pm::program("checksum_heap"), "256", "30"};
  pid_t ref = pm::start(argv, dir.path / "ref.txt", -1, dir.path);
  ASSERT_EQ(pm::wait_exit(ref), 0);
  pid_t pid = pm::start(argv, dir.path / "out.txt", -1, dir.path);
  std::this_thread::sleep_for(400ms);
  auto frozen = pm::FrozenProcess::freeze(pid);
  ASSERT_TRUE(frozen.ok());
  capnp::MallocMessageBuilder message;
  auto image = message.initRoot<pm::wire::ProcessImage>();
  ASSERT_TRUE(frozen.value()->capture(image).ok());
  pm::RestoreOptions options;
  options.stub = std::string(FERRY_BIN_DIR) + "/ferry-restore-stub";
  options.lazy = true;
  options.uffd_features = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
                          UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_THREAD_ID;
  auto restored = pm::RestoredProcess::build(
      image.asReader(),
      [&](const pm::PageSink& sink) { return frozen.value()->read_eager_pages(image.asReader(), sink); },
      options);
  ASSERT_TRUE(restored.ok()) << restored.error().message;
  UniqueFd uffd = restored.value()->take_userfault();
  ASSERT_TRUE(frozen.value()->hand_over().ok());
  auto lazy = pm::ranges_to_serve(image.asReader());
  // Export every lazy range, import them all.
  auto c1 = pager("n1");
  auto ex = c1->call<wire::ExportMemory, wire::ExportReply>([&](wire::ExportMemory::Builder b) {
    b.setPid(uint32_t(pid));
    auto rs = b.initRanges(uint32_t(lazy.size()));
    for (size_t i = 0; i < lazy.size(); ++i) {
      rs[uint32_t(i)].setStart(lazy[i].start);
      rs[uint32_t(i)].setEnd(lazy[i].end);
    }
    b.setLabel("checksum_heap");
  });
  ASSERT_TRUE(ex.ok()) << ex.error().message;
  auto c2 = pager("n2");
  auto im = c2->call<wire::ImportMemory, wire::ImportReply>([&](wire::ImportMemory::Builder b) {
    b.setCapability(ex.value().get().getCapability());
    b.setHolderPid(uint32_t(getpid()));
    b.setUffdFd(uffd.get());
    b.setPid(uint32_t(restored.value()->pid()));
    auto rs = b.initRanges(uint32_t(lazy.size()));
    for (size_t i = 0; i < lazy.size(); ++i) {
      rs[uint32_t(i)].setStart(lazy[i].start);
      rs[uint32_t(i)].setEnd(lazy[i].end);
    }
    b.setLabel("checksum_heap");
  });
  ASSERT_TRUE(im.ok()) << im.error().message;
  pid_t moved = restored.value()->pid();
  ASSERT_TRUE(restored.value()->start().ok());
  EXPECT_EQ(pm::wait_exit(moved), 0);
  EXPECT_EQ(pm::slurp(dir.path / "out.txt"), pm::slurp(dir.path / "ref.txt"));
  auto v = import_stat("checksum_heap");
  EXPECT_EQ(v.duplicates, 0u);
  EXPECT_GT(v.faults, 0u);
  std::cout << "checksum_heap: faults " << v.faults << ", on demand " << v.on_demand << ", prefetched " << v.prefetched
            << ", state " << v.state << "\n";
}

}  // namespace
}  // namespace ferry::xmm
