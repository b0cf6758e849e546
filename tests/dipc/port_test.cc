// Ports across real processes over libfabric (tcp;ofi_rxm on loopback): request/reply,
// timeouts, a peer killed mid-request, garbage and forged messages, the control socket and
// the name service.
#include "dipc/port.h"

#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <random>

#include "dipc/local_client.h"
#include "port_fixture.h"

namespace ferry::dipc::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

capnp::Data::Reader bytes_of(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(s.data()), s.size());
}

Result<Message<wire::Pong>> ping(Client& c, const std::string& to, const std::string& payload = "",
                                 uint32_t delay_ms = 0, std::chrono::milliseconds timeout = 0ms) {
  return c.port().call_sync<wire::Ping, wire::Pong>(
      to,
      [&](wire::Ping::Builder b) {
        b.setPayload(bytes_of(payload));
        b.setDelayMs(delay_ms);
      },
      CallOptions{timeout, std::nullopt});
}

class PortTest : public ::testing::Test {
 protected:
  KeyDir keys;
  std::unique_ptr<ServerProcess> server = std::make_unique<ServerProcess>(keys.key(), keys.dir);
};

TEST_F(PortTest, RequestsGetExactlyOneReplyWithTheirPayload) {
  Client c("agent@n1", "n1", server->address(), keys.key());
  for (const std::string& payload : {std::string("small"), std::string(4096, 'p'), std::string(60000, 'q')}) {
    auto r = ping(c, "master", payload);
    ASSERT_TRUE(r.ok()) << r.error().message;
    auto pong = r.value().get();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(pong.getPayload().begin()), pong.getPayload().size()), payload);
    EXPECT_EQ(std::string(pong.getPort().cStr()), "master");
    EXPECT_EQ(int(pong.getPid()), server->pid());
  }
  // Many in flight at once from the loop thread: each completes exactly once.
  constexpr int kCalls = 1000;
  std::vector<int> completions(kCalls, 0);
  std::promise<void> all_done;
  int remaining = kCalls;
  c.loop().post([&] {
    for (int i = 0; i < kCalls; ++i) {
      std::string tag = std::to_string(i);
      c.port().call<wire::Ping, wire::Pong>(
          "master", [&](wire::Ping::Builder b) { b.setPayload(bytes_of(tag)); },
          [&, i](Result<Message<wire::Pong>> r) {
            EXPECT_TRUE(r.ok()) << r.error().message;
            if (r.ok()) {
              auto p = r.value().get().getPayload();
              EXPECT_EQ(std::string(reinterpret_cast<const char*>(p.begin()), p.size()), std::to_string(i));
            }
            if (++completions[size_t(i)] == 1 && --remaining == 0) all_done.set_value();
          });
    }
  });
  ASSERT_EQ(all_done.get_future().wait_for(30s), std::future_status::ready);
  std::this_thread::sleep_for(100ms);  // a duplicate would show up here
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(completions[size_t(i)], 1) << "call " << i;
}

TEST_F(PortTest, ATimeoutNamesThePeerAndTheRequest) {
  Client c("agent@n1", "n1", server->address(), keys.key());
  ASSERT_TRUE(ping(c, "master").ok());
  auto t0 = Clock::now();
  auto r = ping(c, "master", "", /*delay_ms=*/3000, /*timeout=*/500ms);
  auto took = Clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kTimeout);
  EXPECT_NE(r.error().message.find("master"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("Ping"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("timed out after 500 ms"), std::string::npos) << r.error().message;
  EXPECT_LT(took, 2500ms);
  // The late reply is dropped; the port goes on answering.
  std::this_thread::sleep_for(3000ms);
  EXPECT_TRUE(ping(c, "master", "after").ok());
}

TEST_F(PortTest, APeerKilledMidRequestFailsThePendingRequest) {
  Client c("agent@n1", "n1", server->address(), keys.key());
  ASSERT_TRUE(ping(c, "master").ok());
  std::future<Result<Message<wire::Pong>>> pending =
      std::async(std::launch::async, [&] { return ping(c, "master", "", 10000, 1500ms); });
  std::this_thread::sleep_for(200ms);
  auto t0 = Clock::now();
  server->kill();
  auto r = pending.get();
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().code == ErrorCode::kTimeout || r.error().code == ErrorCode::kUnreachable) << r.error().message;
  EXPECT_LT(Clock::now() - t0, 1500ms + 2s);
  // Later requests to the dead address fail too, within their timeout.
  t0 = Clock::now();
  auto again = ping(c, "master", "", 0, 500ms);
  EXPECT_FALSE(again.ok());
  EXPECT_LT(Clock::now() - t0, 500ms + 2s);
}

