// A libfabric reliable-datagram (FI_EP_RDM) endpoint: messages to any peer by address, with
// the provider chosen by configuration (tcp;ofi_rxm here, verbs;ofi_rxm or efa on RDMA
// hardware). The only place in Ferry that includes <rdma/fabric.h>. Internal to dipc/.
//
// Messages of any size up to max_message travel as fragments that each fit the provider's
// eager limit (fragment.h says why), rebuilt by the receiving endpoint.
//
// Progress is manual (tcp;ofi_rxm requires it): the owner calls progress() from its event
// loop, watches wait_fd(), and sleeps no longer than sleep_limit() allows. The wait fd does not
// signal a new peer's connection request, so an idle endpoint still polls every kIdlePoll: a
// first message to an idle daemon takes up to that long, later ones wake it at once.
// Not thread-safe: one thread (the event loop's) uses an endpoint.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "dipc/status.h"

namespace ferry::dipc {

struct FabricOptions {
  std::string provider = "tcp;ofi_rxm";
  std::string host;            // address to bind, e.g. "127.0.0.2"
  std::string service = "0";   // port; "0" lets the kernel choose
  size_t recv_buffers = 32;  // messages arriving at once; 4 fragment buffers (16 KiB) each
  // Transmit and receive queue depth. rxm backs every receive entry with a 16 KiB bounce
  // buffer, so its default (4096) costs a daemon 64 MiB; 256 is plenty for request/reply.
  // Process-wide: the first endpoint opened sets rxm's shared receive queue size.
  size_t queue_depth = 256;
  size_t max_message = 256 * 1024;  // larger messages are refused by the receiver
  // Messages received per progress() call at most: 1 for an endpoint whose messages are big
  // (a pager's bulk port), so that another endpoint on the same loop (its fault port) is polled
  // between any two of them.
  int completions_per_turn = 8;
};

class FabricEndpoint {
 public:
  using Clock = std::chrono::steady_clock;
  using PeerId = uint64_t;
  using ReceiveHandler = std::function<void(std::span<const std::byte>)>;
  using SendDone = std::function<void(Status)>;
  static constexpr std::chrono::milliseconds kIdlePoll{5};

  // Opens and enables an endpoint bound to options.host:service. Errors name the provider
  // and the address.
  static Result<std::unique_ptr<FabricEndpoint>> open(const FabricOptions& options);
  ~FabricEndpoint();

  // This endpoint's address: opaque provider bytes for peers, and "host:port" for people.
  const std::string& address() const { return address_; }
  const std::string& address_text() const { return address_text_; }
  const std::string& provider() const { return provider_; }

  // A peer by the opaque address it published, or by "host:port". Cached for the endpoint's
  // life: a PeerId is our handle, valid however often the peer dies, restarts or refuses a
  // connection (behind it the provider's address entry is renewed, see reconnect()).
  Result<PeerId> peer(const std::string& address);
  Result<PeerId> peer_by_text(const std::string& host_port);
  // Renders an opaque address as "host:port" (or hex when it is not an IP address).
  static std::string describe(const std::string& address);

  void on_receive(ReceiveHandler handler) { on_receive_ = std::move(handler); }

  // Sends a message. Never blocks: when the provider cannot take it now (for instance while
  // the connection is being made, or forever when nobody listens at the address) it stays
  // queued, in order, and is retried during progress() until `deadline`, when `done` gets
  // kTimeout (it never left whole: it may be sent elsewhere); a send that failed gets
  // kUnreachable. `done` runs on the loop thread once the send completed or failed.
  void send(PeerId peer, std::vector<std::byte> bytes, Clock::time_point deadline, SendDone done);

  // Handles completions and retries queued sends; returns how many events it handled.
  int progress();
  int wait_fd() const { return wait_fd_; }
  std::chrono::milliseconds sleep_limit();
  // Messages or fragments that arrived truncated, malformed, over max_message, or with a receive
  // error, and messages abandoned incomplete (their sender died mid-message).
  uint64_t receive_errors() const { return receive_errors_; }

 private:
  int completions_per_turn_ = 8;
  struct Impl;
  struct SendOp;
  struct Outgoing;
  void finish(Outgoing& message, Status status);
  explicit FabricEndpoint(std::unique_ptr<Impl> impl);
  enum class Posted { kYes, kAgain, kFailed };  // kFailed: `done` was told why
  Posted post_send(SendOp* op);
  void complete_send(SendOp* op, Status status);
  int retry_queued();
  // A peer whose connection broke (an error completion), or that has not taken a send for
  // kReconnectAfter (rxm can stay stuck after a refused connection), gets a fresh provider
  // address entry, and with it a fresh connection. Sends not yet posted name the peer by our
  // handle, so none is left naming the removed entry.
  void reconnect(PeerId peer);
  static constexpr std::chrono::milliseconds kReconnectAfter{1000};

  struct Peer {
    std::string address;
    uint64_t fi_addr = 0;  // the provider's handle (fi_addr_t)
    bool renew = false;    // a fresh entry is due (at the next send)
    uint64_t generation = 0;  // how many entries it has had
    Clock::time_point stuck_since{};  // since when the head of its queue gets EAGAIN
  };

  std::unique_ptr<Impl> impl_;
  std::string address_, address_text_, provider_;
  int wait_fd_ = -1;
  ReceiveHandler on_receive_;
  std::unordered_map<std::string, PeerId> peers_;
  std::vector<Peer> peer_table_;  // PeerId -> Peer
  std::map<PeerId, std::deque<std::unique_ptr<SendOp>>> queued_;
  uint64_t receive_errors_ = 0;
};

}  // namespace ferry::dipc
