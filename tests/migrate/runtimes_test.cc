// The runtimes people run memory-heavy jobs on, each moved lazily five times at random moments
// and printing what an unmoved run prints: a JVM (default flags: its hsperfdata file, a writable
// shared mapping of a file in /tmp, moves with it; its class-data archive's written pages go
// ahead of the offer in parts), Node.js with worker_threads, CPython with a thread pool.
#include <gtest/gtest.h>

#include <chrono>

#include "tests/migrate/cluster_fixture.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;

class Runtimes : public ClusterTest {
 protected:
  Runtimes() : ClusterTest("rt", 3) {}
};

TEST_F(Runtimes, JavaWithEightWorkersOnATwoGiBHeap) {
  // Moved once the heap is filled and the pool's threads are there.
  std::string reference = expect_same_output_after_moves(
      {"/usr/bin/java", "-Xmx2g", "-cp", FERRY_PROGRAMS_DIR, "HeapHash", "1536", "60"}, 5, {""}, 3000ms);
  EXPECT_NE(reference.find("round 59: "), std::string::npos) << reference;
}

TEST_F(Runtimes, PythonThreadPoolOfEightHashingOneGiB) {
  // Moved once its buffer is filled and the pool's threads are there.
  expect_same_output_after_moves({"/usr/bin/python3", program("thread_pool_hash.py"), "1024", "14"}, 5, {""}, 1500ms);
}

TEST_F(Runtimes, NodeWorkerThreadsPoolOfFourOnOneGiB) {
  // Moved once its buffer is filled and the workers are there.
  std::string reference = expect_same_output_after_moves({"/usr/bin/node", program("node_workers.js"), "1024", "40"}, 5, {""}, 1500ms);
  EXPECT_NE(reference.find("round 39: "), std::string::npos) << reference;
}

}  // namespace
}  // namespace ferry::testing
