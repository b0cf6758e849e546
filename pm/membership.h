// Node membership, kept by the master: which nodes are alive, suspect or dead, judged from the
// heartbeats its name service receives with the failure detector of pm/failure_detector.h
// (heartbeat history and phi, then a direct probe before any verdict of death). Serves
// ListNodes (what `ferry nodes` shows) and logs every change of a node's state, one line each.
//
// Contract:
// - A node is declared dead only after a direct probe of its silent ports failed while they
//   stayed silent; then on_dead runs once, and the name service refuses to resolve its ports.
//   A dead node whose ports are all heard again (it was cut off and healed, or restarted) is
//   alive again.
// - The master's own stalls do not count against the nodes: when its check runs late (its loop
//   was held up, or the machine starved it), every node's silence counts from the end of the stall.
//
// Thread-safety: loop thread only, like the Port and NameService it works with.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dipc/name_service.h"
#include "pm/failure_detector.h"
#include "pm/pm.capnp.h"

namespace ferry::pm {

using MembershipPolicy = DetectorPolicy;

struct NodeStatus {
  std::string name;
  std::string address;
  wire::NodeState state = wire::NodeState::ALIVE;
  std::chrono::milliseconds heartbeat_age{0};
  std::vector<dipc::PortRecord> ports;
};

// Pure: the nodes of a name-service table at time `now` (the master itself is not a node), each
// with the age of its least recently heard port, ALIVE or SUSPECT by that age alone (DEAD is the
// Membership's verdict, never a table's). Sorted n2 before n10.
std::vector<NodeStatus> node_states(const std::vector<dipc::PortRecord>& ports, const MembershipPolicy& policy,
                                    std::chrono::steady_clock::time_point now);

// Inline: the CLI uses it without linking the master's side (and through it the fabric).
inline const char* node_state_name(wire::NodeState state) {
  switch (state) {
    case wire::NodeState::ALIVE: return "alive";
    case wire::NodeState::SUSPECT: return "suspect";
    case wire::NodeState::DEAD: return "dead";
  }
  return "unknown";
}

class Membership {
 public:
  // Serves ListNodes on `port`, feeds every heartbeat `names` receives to the detector, checks
  // node states once per heartbeat period, and tells `names` to refuse ports of dead nodes.
  Membership(dipc::Port& port, dipc::NameService& names, MembershipPolicy policy);
  ~Membership();

  std::vector<NodeStatus> nodes() const;
  // Called once each time a node becomes dead, with why ("no heartbeat for 3120 ms; agent@n2 did
  // not answer a probe: ...").
  void on_dead(std::function<void(const std::string& node, const std::string& why)> cb) { on_dead_ = std::move(cb); }

 private:
  using Clock = std::chrono::steady_clock;
  struct PortTrack {
    HeartbeatHistory history;
    Clock::time_point answered{};  // last answer to a probe: counts as heard
  };
  struct Verdict {
    wire::NodeState state = wire::NodeState::ALIVE;
    bool known = false;
    int probes = 0;  // outstanding
    Clock::time_point probe_started{};
    std::string probe_failure;  // a probed port that did not answer, and why
    std::string why;            // of a dead node
  };
  void check();
  void probe(const NodeStatus& node, Verdict& v);
  void probe_answered(const std::string& node, const std::string& port, const Status& answer);
  // When a port was last heard of: heartbeat, registration, probe answer, or the end of a stall
  // of the master itself, whichever is latest.
  Clock::time_point heard(const dipc::PortRecord& rec) const;
  std::chrono::milliseconds silence(const NodeStatus& node, Clock::time_point now) const;
  double phi(const NodeStatus& node, Clock::time_point now) const;

  dipc::Port& port_;
  const dipc::NameService& names_;
  MembershipPolicy policy_;
  std::map<std::string, PortTrack> ports_;
  std::map<std::string, Verdict> verdicts_;
  Clock::time_point last_check_{}, stall_end_{};
  dipc::EventLoop::TimerId timer_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // probes answered after us find it gone
  std::function<void(const std::string&, const std::string&)> on_dead_;
};

}  // namespace ferry::pm
