// How the master tells a slow node from a dead one (pure functions; pm/membership.h applies them).
//
// A node is judged by its least recently heard port. Silence alone is a poor judge on a shared
// machine: a node whose daemons are starved of CPU for a few seconds, or whose agent waits on its
// pager, goes as quiet as a dead one. So:
//   - each port's heartbeat arrivals are kept (HeartbeatHistory), and a silence is weighed against
//     them: phi = -log10 P(the next heartbeat comes this late or later), a normal distribution
//     over the recent intervals (the accrual detector of Hayashibara et al., as Cassandra and Akka
//     use it). A node whose heartbeats have been irregular is given longer;
//   - silence past `suspect_after` makes a node suspect (shown; nothing is done to it);
//   - silence past `dead_after` with phi past `phi_dead`, or past `dead_limit` whatever phi says,
//     makes it a candidate (kConfirm): the master then probes its silent ports directly (a Ping,
//     `probe_timeout`). Any answer, or any heartbeat meanwhile, and the node is only slow. Only a
//     probe that fails while the port stays silent makes the node dead.
// So a dead node is declared dead after at most dead_limit + probe_timeout + one heartbeat period
// of silence (typically dead_after + probe_timeout, when its heartbeats had been regular).
#pragma once

#include <array>
#include <chrono>

namespace ferry::pm {

struct DetectorPolicy {
  std::chrono::milliseconds heartbeat{500};       // the period ports heartbeat at
  std::chrono::milliseconds suspect_after{1500};  // silence that makes a node suspect
  std::chrono::milliseconds dead_after{3000};     // no node is a candidate for death before this
  std::chrono::milliseconds dead_limit{9000};     // every silent node is one after this
  std::chrono::milliseconds probe_timeout{2000};  // how long a probed port has to answer
  double phi_dead = 8.0;                          // between dead_after and dead_limit: phi needed
};

// The intervals between one port's heartbeats (the last 64), and phi for a silence.
class HeartbeatHistory {
 public:
  using Clock = std::chrono::steady_clock;
  explicit HeartbeatHistory(std::chrono::milliseconds expected = std::chrono::milliseconds(500))
      : expected_ms_(double(expected.count())) {}

  // A heartbeat (or registration) arrived at `at`.
  void heard(Clock::time_point at);
  // phi of a silence of `silence` since the last arrival: 0 when it is not late at all, about 8
  // when one in 10^8 intervals of this history would be as long. With fewer than 4 intervals
  // known, the expected period stands in for their mean. The spread is at least a quarter of
  // the period (a history of identical intervals would make any delay infinitely suspect).
  double phi(std::chrono::milliseconds silence) const;
  size_t samples() const { return count_; }

 private:
  static constexpr size_t kWindow = 64;
  std::array<double, kWindow> intervals_ms_{};
  size_t count_ = 0, next_ = 0;
  Clock::time_point last_{};
  bool any_ = false;
  double expected_ms_;
};

enum class Judgement { kAlive, kSuspect, kConfirm };

// What a node's silence (that of its least recently heard port) and the phi of that silence call
// for. Boundaries are exclusive: a silence of exactly suspect_after is still alive.
Judgement judge(std::chrono::milliseconds silence, double phi, const DetectorPolicy& policy);

}  // namespace ferry::pm
