#include "dipc/replay_guard.h"

#include <algorithm>

namespace ferry::dipc {

ReplayGuard::ReplayGuard(ReplayPolicy policy, int64_t started_ms) : policy_(policy), started_ms_(started_ms) {
  policy_.window = std::clamp<uint32_t>(policy_.window, 1, kMaxWindow);
}

std::string ReplayGuard::admit(uint64_t session, uint32_t counter, int64_t sent_ms, int64_t now_ms) {
  const int64_t max_age = policy_.max_age.count();
  if (sent_ms < now_ms - max_age)
    return "frame sent " + std::to_string(now_ms - sent_ms) + " ms ago, more than the " + std::to_string(max_age) +
           " ms a frame may take: a replay, or the nodes' clocks disagree";
  if (sent_ms > now_ms + max_age)
    return "frame stamped " + std::to_string(sent_ms - now_ms) + " ms in the future: the nodes' clocks disagree";
  if (++admitted_ % 1024 == 0) prune(now_ms);
  auto it = sessions_.find(session);
  if (it == sessions_.end()) {
    constexpr int64_t kStartSlack = 5000;  // clocks a little apart, a frame in flight at our start
    if (sent_ms < started_ms_ - kStartSlack)
      return "frame sent " + std::to_string(started_ms_ - sent_ms) +
             " ms before this port started, from a sender unknown to it: a replay";
    Session s;
    s.highest = counter;
    set(s, counter);
    s.last_ms = now_ms;
    sessions_.emplace(session, s);
    return "";
  }
  Session& s = it->second;
  if (counter > s.highest) {
    if (counter - s.highest >= kMaxWindow) {
      s.seen.fill(0);
    } else {
      for (uint32_t c = s.highest + 1; c != counter; ++c) clear(s, c);
    }
    clear(s, counter);
    s.highest = counter;
  } else if (s.highest - counter >= policy_.window) {
    return "frame " + std::to_string(counter) + " of its sender came after frame " + std::to_string(s.highest) +
           ", beyond the window of " + std::to_string(policy_.window) + ": a replay, or reordered too far";
  } else if (test(s, counter)) {
    return "frame " + std::to_string(counter) + " of its sender was already received: a replay";
  }
  set(s, counter);
  s.last_ms = now_ms;
  return "";
}

void ReplayGuard::prune(int64_t now_ms) {
  for (auto it = sessions_.begin(); it != sessions_.end();)
    it = now_ms - it->second.last_ms > policy_.max_age.count() ? sessions_.erase(it) : std::next(it);
}

}  // namespace ferry::dipc
