// The name service: which port is where. The master serves it on its own Port; every other
// port registers there (RegisterPort), heartbeats (Heartbeat), resolves names (Resolve) and
// unregisters when it stops cleanly (UnregisterPort). Part of dipc's public interface, used
// by the master only.
//
// The table also records when each port was last heard from; pm/ derives node liveness from
// it. Thread-safety: loop thread only, like the Port it serves on.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include "dipc/port.h"

namespace ferry::dipc {

struct PortRecord {
  std::string name;
  std::string node;
  std::string address;       // opaque fabric address
  std::string address_text;  // "127.0.0.3:40123"
  uint32_t pid = 0;
  std::chrono::steady_clock::time_point registered_at;
  std::chrono::steady_clock::time_point last_heard;
};

class NameService {
 public:
  // Serves the name service on `port` (which must outlive this) and makes `port` resolve
  // names from this table. Heartbeats are expected every `heartbeat`.
  NameService(Port& port, std::chrono::milliseconds heartbeat);

  // `why_down` returns a reason when a port's node is considered dead; Resolve then fails at
  // once with kUnreachable and that reason, instead of handing out an address nobody answers.
  void set_liveness(std::function<std::optional<std::string>(const PortRecord&)> why_down) {
    why_down_ = std::move(why_down);
  }

  // Called on the loop thread each time a port registers or heartbeats (after last_heard is set).
  void on_heard(std::function<void(const PortRecord&)> cb) { heard_ = std::move(cb); }

  std::vector<PortRecord> ports() const;
  const PortRecord* find(const std::string& name) const;
  std::chrono::milliseconds heartbeat() const { return heartbeat_; }

 private:
  Port& port_;
  std::chrono::milliseconds heartbeat_;
  std::map<std::string, PortRecord> table_;
  std::function<std::optional<std::string>(const PortRecord&)> why_down_;
  std::function<void(const PortRecord&)> heard_;
};

}  // namespace ferry::dipc