// The pager that died of a peer's reset (issue 13): a send retried to a peer whose connection
// broke. Here a peer is SIGKILLed while hundreds of large requests to it are queued and in
// flight, and restarted (as a daemon restarts: at a new address, registered again), again and
// again: every request completes exactly once, this process goes on, answers, and reaches the
// restarted peer each time.
TEST(PortRestart, APeerKilledAndRestartedWhileSendsAreQueuedAndInFlight) {
  KeyDir keys;
  ServerProcess master(keys.key(), keys.dir);
  auto peer = std::make_unique<ServerProcess>(keys.key(), keys.dir, "0", "agent@n2", master.address());
  Client c("agent@n1", "n1", master.address(), keys.key());
  Client witness("agent@n3", "n3", master.address(), keys.key());
  ASSERT_TRUE(c.wait_registered(5s));
  auto reach = [&](Client& from, const std::string& to, pid_t pid) {
    std::string last;
    for (int i = 0; i < 40; ++i) {
      auto r = ping(from, to, "", 0, 500ms);
      if (r.ok() && int(r.value().get().getPid()) == pid) return std::string();
      last = r.ok() ? "answered by pid " + std::to_string(r.value().get().getPid()) : r.error().message;
      std::this_thread::sleep_for(50ms);
    }
    return last.empty() ? "no answer" : last;
  };
  ASSERT_EQ(reach(c, "agent@n2", peer->pid()), "");
  std::mt19937 rng(std::random_device{}());
  const std::string payload(60000, 'x');
  constexpr int kRounds = 20, kCalls = 100;
  for (int round = 0; round < kRounds; ++round) {
    auto completions = std::make_shared<std::vector<int>>(kCalls, 0);
    auto remaining = std::make_shared<std::atomic<int>>(kCalls);
    auto all_done = std::make_shared<std::promise<void>>();
    c.loop().post([&, completions, remaining, all_done] {
      for (int i = 0; i < kCalls; ++i)
        c.port().call<wire::Ping, wire::Pong>(
            "agent@n2", [&](wire::Ping::Builder b) { b.setPayload(bytes_of(payload)); },
            [completions, remaining, all_done, i](Result<Message<wire::Pong>>) {
              if (++(*completions)[size_t(i)] == 1 && --*remaining == 0) all_done->set_value();
            },
            CallOptions{1500ms, std::nullopt});
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 30));
    peer->kill();
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 200));
    peer = std::make_unique<ServerProcess>(keys.key(), keys.dir, "0", "agent@n2", master.address());
    ASSERT_EQ(all_done->get_future().wait_for(20s), std::future_status::ready) << "round " << round;
    std::this_thread::sleep_for(50ms);  // a second completion would show here
    for (int i = 0; i < kCalls; ++i) ASSERT_EQ((*completions)[size_t(i)], 1) << "round " << round << " call " << i;
    ASSERT_EQ(reach(witness, "agent@n1", getpid()), "") << "round " << round << ": this port stopped answering";
    ASSERT_EQ(reach(witness, "agent@n2", peer->pid()), "") << "round " << round << ": witness cannot reach the peer";
    ASSERT_EQ(reach(c, "agent@n2", peer->pid()), "") << "round " << round << ": the restarted peer was not reached again";
  }
}

