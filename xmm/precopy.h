// Precopy: the source side of a hybrid migration. While the process still runs, its memory is
// copied to a stage on the destination's pager (xmm/stage.h), round after round: the first
// round sends every page with data, each later one the pages written meanwhile
// (xmm/dirty_tracker.h). When the rounds are done, or little is left, or a round did not shrink
// what was left, the precopy has converged: the agent freezes the process, finish() takes a last
// look at what it wrote, and the migration proceeds as a lazy one whose memory object marks the
// pages the stage holds as they are now (ObjectMap.staged). Those are installed at the
// destination from the stage; only the rest crosses the network after the freeze.
//
// Contract:
// - open() starts tracking writes, asks the destination pager for a stage (refused there when
//   memory is short) and starts the rounds; errors end the precopy "failed: <why>".
// - A page counts as staged only once the stage acknowledged its latest copy; a message lost or
//   refused leaves its pages to follow lazily (never a wrong page: nothing unacknowledged and
//   nothing written since its copy is ever marked clean).
// - A failure (the destination unreachable, the process gone) ends the precopy "failed: <why>";
//   the process is untouched and the agent goes on without migrating it.
// - cancel() and destruction stop tracking (the process runs on unaffected) and drop the stage
//   (unless it finished: then the migration's import may hold the stage, and the pager forgets
//   the precopy when the agent says how the migration ended).
// - Loop thread only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dipc/port.h"
#include "dipc/unique_fd.h"
#include "xmm/dirty_tracker.h"
#include "xmm/range_walk.h"
#include "xmm/xmm.capnp.h"

namespace ferry::xmm {

struct PrecopySpec {
  pid_t pid = 0;
  std::vector<DirtyTracker::Range> ranges;
  std::string destination;  // "pager@n2"
  uint32_t rounds = 4;
  std::string label;
};

struct StageCapability {
  uint64_t id = 0;
  std::string token;
};

class Precopy {
 public:
  // `fault_port` and `bulk_port` are this pager's; `uffd` a userfaultfd of the process's own,
  // `mem` its /proc/PID/mem.
  Precopy(uint64_t id, PrecopySpec spec, UniqueFd uffd, UniqueFd mem, dipc::Port& fault_port, dipc::Port& bulk_port);
  ~Precopy();
  Precopy(const Precopy&) = delete;
  Precopy& operator=(const Precopy&) = delete;

  void open();
  // The process is frozen: no more rounds. kRefused if the precopy failed. O(1): the freeze
  // does not wait for the page-table walks of settle().
  Status finish();
  // After finish(), with the process still frozen (or a shell that frees only what its importer
  // acknowledged): the pages written since the last round, or no longer tracked, stop counting
  // as staged. Called by the export's presence walk, off the migration's downtime, in steps of
  // at most `max_pages` (the pager serves faults between them); true once done. An error leaves
  // nothing staged.
  Result<bool> settle_step(uint64_t max_pages);
  bool settled() const { return settled_; }
  // The write-tracking, for whoever ends it (unregistering walks the page tables: for a shell
  // about to die, better done by its death).
  std::unique_ptr<DirtyTracker> release_tracker();
  void cancel(const std::string& reason);

  void status(wire::PrecopyStatus::Builder out) const;
  const std::string& state() const { return state_; }
  const std::string& label() const { return spec_.label; }
  bool ended() const { return state_ == "finished" || state_.rfind("failed", 0) == 0 || state_ == "cancelled"; }
  std::chrono::steady_clock::time_point last_change() const { return last_change_; }

  // After settle(): sets bit `first_bit + k` of `bits` for each page k of [start, end) that the
  // stage holds as it is now; returns how many.
  uint64_t clean_bits(uint64_t start, uint64_t end, std::vector<uint8_t>& bits, uint64_t first_bit) const;

 private:
  void next_round();
  void send_more();
  void sent(uint64_t address, uint32_t pages, uint32_t round, Result<dipc::Message<dipc::wire::Empty>> reply);
  void fail(const std::string& why);
  void drop_stage(const std::string& reason);
  int64_t index(uint64_t address) const;
  void mark(uint64_t start, uint64_t end, bool staged);

  uint64_t id_;
  PrecopySpec spec_;
  UniqueFd uffd_;  // until open() hands it to the tracker
  std::unique_ptr<DirtyTracker> tracker_;
  UniqueFd mem_;
  dipc::Port& port_;
  dipc::Port& bulk_;
  std::vector<DirtyTracker::Range> ranges_;  // tracked, in address order
  StageCapability stage_;
  std::string state_ = "opening";
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now(), last_change_ = started_;
  std::vector<uint64_t> first_page_;  // index of each tracked range's first page
  std::vector<uint8_t> staged_;       // bit per tracked page: the stage holds its latest copy
  // The round being sent: what is left of its set, and replies outstanding.
  uint32_t round_ = 0, rounds_sent_ = 0;
  bool settled_ = false;
  RangeWalk settle_walk_;  // where the last look is
  uint64_t settle_before_ = 0;
  std::chrono::steady_clock::time_point settle_started_;
  std::vector<DirtyTracker::Range> todo_;
  size_t todo_at_ = 0;
  uint64_t todo_offset_ = 0;
  int in_flight_ = 0, errors_in_a_row_ = 0;
  uint64_t pages_sent_ = 0, bytes_sent_ = 0, round_pages_ = 0, last_dirty_ = 0, previous_dirty_ = 0;
  uint64_t staged_pages_ = 0, dirty_at_finish_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for replies that outlive us
};

}  // namespace ferry::xmm
