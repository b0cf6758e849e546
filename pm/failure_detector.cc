#include "pm/failure_detector.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ferry::pm {

void HeartbeatHistory::heard(Clock::time_point at) {
  if (any_ && at > last_) {
    intervals_ms_[next_] = std::chrono::duration<double, std::milli>(at - last_).count();
    next_ = (next_ + 1) % kWindow;
    count_ = std::min(count_ + 1, kWindow);
  }
  if (!any_ || at > last_) last_ = at;
  any_ = true;
}

double HeartbeatHistory::phi(std::chrono::milliseconds silence) const {
  double mean = expected_ms_, spread = 0;
  if (count_ >= 4) {
    double sum = 0;
    for (size_t i = 0; i < count_; ++i) sum += intervals_ms_[i];
    mean = sum / double(count_);
    double sq = 0;
    for (size_t i = 0; i < count_; ++i) sq += (intervals_ms_[i] - mean) * (intervals_ms_[i] - mean);
    spread = std::sqrt(sq / double(count_));
  }
  spread = std::max(spread, expected_ms_ / 4);
  // P(an interval longer than the silence) under a normal distribution of the intervals.
  double z = (double(silence.count()) - mean) / (spread * std::sqrt(2.0));
  double later = 0.5 * std::erfc(z);
  if (later <= std::numeric_limits<double>::min()) return std::numeric_limits<double>::infinity();
  return std::max(0.0, -std::log10(later));
}

Judgement judge(std::chrono::milliseconds silence, double phi, const DetectorPolicy& policy) {
  if (silence <= policy.suspect_after) return Judgement::kAlive;
  if (silence > policy.dead_limit || (silence > policy.dead_after && phi >= policy.phi_dead)) return Judgement::kConfirm;
  return Judgement::kSuspect;
}

}  // namespace ferry::pm
