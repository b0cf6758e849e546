#include "xmm/precopy.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "xmm/importer.h"

namespace ferry::xmm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = 4096;
constexpr uint32_t kStagePages = 256;  // 1 MiB per message
constexpr int kInFlight = 4;
constexpr uint64_t kLittleLeft = 256;  // pages: not worth another round
constexpr int kMaxErrorsInARow = 4;

uint64_t pages_in(const std::vector<DirtyTracker::Range>& v) {
  uint64_t n = 0;
  for (const auto& r : v) n += (r.end - r.start) / kPage;
  return n;
}

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

}  // namespace

Precopy::Precopy(uint64_t id, PrecopySpec spec, UniqueFd uffd, UniqueFd mem, dipc::Port& fault_port,
                 dipc::Port& bulk_port)
    : id_(id), spec_(std::move(spec)), uffd_(std::move(uffd)), mem_(std::move(mem)), port_(fault_port), bulk_(bulk_port),
      ranges_(spec_.ranges) {
  std::sort(ranges_.begin(), ranges_.end(), [](const auto& a, const auto& b) { return a.start < b.start; });
  uint64_t total = 0;
  for (const auto& r : ranges_) {
    first_page_.push_back(total);
    total += (r.end - r.start) / kPage;
  }
  staged_.assign((total + 7) / 8, 0);
}

Precopy::~Precopy() {
  *alive_ = false;
  if (!ended()) cancel("the pager is stopping");
}

int64_t Precopy::index(uint64_t address) const {
  for (size_t i = 0; i < ranges_.size(); ++i)
    if (address >= ranges_[i].start && address < ranges_[i].end)
      return int64_t(first_page_[i] + (address - ranges_[i].start) / kPage);
  return -1;
}

void Precopy::mark(uint64_t start, uint64_t end, bool staged) {
  for (uint64_t a = start; a < end;) {
    int64_t k = index(a);
    if (k < 0) {
      a += kPage;
      continue;
    }
    // The rest of this range at once.
    const auto& rs = ranges_;
    size_t ri = 0;
    while (!(a >= rs[ri].start && a < rs[ri].end)) ++ri;
    uint64_t stop = std::min(end, rs[ri].end);
    for (uint64_t i = uint64_t(k); a < stop; ++i, a += kPage) {
      bool was = (staged_[i / 8] >> (i % 8)) & 1;
      if (was == staged) continue;
      if (staged) {
        staged_[i / 8] |= uint8_t(1u << (i % 8));
        ++staged_pages_;
      } else {
        staged_[i / 8] &= uint8_t(~(1u << (i % 8)));
        --staged_pages_;
      }
    }
  }
}

void Precopy::open() {
  if (ended()) return;
  auto tracker = DirtyTracker::start(spec_.pid, std::move(uffd_), ranges_);
  if (!tracker) return fail(tracker.error().message);
  tracker_ = std::move(tracker).value();
  uint64_t bytes = 0;
  auto present = tracker_->present();
  if (present) bytes = pages_in(present.value()) * kPage;
  auto alive = alive_;
  port_.call<wire::OpenStage, wire::StageOpened>(
      spec_.destination,
      [&](wire::OpenStage::Builder b) {
        const auto& rs = ranges_;
        auto out = b.initRanges(uint32_t(rs.size()));
        for (size_t i = 0; i < rs.size(); ++i) {
          out[uint32_t(i)].setStart(rs[i].start);
          out[uint32_t(i)].setEnd(rs[i].end);
        }
        b.setLabel(spec_.label);
        b.setBytes(bytes);
      },
      [this, alive](Result<dipc::Message<wire::StageOpened>> r) {
        if (!*alive || state_ != "opening") return;
        if (!r) return fail("the destination " + spec_.destination + " opened no stage: " + r.error().message);
        stage_.id = r.value().get().getStageId();
        auto t = r.value().get().getToken();
        stage_.token.assign(reinterpret_cast<const char*>(t.begin()), t.size());
        spdlog::info("{}: precopy {} of {}: stage {} open at {}; {} rounds at most", port_.name(), id_, spec_.label,
                     stage_.id, spec_.destination, spec_.rounds);
        next_round();
      });
}

