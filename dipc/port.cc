// Requests, replies and dispatch of a Port. The request path: call() seals the envelope,
// resolves the destination name (cache, the master's own table, or a Resolve request to the
// master), sends, and arms a timer; the reply or the timer, whichever comes first, finishes it.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <future>
#include <random>

#include "dipc/port_core.h"

namespace ferry::dipc {
namespace {

std::string hex_type(uint64_t type) {
  char buf[32];
  snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(type));
  return buf;
}

std::string request_label(uint64_t id, const std::string& type_name, const std::string& to) {
  return "request " + std::to_string(id) + " (" + type_name + ") to " + to;
}

}  // namespace

// ---- Request -------------------------------------------------------------------------------

Request::Request(std::weak_ptr<PortCore> core, std::unique_ptr<Inbound> in, Caller caller,
                 uint64_t local_conn, std::string reply_address)
    : core_(std::move(core)),
      in_(std::move(in)),
      caller_(std::move(caller)),
      local_conn_(local_conn),
      reply_address_(std::move(reply_address)) {}

Request::Request(Request&& o) noexcept
    : core_(std::move(o.core_)),
      in_(std::move(o.in_)),
      caller_(std::move(o.caller_)),
      local_conn_(o.local_conn_),
      reply_address_(std::move(o.reply_address_)),
      answered_(o.answered_) {
  o.answered_ = true;  // the moved-from husk owes no answer
}

Request::~Request() {
  if (!answered_ && in_) fail(ErrorCode::kInternal, "the request was dropped without an answer");
}

uint64_t Request::id() const { return in_->envelope().getRequestId(); }

void Request::answer(uint64_t type, const std::function<void(capnp::AnyPointer::Builder)>& fill,
                     const Error* error) {
  if (answered_ || !in_) return;
  answered_ = true;
  if (auto core = core_.lock()) core->answer(*this, type, fill, error, nullptr);
}

void Request::relay(const Inbound& reply) {
  if (answered_ || !in_) return;
  answered_ = true;
  if (auto core = core_.lock()) core->answer(*this, 0, nullptr, nullptr, &reply);
}

void Request::fail(ErrorCode code, std::string message) {
  Error e{code, std::move(message)};
  answer(0, nullptr, &e);
}

// ---- PortCore: start and stop ------------------------------------------------------------------

PortCore::~PortCore() { close(); }

Status PortCore::start() {
  uid_ = getuid();
  auto key = ClusterKey::load(options_.key_file);
  if (!key) return key.error();
  key_.emplace(std::move(key).value());
  replay_.emplace(options_.replay, frame_clock_ms());
  auto fabric = FabricEndpoint::open(options_.fabric);
  if (!fabric) return fabric.error();
  fabric_ = std::move(fabric).value();
  std::weak_ptr<PortCore> weak = weak_from_this();
  fabric_->on_receive([weak](std::span<const std::byte> bytes) {
    if (auto core = weak.lock()) core->on_frame(bytes, 0);
  });
  FabricEndpoint* ep = fabric_.get();
  progress_id_ = loop_.add_progress({[weak, ep] { return weak.lock() ? ep->progress() : 0; },
                      [weak, ep] { return weak.lock() ? ep->sleep_limit() : EventLoop::kForever; },
                      fabric_->wait_fd()});
  if (!options_.control_socket.empty()) {
    if (Status s = open_control_socket(); !s) return s;
  }
  serve_builtins();
  spdlog::info("port {} open at {} (provider {}){}", options_.name, fabric_->address_text(),
               fabric_->provider(),
               options_.control_socket.empty() ? "" : ", control socket " + options_.control_socket.string());
  if (!options_.master.empty()) start_registration();
  return Status::Ok();
}

void PortCore::close() {
  if (closed_) return;
  closed_ = true;
  close_control_socket();
  if (progress_id_) loop_.remove_progress(*progress_id_);
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) {
    loop_.cancel(p.timer);
    p.done(make_error(ErrorCode::kUnreachable,
                      request_label(id, p.type_name, p.to) + " abandoned: port " + options_.name + " is closing"));
  }
}

// ---- Outgoing requests ---------------------------------------------------------------------