TEST_F(PortTest, GarbageOnTheFabricIsDroppedAndCountedAndTheDaemonGoesOn) {
  auto key = ClusterKey::load(keys.key()).value();
  // Valid frames to corrupt or cut short.
  capnp::MallocMessageBuilder m;
  auto env = m.initRoot<wire::Envelope>();
  env.setRequestId(1);
  env.setFrom("agent@n9");
  env.setTo("master");
  env.setBodyType(capnp::typeId<wire::Ping>());
  env.getBody().initAs<wire::Ping>();
  std::vector<std::byte> valid;
  ASSERT_TRUE(seal_frame(m, &key, valid).ok());

  FabricOptions fo;
  fo.host = "127.0.0.1";
  auto ep = FabricEndpoint::open(fo).value();
  auto peer = ep->peer_by_text(server->address()).value();
  std::mt19937 rng(1234);
  constexpr int kGarbage = 10000;
  int completed = 0, failed = 0;
  for (int i = 0; i < kGarbage; ++i) {
    std::vector<std::byte> junk;
    switch (i % 3) {
      case 0:  // random bytes
        junk.resize(1 + rng() % 5000);
        for (auto& b : junk) b = std::byte(rng());
        break;
      case 1:  // a valid frame cut short
        junk.assign(valid.begin(), valid.begin() + std::ptrdiff_t(1 + rng() % (valid.size() - 1)));
        break;
      default:  // a valid frame with a flipped bit
        junk = valid;
        junk[rng() % junk.size()] ^= std::byte(1u << (rng() % 8));
    }
    ep->send(peer, std::move(junk), Clock::now() + 10s, [&](Status s) { s.ok() ? ++completed : ++failed; });
    if (i % 64 == 0) ep->progress();
  }
  auto deadline = Clock::now() + 30s;
  while (completed + failed < kGarbage && Clock::now() < deadline) ep->progress();
  ASSERT_EQ(completed, kGarbage) << failed << " sends failed";

  Client c("agent@n1", "n1", server->address(), keys.key());
  // The server drains its queue; then its counters show every piece of garbage.
  uint64_t bad = 0;
  for (int i = 0; i < 100 && bad < uint64_t(kGarbage); ++i) {
    auto r = ping(c, "master");
    ASSERT_TRUE(r.ok()) << "the daemon stopped answering: " << r.error().message;
    bad = r.value().get().getCounters().getDropped() + r.value().get().getCounters().getRejected();
    if (bad < uint64_t(kGarbage)) std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(bad, uint64_t(kGarbage));
}

// A frame captured on the wire and sent again (issue 13): here a relay in the middle (a raw
// fabric endpoint the client takes for its master) passes a real Ping on to the server once,
// then sends the very same bytes again, twice, and a third copy after other frames went by.
// The server answered the first; it refuses and counts the others, and dispatches none.
TEST_F(PortTest, AFrameCapturedOnTheWireAndSentAgainIsRefusedAndCounted) {
  FabricOptions fo;
  fo.host = "127.0.0.1";
  auto relay = FabricEndpoint::open(fo).value();
  std::vector<std::vector<std::byte>> captured;
  relay->on_receive([&](std::span<const std::byte> b) { captured.emplace_back(b.begin(), b.end()); });
  auto to_server = relay->peer_by_text(server->address()).value();
  auto key = ClusterKey::load(keys.key()).value();
  auto send_to_server = [&](std::vector<std::byte> frame) {
    bool done = false;
    relay->send(to_server, std::move(frame), Clock::now() + 5s, [&](Status s) {
      EXPECT_TRUE(s.ok()) << s.error().message;
      done = true;
    });
    for (auto t0 = Clock::now(); !done && Clock::now() - t0 < 5s;) relay->progress();
  };

  Client victim("agent@n1", "n1", relay->address_text(), keys.key());
  Client witness("agent@n3", "n3", server->address(), keys.key());
  // The victim's next Ping as it reaches the relay (its registrations come this way too).
  auto capture_ping = [&] {
    std::vector<std::byte> frame;
    for (auto t0 = Clock::now(); frame.empty() && Clock::now() - t0 < 3s;) {
      relay->progress();
      for (auto& f : captured)
        if (auto in = open_frame(f, &key); in.ok() && in.value()->holds<wire::Ping>()) frame = f;
    }
    captured.clear();
    return frame;
  };
  auto pending = std::async(std::launch::async, [&] { return ping(victim, "master", "pay me once", 0, 3000ms); });
  std::vector<std::byte> ping_frame = capture_ping();
  ASSERT_FALSE(ping_frame.empty()) << "the victim's Ping never reached the relay";
  auto before = ping(witness, "master");
  ASSERT_TRUE(before.ok()) << before.error().message;
  send_to_server(ping_frame);
  auto first = pending.get();
  ASSERT_TRUE(first.ok()) << "the original frame was not served: " << first.error().message;
  EXPECT_EQ(first.value().get().getPayload().size(), std::string("pay me once").size());

  send_to_server(ping_frame);
  send_to_server(ping_frame);
  // More of the victim's frames go by (passed on by the relay, served), then a third copy.
  constexpr int kLater = 20;
  for (int i = 0; i < kLater; ++i) {
    auto later = std::async(std::launch::async, [&] { return ping(victim, "master", "later", 0, 3000ms); });
    std::vector<std::byte> frame = capture_ping();
    ASSERT_FALSE(frame.empty());
    send_to_server(frame);
    ASSERT_TRUE(later.get().ok());
  }
  send_to_server(ping_frame);

  auto c0 = before.value().get().getCounters();
  uint64_t replayed = 0;
  for (int i = 0; i < 100 && replayed < c0.getReplayed() + 3; ++i) {
    if (i) std::this_thread::sleep_for(20ms);
    auto after = ping(witness, "master");
    ASSERT_TRUE(after.ok()) << "the server stopped answering: " << after.error().message;
    replayed = after.value().get().getCounters().getReplayed();
  }
  EXPECT_EQ(replayed, c0.getReplayed() + 3) << "each replay is refused and counted";
  // Had the server served a replay, its answer would reach the victim as a reply to a request
  // it no longer waits for.
  std::this_thread::sleep_for(200ms);
  std::promise<uint64_t> late;  // the victim's counters are its loop thread's to read
  victim.loop().post([&] { late.set_value(victim.port().counters().late); });
  EXPECT_EQ(late.get_future().get(), 0u) << "a replay was served";
}

TEST_F(PortTest, AMessageWithTheWrongKeyIsDroppedAndCounted) {
  KeyDir other;
  Client good("agent@n1", "n1", server->address(), keys.key());
  auto before = ping(good, "master");
  ASSERT_TRUE(before.ok());
  uint64_t rejected_before = before.value().get().getCounters().getRejected();
  {
    Client intruder("agent@n2", "n2", server->address(), other.key());
    auto r = ping(intruder, "master", "", 0, 500ms);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kTimeout) << r.error().message;
    EXPECT_FALSE(intruder.wait_registered(200ms)) << "a port with the wrong key registered";
  }
  auto after = ping(good, "master");
  ASSERT_TRUE(after.ok());
  EXPECT_GT(after.value().get().getCounters().getRejected(), rejected_before);
}

