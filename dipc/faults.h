// Fault injection: named points in Ferry's protocols where a running daemon can be told to
// crash, drop, delay or duplicate (`ferry fault set NODE POINT ACTION`), so that users and the
// test suite can break a migration on purpose and see what survives. Inert until a rule is set.
//
// A point is declared by the daemon that owns it (the agent declares "offer", the pager
// "page-reply", ...) and sits at one of four sites:
//   - kRequestIn:  a request of one message type arriving at this port (before its handler);
//   - kReplyIn:    the reply to one of our requests of that type arriving (before the caller sees it);
//   - kReplyOut:   our reply to a request of that type leaving;
//   - kLocal:      a step in the daemon's own code (freeze, resume): crash and delay only.
// Actions: crash (the daemon SIGKILLs itself, as a real crash: nothing is cleaned up), drop
// (the message vanishes: its caller times out), delay (it goes on after `delay`), duplicate
// (it is handled, or sent, twice). A rule fires `count` times (0: every time), then is gone.
// Every firing is logged at warn level with the point and the message.
//
// Thread-safety: loop thread only, like the Port that owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dipc/status.h"

namespace ferry::dipc {

enum class FaultAction { kCrash, kDrop, kDelay, kDuplicate };
enum class FaultSite { kRequestIn, kReplyIn, kReplyOut, kLocal };

const char* fault_action_name(FaultAction a);
std::optional<FaultAction> parse_fault_action(const std::string& name);  // "crash", "drop", ...

struct FaultRule {
  std::string point;
  FaultAction action = FaultAction::kDrop;
  std::chrono::milliseconds delay{0};
  uint32_t count = 1;  // firings left; 0: every time
};

struct FaultPoint {
  std::string name;
  FaultSite site = FaultSite::kLocal;
  uint64_t message_type = 0;  // the request type for the message sites
  std::string description;
  std::string port;           // only at this port of a shared plan ("": any)
};

class FaultPlan {
 public:
  void declare(FaultPoint point);
  // kNotFound for an undeclared point; kInvalid for drop/duplicate at a local point or a
  // delay without a duration. Replaces the point's earlier rule.
  Status set(FaultRule rule);
  void clear(const std::string& point);  // "" clears every rule
  const std::vector<FaultPoint>& points() const { return points_; }
  std::vector<FaultRule> rules() const;
  bool armed() const { return !rules_.empty(); }

  // The rule to apply at `point` now, if one is armed (its count is spent by this call).
  std::optional<FaultRule> take(const std::string& point);
  // The same for a message site: the point declared there for `message_type`.
  std::optional<FaultRule> take(FaultSite site, uint64_t message_type, const std::string& port);

  // Logs the crash and SIGKILLs this process.
  [[noreturn]] static void crash(const std::string& who, const std::string& point);

 private:
  std::vector<FaultPoint> points_;
  std::map<std::string, FaultRule> rules_;
};

}  // namespace ferry::dipc
