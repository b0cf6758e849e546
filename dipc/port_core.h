// The state behind a Port, shared by port.cc (requests and replies), control_socket.cc (the
// CLI's unix socket) and port_services.cc (Ping, PingPort, registration). Internal to dipc/.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "dipc/cluster_key.h"
#include "dipc/port.h"

namespace ferry::dipc {

class PortCore : public std::enable_shared_from_this<PortCore> {
 public:
  PortCore(PortOptions options, EventLoop& loop) : options_(std::move(options)), loop_(loop) {}
  ~PortCore();

  Status start();  // opens the fabric endpoint and the control socket
  void close();

  // Requests and replies (port.cc).
  void call(const std::string& to, uint64_t type, std::string type_name, const Port::BodyFill& fill,
            Port::RawDone done, CallOptions options);
  void answer(const Request& request, uint64_t type,
              const std::function<void(capnp::AnyPointer::Builder)>& fill, const Error* error,
              const Inbound* relay);
  void on_frame(std::span<const std::byte> bytes, uint64_t local_conn);
  void send_reply_frame(std::vector<std::byte> frame, uint64_t local_conn, const std::string& reply_address,
                        const std::string& to);

  // Control socket (control_socket.cc).
  Status open_control_socket();
  void close_control_socket();
  bool send_local(uint64_t conn, const std::vector<std::byte>& frame);

  // Built-in services and registration (port_services.cc).
  void serve_builtins();
  void start_registration();
  void unregister(std::function<void()> then);

  PortOptions options_;
  EventLoop& loop_;
  std::unique_ptr<FabricEndpoint> fabric_;
  std::optional<ClusterKey> key_;
  std::optional<ReplayGuard> replay_;
  std::unordered_map<uint64_t, Port::Handler> handlers_;
  std::function<std::optional<std::string>(const std::string&)> resolver_;
  // Port name -> fabric address and when the master said so. Trusted for kResolveTtl: a port
  // that restarted elsewhere is found again within that time (a stale address may only time out).
  struct Resolved {
    std::string address;
    std::chrono::steady_clock::time_point at;
  };
  static constexpr std::chrono::milliseconds kResolveTtl{1000};
  std::unordered_map<std::string, Resolved> resolved_;
  PortCounters counters_;
  bool registered_ = false;
  bool master_reachable_ = true;
  bool closed_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  uint32_t uid_ = 0;
  std::optional<size_t> progress_id_;
  std::shared_ptr<FaultPlan> faults_ = std::make_shared<FaultPlan>();

 private:
  struct Pending {
    std::string to;
    std::string type_name;
    uint64_t type = 0;
    std::chrono::milliseconds timeout;
    std::chrono::steady_clock::time_point deadline;
    Port::RawDone done;
    EventLoop::TimerId timer = 0;
  };
  struct LocalConn {
    int fd = -1;
    uint32_t uid = 0;
    int pid = 0;
  };

  // Finds where the request's port is (cache, resolver, bootstrap, master) and sends it there.
  void route(uint64_t id, bool use_cache);
  // `cached`: the address came from the cache and may be stale (see port.cc).
  void send_request(uint64_t id, const std::string& address, bool cached);
  static constexpr std::chrono::milliseconds kStaleAfter{300};
  void finish(uint64_t id, Result<std::unique_ptr<Inbound>> result);
  void dispatch(std::unique_ptr<Inbound> in, uint64_t local_conn);
  // An armed fault for this inbound frame: applies it; true if the frame was consumed.
  bool inject_inbound(std::span<const std::byte> bytes, const Inbound& in, uint64_t local_conn);
  // A frame refused: counted as dropped, rejected (kUnauthorized) or replayed, and logged.
  void count_bad(const Error& e, uint64_t local_conn, bool replay = false);
  void accept_local();
  void read_local(uint64_t conn);
  void drop_local(uint64_t conn);

  std::unordered_map<uint64_t, Pending> pending_;
  std::unordered_map<uint64_t, std::vector<std::byte>> unsent_;  // request frames awaiting a name
  uint64_t next_request_id_ = 1;
  int listen_fd_ = -1;
  std::unordered_map<uint64_t, LocalConn> local_;
  uint64_t next_conn_ = 1;
  std::chrono::steady_clock::time_point last_drop_log_{};
  std::vector<std::byte> local_buffer_;
};

}  // namespace ferry::dipc
