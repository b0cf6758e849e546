// Shared memory and files that move with a job: MAP_SHARED anonymous memory and a memfd only
// mapped (served lazily), a memfd used through its descriptor, POSIX shared memory, a scratch
// file unlinked after open and a library replaced on disk (carried: pm/carried_files.h).
#include <gtest/gtest.h>

#include <chrono>

#include "tests/migrate/cluster_fixture.h"

namespace ferry::testing {
namespace {

using namespace std::chrono_literals;

class SharedMemory : public ClusterTest {
 protected:
  SharedMemory() : ClusterTest("sm", 3) {}
};

TEST_F(SharedMemory, EveryKindMovedFiveTimesPrintsWhatAnUnmovedRunPrints) {
  expect_same_output_after_moves({program("shared_memory"), "256", "40", "150", program("libv.so")}, 5,
                                 {"", "--eager", "", "--precopy=2", ""}, 300ms);
}

// Untouched pages of shared memory are never sent: the destination holds about what the job
// wrote, not the whole mapping.
TEST_F(SharedMemory, UntouchedSharedPagesAreNotSent) {
  uint64_t gpid = start({program("shared_memory"), "1024", "400", "100", program("libv.so")});
  ASSERT_NE(gpid, 0u);
  // Moved once it has written its memory (it prints its first round then), however slow the
  // machine.
  for (int i = 0; i < 600 && output(gpid).find("round 0:") == std::string::npos; ++i) std::this_thread::sleep_for(100ms);
  auto m = cluster.run({"migrate", std::to_string(gpid), "--to", "n2", "--wait"});
  ASSERT_EQ(m.status, 0) << m.err;
  // Written: half of the 1 GiB anonymous mapping's pages, every page of the 256 MiB memfd.
  auto stat = cluster.run({"stat", std::to_string(gpid), "--json"});
  uint64_t arrived = 0;
  for (const auto& node : nlohmann::json::parse(stat.out))
    for (const auto& im : node["imports"]) arrived += im["arrived_pages"].get<uint64_t>();
  EXPECT_GE(arrived, 196608u) << stat.out;
  EXPECT_LT(arrived, 196608u + 4096) << "untouched shared pages were sent";
  (void)cluster.run({"kill", std::to_string(gpid)});
}

}  // namespace
}  // namespace ferry::testing