void PortCore::call(const std::string& to, uint64_t type, std::string type_name,
                    const Port::BodyFill& fill, Port::RawDone done, CallOptions options) {
  uint64_t id = next_request_id_++;
  auto fail_soon = [this, done](Error e) mutable {
    loop_.post([done = std::move(done), e = std::move(e)] { done(e); });
  };
  if (closed_) return fail_soon(make_error(ErrorCode::kUnreachable, "port " + options_.name + " is closed"));

  capnp::MallocMessageBuilder message;
  auto env = message.initRoot<wire::Envelope>();
  env.setRequestId(id);
  env.setKind(wire::Envelope::Kind::REQUEST);
  env.setFrom(options_.name);
  env.setFromAddress(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(fabric_->address().data()),
                                         fabric_->address().size()));
  env.setTo(to);
  env.setCallerUid(options.on_behalf_of.value_or(uid_));
  env.setBodyType(type);
  fill(env.getBody());
  std::vector<std::byte> frame;
  if (Status s = build_frame(message, /*authenticated=*/true, frame); !s)
    return fail_soon(make_error(s.error().code, request_label(id, type_name, to) + ": " + s.error().message));

  auto timeout = options.timeout.count() > 0 ? options.timeout : options_.request_timeout;
  Pending p{to, std::move(type_name), type, timeout, std::chrono::steady_clock::now() + timeout, std::move(done), 0};
  std::weak_ptr<PortCore> weak = weak_from_this();
  p.timer = loop_.after(timeout, [weak, id] {
    auto core = weak.lock();
    if (!core) return;
    auto it = core->pending_.find(id);
    if (it == core->pending_.end()) return;
    core->counters_.timeouts++;
    core->resolved_.erase(it->second.to);  // its owner may have moved or died: ask again next time
    core->finish(id, make_error(ErrorCode::kTimeout,
                                request_label(id, it->second.type_name, it->second.to) +
                                    " timed out after " + std::to_string(it->second.timeout.count()) + " ms"));
  });
  pending_.emplace(id, std::move(p));
  unsent_.emplace(id, std::move(frame));
  route(id, /*use_cache=*/true);
}

void PortCore::route(uint64_t id, bool use_cache) {
  auto pit = pending_.find(id);
  if (pit == pending_.end()) return;
  const std::string to = pit->second.to;
  const auto timeout = pit->second.timeout;
  std::weak_ptr<PortCore> weak = weak_from_this();
  // Resolve the destination: cache, own table (master), bootstrap address, or the name service.
  std::optional<std::string> stale;
  if (auto it = resolved_.find(to); use_cache && it != resolved_.end()) {
    // Fresh, or the master is away (heartbeats failing): the last known address is the best.
    if (std::chrono::steady_clock::now() - it->second.at < kResolveTtl || !master_reachable_)
      return send_request(id, it->second.address, /*cached=*/true);
    stale = it->second.address;
  }
  if (resolver_) {
    if (auto addr = resolver_(to)) return send_request(id, *addr, false);
    counters_.unreachable++;
    return finish(id, make_error(ErrorCode::kUnknownPort, "no port named '" + to + "' is registered"));
  }
  if (to == "master") {
    auto peer = fabric_->peer_by_text(options_.master);
    if (!peer) return finish(id, peer.error());
    return send_request(id, "", false);
  }
  // With a last known address to fall back on, do not spend the request's time on the master.
  auto resolve_timeout = stale ? std::min<std::chrono::milliseconds>(timeout / 4, std::chrono::milliseconds(500)) : timeout;
  call("master", capnp::typeId<wire::Resolve>(), "Resolve",
       [&to](capnp::AnyPointer::Builder b) { b.initAs<wire::Resolve>().setName(to); },
       [weak, id, to, stale](Result<std::unique_ptr<Inbound>> r) {
         auto core = weak.lock();
         if (!core || !core->pending_.count(id)) return;
         auto& p = core->pending_.at(id);
         if (!r && stale && r.error().code != ErrorCode::kUnknownPort) {
           // The master is slow or away: try the last known address, but only briefly if it
           // takes no connection (its port may have restarted elsewhere): then ask again.
           core->resolved_[to] = Resolved{*stale, std::chrono::steady_clock::now()};
           return core->send_request(id, *stale, /*cached=*/true);
         }
         if (!r) {
           Error e = r.error();
           if (e.code != ErrorCode::kUnknownPort) e.message = "cannot resolve " + to + ": " + e.message;
           return core->finish(id, make_error(e.code, request_label(id, p.type_name, to) + ": " + e.message));
         }
         if (!r.value()->holds<wire::ResolveReply>())
           return core->finish(id, make_error(ErrorCode::kBadMessage, "master answered Resolve with a " +
                                                                          Port::describe_type(*r.value())));
         auto reply = r.value()->body<wire::ResolveReply>();
         std::string address(reinterpret_cast<const char*>(reply.getAddress().begin()),
                             reply.getAddress().size());
         core->resolved_[to] = Resolved{address, std::chrono::steady_clock::now()};
         core->send_request(id, address, false);
       },
       CallOptions{resolve_timeout, std::nullopt});
}

