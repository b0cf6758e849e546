// Resident memory over time (memory_sampler.h).
#include "perf/memory_sampler.h"

#include <numeric>

#include "perf/bench_process.h"

namespace ferry::bench {

long MemorySampler::Sample::total() const { return std::accumulate(kib.begin(), kib.end(), 0L); }

MemorySampler::MemorySampler(Groups groups, std::chrono::milliseconds period)
    : groups_(std::move(groups)) {
  thread_ = std::thread([this, period] {
    std::vector<std::vector<pid_t>> groups;
    auto asked = Clock::now() - std::chrono::seconds(1);
    auto one = [&] {
      if (Clock::now() - asked >= std::chrono::milliseconds(100)) {
        groups = groups_();
        asked = Clock::now();
      }
      Sample s;
      s.t_ms = mono_ms();
      for (const auto& g : groups) {
        long sum = 0;
        for (pid_t p : g) sum += rss_kib(p);
        s.kib.push_back(sum);
      }
      samples_.push_back(std::move(s));
    };
    while (!quit_) {
      one();
      std::this_thread::sleep_for(period);
    }
    one();
  });
}

MemorySampler::Groups MemorySampler::for_cluster(const Cluster& cluster, const std::string& source,
                                                 const std::string& destination) {
  const pid_t agent_s = cluster.agent_pid(source), agent_d = cluster.agent_pid(destination);
  const pid_t pager_s = cluster.pager_pid(source), pager_d = cluster.pager_pid(destination);
  return [=] {
    std::vector<pid_t> jobs_s = children_of({agent_s}), jobs_d = children_of({agent_d});
    return std::vector<std::vector<pid_t>>{jobs_s, {pager_s}, jobs_d, {pager_d}};
  };
}

MemorySampler::~MemorySampler() { stop(); }

const std::vector<MemorySampler::Sample>& MemorySampler::stop() {
  quit_ = true;
  if (thread_.joinable()) thread_.join();
  return samples_;
}

MemorySampler::Sample MemorySampler::peak() const {
  Sample best;
  for (const auto& s : samples_)
    if (best.kib.empty() || s.total() > best.total()) best = s;
  return best;
}

}  // namespace ferry::bench
