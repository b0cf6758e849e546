// DirtyTracker (xmm/dirty_tracker.h) on a real process: a child that maps memory, makes a
// userfaultfd of its own for us, and writes where told while we watch.
#include "xmm/dirty_tracker.h"

#include "pm/pagemap.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstring>

namespace ferry::xmm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 256;

// The child: `mem` (kPages pages, the first half touched) and two pipes for orders.
class Child {
 public:
  Child() {
    mem_ = static_cast<char*>(::mmap(nullptr, kPages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (uint64_t i = 0; i < kPages / 2; ++i) mem_[i * kPage] = 1;
    if (::pipe(to_) != 0 || ::pipe(from_) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) serve();
    int fd = -1;
    if (::read(from_[0], &fd, sizeof fd) != sizeof fd) return;
    UniqueFd pidfd(int(::syscall(SYS_pidfd_open, pid_, 0)));
    uffd_.reset(int(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  }
  ~Child() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  uint64_t base() const { return reinterpret_cast<uint64_t>(mem_); }
  pid_t pid() const { return pid_; }
  UniqueFd take_uffd() { return std::move(uffd_); }
  // Orders: 'w' page (write), 'r' page (read), 'm' page (map fresh memory over it and write), 'z' page (DONTNEED).
  void order(char what, uint64_t page) {
    char msg[9];
    msg[0] = what;
    std::memcpy(msg + 1, &page, 8);
    ASSERT_EQ(::write(to_[1], msg, 9), 9);
    char done;
    ASSERT_EQ(::read(from_[0], &done, 1), 1);
  }

 private:
  [[noreturn]] void serve() {
    int fd = int(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (::write(from_[1], &fd, sizeof fd) != sizeof fd) _exit(1);
    for (char msg[9]; ::read(to_[0], msg, 9) == 9;) {
      uint64_t p;
      std::memcpy(&p, msg + 1, 8);
      char* at = mem_ + p * kPage;
      volatile char sink = 0;
      if (msg[0] == 'w') at[17] = 42;
      if (msg[0] == 'r') sink = at[17];
      if (msg[0] == 'm') {
        ::mmap(at, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        at[0] = 5;
      }
      if (msg[0] == 'z') ::madvise(at, kPage, MADV_DONTNEED);
      (void)sink;
      if (::write(from_[1], "k", 1) != 1) break;
    }
    _exit(0);
  }

  char* mem_ = nullptr;
  int to_[2] = {-1, -1}, from_[2] = {-1, -1};
  pid_t pid_ = -1;
  UniqueFd uffd_;
};

template <class R>
uint64_t pages(const std::vector<R>& v) {
  uint64_t n = 0;
  for (const auto& r : v) n += (r.end - r.start) / kPage;
  return n;
}

bool covers(const std::vector<DirtyTracker::Range>& v, uint64_t address) {
  for (const auto& r : v)
    if (address >= r.start && address < r.end) return true;
  return false;
}

TEST(DirtyTracker, ReportsWrittenPagesOnceAndThenOnlyNewWrites) {
  Child c;
  auto t = DirtyTracker::start(c.pid(), c.take_uffd(), {{c.base(), c.base() + kPages * kPage}});
  ASSERT_TRUE(t) << t.error().message;
  auto present = t.value()->present();
  ASSERT_TRUE(present);
  EXPECT_EQ(pages(present.value()), kPages / 2);
  auto none = t.value()->take_written();
  ASSERT_TRUE(none);
  EXPECT_EQ(pages(none.value()), 0u) << "nothing written since the start";
  c.order('w', 3);
  c.order('w', 200);  // never touched before
  c.order('r', 201);  // a read is not a write
  auto written = t.value()->take_written();
  ASSERT_TRUE(written);
  EXPECT_EQ(pages(written.value()), 2u);
  EXPECT_TRUE(covers(written.value(), c.base() + 3 * kPage));
  EXPECT_TRUE(covers(written.value(), c.base() + 200 * kPage));
  auto again = t.value()->take_written();
  ASSERT_TRUE(again);
  EXPECT_EQ(pages(again.value()), 0u) << "protected again by the previous call";
  c.order('w', 3);
  auto later = t.value()->take_written();
  ASSERT_TRUE(later);
  EXPECT_EQ(pages(later.value()), 1u);
}

TEST(DirtyTracker, AtTheEndMappedOverAndZappedPagesCountAsChanged) {
  Child c;
  auto t = DirtyTracker::start(c.pid(), c.take_uffd(), {{c.base(), c.base() + kPages * kPage}});
  ASSERT_TRUE(t) << t.error().message;
  c.order('m', 10);  // a new VMA there: no longer tracked
  c.order('z', 20);  // its content is gone
  c.order('w', 30);
  auto last = t.value()->untracked_or_written();
  ASSERT_TRUE(last);
  EXPECT_TRUE(covers(last.value(), c.base() + 10 * kPage));
  EXPECT_TRUE(covers(last.value(), c.base() + 20 * kPage));
  EXPECT_TRUE(covers(last.value(), c.base() + 30 * kPage));
  EXPECT_FALSE(covers(last.value(), c.base() + 40 * kPage));
  EXPECT_EQ(pages(last.value()), 3u);
}

TEST(DirtyTracker, TheProcessRunsOnUntouchedOnceTrackingEnds) {
  Child c;
  {
    auto t = DirtyTracker::start(c.pid(), c.take_uffd(), {{c.base(), c.base() + kPages * kPage}});
    ASSERT_TRUE(t) << t.error().message;
  }
  c.order('w', 5);  // would hang on a fault nobody serves if anything were left registered
  c.order('w', 250);
  // Nothing of the protection is left: untouched pages read as untouched (no marker entries).
  UniqueFd pagemap(::open(("/proc/" + std::to_string(c.pid()) + "/pagemap").c_str(), O_RDONLY));
  auto with_data = pm::pagemap::pages_with_content(pagemap.get(), c.base(), c.base() + kPages * kPage, true);
  ASSERT_TRUE(with_data);
  EXPECT_EQ(pages(with_data.value()), kPages / 2 + 1);
}

TEST(DirtyTracker, ARangeThatIsNotMemoryIsRefused) {
  Child c;
  auto t = DirtyTracker::start(c.pid(), c.take_uffd(), {{0x1000, 0x3000}});
  EXPECT_FALSE(t.ok());
}

}  // namespace
}  // namespace ferry::xmm
