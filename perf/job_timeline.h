// Reading a job's progress lines (memory_job's `p T COUNT`): the gap the freeze made in its
// output, its rate over a span, its rate in 100 ms windows, and when it was back at full speed.
// Pure functions of the points, so they can be checked by hand against a log.
#pragma once

#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "perf/memory_job_run.h"

namespace ferry::bench {

struct FreezeGap {
  bool found = false;
  double last_before_ms = 0;  // the job's last line before it was frozen (mono)
  double first_after_ms = 0;  // its first line after it resumed: the resume, as it shows
  double gap_ms() const { return first_after_ms - last_before_ms; }
};

// The gap between consecutive lines that holds `freeze_ms`; when the freeze was not seen (NaN),
// the largest gap that overlaps [from_ms, to_ms] (the migrate call).
FreezeGap freeze_gap(const std::vector<ProgressPoint>& points, double freeze_ms, double from_ms,
                     double to_ms);

// Accesses done by `t_ms`, interpolated between lines (clamped to the first and last).
double count_at(const std::vector<ProgressPoint>& points, double t_ms);
// Accesses per second over [from_ms, to_ms).
double rate(const std::vector<ProgressPoint>& points, double from_ms, double to_ms);

struct Window {
  double start_ms = 0;  // relative to the origin given
  double per_s = 0;
};
// Windows of `width_ms` from `origin_ms + from_ms` to `origin_ms + to_ms` (clipped to the
// points), start times relative to `origin_ms`.
std::vector<Window> windows(const std::vector<ProgressPoint>& points, double origin_ms,
                            double from_ms, double to_ms, double width_ms = 100);

// The job's rate before the freeze: the median of its 100 ms windows over the `span_ms` that
// end 50 ms before `freeze_ms` (robust to another process taking the CPU for a moment).
double rate_before(const std::vector<ProgressPoint>& points, double freeze_ms,
                   double span_ms = 1000);

// From `resume_ms` to the end of the first 100 ms window (counted from the resume) whose rate
// is at least `fraction` of `full_rate`; nullopt if no such window is in the points.
std::optional<double> time_to_full_speed(const std::vector<ProgressPoint>& points, double resume_ms,
                                         double full_rate, double fraction = 0.9,
                                         double width_ms = 100);

// The sum of the gaps longer than `threshold_ms` in [from_ms, to_ms]: time the job spent
// stalled (waiting for pages), and their number.
std::pair<double, int> stalls(const std::vector<ProgressPoint>& points, double from_ms,
                              double to_ms, double threshold_ms = 2);

}  // namespace ferry::bench
