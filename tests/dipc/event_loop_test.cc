// The event loop: timers in order, cancellation, repetition, posts from other threads, fds.
#include "dipc/event_loop.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace ferry::dipc {
namespace {

using namespace std::chrono_literals;

TEST(EventLoop, TimersFireInDeadlineOrderAndCancelledOnesDoNot) {
  auto loop = EventLoop::create().value();
  std::vector<int> order;
  loop->after(30ms, [&] { order.push_back(3); });
  loop->after(10ms, [&] { order.push_back(1); });
  auto cancelled = loop->after(15ms, [&] { order.push_back(99); });
  loop->after(20ms, [&] { order.push_back(2); });
  loop->cancel(cancelled);
  loop->after(40ms, [&] { loop->stop(); });
  loop->run();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(EventLoop, EveryRepeatsUntilCancelled) {
  auto loop = EventLoop::create().value();
  int ticks = 0;
  EventLoop::TimerId id = 0;
  id = loop->every(5ms, [&] {
    if (++ticks == 4) loop->cancel(id);
  });
  loop->after(100ms, [&] { loop->stop(); });
  loop->run();
  EXPECT_EQ(ticks, 4);
}

TEST(EventLoop, PostedTasksRunOnTheLoopThread) {
  auto loop = EventLoop::create().value();
  std::atomic<int> ran{0};
  std::atomic<bool> on_loop{true};
  std::thread t([&] { loop->run(); });
  std::vector<std::thread> posters;
  for (int i = 0; i < 4; ++i)
    posters.emplace_back([&] {
      for (int k = 0; k < 250; ++k)
        loop->post([&] {
          if (!loop->on_loop_thread()) on_loop = false;
          ++ran;
        });
    });
  for (auto& p : posters) p.join();
  for (int i = 0; i < 200 && ran < 1000; ++i) std::this_thread::sleep_for(5ms);
  loop->stop();
  t.join();
  EXPECT_EQ(ran.load(), 1000);
  EXPECT_TRUE(on_loop.load());
  EXPECT_FALSE(loop->on_loop_thread());
}

TEST(EventLoop, WatchedFdCallsBackWhileReadableAndNotAfterUnwatch) {
  auto loop = EventLoop::create().value();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  std::string got;
  ASSERT_TRUE(loop->watch(p[0], [&](uint32_t) {
                    char buf[16];
                    ssize_t n = read(p[0], buf, 1);  // one byte per call: level-triggered re-arm matters
                    if (n > 0) got.append(buf, size_t(n));
                    if (got == "abc") loop->unwatch(p[0]);
                  })
                  .ok());
  ASSERT_EQ(write(p[1], "abc", 3), 3);
  loop->after(50ms, [&] {
    ASSERT_EQ(write(p[1], "d", 1), 1);  // after unwatch: must not be read
  });
  loop->after(100ms, [&] { loop->stop(); });
  loop->run();
  EXPECT_EQ(got, "abc");
  close(p[0]);
  close(p[1]);
}

TEST(EventLoop, StopFromAnotherThreadEndsAnIdleLoop) {
  auto loop = EventLoop::create().value();
  std::thread t([&] { loop->run(); });
  std::this_thread::sleep_for(20ms);
  auto t0 = std::chrono::steady_clock::now();
  loop->stop();
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

}  // namespace
}  // namespace ferry::dipc
