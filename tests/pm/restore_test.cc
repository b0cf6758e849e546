// Capture and restore of real, unmodified processes. Each program of the corpus runs once
// undisturbed and once frozen at random moments and rebuilt in a new process 20 times in a
// row (each time the old one is killed); its output and exit status must be identical.
// Plus refusals, checkpoint/restore through the CLI, and programs nobody here wrote.
#include <algorithm>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "pm/capture.h"
#include "pm/checkpoint.h"
#include "pm/restore.h"
#include "tests/pm/corpus.h"

namespace ferry::pm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Freezes `pid`, rebuilds it in a new process and kills the old one. Returns the new pid.
Result<pid_t> move_once(pid_t pid, int stdin_fd, RestoreStats* stats = nullptr) {
  auto frozen = FrozenProcess::freeze(pid);
  if (!frozen) return frozen.error();
  capnp::MallocMessageBuilder message;
  auto image = message.initRoot<wire::ProcessImage>();
  if (Status s = frozen.value()->capture(image); !s) return s.error();
  RestoreOptions options;
  options.stub = std::string(FERRY_BIN_DIR) + "/ferry-restore-stub";
  options.stdio[0] = stdin_fd;
  options.die_with_parent = true;
  auto restored = RestoredProcess::build(
      image.asReader(), [&](const PageSink& sink) { return frozen.value()->read_pages(image.asReader(), sink); },
      options);
  if (!restored) return restored.error();
  frozen.value()->kill();
  if (stats) *stats = restored.value()->stats();
  if (Status s = restored.value()->start(); !s) return s.error();
  return restored.value()->pid();
}

struct Outcome {
  std::string output;
  int status = -1;
  int moves = 0;
  std::string error;
};

// Runs the program; with `moves` > 0, moves it that many times at random moments.
// The pause before each move is random in [5, 5 + max_gap_ms) ms.
Outcome run(const std::vector<std::string>& argv, int moves, uint32_t seed,
            const std::function<void(int write_fd)>& feed_stdin = nullptr, int max_gap_ms = 90) {
  TempDir dir;
  fs::path out = dir.path / "out.txt";
  int pipefd[2] = {-1, -1};
  if (feed_stdin && pipe(pipefd) != 0) return {"", -1, 0, "pipe"};
  pid_t pid = start(argv, out, pipefd[0], dir.path);
  std::thread feeder;
  if (feed_stdin) feeder = std::thread([&] {
      feed_stdin(pipefd[1]);
      close(pipefd[1]);
    });
  Outcome o;
  std::mt19937 rng(seed);
  for (int i = 0; i < moves; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % max_gap_ms));
    auto moved = move_once(pid, pipefd[0]);
    if (!moved) {
      // The program may simply have finished: that ends the moves, not the test.
      if (moved.error().code == ErrorCode::kNotFound) break;
      o.error = "move " + std::to_string(i) + ": " + moved.error().message;
      kill(pid, SIGKILL);
      break;
    }
    pid = moved.value();
    ++o.moves;
  }
  if (feeder.joinable()) feeder.join();
  o.status = wait_exit(pid);
  if (pipefd[0] >= 0) close(pipefd[0]);
  o.output = slurp(out);
  return o;
}

void expect_survives(const std::vector<std::string>& argv, int min_moves = 20,
                     const std::function<void(int)>& feed = nullptr) {
  auto started = std::chrono::steady_clock::now();
  Outcome reference = run(argv, 0, 0, feed);
  auto reference_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(reference.status, 0) << reference.output;
  ASSERT_FALSE(reference.output.empty());
  // Spread the moves over the first half of an undisturbed run, so that all of them land
  // while the program is still working even on a loaded machine (a move costs tens of ms).
  int max_gap_ms = std::clamp(int(reference_ms / (2 * min_moves)), 1, 90);
  uint32_t seed = std::random_device{}();
  Outcome moved = run(argv, min_moves, seed, feed, max_gap_ms);
  ASSERT_TRUE(moved.error.empty()) << moved.error << " (seed " << seed << ")";
  EXPECT_GE(moved.moves, min_moves) << "the program ended before it could be moved often enough (seed " << seed << ")";
  EXPECT_EQ(moved.status, reference.status) << moved.output << " (seed " << seed << ")";
  EXPECT_EQ(moved.output, reference.output) << "seed " << seed;
}

TEST(Restore, ChecksumLoopOver256MiBOfHeap) { expect_survives({program("checksum_heap"), "256", "40"}); }
TEST(Restore, StaticChecksumLoop) { expect_survives({program("checksum_heap_static"), "64", "60"}); }
TEST(Restore, SleeperInNanosleep) { expect_survives({program("sleeper")}); }
TEST(Restore, StaticSleeper) { expect_survives({program("sleeper_static")}); }
TEST(Restore, SignalHandlerWithBlockedAndPendingSignals) { expect_survives({program("signals")}); }
TEST(Restore, StaticSignals) { expect_survives({program("signals_static")}); }
TEST(Restore, FpuAndAvxRegistersLiveAtTheFreeze) { expect_survives({program("fpu_avx")}); }
TEST(Restore, BrkGrowthVdsoClocksFilesAndAPrivateFileMapping) { expect_survives({program("brk_vdso_files"), "data.bin"}); }
TEST(Restore, CxxStreams) { expect_survives({program("cxx_streams")}); }
// Outside a job's namespace the tids are new ones after each move (the original still holds its
// own while the copy is built): pthread_join and mutexes do not care.
TEST(Restore, ThreadsBornAndJoinedAllTheTime) { expect_survives({program("thread_churn"), "1500", "4"}); }

