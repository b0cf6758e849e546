// What every port does by itself: answer Ping, ping another port on request (PingPort), and
// keep its registration with the master alive (RegisterPort, then a Heartbeat per interval).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "dipc/port_core.h"

namespace ferry::dipc {
namespace {

constexpr uint32_t kMaxPingDelayMs = 60'000;
constexpr uint32_t kMaxPingCount = 10'000;
constexpr uint32_t kMaxPingPayload = 64 * 1024;

capnp::Data::Reader as_data(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(s.data()), s.size());
}

// Sequential pings from one port to another, collected for one PingPort reply.
struct PingRun : std::enable_shared_from_this<PingRun> {
  std::weak_ptr<PortCore> core;
  std::string target;
  uint32_t count = 0, payload = 0, sent = 0, answered = 0;
  std::vector<double> rtt_us;
  std::string last_error;
  std::shared_ptr<Request> request;

  void next() {
    auto c = core.lock();
    if (!c) return;
    if (sent == count) return finish();
    ++sent;
    auto t0 = std::chrono::steady_clock::now();
    auto self = shared_from_this();
    c->call(target, capnp::typeId<wire::Ping>(), "Ping",
            [this](capnp::AnyPointer::Builder b) { b.initAs<wire::Ping>().initPayload(payload); },
            [self, t0](Result<std::unique_ptr<Inbound>> r) {
              if (r) {
                self->answered++;
                self->rtt_us.push_back(
                    std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
              } else {
                self->last_error = r.error().message;
              }
              self->next();
            },
            CallOptions{});
  }

  void finish() {
    request->reply<wire::PingPortReply>([&](wire::PingPortReply::Builder b) {
      b.setSent(sent);
      b.setAnswered(answered);
      auto list = b.initRttUs(uint32_t(rtt_us.size()));
      for (size_t i = 0; i < rtt_us.size(); ++i) list.set(uint32_t(i), rtt_us[i]);
      b.setLastError(last_error);
    });
  }
};

}  // namespace

void PortCore::serve_builtins() {
  std::weak_ptr<PortCore> weak = weak_from_this();
  handlers_[capnp::typeId<wire::Ping>()] = [weak](Request& req) {
    auto core = weak.lock();
    if (!core) return;
    auto fill = [core](wire::Pong::Builder b, capnp::Data::Reader payload) {
      b.setPayload(payload);
      b.setPort(core->options_.name);
      b.setNode(core->options_.node);
      b.setPid(uint32_t(getpid()));
      b.setUptimeMs(uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - core->started_)
                                 .count()));
      auto c = b.initCounters();
      const auto& k = core->counters_;
      c.setReceived(k.received);
      c.setSent(k.sent);
      c.setDropped(k.dropped);
      c.setRejected(k.rejected);
      c.setTimeouts(k.timeouts);
      c.setUnreachable(k.unreachable);
      c.setReplayed(k.replayed);
      c.setLate(k.late);
    };
    auto ping = req.body<wire::Ping>();
    uint32_t delay = std::min(ping.getDelayMs(), kMaxPingDelayMs);
    if (delay == 0)  // the common case: answer straight from the request's bytes
      return req.reply<wire::Pong>([&](wire::Pong::Builder b) { fill(b, ping.getPayload()); });
    auto later = std::make_shared<Request>(std::move(req));
    core->loop_.after(std::chrono::milliseconds(delay), [later, fill] {
      auto payload = later->body<wire::Ping>().getPayload();
      later->reply<wire::Pong>([&](wire::Pong::Builder b) { fill(b, payload); });
    });
  };

  handlers_[capnp::typeId<wire::PingPort>()] = [weak](Request& req) {
    auto core = weak.lock();
    if (!core) return;
    auto body = req.body<wire::PingPort>();
    auto run = std::make_shared<PingRun>();
    run->core = weak;
    run->target = body.getTarget();
    run->count = std::clamp<uint32_t>(body.getCount(), 1, kMaxPingCount);
    run->payload = std::min(body.getPayloadBytes(), kMaxPingPayload);
    run->request = std::make_shared<Request>(std::move(req));
    run->next();
  };

  // Fault injection: root on the control socket only.
  auto privileged = [](Request& req) {
    if (req.caller().local && req.caller().is_root()) return true;
    req.fail(ErrorCode::kUnauthorized, "fault injection is for root on the node's control socket");
    return false;
  };
  handlers_[capnp::typeId<wire::SetFault>()] = [weak, privileged](Request& req) {
    auto core = weak.lock();
    if (!core || !privileged(req)) return;
    auto b = req.body<wire::SetFault>();
    auto action = parse_fault_action(b.getAction());
    if (!action) return req.fail(ErrorCode::kInvalid, std::string("no fault action '") + b.getAction().cStr() +
                                                          "' (crash, drop, delay, duplicate)");
    FaultRule rule{b.getPoint(), *action, std::chrono::milliseconds(b.getDelayMs()), b.getCount()};
    if (Status st = core->faults_->set(rule); !st) return req.fail(st.error());
    spdlog::warn("port {}: fault set: {} at {}", core->options_.name, b.getAction().cStr(), b.getPoint().cStr());
    req.reply<wire::Empty>([](auto) {});
  };
  handlers_[capnp::typeId<wire::ClearFaults>()] = [weak, privileged](Request& req) {
    auto core = weak.lock();
    if (!core || !privileged(req)) return;
    core->faults_->clear(req.body<wire::ClearFaults>().getPoint());
    req.reply<wire::Empty>([](auto) {});
  };
  handlers_[capnp::typeId<wire::ListFaults>()] = [weak](Request& req) {
    auto core = weak.lock();
    if (!core) return;
    const auto& points = core->faults_->points();
    auto rules = core->faults_->rules();
    req.reply<wire::FaultList>([&](wire::FaultList::Builder b) {
      b.setPort(core->options_.name);
      auto out = b.initPoints(uint32_t(points.size()));
      for (uint32_t i = 0; i < points.size(); ++i) {
        static const char* kSites[] = {"request-in", "reply-in", "reply-out", "local"};
        out[i].setName(points[i].name);
        out[i].setSite(kSites[int(points[i].site)]);
        out[i].setDescription(points[i].description);
        for (const auto& r : rules)
          if (r.point == points[i].name)
            out[i].setArmed(std::string(fault_action_name(r.action)) +
                            (r.action == FaultAction::kDelay ? " " + std::to_string(r.delay.count()) + " ms" : "") +
                            (r.count == 0 ? " always" : " x" + std::to_string(r.count)));
      }
    });
  };
}