void PortCore::send_request(uint64_t id, const std::string& address, bool cached) {
  auto frame_it = unsent_.find(id);
  auto pending_it = pending_.find(id);
  if (frame_it == unsent_.end() || pending_it == pending_.end()) return;
  const std::string& to = pending_it->second.to;
  auto peer = address.empty() ? fabric_->peer_by_text(options_.master) : fabric_->peer(address);
  if (!peer) return finish(id, make_error(peer.error().code, request_label(id, pending_it->second.type_name, to) +
                                                                 ": " + peer.error().message));
  // An address from the cache may be that of a port that has since restarted elsewhere: nobody
  // takes the connection there, and the send would wait out the whole request. So it gets a
  // short while (kStaleAfter) to go out; if it could not, the name is resolved afresh and the
  // frame goes to the address the master knows now. A frame that never left cannot arrive twice.
  auto deadline = pending_it->second.deadline;
  std::vector<std::byte> frame;
  if (cached && address != "" && deadline - std::chrono::steady_clock::now() > 2 * kStaleAfter) {
    deadline = std::chrono::steady_clock::now() + kStaleAfter;
    frame = frame_it->second;  // kept for the retry
  } else {
    cached = false;
    frame = std::move(frame_it->second);
    unsent_.erase(frame_it);
  }
  std::weak_ptr<PortCore> weak = weak_from_this();
  std::string where = address.empty() ? options_.master : FabricEndpoint::describe(address);
  counters_.sent++;
  sign_frame(frame, *key_, frame_clock_ms());
  fabric_->send(peer.value(), std::move(frame), deadline, [weak, id, where, cached](Status s) {
    auto core = weak.lock();
    if (!core) return;
    auto it = core->pending_.find(id);
    if (s || it == core->pending_.end()) {
      core->unsent_.erase(id);
      return;
    }
    core->resolved_.erase(it->second.to);
    if (cached && s.error().code == ErrorCode::kTimeout) {
      spdlog::info("port {}: {} could not reach {} at {}, its last known address; asking the master again",
                   core->options_.name, request_label(id, it->second.type_name, it->second.to), it->second.to, where);
      return core->route(id, /*use_cache=*/false);
    }
    core->counters_.unreachable++;
    core->finish(id, make_error(ErrorCode::kUnreachable,
                                request_label(id, it->second.type_name, it->second.to) + " at " + where +
                                    ": " + s.error().message));
  });
}

void PortCore::finish(uint64_t id, Result<std::unique_ptr<Inbound>> result) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending p = std::move(it->second);
  pending_.erase(it);
  unsent_.erase(id);
  loop_.cancel(p.timer);
  p.done(std::move(result));
}

// ---- Incoming frames -----------------------------------------------------------------------

void PortCore::count_bad(const Error& e, uint64_t local_conn, bool replay) {
  if (replay)
    counters_.replayed++;
  else if (e.code == ErrorCode::kUnauthorized)
    counters_.rejected++;
  else
    counters_.dropped++;
  auto now = std::chrono::steady_clock::now();
  if (now - last_drop_log_ >= std::chrono::seconds(1)) {
    last_drop_log_ = now;
    spdlog::warn("port {} dropped a message from {}: {} ({} dropped, {} rejected, {} replayed so far)",
                 options_.name, local_conn ? "the control socket" : "the fabric", e.message, counters_.dropped,
                 counters_.rejected, counters_.replayed);
  }
}