void Precopy::next_round() {
  if (ended()) return;
  ++round_;
  Result<std::vector<DirtyTracker::Range>> set = round_ == 1 ? tracker_->present() : tracker_->take_written();
  if (!set) {
    if (::kill(spec_.pid, 0) != 0) return fail("the process exited");
    return fail(set.error().message);
  }
  uint64_t pages = pages_in(set.value());
  if (round_ > 1) {
    for (const auto& r : set.value()) mark(r.start, r.end, false);  // their staged copies are stale
    previous_dirty_ = last_dirty_;
    last_dirty_ = pages;
    bool shrinking = round_ == 2 || pages * 10 < previous_dirty_ * 9;
    if (round_ > spec_.rounds || pages < kLittleLeft || !shrinking) {
      state_ = "converged";
      last_change_ = Clock::now();
      spdlog::info("{}: precopy {} of {} converged after {} rounds in {:.0f} ms: {} pages sent, {} staged, {} written "
                   "again since ({})", port_.name(), id_, spec_.label, rounds_sent_, ms_since(started_), pages_sent_,
                   staged_pages_, pages,
                   round_ > spec_.rounds ? "rounds done" : pages < kLittleLeft ? "little left" : "not shrinking");
      return;
    }
  }
  state_ = "copying";
  last_change_ = Clock::now();
  rounds_sent_ = round_;
  todo_ = std::move(set).value();
  todo_at_ = 0;
  todo_offset_ = 0;
  round_pages_ = pages;
  spdlog::info("{}: precopy {} of {}: round {} sends {} pages", port_.name(), id_, spec_.label, round_, pages);
  send_more();
  if (in_flight_ == 0 && !ended()) next_round();  // nothing to send in this round
}

void Precopy::send_more() {
  while (!ended() && state_ == "copying" && in_flight_ < kInFlight && todo_at_ < todo_.size()) {
    const auto& r = todo_[todo_at_];
    uint64_t address = r.start + todo_offset_;
    uint32_t pages = uint32_t(std::min<uint64_t>(kStagePages, (r.end - address) / kPage));
    todo_offset_ += uint64_t(pages) * kPage;
    if (r.start + todo_offset_ >= r.end) ++todo_at_, todo_offset_ = 0;
    bool readable = true;
    uint32_t round = round_;
    auto alive = alive_;
    bulk_.call<wire::StagePages, dipc::wire::Empty>(
        Importer::bulk_name(spec_.destination),
        [&](wire::StagePages::Builder b) {
          b.setStageId(stage_.id);
          b.initToken(uint32_t(stage_.token.size()));
          std::memcpy(b.getToken().begin(), stage_.token.data(), stage_.token.size());
          b.setRound(round);
          b.setAddress(address);
          b.setPages(pages);
          auto data = b.initData(pages * uint32_t(kPage));
          iovec local{data.begin(), data.size()}, remote{reinterpret_cast<void*>(address), data.size()};
          ssize_t n = ::process_vm_readv(spec_.pid, &local, 1, &remote, 1, 0);
          if (n != ssize_t(data.size())) {
            readable = false;  // unmapped meanwhile: the stage is told nothing wrong
            b.setPages(0);
          }
        },
        [this, alive, address, pages, round](Result<dipc::Message<dipc::wire::Empty>> reply) {
          if (*alive) sent(address, pages, round, std::move(reply));
        });
    ++in_flight_;
    if (!readable && ::kill(spec_.pid, 0) != 0) return fail("the process exited");
    pages_sent_ += readable ? pages : 0;
    bytes_sent_ += readable ? uint64_t(pages) * kPage : 0;
  }
}

void Precopy::sent(uint64_t address, uint32_t pages, uint32_t round, Result<dipc::Message<dipc::wire::Empty>> reply) {
  --in_flight_;
  if (state_ != "copying" || round != round_) return;  // finished, failed or cancelled meanwhile
  if (reply) {
    errors_in_a_row_ = 0;
    mark(address, address + uint64_t(pages) * kPage, true);
  } else if (reply.error().code == ErrorCode::kUnauthorized || ++errors_in_a_row_ > kMaxErrorsInARow) {
    return fail("the destination " + spec_.destination + " did not take staged pages: " + reply.error().message);
  } else if (reply.error().code != ErrorCode::kInvalid) {
    spdlog::warn("{}: precopy {} of {}: pages at {:#x} (+{}) not staged: {}; they will follow lazily", port_.name(), id_,
                 spec_.label, address, pages, reply.error().message);
  }
  send_more();
  if (in_flight_ == 0 && todo_at_ >= todo_.size()) next_round();
}

