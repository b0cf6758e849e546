// The replay guard: a port accepts each authenticated frame once. Internal to dipc/.
//
// A frame's tag carries its nonce, which is the sending key object's 64-bit random session
// (a port's key; renewed every 2^32 frames) and a 32-bit counter that grows by one per frame
// that port signs. Frames are signed as they are handed to the fabric, and a port's frames to
// one peer keep their order, so from any one session a receiver sees counters that only grow,
// with gaps (frames to other ports). The guard keeps, per session, the highest counter seen and
// which of the `window` counters below it were seen: a counter seen before, or below the
// window, is refused. The frame's send time (its header, authenticated) bounds what a session
// the guard does not know may bring: a frame older than max_age, or sent more than 5 s before
// this port started, is refused, so a frame captured before the receiver restarted (when it
// forgot every session) cannot be replayed after (one from its last 5 s can, once). Sessions silent for longer than max_age are
// forgotten: their frames are too old by then.
//
// Pure logic: the caller passes the clock (milliseconds of CLOCK_REALTIME).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace ferry::dipc {

struct ReplayPolicy {
  uint32_t window = 1024;  // counters below the highest seen that may still come (out of order)
  // How old a frame may be, and how far apart the nodes' clocks may be (NTP keeps them within
  // milliseconds; this allows for a node whose clock is being corrected).
  std::chrono::milliseconds max_age{60000};
};

class ReplayGuard {
 public:
  ReplayGuard(ReplayPolicy policy, int64_t started_ms);

  // Admits a frame, or says why not: "" when admitted (and remembered), else the reason.
  std::string admit(uint64_t session, uint32_t counter, int64_t sent_ms, int64_t now_ms);
  // Forgets sessions silent for longer than max_age. Call now and then (admit does, every 1024).
  void prune(int64_t now_ms);
  size_t sessions() const { return sessions_.size(); }

 private:
  static constexpr uint32_t kMaxWindow = 4096;
  struct Session {
    uint32_t highest = 0;
    std::array<uint64_t, kMaxWindow / 64> seen{};  // bit (c % kMaxWindow): counter c was seen
    int64_t last_ms = 0;
  };
  static bool test(const Session& s, uint32_t c) { return s.seen[(c % kMaxWindow) / 64] >> (c % 64) & 1; }
  static void set(Session& s, uint32_t c) { s.seen[(c % kMaxWindow) / 64] |= uint64_t(1) << (c % 64); }
  static void clear(Session& s, uint32_t c) { s.seen[(c % kMaxWindow) / 64] &= ~(uint64_t(1) << (c % 64)); }

  ReplayPolicy policy_;
  int64_t started_ms_;
  std::unordered_map<uint64_t, Session> sessions_;
  uint64_t admitted_ = 0;
};

}  // namespace ferry::dipc