void PortCore::on_frame(std::span<const std::byte> bytes, uint64_t local_conn) {
  // The unix socket is authenticated by the kernel; the fabric by the cluster key.
  auto in = open_frame(bytes, local_conn ? nullptr : &*key_);
  if (!in) return count_bad(in.error(), local_conn);
  if (!local_conn) {
    const FrameOrigin& o = in.value()->origin();
    std::string why = replay_->admit(o.session, o.counter, o.sent_ms, frame_clock_ms());
    if (!why.empty()) return count_bad(make_error(ErrorCode::kBadMessage, why), local_conn, /*replay=*/true);
  }
  try {
    if (faults_->armed() && inject_inbound(bytes, *in.value(), local_conn)) return;
    dispatch(std::move(in).value(), local_conn);
  } catch (const kj::Exception& e) {
    count_bad(make_error(ErrorCode::kBadMessage, e.getDescription().cStr()), local_conn);
  } catch (const std::exception& e) {
    spdlog::error("port {}: handler failed: {}", options_.name, e.what());
  }
}

bool PortCore::inject_inbound(std::span<const std::byte> bytes, const Inbound& in, uint64_t local_conn) {
  auto env = in.envelope();
  bool reply = env.getKind() == wire::Envelope::Kind::REPLY;
  uint64_t type = env.getBodyType();
  std::string what;
  if (reply) {
    auto it = pending_.find(env.getRequestId());
    if (it == pending_.end()) return false;
    type = it->second.type;
    what = "the reply to " + it->second.type_name + " from " + it->second.to;
  } else {
    what = "a request from " + std::string(env.getFrom().cStr());
  }
  auto rule = faults_->take(reply ? FaultSite::kReplyIn : FaultSite::kRequestIn, type, options_.name);
  if (!rule) return false;
  spdlog::warn("port {}: fault injected at {}: {} {}", options_.name, rule->point, fault_action_name(rule->action), what);
  std::weak_ptr<PortCore> weak = weak_from_this();
  auto again = [weak, copy = std::vector<std::byte>(bytes.begin(), bytes.end()), local_conn] {
    auto core = weak.lock();
    if (!core || core->closed_) return;
    auto in = open_frame(copy, local_conn ? nullptr : &*core->key_);
    if (!in) return;
    try {
      core->dispatch(std::move(in).value(), local_conn);
    } catch (const kj::Exception& e) {
      core->count_bad(make_error(ErrorCode::kBadMessage, e.getDescription().cStr()), local_conn);
    }
  };
  switch (rule->action) {
    case FaultAction::kCrash: FaultPlan::crash(options_.name, rule->point);
    case FaultAction::kDrop: return true;
    case FaultAction::kDelay: loop_.after(rule->delay, again); return true;
    case FaultAction::kDuplicate: loop_.post(again); return false;  // now, and once more after
  }
  return false;
}

