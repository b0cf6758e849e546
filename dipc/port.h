// DIPC ports: Ferry's message layer, the user-space stand-in for the network-transparent
// ports of OSF/1 AD. This is the module's public header.
//
// A Port is a named endpoint of a daemon ("master", "agent@n2", "pager@n1"). It listens on a
// libfabric RDM endpoint for other daemons and, optionally, on a unix socket for the CLI. Every
// message is a Cap'n Proto struct inside an Envelope (dipc/dipc.capnp) with a request id:
//
//   - call<Req, Rep>(to, ...) sends a request and calls `done` exactly once: with the reply,
//     or with an Error (kTimeout "request 7 (Ping) to agent@n2 timed out after 2000 ms",
//     kUnreachable, kUnknownPort, or the error the peer answered with).
//   - serve<Req>(handler) handles requests of type Req. The handler gets a Request and must
//     answer it exactly once (reply, relay or fail), now or later; a Request dropped unanswered
//     answers itself with kInternal, so a caller never waits for a reply that cannot come.
//
// Names resolve through the master's name service (dipc/name_service.h); a Port with a master
// registers itself there and heartbeats. Inter-node frames carry an AES-256-GMAC tag made with the
// cluster key; a frame that fails to decode or to authenticate is dropped and counted
// (counters()), never answered and never fatal. On the unix socket the caller's uid comes from
// SO_PEERCRED; on the fabric it is the uid the (authenticated) sending daemon vouches for.
//
// Threading: a Port lives on one EventLoop; all its methods except call_sync() must be called
// on that loop's thread, and every callback runs there. call_sync() is for other threads.
#pragma once

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/schema.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "dipc/dipc.capnp.h"
#include "dipc/event_loop.h"
#include "dipc/fabric.h"
#include "dipc/faults.h"
#include "dipc/frame.h"
#include "dipc/replay_guard.h"
#include "dipc/status.h"

namespace ferry::dipc {

struct PortOptions {
  std::string name;                         // "agent@n2"; "master" for the master
  std::string node;                         // "n2"; empty for the master
  FabricOptions fabric;                     // provider and the address to bind
  std::string master;                       // the master's "host:port"; empty on the master
  std::filesystem::path key_file;           // the cluster key (required)
  std::filesystem::path control_socket;     // unix socket for the CLI; empty: none
  std::chrono::milliseconds request_timeout{2000};
  std::chrono::milliseconds register_retry{200};  // while the master cannot be reached
  ReplayPolicy replay;  // which authenticated frames are refused as replays (replay_guard.h)
};

struct Caller {
  uint32_t uid = 0;
  std::string port;      // the sending port's name; "local" for the unix socket
  bool local = false;    // came through the unix socket
  bool is_root() const { return uid == 0; }
};

struct CallOptions {
  std::chrono::milliseconds timeout{0};     // 0: the port's request_timeout
  std::optional<uint32_t> on_behalf_of;     // uid to vouch for; default: this daemon's uid
};

struct PortCounters {
  uint64_t received = 0, sent = 0, dropped = 0, rejected = 0, timeouts = 0, unreachable = 0;
  uint64_t replayed = 0;  // authenticated, but seen before, too old, or beyond the window
  uint64_t late = 0;      // replies to no request of ours that is waiting (it timed out)
};

// A decoded message of a known type that owns its bytes.
template <class T>
class Message {
 public:
  explicit Message(std::unique_ptr<Inbound> in) : in_(std::move(in)) {}
  typename T::Reader get() const { return in_->body<T>(); }
  typename T::Reader operator*() const { return get(); }
  const Inbound& inbound() const { return *in_; }

 private:
  std::unique_ptr<Inbound> in_;
};

class PortCore;

// An incoming request. Move-only; answered exactly once.
class Request {
 public:
  Request(Request&&) noexcept;
  Request& operator=(Request&&) = delete;
  ~Request();  // answers kInternal if nobody did

  const Caller& caller() const { return caller_; }
  uint64_t id() const;
  const std::string& from() const { return caller_.port; }
  template <class T>
  typename T::Reader body() const { return in_->body<T>(); }

  template <class Rep>
  void reply(const std::function<void(typename Rep::Builder)>& fill) {
    answer(capnp::typeId<Rep>(), [&](capnp::AnyPointer::Builder b) { fill(b.initAs<Rep>()); },
           nullptr);
  }
  // Answers with a copy of another message's body (an agent relaying the master's reply).
  void relay(const Inbound& reply);
  void fail(ErrorCode code, std::string message);
  void fail(const Error& e) { fail(e.code, e.message); }
  bool answered() const { return answered_; }
  // Never answers (a duplicate of a request already being handled: the caller waits for the
  // first one's answer).
  void discard() { answered_ = true; }

