#include "pm/membership.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

namespace ferry::pm {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

std::vector<NodeStatus> node_states(const std::vector<dipc::PortRecord>& ports, const MembershipPolicy& policy,
                                    std::chrono::steady_clock::time_point now) {
  std::map<std::string, NodeStatus> nodes;
  for (const auto& p : ports) {
    if (p.node.empty()) continue;
    auto& n = nodes[p.node];
    n.name = p.node;
    auto age = std::max(milliseconds(0), duration_cast<milliseconds>(now - p.last_heard));
    n.heartbeat_age = std::max(n.heartbeat_age, age);
    if (p.name.rfind("agent@", 0) == 0 || n.address.empty()) n.address = p.address_text;
    n.ports.push_back(p);
  }
  std::vector<NodeStatus> out;
  for (auto& [name, n] : nodes) {
    n.state = n.heartbeat_age > policy.suspect_after ? wire::NodeState::SUSPECT : wire::NodeState::ALIVE;
    out.push_back(std::move(n));
  }
  // n2 before n10: by length, then by name.
  std::sort(out.begin(), out.end(), [](const NodeStatus& a, const NodeStatus& b) {
    return a.name.size() != b.name.size() ? a.name.size() < b.name.size() : a.name < b.name;
  });
  return out;
}

Membership::Membership(dipc::Port& port, dipc::NameService& names, MembershipPolicy policy)
    : port_(port), names_(names), policy_(policy) {
  names.on_heard([this](const dipc::PortRecord& rec) {
    auto it = ports_.try_emplace(rec.name, PortTrack{HeartbeatHistory(policy_.heartbeat), {}}).first;
    it->second.history.heard(rec.last_heard);
  });
  names.set_liveness([this](const dipc::PortRecord& rec) -> std::optional<std::string> {
    auto it = verdicts_.find(rec.node);
    if (it != verdicts_.end() && it->second.state == wire::NodeState::DEAD) return "node " + rec.node + " is dead (" + it->second.why + ")";
    return std::nullopt;
  });
  port_.serve<wire::ListNodes>([this](dipc::Request& req) {
    auto nodes = this->nodes();
    auto now = std::chrono::steady_clock::now();
    req.reply<wire::NodeList>([&](wire::NodeList::Builder b) {
      b.setHeartbeatMs(uint32_t(names_.heartbeat().count()));
      b.setSuspectMs(uint32_t(policy_.suspect_after.count()));
      b.setDeadMs(uint32_t(policy_.dead_after.count()));
      auto list = b.initNodes(uint32_t(nodes.size()));
      for (uint32_t i = 0; i < nodes.size(); ++i) {
        auto n = list[i];
        n.setName(nodes[i].name);
        n.setAddress(nodes[i].address);
        n.setState(nodes[i].state);
        n.setHeartbeatAgeMs(uint64_t(nodes[i].heartbeat_age.count()));
        auto ports = n.initPorts(uint32_t(nodes[i].ports.size()));
        for (uint32_t j = 0; j < nodes[i].ports.size(); ++j) {
          const auto& p = nodes[i].ports[j];
          ports[j].setName(p.name);
          ports[j].setAddress(p.address_text);
          ports[j].setPid(p.pid);
          ports[j].setHeartbeatAgeMs(uint64_t(std::max<int64_t>(0, duration_cast<milliseconds>(now - p.last_heard).count())));
        }
      }
    });
  });
  timer_ = port_.loop().every(names_.heartbeat(), [this] { check(); });
}

Membership::~Membership() { port_.loop().cancel(timer_); }

Membership::Clock::time_point Membership::heard(const dipc::PortRecord& rec) const {
  auto t = std::max(rec.last_heard, stall_end_);
  if (auto it = ports_.find(rec.name); it != ports_.end()) t = std::max(t, it->second.answered);
  return t;
}

milliseconds Membership::silence(const NodeStatus& node, Clock::time_point now) const {
  milliseconds longest{0};
  for (const auto& p : node.ports) longest = std::max(longest, duration_cast<milliseconds>(now - heard(p)));
  return longest;
}

double Membership::phi(const NodeStatus& node, Clock::time_point now) const {
  double worst = 0;
  for (const auto& p : node.ports) {
    auto it = ports_.find(p.name);
    if (it == ports_.end()) continue;
    worst = std::max(worst, it->second.history.phi(duration_cast<milliseconds>(now - heard(p))));
  }
  return worst;
}

std::vector<NodeStatus> Membership::nodes() const {
  auto now = Clock::now();
  auto nodes = node_states(names_.ports(), policy_, now);
  for (auto& n : nodes) {
    n.heartbeat_age = silence(n, now);
    auto it = verdicts_.find(n.name);
    if (it != verdicts_.end() && it->second.known)
      n.state = it->second.state;
    else
      n.state = n.heartbeat_age > policy_.suspect_after ? wire::NodeState::SUSPECT : wire::NodeState::ALIVE;
  }
  return nodes;
}

void Membership::check() {
  auto now = Clock::now();
  // This check runs every heartbeat period. Much later than that, the master itself was held up
  // (its loop busy, or the machine starved it): heartbeats that arrived meanwhile are not read
  // yet, so nobody's silence counts from before the stall's end.
  if (last_check_ != Clock::time_point{} && now - last_check_ > 3 * policy_.heartbeat) {
    stall_end_ = now;
    spdlog::warn("master: its membership check ran {} ms late: every node's silence counts from now",
                 duration_cast<milliseconds>(now - last_check_ - policy_.heartbeat).count());
  }
  last_check_ = now;
  for (const auto& n : node_states(names_.ports(), policy_, now)) {
    Verdict& v = verdicts_[n.name];
    auto quiet = silence(n, now);
    if (!v.known) {
      v.known = true;
      spdlog::info("node {} joined at {}", n.name, n.address);
    }
    if (v.state == wire::NodeState::DEAD) {
      // Back only when every port's own heartbeats are (not a stall of the master's own).
      milliseconds real{0};
      for (const auto& p : n.ports) real = std::max(real, duration_cast<milliseconds>(now - p.last_heard));
      if (real <= policy_.suspect_after) {  // every port heard again: it was cut off, or restarted
        v.state = wire::NodeState::ALIVE;
        spdlog::info("node {} dead -> alive: all its ports are heard again", n.name);
      }
      continue;
    }
    double p = phi(n, now);
    auto before = v.state;
    switch (judge(quiet, p, policy_)) {
      case Judgement::kAlive: v.state = wire::NodeState::ALIVE; break;
      case Judgement::kSuspect: v.state = wire::NodeState::SUSPECT; break;
      case Judgement::kConfirm:
        v.state = wire::NodeState::SUSPECT;
        if (v.probes == 0) {
          spdlog::info("node {}: no heartbeat for {} ms (phi {:.1f}): probing its silent ports before any verdict", n.name,
                       quiet.count(), std::isinf(p) ? 99.9 : p);
          probe(n, v);
        }
        break;
    }
    if (before != v.state)
      spdlog::info("node {} {} -> {} (last heartbeat {} ms ago)", n.name, node_state_name(before), node_state_name(v.state),
                   quiet.count());
  }
}

void Membership::probe(const NodeStatus& node, Verdict& v) {
  auto now = Clock::now();
  v.probe_started = now;
  v.probe_failure.clear();
  for (const auto& p : node.ports) {
    if (now - heard(p) <= policy_.suspect_after) continue;
    ++v.probes;
    port_.call<dipc::wire::Ping, dipc::wire::Pong>(
        p.name, [](dipc::wire::Ping::Builder) {},
        [this, alive = std::weak_ptr<bool>(alive_), node = node.name, name = p.name](Result<dipc::Message<dipc::wire::Pong>> r) {
          if (alive.expired()) return;
          probe_answered(node, name, r ? Status::Ok() : Status(r.error()));
        },
        dipc::CallOptions{policy_.probe_timeout, std::nullopt});
  }
}

void Membership::probe_answered(const std::string& node, const std::string& port, const Status& answer) {
  auto vit = verdicts_.find(node);
  if (vit == verdicts_.end()) return;
  Verdict& v = vit->second;
  auto now = Clock::now();
  const dipc::PortRecord* rec = names_.find(port);
  if (answer) {
    ports_[port].answered = now;
    spdlog::info("node {}: {} answered the probe: slow, not dead", node, port);
  } else if (rec && heard(*rec) > v.probe_started) {
    // Heard from meanwhile (a heartbeat, or the master's own stall ended): not a failure.
  } else if (v.probe_failure.empty()) {
    v.probe_failure = port + " did not answer a probe: " + answer.error().message;
  }
  if (--v.probes > 0) return;
  if (v.probe_failure.empty() || v.state == wire::NodeState::DEAD) return;
  // Every probe is back and one failed: dead, unless the node was heard from since.
  NodeStatus status;
  for (const auto& n : node_states(names_.ports(), policy_, now))
    if (n.name == node) status = n;
  auto quiet = silence(status, now);
  if (status.name.empty() || quiet <= policy_.suspect_after) return;
  v.state = wire::NodeState::DEAD;
  v.why = "no heartbeat for " + std::to_string(quiet.count()) + " ms; " + v.probe_failure;
  spdlog::info("node {} suspect -> dead: {}", node, v.why);
  if (on_dead_) on_dead_(node, v.why);
}

}  // namespace ferry::pm