void PortCore::dispatch(std::unique_ptr<Inbound> in, uint64_t local_conn) {
  auto env = in->envelope();
  if (env.getKind() == wire::Envelope::Kind::REPLY) {
    if (local_conn) return count_bad(make_error(ErrorCode::kBadMessage, "a reply on the control socket"), local_conn);
    uint64_t id = env.getRequestId();
    auto it = pending_.find(id);
    if (it == pending_.end()) {
      counters_.late++;
      spdlog::debug("port {}: late or unknown reply {} from {}", options_.name, id, env.getFrom().cStr());
      return;
    }
    std::string from = env.getFrom();
    if (from != it->second.to)
      return count_bad(make_error(ErrorCode::kBadMessage, "reply " + std::to_string(id) + " came from " + from +
                                                              ", not from " + it->second.to),
                       local_conn);
    counters_.received++;
    if (env.hasError()) {
      auto err = env.getError();
      uint16_t code = err.getCode();
      auto ec = code <= uint16_t(ErrorCode::kInternal) ? ErrorCode(code) : ErrorCode::kInternal;
      return finish(id, make_error(ec, err.getMessage().cStr()));
    }
    return finish(id, std::move(in));
  }

  counters_.received++;
  Caller caller;
  std::string reply_address;
  if (local_conn) {
    auto it = local_.find(local_conn);
    if (it == local_.end()) return;
    caller = Caller{it->second.uid, "local", true};
  } else {
    caller = Caller{env.getCallerUid(), env.getFrom(), false};
    auto a = env.getFromAddress();
    reply_address.assign(reinterpret_cast<const char*>(a.begin()), a.size());
  }
  std::string to = env.getTo();
  uint64_t type = env.getBodyType();
  Request request(weak_from_this(), std::move(in), std::move(caller), local_conn, std::move(reply_address));
  if (!local_conn && to != options_.name)
    return request.fail(ErrorCode::kUnknownPort, "this is " + options_.name + ", not " + to);
  auto handler = handlers_.find(type);
  if (handler == handlers_.end())
    return request.fail(ErrorCode::kInvalid, options_.name + " does not handle messages of type " + hex_type(type));
  try {
    auto h = handler->second;  // copy: a handler may replace itself
    h(request);
  } catch (const kj::Exception& e) {
    count_bad(make_error(ErrorCode::kBadMessage, e.getDescription().cStr()), local_conn);
    request.fail(ErrorCode::kBadMessage, std::string("malformed request: ") + e.getDescription().cStr());
  }
}

void PortCore::answer(const Request& request, uint64_t type,
                      const std::function<void(capnp::AnyPointer::Builder)>& fill, const Error* error,
                      const Inbound* relay) {
  if (closed_) return;
  capnp::MallocMessageBuilder message;
  auto env = message.initRoot<wire::Envelope>();
  auto req = request.in_->envelope();
  env.setRequestId(req.getRequestId());
  env.setKind(wire::Envelope::Kind::REPLY);
  env.setFrom(options_.name);
  env.setFromAddress(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(fabric_->address().data()),
                                         fabric_->address().size()));
  env.setTo(req.getFrom());
  if (error) {
    auto e = env.initError();
    e.setCode(uint16_t(error->code));
    e.setMessage(error->message);
  } else if (relay) {
    auto src = relay->envelope();
    env.setBodyType(src.getBodyType());
    env.getBody().set(src.getBody());
  } else {
    env.setBodyType(type);
    fill(env.getBody());
  }
  std::vector<std::byte> frame;
  bool local = request.local_conn_ != 0;
  if (Status s = build_frame(message, /*authenticated=*/!local, frame); !s) {
    spdlog::error("port {}: reply to request {} from {} cannot be sent: {}", options_.name, req.getRequestId(),
                  request.caller_.port, s.error().message);
    return;
  }
  int copies = 1;
  if (faults_->armed())
    if (auto rule = faults_->take(FaultSite::kReplyOut, req.getBodyType(), options_.name)) {
      spdlog::warn("port {}: fault injected at {}: {} the reply to request {} from {}", options_.name, rule->point,
                   fault_action_name(rule->action), req.getRequestId(), request.caller_.port);
      switch (rule->action) {
        case FaultAction::kCrash: FaultPlan::crash(options_.name, rule->point);
        case FaultAction::kDrop: return;
        case FaultAction::kDuplicate: copies = 2; break;
        case FaultAction::kDelay: {
          std::weak_ptr<PortCore> weak = weak_from_this();
          loop_.after(rule->delay, [weak, frame, conn = request.local_conn_, address = request.reply_address_,
                                    to = request.caller_.port] {
            auto core = weak.lock();
            if (core && !core->closed_) core->send_reply_frame(frame, conn, address, to);
          });
          return;
        }
      }
    }
  for (int i = 0; i < copies; ++i) send_reply_frame(frame, request.local_conn_, request.reply_address_, request.caller_.port);
}