void PortCore::start_registration() {
  std::weak_ptr<PortCore> weak = weak_from_this();
  call("master", capnp::typeId<wire::RegisterPort>(), "RegisterPort",
       [this](capnp::AnyPointer::Builder b) {
         auto r = b.initAs<wire::RegisterPort>();
         r.setName(options_.name);
         r.setNode(options_.node);
         r.setAddress(as_data(fabric_->address()));
         r.setAddressText(fabric_->address_text());
         r.setPid(uint32_t(getpid()));
       },
       [weak](Result<std::unique_ptr<Inbound>> r) {
         auto core = weak.lock();
         if (!core || core->closed_) return;
         if (!r || !r.value()->holds<wire::RegisterReply>()) {
           if (core->master_reachable_)
             spdlog::warn("port {}: cannot register with the master at {}: {}; retrying", core->options_.name,
                          core->options_.master, r ? "unexpected reply" : r.error().message);
           core->master_reachable_ = false;
           core->loop_.after(core->options_.register_retry, [weak] {
             if (auto c = weak.lock(); c && !c->closed_) c->start_registration();
           });
           return;
         }
         auto period = std::chrono::milliseconds(std::max<uint32_t>(r.value()->body<wire::RegisterReply>().getHeartbeatMs(), 10));
         core->registered_ = true;
         core->master_reachable_ = true;
         spdlog::info("port {} registered with the master at {}; heartbeat every {} ms", core->options_.name,
                      core->options_.master, period.count());
         auto beat = std::make_shared<EventLoop::TimerId>(0);
         *beat = core->loop_.every(period, [weak, beat, period] {
           auto core = weak.lock();
           if (!core || core->closed_) return;
           if (!core->registered_) return core->loop_.cancel(*beat);
           core->call("master", capnp::typeId<wire::Heartbeat>(), "Heartbeat",
                      [&](capnp::AnyPointer::Builder b) { b.initAs<wire::Heartbeat>().setName(core->options_.name); },
                      [weak, beat](Result<std::unique_ptr<Inbound>> r) {
                        auto core = weak.lock();
                        if (!core || core->closed_ || !core->registered_) return;
                        if (r) {
                          if (!core->master_reachable_)
                            spdlog::info("port {}: the master answers again", core->options_.name);
                          core->master_reachable_ = true;
                          return;
                        }
                        if (r.error().code == ErrorCode::kUnknownPort) {  // the master forgot us
                          spdlog::warn("port {}: the master no longer knows this port; registering again",
                                       core->options_.name);
                          core->registered_ = false;
                          core->loop_.cancel(*beat);
                          core->start_registration();
                          return;
                        }
                        if (core->master_reachable_)
                          spdlog::warn("port {}: heartbeat to the master failed: {}", core->options_.name,
                                       r.error().message);
                        core->master_reachable_ = false;
                      },
                      CallOptions{period * 2, std::nullopt});
         });
       },
       CallOptions{});
}

void PortCore::unregister(std::function<void()> then) {
  // Also while a registration is in flight: the master may have taken it already (a daemon
  // stopped right after it started left its ports listed until its node was declared dead).
  if (options_.master.empty() || closed_ || !master_reachable_) return then();
  registered_ = false;
  call("master", capnp::typeId<wire::UnregisterPort>(), "UnregisterPort",
       [this](capnp::AnyPointer::Builder b) { b.initAs<wire::UnregisterPort>().setName(options_.name); },
       [then = std::move(then)](Result<std::unique_ptr<Inbound>>) { then(); },
       CallOptions{std::chrono::milliseconds(500), std::nullopt});
}

}  // namespace ferry::dipc
