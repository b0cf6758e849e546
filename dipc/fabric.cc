#include "dipc/fabric.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>

#include <sys/random.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "dipc/fragment.h"

namespace ferry::dipc {
namespace {

constexpr uint32_t kFabricVersion = FI_VERSION(1, 17);

// rxm sends a message eagerly when it fits its bounce buffer (FI_OFI_RXM_BUFFER_SIZE, 16 KiB by
// default) less its own header, well under 256 bytes: every provider message we send does
// (see fragment.h for why).
size_t provider_message_limit() {
  size_t buffer = 16384;
  if (const char* s = getenv("FI_OFI_RXM_BUFFER_SIZE")) buffer = std::max<size_t>(4096, std::strtoul(s, nullptr, 10));
  return buffer - 256;
}
// Incomplete messages held for their missing fragments: bounded in time and memory.
constexpr std::chrono::seconds kReassemblyTimeout{20};
constexpr size_t kReassemblyMemory = 64u << 20;

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
  size_t fragment_bytes = 0;  // the largest provider message: header and slice
  uint64_t sender_token = 0;  // tells our fragments from other endpoints'
  uint64_t next_message = 0;
  std::optional<Reassembler> reassembler;
  Clock::time_point next_expiry{};

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
    return int(fi_recv(ep, s.buf, fragment_bytes, nullptr, FI_ADDR_UNSPEC, &s.ctx));
  }
  bool is_recv(void* ctx) const {
    return !slots.empty() && ctx >= static_cast<const void*>(slots.data()) &&
           ctx < static_cast<const void*>(slots.data() + slots.size());
  }
};

// One message being sent: its fragments share it, and its `done` runs once, when the last
// fragment completed or the first one failed.
struct FabricEndpoint::Outgoing {
  std::vector<std::byte> bytes;
  Clock::time_point deadline;
  SendDone done;
  uint32_t pending = 0;  // fragments not completed yet
  bool finished = false;
};

// One fragment: a provider send of its header and a slice of the message's bytes.
struct FabricEndpoint::SendOp {
  fi_context2 ctx;  // first: completions hand back its address
  PeerId peer = 0;
  std::shared_ptr<Outgoing> message;
  std::byte header[kFragmentHeaderBytes];
  size_t offset = 0, length = 0;
  uint64_t generation = 0;  // of its peer's provider entry when it was posted
};

void FabricEndpoint::finish(Outgoing& m, Status status) {
  if (m.finished) return;
  if (status && --m.pending > 0) return;
  m.finished = true;  // its bytes stay until no fragment in flight needs them (shared_ptr)
  if (m.done) m.done(std::move(status));
}

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
  impl->fragment_bytes = provider_message_limit();
  if (getrandom(&impl->sender_token, sizeof impl->sender_token, 0) != sizeof impl->sender_token)
    impl->sender_token = uint64_t(Clock::now().time_since_epoch().count()) ^ uint64_t(getpid()) << 32;
  impl->reassembler.emplace(o.max_message, impl->fragment_bytes - kFragmentHeaderBytes,
                            std::max(kReassemblyMemory, 8 * o.max_message),
                            std::chrono::duration_cast<std::chrono::milliseconds>(kReassemblyTimeout));
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

  // Receives are fragments: more buffers than messages expected at once, each small.
  const size_t slots = std::max<size_t>(64, 4 * o.recv_buffers);
  im.arena = static_cast<std::byte*>(std::aligned_alloc(64, slots * im.fragment_bytes));
  im.slots.resize(slots);
  for (size_t i = 0; i < slots; ++i) {
    im.slots[i].buf = im.arena + i * im.fragment_bytes;
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
  Impl& im = *impl_;
  const size_t payload = im.fragment_bytes - kFragmentHeaderBytes;
  auto message = std::make_shared<Outgoing>();
  message->bytes = std::move(bytes);
  message->deadline = deadline;
  message->done = std::move(done);
  FragmentHeader h;
  h.count = fragment_count(message->bytes.size(), payload);
  h.total = uint32_t(message->bytes.size());
  h.sender = im.sender_token;
  h.message = im.next_message++;
  message->pending = h.count;
  auto it = queued_.find(peer);
  bool behind = it != queued_.end();  // sends ahead of it wait: keep the order
  for (uint32_t i = 0; i < h.count; ++i) {
    auto op = std::make_unique<SendOp>();
    op->peer = peer;
    op->message = message;
    h.index = i;
    write_fragment_header(h, op->header);
    op->offset = size_t(i) * payload;
    op->length = std::min(payload, message->bytes.size() - std::min(message->bytes.size(), op->offset));
    if (!behind) {
      Posted posted = post_send(op.get());
      if (posted == Posted::kYes) {
        op.release();  // owned by the provider until it completes
        continue;
      }
      if (posted == Posted::kFailed) return;  // `done` was told why; the other fragments are moot
      behind = true;
    }
    queued_[peer].push_back(std::move(op));
  }
}