Status Precopy::finish() {
  if (state_.rfind("failed", 0) == 0 || state_ == "cancelled")
    return make_error(ErrorCode::kRefused, "precopy of " + spec_.label + " " + state_);
  if (state_ == "finished") return Status::Ok();
  if (!tracker_) return make_error(ErrorCode::kRefused, "precopy of " + spec_.label + " is not tracking writes yet");
  state_ = "finished";  // no more rounds; replies still in flight no longer count
  last_change_ = Clock::now();
  return Status::Ok();
}

Result<bool> Precopy::settle_step(uint64_t max_pages) {
  if (state_ != "finished" || settled_) return true;
  if (!settle_walk_.started()) {
    settle_started_ = Clock::now();
    settle_before_ = staged_pages_;
  }
  for (uint64_t done = 0; !settle_walk_.done(ranges_) && done < max_pages;) {
    auto slice = settle_walk_.next(ranges_, max_pages - done);
    auto last = tracker_->untracked_or_written(slice.from, slice.to);
    if (!last) {
      // Nothing staged can be trusted: every page comes from the source.
      std::fill(staged_.begin(), staged_.end(), 0);
      dirty_at_finish_ = settle_before_;
      staged_pages_ = 0;
      settled_ = true;
      return make_error(ErrorCode::kUnavailable, "precopy of " + spec_.label + ": " + last.error().message);
    }
    for (const auto& x : last.value()) mark(x.start, x.end, false);
    done += slice.pages();
  }
  if (!settle_walk_.done(ranges_)) return false;
  settled_ = true;
  dirty_at_finish_ = settle_before_ - staged_pages_;
  spdlog::info("{}: precopy {} of {} finished after {} rounds, {:.0f} ms: {} pages staged and clean, {} written since "
               "their copy (they follow lazily); last look {:.1f} ms", port_.name(), id_, spec_.label, rounds_sent_,
               ms_since(started_), staged_pages_, dirty_at_finish_, ms_since(settle_started_));
  return true;
}

std::unique_ptr<DirtyTracker> Precopy::release_tracker() { return std::move(tracker_); }

uint64_t Precopy::clean_bits(uint64_t start, uint64_t end, std::vector<uint8_t>& bits, uint64_t first_bit) const {
  uint64_t n = 0;
  for (size_t ri = 0; ri < ranges_.size(); ++ri) {
    const auto& r = ranges_[ri];
    uint64_t from = std::max(start, r.start), to = std::min(end, r.end);
    for (uint64_t a = from; a < to; a += kPage) {
      uint64_t i = first_page_[ri] + (a - r.start) / kPage;
      if (!((staged_[i / 8] >> (i % 8)) & 1)) continue;
      uint64_t b = first_bit + (a - start) / kPage;
      bits[b / 8] |= uint8_t(1u << (b % 8));
      ++n;
    }
  }
  return n;
}

void Precopy::drop_stage(const std::string& reason) {
  if (stage_.id == 0) return;
  port_.call<wire::DropStage, dipc::wire::Empty>(
      spec_.destination,
      [&](wire::DropStage::Builder b) {
        b.setStageId(stage_.id);
        b.initToken(uint32_t(stage_.token.size()));
        std::memcpy(b.getToken().begin(), stage_.token.data(), stage_.token.size());
        b.setReason(reason);
      },
      [](Result<dipc::Message<dipc::wire::Empty>>) {});
  stage_.id = 0;
}

void Precopy::fail(const std::string& why) {
  if (ended()) return;
  state_ = "failed: " + why;
  last_change_ = Clock::now();
  tracker_.reset();
  spdlog::warn("{}: precopy {} of {} {}", port_.name(), id_, spec_.label, state_);
  drop_stage(why);
}

void Precopy::cancel(const std::string& reason) {
  if (state_ != "finished" && ended()) return;
  state_ = "cancelled";
  last_change_ = Clock::now();
  tracker_.reset();
  spdlog::info("{}: precopy {} of {} cancelled: {}", port_.name(), id_, spec_.label, reason);
  drop_stage(reason);
}

void Precopy::status(wire::PrecopyStatus::Builder out) const {
  out.setState(state_);
  out.setRound(rounds_sent_);
  out.setPagesSent(pages_sent_);
  out.setBytesSent(bytes_sent_);
  out.setLastDirtyPages(last_dirty_);
  out.setStagedPages(staged_pages_);
  out.setDirtyAtFinish(dirty_at_finish_);
  out.setElapsedMs(ms_since(started_));
  out.setStageId(stage_.id);
  out.initStageToken(uint32_t(stage_.token.size()));
  std::memcpy(out.getStageToken().begin(), stage_.token.data(), stage_.token.size());
  out.setLabel(spec_.label);
}

}  // namespace ferry::xmm
