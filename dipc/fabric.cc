#include "dipc/fabric.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>

#include <cstdlib>
#include <algorithm>
#include <cstring>

namespace ferry::dipc {
namespace {

constexpr uint32_t kFabricVersion = FI_VERSION(1, 17);

std::string fi_error(const std::string& what, int rc) {
  return what + ": " + fi_strerror(rc < 0 ? -rc : rc);
}

void close_fid(fid* f) {
  if (f) fi_close(f);
}

}  // namespace

struct FabricEndpoint::Impl {
  fi_info* info = nullptr;
  fid_fabric* fabric = nullptr;
  fid_domain* domain = nullptr;
  fid_cq* cq = nullptr;
  fid_av* av = nullptr;
  fid_ep* ep = nullptr;
  size_t max_message = 0;

  struct RecvSlot {
    fi_context2 ctx;  // first: completions hand back its address
    std::byte* buf = nullptr;
  };
  std::vector<RecvSlot> slots;
  std::byte* arena = nullptr;

  ~Impl() {
    close_fid(ep ? &ep->fid : nullptr);
    close_fid(av ? &av->fid : nullptr);
    close_fid(cq ? &cq->fid : nullptr);
    close_fid(domain ? &domain->fid : nullptr);
    close_fid(fabric ? &fabric->fid : nullptr);
    if (info) fi_freeinfo(info);
    std::free(arena);
  }