 private:
  friend class PortCore;
  Request(std::weak_ptr<PortCore> core, std::unique_ptr<Inbound> in, Caller caller,
          uint64_t local_conn, std::string reply_address);
  void answer(uint64_t type, const std::function<void(capnp::AnyPointer::Builder)>& fill,
              const Error* error);

  std::weak_ptr<PortCore> core_;
  std::unique_ptr<Inbound> in_;
  Caller caller_;
  uint64_t local_conn_ = 0;    // != 0: came on this unix socket connection
  std::string reply_address_;  // fabric address to answer to
  bool answered_ = false;
};

class Port {
 public:
  using Handler = std::function<void(Request&)>;
  using BodyFill = std::function<void(capnp::AnyPointer::Builder)>;
  using RawDone = std::function<void(Result<std::unique_ptr<Inbound>>)>;

  // Opens the fabric endpoint and the control socket, serves Ping/PingPort, and (when
  // options.master is set) starts registering with the master and heartbeating.
  // Errors name what could not be opened. The loop must outlive the port.
  static Result<std::unique_ptr<Port>> open(PortOptions options, EventLoop& loop);
  ~Port();  // closes sockets and unlinks the control socket; pending calls fail with kUnreachable

  const std::string& name() const;
  const std::string& address() const;       // opaque fabric address
  const std::string& address_text() const;  // "127.0.0.2:40123"
  EventLoop& loop();
  PortCounters counters() const;
  bool registered() const;  // has the master accepted our registration

  // Handles requests whose body is a Req. Replaces an earlier handler for the same type.
  template <class Req>
  void serve(Handler handler) {
    serve_raw(capnp::typeId<Req>(), std::move(handler));
  }

  template <class Req, class Rep>
  void call(const std::string& to, const std::function<void(typename Req::Builder)>& fill,
            std::function<void(Result<Message<Rep>>)> done, CallOptions options = {}) {
    call_raw(to, capnp::typeId<Req>(), type_name<Req>(),
             [&](capnp::AnyPointer::Builder b) { fill(b.initAs<Req>()); },
             [done = std::move(done)](Result<std::unique_ptr<Inbound>> r) {
               if (!r) return done(r.error());
               if (!r.value()->template holds<Rep>())
                 return done(make_error(ErrorCode::kBadMessage,
                                        "reply is a " + describe_type(*r.value()) + ", expected " +
                                            type_name<Rep>()));
               done(Message<Rep>(std::move(r).value()));
             },
             options);
  }

  // Blocking call for a thread other than the loop's (kInternal if called on it).
  template <class Req, class Rep>
  Result<Message<Rep>> call_sync(const std::string& to,
                                 const std::function<void(typename Req::Builder)>& fill,
                                 CallOptions options = {}) {
    auto r = call_sync_raw(to, capnp::typeId<Req>(), type_name<Req>(),
                           [&](capnp::AnyPointer::Builder b) { fill(b.initAs<Req>()); }, options);
    if (!r) return r.error();
    if (!r.value()->template holds<Rep>())
      return make_error(ErrorCode::kBadMessage, "reply is a " + describe_type(*r.value()) +
                                                    ", expected " + type_name<Rep>());
    return Message<Rep>(std::move(r).value());
  }

  // The master resolves names from its own table instead of asking itself.
  void set_resolver(std::function<std::optional<std::string>(const std::string&)> resolver);
  // Forget a cached resolution (after the name's owner moved or died).
  void forget(const std::string& name);
  // Tells the master this port is going away (when registered), then calls `then`.
  void unregister(std::function<void()> then);

  // Fault injection (dipc/faults.h): the rules this port applies; SetFault, ClearFaults and
  // ListFaults on the control socket (root) change and show them. Ports of one daemon may share
  // one plan (the pager's two ports).
  FaultPlan& faults();
  void share_faults(std::shared_ptr<FaultPlan> plan);
  std::shared_ptr<FaultPlan> fault_plan() const;
  template <class Req>
  void fault_point(std::string name, FaultSite site, std::string description) {
    faults().declare(FaultPoint{std::move(name), site, capnp::typeId<Req>(), std::move(description), this->name()});
  }

  // Type-erased forms behind the templates.
  void serve_raw(uint64_t type, Handler handler);
  void call_raw(const std::string& to, uint64_t type, std::string type_name, const BodyFill& fill,
                RawDone done, CallOptions options);
  Result<std::unique_ptr<Inbound>> call_sync_raw(const std::string& to, uint64_t type,
                                                 std::string type_name, const BodyFill& fill,
                                                 CallOptions options);

  template <class T>
  static std::string type_name() {
    return capnp::Schema::from<T>().getShortDisplayName().cStr();
  }
  static std::string describe_type(const Inbound& in);

 private:
  explicit Port(std::shared_ptr<PortCore> core);
  std::shared_ptr<PortCore> core_;
};

}  // namespace ferry::dipc