FabricEndpoint::Posted FabricEndpoint::post_send(SendOp* op) {
  if (op->message->finished) return Posted::kFailed;  // an earlier fragment failed
  Peer& p = peer_table_[op->peer];
  if (p.renew) reconnect(op->peer);
  if (p.renew) return Posted::kAgain;
  iovec iov[2] = {{op->header, kFragmentHeaderBytes}, {op->message->bytes.data() + op->offset, op->length}};
  void* desc[2] = {nullptr, nullptr};
  ssize_t rc = fi_sendv(impl_->ep, iov, desc, op->length ? 2 : 1, fi_addr_t(p.fi_addr), &op->ctx);
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
  finish(*op->message, make_error(ErrorCode::kUnreachable, fi_error("send", int(rc))));
  return Posted::kFailed;
}

void FabricEndpoint::complete_send(SendOp* op, Status status) {
  std::unique_ptr<SendOp> owned(op);
  // Once per broken connection: the sends that were in flight on it all fail the same way.
  if (!status && owned->generation == peer_table_[owned->peer].generation) peer_table_[owned->peer].renew = true;
  finish(*owned->message, std::move(status));
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
        if (now < op->message->deadline) break;
        // kTimeout: it never left, so the caller may send it elsewhere without a duplicate.
        finish(*op->message, make_error(ErrorCode::kTimeout,
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
  // A few messages per call, then back to the loop: an endpoint whose messages keep coming (a
  // pager's bulk port, 1 MiB replies back to back) must not starve the others on the same loop
  // (its fault port: a fault waited 10-900 ms behind the prefetcher). `handled` counts whole
  // messages received and errors; `budget` bounds the fragments (completions) read per call.
  const int per_call = std::clamp(completions_per_turn_, 1, 16);
  constexpr int kBatch = 16;
  fi_cq_data_entry entries[kBatch];
  for (int handled = 0, budget = 4 * kBatch; handled < per_call && budget > 0; budget -= kBatch) {
    ssize_t n = fi_cq_read(im.cq, entries, kBatch);
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
        std::span<const std::byte> whole;
        switch (im.reassembler->add(std::span<const std::byte>(slot->buf, e.len), Clock::now(), &whole)) {
          case Reassembler::Outcome::kWhole:
            ++handled;
            if (on_receive_) on_receive_(whole);
            break;
          case Reassembler::Outcome::kPartial: break;
          case Reassembler::Outcome::kRefused: ++receive_errors_; ++handled; break;
        }
        im.post_recv(*slot);
      } else if (e.op_context) {
        complete_send(static_cast<SendOp*>(e.op_context), Status::Ok());
      }
    }
    events += int(n);
  }
  if (!queued_.empty()) events += retry_queued();
  auto now = Clock::now();
  if (now >= im.next_expiry) {
    receive_errors_ += im.reassembler->expire(now);  // their senders died mid-message
    im.next_expiry = now + std::chrono::seconds(1);
  }
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