  int post_recv(RecvSlot& s) {
    return int(fi_recv(ep, s.buf, max_message, nullptr, FI_ADDR_UNSPEC, &s.ctx));
  }
  bool is_recv(void* ctx) const {
    return !slots.empty() && ctx >= static_cast<const void*>(slots.data()) &&
           ctx < static_cast<const void*>(slots.data() + slots.size());
  }
};

struct FabricEndpoint::SendOp {
  fi_context2 ctx;  // first: completions hand back its address
  PeerId peer = 0;
  std::vector<std::byte> bytes;
  Clock::time_point deadline;
  SendDone done;
  uint64_t generation = 0;  // of its peer's provider entry when it was posted
};

FabricEndpoint::FabricEndpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FabricEndpoint::~FabricEndpoint() {
  // Close the endpoint first so that no completion refers to an op freed below.
  if (impl_ && impl_->ep) {
    fi_close(&impl_->ep->fid);
    impl_->ep = nullptr;
  }
}

Result<std::unique_ptr<FabricEndpoint>> FabricEndpoint::open(const FabricOptions& o) {
  auto impl = std::make_unique<Impl>();
  impl->max_message = o.max_message;
  std::string where = "fabric provider " + o.provider + " at " + o.host + ":" + o.service;
  // rxm makes progress on connection requests only inside fi_cq_read, and at most once per
  // this many microseconds (10000 by default): a first message to a peer would wait that long.
  setenv("FI_OFI_RXM_CM_PROGRESS_INTERVAL", "200", /*overwrite=*/0);
  // rxm's shared receive queue holds 4096 bounce buffers of 16 KiB by default: 64 MiB per
  // daemon. Size it like our own queues (an explicit setting in the environment wins).
  setenv("FI_OFI_RXM_MSG_RX_SIZE", std::to_string(o.queue_depth).c_str(), /*overwrite=*/0);
  fi_info* hints = fi_allocinfo();
  hints->ep_attr->type = FI_EP_RDM;
  hints->caps = FI_MSG;
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  hints->addr_format = FI_SOCKADDR_IN;
  hints->domain_attr->threading = FI_THREAD_DOMAIN;
  hints->tx_attr->size = o.queue_depth;
  hints->rx_attr->size = o.queue_depth;
  hints->fabric_attr->prov_name = strdup(o.provider.c_str());
  int rc = fi_getinfo(kFabricVersion, o.host.c_str(), o.service.c_str(), FI_SOURCE, hints, &impl->info);
  fi_freeinfo(hints);
  if (rc) return make_error(ErrorCode::kUnavailable, fi_error(where + ": fi_getinfo", rc));

  if ((rc = fi_fabric(impl->info->fabric_attr, &impl->fabric, nullptr)))
    return make_error(ErrorCode::kUnavailable, fi_error(where + ": fi_fabric", rc));
  if ((rc = fi_domain(impl->fabric, impl->info, &impl->domain, nullptr)))
    return make_error(ErrorCode::kUnavailable, fi_error(where + ": fi_domain", rc));
  fi_cq_attr cq_attr{};
  cq_attr.format = FI_CQ_FORMAT_DATA;
  cq_attr.wait_obj = FI_WAIT_FD;
  cq_attr.size = 4096;
  if ((rc = fi_cq_open(impl->domain, &cq_attr, &impl->cq, nullptr)))
    return make_error(ErrorCode::kUnavailable, fi_error(where + ": fi_cq_open", rc));
  fi_av_attr av_attr{};
  av_attr.type = FI_AV_TABLE;
  if ((rc = fi_av_open(impl->domain, &av_attr, &impl->av, nullptr)))
    return make_error(ErrorCode::kUnavailable, fi_error(where + ": fi_av_open", rc));
  if ((rc = fi_endpoint(impl->domain, impl->info, &impl->ep, nullptr)))
    return make_error(ErrorCode::kUnavailable, fi_error(where + ": fi_endpoint", rc));
  if ((rc = fi_ep_bind(impl->ep, &impl->cq->fid, FI_TRANSMIT | FI_RECV)) ||
      (rc = fi_ep_bind(impl->ep, &impl->av->fid, 0)) || (rc = fi_enable(impl->ep)))
    return make_error(ErrorCode::kUnavailable, fi_error(where + ": enabling the endpoint", rc));

  std::unique_ptr<FabricEndpoint> ep(new FabricEndpoint(std::move(impl)));
  ep->completions_per_turn_ = o.completions_per_turn;
  Impl& im = *ep->impl_;
  ep->provider_ = im.info->fabric_attr->prov_name;
  char name[128];
  size_t len = sizeof name;
  if ((rc = fi_getname(&im.ep->fid, name, &len)))
    return make_error(ErrorCode::kUnavailable, fi_error(where + ": fi_getname", rc));
  ep->address_.assign(name, len);
  ep->address_text_ = describe(ep->address_);
  if ((rc = fi_control(&im.cq->fid, FI_GETWAIT, &ep->wait_fd_)))
    return make_error(ErrorCode::kUnavailable, fi_error(where + ": no wait fd on the completion queue", rc));

  im.arena = static_cast<std::byte*>(std::aligned_alloc(64, o.recv_buffers * o.max_message));
  im.slots.resize(o.recv_buffers);
  for (size_t i = 0; i < o.recv_buffers; ++i) {
    im.slots[i].buf = im.arena + i * o.max_message;
    if ((rc = im.post_recv(im.slots[i])))
      return make_error(ErrorCode::kUnavailable, fi_error(where + ": posting receive buffers", rc));
  }
  return ep;
}

std::string FabricEndpoint::describe(const std::string& address) {
  if (address.size() >= sizeof(sockaddr_in)) {
    sockaddr_in sa;
    std::memcpy(&sa, address.data(), sizeof sa);
    if (sa.sin_family == AF_INET) {
      char host[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
      return std::string(host) + ":" + std::to_string(ntohs(sa.sin_port));
    }
  }
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : address) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

Result<FabricEndpoint::PeerId> FabricEndpoint::peer(const std::string& address) {
  auto it = peers_.find(address);
  if (it != peers_.end()) return it->second;
  if (address.size() != address_.size())
    return make_error(ErrorCode::kInvalid, "fabric address of " + std::to_string(address.size()) +
                                               " bytes does not fit provider " + provider_);
  fi_addr_t fa = FI_ADDR_NOTAVAIL;
  int n = fi_av_insert(impl_->av, address.data(), 1, &fa, 0, nullptr);
  if (n != 1)
    return make_error(ErrorCode::kInvalid, "fabric address " + describe(address) + " was refused by the provider");
  PeerId id = peer_table_.size();
  peer_table_.push_back(Peer{address, uint64_t(fa)});
  peers_.emplace(address, id);
  return id;
}

void FabricEndpoint::reconnect(PeerId id) {
  Peer& p = peer_table_[id];
  ++p.generation;
  fi_addr_t old = p.fi_addr;
  fi_av_remove(impl_->av, &old, 1, 0);  // rxm keeps what the sends in flight still use
  fi_addr_t fa = FI_ADDR_NOTAVAIL;
  if (fi_av_insert(impl_->av, p.address.data(), 1, &fa, 0, nullptr) != 1) {
    p.renew = true;  // tried again at the next send
    return;
  }
  p.fi_addr = uint64_t(fa);
  p.renew = false;
  p.stuck_since = {};
}

Result<FabricEndpoint::PeerId> FabricEndpoint::peer_by_text(const std::string& host_port) {
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos)
    return make_error(ErrorCode::kInvalid, "address '" + host_port + "' is not host:port");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  char* end = nullptr;
  long port = std::strtol(host_port.c_str() + colon + 1, &end, 10);
  if (inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &sa.sin_addr) != 1 || *end != 0 ||
      port <= 0 || port > 65535)
    return make_error(ErrorCode::kInvalid, "address '" + host_port + "' is not IPv4-address:port");
  sa.sin_port = htons(uint16_t(port));
  std::string bytes(reinterpret_cast<const char*>(&sa), sizeof sa);
  bytes.resize(address_.size(), '\0');
  return peer(bytes);
}

void FabricEndpoint::send(PeerId peer, std::vector<std::byte> bytes, Clock::time_point deadline,
                          SendDone done) {
  if (peer >= peer_table_.size()) {
    if (done) done(make_error(ErrorCode::kInvalid, "send to an unknown peer handle " + std::to_string(peer)));
    return;
  }
  auto op = std::make_unique<SendOp>();
  op->peer = peer;
  op->bytes = std::move(bytes);
  op->deadline = deadline;
  op->done = std::move(done);
  auto it = queued_.find(peer);
  if (it == queued_.end()) {  // nothing ahead of it: try now
    switch (post_send(op.get())) {
      case Posted::kYes: op.release(); return;  // owned by the provider until it completes
      case Posted::kFailed: return;
      case Posted::kAgain: break;
    }
  }
  queued_[peer].push_back(std::move(op));
}

