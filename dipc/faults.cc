#include "dipc/faults.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

namespace ferry::dipc {

const char* fault_action_name(FaultAction a) {
  switch (a) {
    case FaultAction::kCrash: return "crash";
    case FaultAction::kDrop: return "drop";
    case FaultAction::kDelay: return "delay";
    case FaultAction::kDuplicate: return "duplicate";
  }
  return "?";
}

std::optional<FaultAction> parse_fault_action(const std::string& name) {
  for (auto a : {FaultAction::kCrash, FaultAction::kDrop, FaultAction::kDelay, FaultAction::kDuplicate})
    if (name == fault_action_name(a)) return a;
  return std::nullopt;
}

void FaultPlan::declare(FaultPoint point) {
  for (auto& p : points_)
    if (p.name == point.name && p.site == point.site && p.message_type == point.message_type && p.port == point.port)
      return;
  points_.push_back(std::move(point));
}

Status FaultPlan::set(FaultRule rule) {
  const FaultPoint* found = nullptr;
  for (const auto& p : points_)
    if (p.name == rule.point) found = &p;
  if (!found) {
    std::string known;
    for (const auto& p : points_) known += (known.empty() ? "" : ", ") + p.name;
    return make_error(ErrorCode::kNotFound, "no fault point '" + rule.point + "' here (points: " + known + ")");
  }
  if (found->site == FaultSite::kLocal && (rule.action == FaultAction::kDrop || rule.action == FaultAction::kDuplicate))
    return make_error(ErrorCode::kInvalid, "point " + rule.point + " is a step, not a message: only crash and delay apply");
  if (rule.action == FaultAction::kDelay && rule.delay.count() <= 0)
    return make_error(ErrorCode::kInvalid, "a delay needs a duration (--ms)");
  rules_[rule.point] = rule;
  spdlog::warn("fault armed: {} at {}{}{}", fault_action_name(rule.action), rule.point,
               rule.action == FaultAction::kDelay ? " for " + std::to_string(rule.delay.count()) + " ms" : "",
               rule.count == 0 ? ", every time" : ", " + std::to_string(rule.count) + " time(s)");
  return {};
}

void FaultPlan::clear(const std::string& point) {
  if (point.empty())
    rules_.clear();
  else
    rules_.erase(point);
}

std::vector<FaultRule> FaultPlan::rules() const {
  std::vector<FaultRule> out;
  for (const auto& [name, r] : rules_) out.push_back(r);
  return out;
}

std::optional<FaultRule> FaultPlan::take(const std::string& point) {
  auto it = rules_.find(point);
  if (it == rules_.end()) return std::nullopt;
  FaultRule r = it->second;
  if (it->second.count == 1)
    rules_.erase(it);
  else if (it->second.count > 1)
    --it->second.count;
  return r;
}

std::optional<FaultRule> FaultPlan::take(FaultSite site, uint64_t message_type, const std::string& port) {
  if (rules_.empty()) return std::nullopt;
  for (const auto& p : points_)
    if (p.site == site && p.message_type == message_type && (p.port.empty() || p.port == port) && rules_.count(p.name))
      return take(p.name);
  return std::nullopt;
}

void FaultPlan::crash(const std::string& who, const std::string& point) {
  spdlog::warn("{}: fault injected at {}: crashing now (SIGKILL)", who, point);
  spdlog::default_logger()->flush();
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);
}

}  // namespace ferry::dipc