// Signals pending at the freeze (queued by the program to itself, some while blocked, some as it
// runs) arrive once each after every move: none dequeued and dropped by the capture's injected
// syscalls, none doubled. The program checks the sequence numbers they carry.
TEST(Restore, SignalsPendingAtTheFreezeArriveOnceEach) {
  TempDir dir;
  fs::path out = dir.path / "out.txt";
  pid_t pid = start({program("signal_ledger"), std::to_string(std::random_device{}() % 1000)}, out, -1, dir.path);
  struct KillOnFailure {  // a failed assertion returns early: the job must not spin on
    pid_t& pid;
    ~KillOnFailure() {
      if (pid > 0) ::kill(pid, SIGKILL), waitpid(pid, nullptr, 0);
    }
  } guard{pid};
  for (int i = 0; i < 200 && slurp(out).find("ready") == std::string::npos; ++i) std::this_thread::sleep_for(5ms);
  std::mt19937 rng(std::random_device{}());
  for (int i = 0; i < 40; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 30));
    auto moved = move_once(pid, -1);
    ASSERT_TRUE(moved.ok()) << "move " << i << ": " << moved.error().message;
    pid = moved.value();
  }
  ::kill(pid, SIGUSR1);
  EXPECT_EQ(wait_exit(pid), 0);
  pid = -1;
  std::string o = slurp(out);
  auto at = o.find("ledger ");
  ASSERT_NE(at, std::string::npos) << o;
  EXPECT_NE(o.find(" errors 0\n", at), std::string::npos) << o.substr(at > 200 ? at - 200 : 0);
}

TEST(Restore, ReaderBlockedOnAPipeFromTheTest) {
  expect_survives({program("pipe_reader")}, 20, [](int fd) {
    for (int i = 0; i < 60; ++i) {
      std::string line = "line " + std::to_string(i) + " of the feed\n";
      ASSERT_EQ(write(fd, line.data(), line.size()), ssize_t(line.size()));
      std::this_thread::sleep_for(40ms);
    }
  });
}

// Programs nobody here wrote, with input the test makes (deterministic, a few seconds of work).
fs::path make_input(const fs::path& dir, size_t lines) {
  fs::path p = dir / "input.txt";
  std::ofstream out(p);
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < lines; ++i) out << rng() % 1000000007 << " line " << (rng() % 97) << " of the input\n";
  return p;
}

TEST(RealPrograms, Python) {
  expect_survives({"/usr/bin/python3", "-c",
                   "import time, hashlib\n"
                   "h = hashlib.sha256()\n"
                   "primes = []\n"
                   "for n in range(2, 120000):\n"
                   "    if all(n % p for p in primes if p * p <= n):\n"
                   "        primes.append(n)\n"
                   "    if n % 3000 == 0:\n"
                   "        h.update(str(primes[-10:]).encode())\n"
                   "        print(n, len(primes), h.hexdigest()[:16], flush=True)\n"
                   "        time.sleep(0.01)\n"});
}

TEST(RealPrograms, XzCompressesByteIdentically) {
  TempDir data;
  fs::path input = make_input(data.path, 400000);
  expect_survives({"/usr/bin/xz", "-T1", "-7", "-c", input.string()});
}

TEST(RealPrograms, SortOfALargeFile) {
  TempDir data;
  fs::path input = make_input(data.path, 3000000);
  expect_survives({"/usr/bin/sort", "--parallel=1", "-S", "512M", "-n", input.string()});
}

// Refusals name the problem and leave the process running, untouched.
void expect_refused(const std::string& what, const std::string& message_part) {
  TempDir dir;
  fs::path out = dir.path / "out.txt";
  pid_t pid = start({program("holds_socket"), what}, out, -1, dir.path);
  for (int i = 0; i < 200 && slurp(out).find("ready") == std::string::npos; ++i) std::this_thread::sleep_for(10ms);
  {
    auto frozen = FrozenProcess::freeze(pid);
    ASSERT_TRUE(frozen.ok()) << frozen.error().message;
    capnp::MallocMessageBuilder message;
    Status s = frozen.value()->capture(message.initRoot<wire::ProcessImage>());
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, ErrorCode::kRefused);
    EXPECT_NE(s.error().message.find(message_part), std::string::npos) << s.error().message;
  }
  std::this_thread::sleep_for(50ms);
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {  // every thread
    std::string status = slurp(task.path() / "status");
    EXPECT_NE(status.find("State:\tS (sleeping)"), std::string::npos) << "the refused process was left stopped:\n" << status;
    EXPECT_NE(status.find("TracerPid:\t0"), std::string::npos) << status;
  }
  kill(pid, SIGKILL);
  wait_exit(pid);
}

