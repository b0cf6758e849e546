// A job's progress lines, read (job_timeline.h).
#include "perf/job_timeline.h"

#include <algorithm>

namespace ferry::bench {

FreezeGap freeze_gap(const std::vector<ProgressPoint>& points, double freeze_ms, double from_ms,
                     double to_ms) {
  FreezeGap g;
  if (points.size() < 2) return g;
  if (!std::isnan(freeze_ms)) {
    auto after = std::upper_bound(points.begin(), points.end(), freeze_ms,
                                  [](double t, const ProgressPoint& p) { return t < p.t_ms; });
    if (after == points.begin() || after == points.end()) return g;
    g.found = true;
    g.last_before_ms = std::prev(after)->t_ms;
    g.first_after_ms = after->t_ms;
    return g;
  }
  for (size_t i = 1; i < points.size(); ++i) {
    const double a = points[i - 1].t_ms, b = points[i].t_ms;
    if (b < from_ms || a > to_ms) continue;
    if (!g.found || b - a > g.gap_ms()) {
      g.found = true;
      g.last_before_ms = a;
      g.first_after_ms = b;
    }
  }
  return g;
}

double count_at(const std::vector<ProgressPoint>& points, double t) {
  if (points.empty()) return 0;
  if (t <= points.front().t_ms) return double(points.front().count);
  if (t >= points.back().t_ms) return double(points.back().count);
  auto hi = std::lower_bound(points.begin(), points.end(), t,
                             [](const ProgressPoint& p, double v) { return p.t_ms < v; });
  auto lo = std::prev(hi);
  const double span = hi->t_ms - lo->t_ms;
  const double f = span > 0 ? (t - lo->t_ms) / span : 1;
  return double(lo->count) + f * (double(hi->count) - double(lo->count));
}

double rate(const std::vector<ProgressPoint>& points, double from_ms, double to_ms) {
  if (to_ms <= from_ms) return 0;
  return (count_at(points, to_ms) - count_at(points, from_ms)) / ((to_ms - from_ms) / 1000.0);
}

std::vector<Window> windows(const std::vector<ProgressPoint>& points, double origin_ms,
                            double from_ms, double to_ms, double width_ms) {
  std::vector<Window> out;
  if (points.empty()) return out;
  const double first = points.front().t_ms - origin_ms, last = points.back().t_ms - origin_ms;
  for (double t = from_ms; t + width_ms <= to_ms; t += width_ms) {
    if (t < first || t + width_ms > last) continue;
    out.push_back({t, rate(points, origin_ms + t, origin_ms + t + width_ms)});
  }
  return out;
}

double rate_before(const std::vector<ProgressPoint>& points, double freeze_ms, double span_ms) {
  auto w = windows(points, freeze_ms, -span_ms - 50, -50);
  if (w.empty()) return 0;
  std::vector<double> v;
  for (const auto& x : w) v.push_back(x.per_s);
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::optional<double> time_to_full_speed(const std::vector<ProgressPoint>& points, double resume_ms,
                                         double full_rate, double fraction, double width_ms) {
  if (points.empty() || full_rate <= 0) return std::nullopt;
  for (const auto& w : windows(points, resume_ms, 0, points.back().t_ms - resume_ms, width_ms))
    if (w.per_s >= fraction * full_rate) return w.start_ms + width_ms;
  return std::nullopt;
}

std::pair<double, int> stalls(const std::vector<ProgressPoint>& points, double from_ms,
                              double to_ms, double threshold_ms) {
  double sum = 0;
  int n = 0;
  for (size_t i = 1; i < points.size(); ++i) {
    const double a = points[i - 1].t_ms, b = points[i].t_ms;
    if (a < from_ms || b > to_ms || b - a <= threshold_ms) continue;
    sum += b - a;
    ++n;
  }
  return {sum, n};
}

}  // namespace ferry::bench