void PortCore::send_reply_frame(std::vector<std::byte> frame, uint64_t local_conn, const std::string& reply_address,
                                const std::string& to) {
  counters_.sent++;
  if (local_conn) {
    send_local(local_conn, frame);
    return;
  }
  auto peer = fabric_->peer(reply_address);
  if (!peer) {
    spdlog::warn("port {}: cannot answer {}: {}", options_.name, to, peer.error().message);
    return;
  }
  sign_frame(frame, *key_, frame_clock_ms());  // each copy anew: a receiver takes a frame once
  fabric_->send(peer.value(), std::move(frame), std::chrono::steady_clock::now() + options_.request_timeout,
                [name = options_.name, to](Status s) {
                  if (!s) spdlog::warn("port {}: reply to {} was not delivered: {}", name, to, s.error().message);
                });
}

// ---- Port ------------------------------------------------------------------------------------

Port::Port(std::shared_ptr<PortCore> core) : core_(std::move(core)) {}

Port::~Port() {
  if (core_) core_->close();
}

Result<std::unique_ptr<Port>> Port::open(PortOptions options, EventLoop& loop) {
  if (options.name.empty()) return make_error(ErrorCode::kInvalid, "a port needs a name");
  auto core = std::make_shared<PortCore>(std::move(options), loop);
  if (Status s = core->start(); !s) {
    core->close();
    return s.error();
  }
  return std::unique_ptr<Port>(new Port(std::move(core)));
}

const std::string& Port::name() const { return core_->options_.name; }
const std::string& Port::address() const { return core_->fabric_->address(); }
const std::string& Port::address_text() const { return core_->fabric_->address_text(); }
EventLoop& Port::loop() { return core_->loop_; }
PortCounters Port::counters() const { return core_->counters_; }
bool Port::registered() const { return core_->registered_; }

void Port::serve_raw(uint64_t type, Handler handler) { core_->handlers_[type] = std::move(handler); }
FaultPlan& Port::faults() { return *core_->faults_; }
void Port::share_faults(std::shared_ptr<FaultPlan> plan) { core_->faults_ = std::move(plan); }
std::shared_ptr<FaultPlan> Port::fault_plan() const { return core_->faults_; }

void Port::call_raw(const std::string& to, uint64_t type, std::string type_name, const BodyFill& fill,
                    RawDone done, CallOptions options) {
  core_->call(to, type, std::move(type_name), fill, std::move(done), options);
}

Result<std::unique_ptr<Inbound>> Port::call_sync_raw(const std::string& to, uint64_t type,
                                                     std::string type_name, const BodyFill& fill,
                                                     CallOptions options) {
  if (core_->loop_.on_loop_thread())
    return make_error(ErrorCode::kInternal, "call_sync on the event loop's thread would deadlock");
  // The loop may run the call after we gave up waiting: it then finds `abandoned` set and the
  // caller's `fill` must not be touched.
  struct Shared {
    std::mutex mu;
    bool abandoned = false;
    std::promise<Result<std::unique_ptr<Inbound>>> promise;
  };
  auto shared = std::make_shared<Shared>();
  auto future = shared->promise.get_future();
  auto core = core_;
  core_->loop_.post([shared, core, to, type, type_name, &fill, options] {
    std::lock_guard<std::mutex> lock(shared->mu);
    if (shared->abandoned) return;
    core->call(to, type, type_name, fill,
               [shared](Result<std::unique_ptr<Inbound>> r) { shared->promise.set_value(std::move(r)); }, options);
  });
  auto timeout = (options.timeout.count() > 0 ? options.timeout : core_->options_.request_timeout) +
                 std::chrono::seconds(1);
  if (future.wait_for(timeout) != std::future_status::ready) {
    std::lock_guard<std::mutex> lock(shared->mu);
    shared->abandoned = true;
    if (future.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
      return make_error(ErrorCode::kTimeout, "request (" + type_name + ") to " + to +
                                                 " was not handled: the event loop is not running");
  }
  return future.get();
}

void Port::set_resolver(std::function<std::optional<std::string>(const std::string&)> resolver) {
  core_->resolver_ = std::move(resolver);
}

void Port::forget(const std::string& name) { core_->resolved_.erase(name); }

void Port::unregister(std::function<void()> then) { core_->unregister(std::move(then)); }


}  // namespace ferry::dipc