FabricEndpoint::Posted FabricEndpoint::post_send(SendOp* op) {
  Peer& p = peer_table_[op->peer];
  if (p.renew) reconnect(op->peer);
  if (p.renew) return Posted::kAgain;
  ssize_t rc = fi_send(impl_->ep, op->bytes.data(), op->bytes.size(), nullptr, fi_addr_t(p.fi_addr), &op->ctx);
  if (rc == 0) {
    op->generation = p.generation;
    p.stuck_since = {};
    return Posted::kYes;
  }
  if (rc == -FI_EAGAIN) {
    auto now = Clock::now();
    if (p.stuck_since == Clock::time_point{}) p.stuck_since = now;
    else if (now - p.stuck_since > kReconnectAfter) reconnect(op->peer);
    return Posted::kAgain;
  }
  if (op->done) op->done(make_error(ErrorCode::kUnreachable, fi_error("send", int(rc))));
  return Posted::kFailed;
}

void FabricEndpoint::complete_send(SendOp* op, Status status) {
  std::unique_ptr<SendOp> owned(op);
  // Once per broken connection: the sends that were in flight on it all fail the same way.
  if (!status && owned->generation == peer_table_[owned->peer].generation) peer_table_[owned->peer].renew = true;
  if (owned->done) owned->done(std::move(status));
}

int FabricEndpoint::retry_queued() {
  int events = 0;
  auto now = Clock::now();
  for (auto it = queued_.begin(); it != queued_.end();) {
    auto& q = it->second;
    while (!q.empty()) {
      SendOp* op = q.front().get();
      Posted posted = post_send(op);
      if (posted == Posted::kAgain) {
        if (now < op->deadline) break;
        if (op->done)
          op->done(make_error(ErrorCode::kUnreachable,
                              "no connection to the peer's fabric endpoint before the deadline"));
      } else if (posted == Posted::kYes) {
        q.front().release();
      }
      q.pop_front();
      ++events;
    }
    it = q.empty() ? queued_.erase(it) : std::next(it);
  }
  return events;
}

int FabricEndpoint::progress() {
  Impl& im = *impl_;
  int events = 0;
  // A few completions per call, then back to the loop: an endpoint whose completions keep
  // coming (a pager's bulk port, 1 MiB replies back to back) must not starve the others on the
  // same loop (its fault port: a fault waited 10-900 ms behind the prefetcher).
  const int per_call = std::clamp(completions_per_turn_, 1, 16);
  fi_cq_data_entry entries[16];
  for (int handled = 0; handled < per_call;) {
    ssize_t n = fi_cq_read(im.cq, entries, size_t(per_call - handled));
    if (n == -FI_EAVAIL) {
      fi_cq_err_entry err{};
      if (fi_cq_readerr(im.cq, &err, 0) <= 0) break;
      ++events;
      ++handled;
      if (im.is_recv(err.op_context)) {
        ++receive_errors_;
        im.post_recv(*static_cast<Impl::RecvSlot*>(err.op_context));
      } else if (err.op_context) {
        // The connection to that peer broke (reset, refused): its provider entry is renewed
        // (complete_send), and sends queued behind go on the new connection, to whatever listens
        // at that address by then (the peer restarted, or nobody: EAGAIN until each send's
        // deadline). Queued sends name the peer by our handle, not by the provider's entry: the
        // removed entry they once named made the provider crash (a pager died of that).
        complete_send(static_cast<SendOp*>(err.op_context),
                      make_error(ErrorCode::kUnreachable, fi_error("send failed", err.err)));
      }
      continue;
    }
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      auto& e = entries[i];
      if (im.is_recv(e.op_context)) {
        auto* slot = static_cast<Impl::RecvSlot*>(e.op_context);
        if (on_receive_) on_receive_(std::span<const std::byte>(slot->buf, e.len));
        im.post_recv(*slot);
      } else if (e.op_context) {
        complete_send(static_cast<SendOp*>(e.op_context), Status::Ok());
      }
    }
    events += int(n);
    handled += int(n);
  }
  if (!queued_.empty()) events += retry_queued();
  return events;
}

std::chrono::milliseconds FabricEndpoint::sleep_limit() {
  // Sends wait for a connection being made (or never made): retry every millisecond.
  if (!queued_.empty()) return std::chrono::milliseconds(1);
  fid* fids[1] = {&impl_->cq->fid};
  if (fi_trywait(impl_->fabric, fids, 1) != FI_SUCCESS) return std::chrono::milliseconds(0);
  // The wait fd wakes us for data on existing connections but not for a peer's connection
  // request, which is only accepted during progress: never sleep long.
  return kIdlePoll;
}

}  // namespace ferry::dipc