TEST(Refuse, ATcpSocket) { expect_refused("socket", "is a TCP socket"); }
TEST(Refuse, SysVSharedMemory) { expect_refused("sysv", "is MAP_SHARED"); }
TEST(Refuse, ASocketInAThreadedProcessLeavesEveryThreadRunning) { expect_refused("threads", "is a TCP socket"); }
TEST(Refuse, AUnixSocketWhosePeerIsAnotherProcesss) {
  expect_refused("unix", "fd 3 is a unix socket whose peer is not held by this process: sockets cannot move");
}

TEST(Refuse, AnUnknownPid) {
  auto f = FrozenProcess::freeze(999999);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().code, ErrorCode::kNotFound);
}

// A FIFO whose holders are all gone when the process is rebuilt (a checkpoint restored after
// the original ended, another machine) is empty, or gone: it is made again with its mode and
// refilled with the bytes captured. (A migration on one machine finds the frozen source still
// holding it, with the same bytes, and leaves it as it is.)
TEST(Restore, AFifoRemovedMeanwhileIsMadeAgainWithItsBytes) {
  TempDir dir;
  std::string fifo = (dir.path / "fifo").string();
  std::vector<std::string> argv{program("fifo_buffer"), fifo, "60", "20"};
  Outcome reference = run(argv, 0, 0);
  ASSERT_EQ(reference.status, 0) << reference.output;
  fs::path out = dir.path / "out.txt";
  pid_t pid = start(argv, out, -1, dir.path);
  std::this_thread::sleep_for(400ms);
  auto frozen = FrozenProcess::freeze(pid);
  ASSERT_TRUE(frozen.ok()) << frozen.error().message;
  capnp::MallocMessageBuilder message;
  auto image = message.initRoot<wire::ProcessImage>();
  ASSERT_TRUE(frozen.value()->capture(image).ok());
  std::vector<std::pair<uint64_t, std::vector<std::byte>>> pages;
  ASSERT_TRUE(frozen.value()->read_pages(image.asReader(), [&](uint64_t at, std::span<const std::byte> bytes) {
    pages.emplace_back(at, std::vector<std::byte>(bytes.begin(), bytes.end()));
    return Status::Ok();
  }).ok());
  frozen.value()->kill();  // the FIFO's last holder: its bytes are gone with it
  frozen.value().reset();
  ASSERT_EQ(::unlink(fifo.c_str()), 0);
  RestoreOptions options;
  options.stub = std::string(FERRY_BIN_DIR) + "/ferry-restore-stub";
  options.die_with_parent = true;
  auto restored = RestoredProcess::build(
      image.asReader(),
      [&](const PageSink& sink) {
        for (const auto& [at, bytes] : pages)
          if (Status s = sink(at, bytes); !s) return s;
        return Status::Ok();
      },
      options);
  ASSERT_TRUE(restored.ok()) << restored.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  ASSERT_TRUE(restored.value()->start().ok());
  EXPECT_EQ(wait_exit(restored.value()->pid()), 0);
  EXPECT_EQ(slurp(out), reference.output);
}

// `ferry checkpoint` then `ferry restore`, through the CLI: the restored process is not our
// child, so its end is seen through /proc and its output file.
TEST(CheckpointCli, CheckpointToADirectoryAndRestoreLater) {
  TempDir dir;
  std::vector<std::string> argv{program("checksum_heap"), "64", "40"};
  Outcome reference = run(argv, 0, 0);
  ASSERT_EQ(reference.status, 0);

  fs::path out = dir.path / "out.txt";
  pid_t pid = start(argv, out, -1, dir.path);
  std::this_thread::sleep_for(300ms);
  std::string ferry = std::string(FERRY_BIN_DIR) + "/ferry";
  std::string cp = ferry + " checkpoint " + std::to_string(pid) + " --dir " + (dir.path / "ck").string() + " > " +
                   (dir.path / "cp.txt").string() + " 2>&1";
  ASSERT_EQ(system(cp.c_str()), 0) << slurp(dir.path / "cp.txt");
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL) << "checkpoint without --leave-running stops the process";
  std::string lines_then = slurp(out);
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(slurp(out), lines_then) << "nothing runs between checkpoint and restore";

  std::string rs = ferry + " restore --dir " + (dir.path / "ck").string() + " > " + (dir.path / "pid.txt").string();
  ASSERT_EQ(system(rs.c_str()), 0);
  pid_t restored = std::atoi(slurp(dir.path / "pid.txt").c_str());
  ASSERT_GT(restored, 0);
  EXPECT_EQ(restored, pid) << "the original's pid is free once it was stopped: the restore takes it back";
  for (int i = 0; i < 3000 && fs::exists("/proc/" + std::to_string(restored)) &&
                  slurp("/proc/" + std::to_string(restored) + "/stat").find(") Z") == std::string::npos;
       ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(slurp(out), reference.output);
}

}  // namespace
}  // namespace ferry::pm