TEST_F(PortTest, TheControlSocketServesTheCliAndSurvivesGarbage) {
  auto cli = LocalClient::connect(server->control_socket());
  ASSERT_TRUE(cli.ok()) << cli.error().message;
  auto r = cli.value()->call<wire::Ping, wire::Pong>([](wire::Ping::Builder b) { b.setPayload(bytes_of("local")); });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().get().getPayload().size(), 5u);
  // A message type the daemon does not serve gets an error reply, not silence.
  auto unknown = cli.value()->call<wire::Resolve, wire::Pong>([](wire::Resolve::Builder b) { b.setName("x"); });
  ASSERT_FALSE(unknown.ok());
  auto unhandled = cli.value()->call<wire::PingPortReply, wire::Pong>([](auto) {});
  ASSERT_FALSE(unhandled.ok());
  EXPECT_EQ(unhandled.error().code, ErrorCode::kInvalid) << unhandled.error().message;

  std::mt19937 rng(5);
  for (int i = 0; i < 1000; ++i) {
    std::vector<std::byte> junk(1 + rng() % 3000);
    for (auto& b : junk) b = std::byte(rng());
    ASSERT_TRUE(cli.value()->send_bytes(junk).ok());
  }
  auto fresh = LocalClient::connect(server->control_socket());
  ASSERT_TRUE(fresh.ok());
  auto still = fresh.value()->call<wire::Ping, wire::Pong>([](auto) {});
  ASSERT_TRUE(still.ok()) << still.error().message;
  EXPECT_GE(still.value().get().getCounters().getDropped(), 1000u);
}

TEST_F(PortTest, TheNameServiceResolvesRegisteredPortsAndRefusesUnknownOnes) {
  Client a("agent@n1", "n1", server->address(), keys.key());
  Client b("pager@n2", "n2", server->address(), keys.key());
  ASSERT_TRUE(a.wait_registered(5s));
  ASSERT_TRUE(b.wait_registered(5s));
  // a reaches b by name alone: resolved through the master.
  auto r = ping(a, "pager@n2", "by name");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(std::string(r.value().get().getPort().cStr()), "pager@n2");
  auto unknown = ping(a, "agent@n7");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::kUnknownPort) << unknown.error().message;
  EXPECT_NE(unknown.error().message.find("agent@n7"), std::string::npos);
  // PingPort: a asks b to ping the master three times.
  auto pp = a.port().call_sync<wire::PingPort, wire::PingPortReply>("pager@n2", [](wire::PingPort::Builder p) {
    p.setTarget("master");
    p.setCount(3);
  });
  ASSERT_TRUE(pp.ok()) << pp.error().message;
  EXPECT_EQ(pp.value().get().getAnswered(), 3u);
}

}  // namespace
}  // namespace ferry::dipc::testing

int main(int argc, char** argv) {
  if (ferry::dipc::testing::maybe_serve()) return 0;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
