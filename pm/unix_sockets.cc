#include "pm/unix_sockets.h"

#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>

#include "dipc/unique_fd.h"
#include "pm/restore_builder.h"

namespace ferry::pm {
namespace {

std::string fd_name(int fd) { return "fd " + std::to_string(fd); }

// The socket inode of "socket:[123]", or 0.
uint64_t socket_inode(const std::string& target) {
  if (target.rfind("socket:[", 0) != 0) return 0;
  return std::strtoull(target.c_str() + 8, nullptr, 10);
}

// What the kernel says about one unix socket.
struct UnixDiag {
  int type = 0;
  int state = 0;
  uint64_t peer = 0;
  uint8_t shutdown = 0;
  bool named = false;  // bound to a path or an abstract name of its own choosing
};

// The abstract name the kernel gives an unbound socket that sends with SO_PASSCRED (autobind):
// "\0" and five hex digits. The new socket gets another one the same way.
bool autobound(const char* name, size_t len) {
  if (len != 6 || name[0] != '\0') return false;
  for (size_t i = 1; i < len; ++i)
    if (!std::isxdigit(static_cast<unsigned char>(name[i]))) return false;
  return true;
}

// The peer is found with sock_diag (NETLINK_SOCK_DIAG, UNIX_DIAG_PEER), asked for this one
// inode: /proc/net/unix lists no peers, and the peer's inode is the only thing that tells two
// ends of a pair apart from two unrelated sockets. The lookup is in the capturer's network
// namespace, which a job shares. kNotFound: not a unix socket.
Result<UnixDiag> unix_diag(uint64_t inode) {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) return make_error(ErrorCode::kUnavailable, errno_message("sock_diag socket", errno));
  struct {
    nlmsghdr h;
    unix_diag_req r;
  } req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  req.r.sdiag_family = AF_UNIX;
  req.r.udiag_ino = uint32_t(inode);
  req.r.udiag_states = ~0u;
  req.r.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER;
  req.r.udiag_cookie[0] = req.r.udiag_cookie[1] = ~0u;  // no cookie: look up by inode
  if (::send(nl.get(), &req, sizeof req, 0) != ssize_t(sizeof req))
    return make_error(ErrorCode::kUnavailable, errno_message("sock_diag request", errno));
  alignas(nlmsghdr) char buf[8192];
  ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
  if (n < 0) return make_error(ErrorCode::kUnavailable, errno_message("sock_diag answer", errno));
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (!NLMSG_OK(h, uint32_t(n)))
    return make_error(ErrorCode::kUnavailable, "sock_diag: a short answer");
  if (h->nlmsg_type == NLMSG_ERROR) {
    int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
    if (err == ENOENT) return make_error(ErrorCode::kNotFound, "not a unix socket");
    return make_error(ErrorCode::kUnavailable, errno_message("sock_diag", err));
  }
  auto* m = reinterpret_cast<unix_diag_msg*>(NLMSG_DATA(h));
  UnixDiag d;
  d.type = m->udiag_type;
  d.state = m->udiag_state;
  int left = int(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
  for (auto* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, left); a = RTA_NEXT(a, left)) {
    if (a->rta_type == UNIX_DIAG_PEER) d.peer = *reinterpret_cast<uint32_t*>(RTA_DATA(a));
    if (a->rta_type == UNIX_DIAG_SHUTDOWN) d.shutdown = *reinterpret_cast<uint8_t*>(RTA_DATA(a));
    if (a->rta_type == UNIX_DIAG_NAME)
      d.named = !autobound(static_cast<const char*>(RTA_DATA(a)), RTA_PAYLOAD(a));
  }
  return d;
}

std::string type_name(int type) {
  return type == SOCK_STREAM      ? "stream"
         : type == SOCK_DGRAM     ? "datagram"
         : type == SOCK_SEQPACKET ? "seqpacket"
                                  : "unknown";
}

constexpr size_t kLargestMessage = 1 << 20;

// Every message waiting at the socket, peeked (MSG_PEEK) through `s`, our copy of it. The peek
// offset (SO_PEEK_OFF, the socket's own, shared with the process) walks the queue and is put
// back after.
Status peek_queue(int s, int type, const std::string& what, wire::UnixSocket::Builder out) {
  int saved = -1;
  socklen_t len = sizeof saved;
  if (::getsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &saved, &len) != 0)
    return make_error(ErrorCode::kUnavailable, errno_message(what + ": SO_PEEK_OFF", errno));
  int zero = 0;
  if (::setsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero) != 0)
    return make_error(ErrorCode::kUnavailable, errno_message(what + ": SO_PEEK_OFF", errno));
  std::vector<std::string> queue;
  std::string buf(kLargestMessage, '\0');
  Status result = Status::Ok();
  for (;;) {
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253) + CMSG_SPACE(sizeof(ucred))];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    int flags = MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | (type == SOCK_STREAM ? 0 : MSG_TRUNC);
    ssize_t n = ::recvmsg(s, &m, flags);
    if (n < 0) {
      if (errno != EAGAIN)
        result = make_error(ErrorCode::kUnavailable, errno_message(what + ": peek", errno));
      break;
    }
    bool fds = false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        fds = true;
        int count = int((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < count; ++i)
          ::close(reinterpret_cast<int*>(CMSG_DATA(c))[i]);  // our copies
      }
    if (fds || (m.msg_flags & MSG_CTRUNC)) {
      result = make_error(ErrorCode::kRefused,
                          what + " has descriptors in flight (SCM_RIGHTS) unread: it cannot move");
      break;
    }
    if (size_t(n) > buf.size()) {
      result =
          make_error(ErrorCode::kRefused, what + " holds a message of " + std::to_string(n) +
                                              " bytes unread, larger than " +
                                              std::to_string(kLargestMessage) + ": it cannot move");
      break;
    }
    if (n == 0 && type == SOCK_STREAM) break;  // the writer has shut down: no more
    queue.emplace_back(buf.data(), size_t(n));
    if (queue.size() > 100000) {
      result = make_error(ErrorCode::kRefused,
                          what + " holds over 100000 messages unread: it cannot move");
      break;
    }
  }
  (void)::setsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &saved, sizeof saved);
  if (!result) return result;
  if (type == SOCK_STREAM) {  // all of it, or the capture would lose bytes
    int inq = 0;
    size_t got = 0;
    for (const auto& q : queue) got += q.size();
    if (::ioctl(s, FIONREAD, &inq) == 0 && size_t(inq) != got)
      return make_error(ErrorCode::kUnavailable, what + ": could peek only " + std::to_string(got) +
                                                     " of the " + std::to_string(inq) +
                                                     " bytes unread");
  }
  auto l = out.initQueue(uint32_t(queue.size()));
  for (uint32_t i = 0; i < queue.size(); ++i)
    l.set(i, capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(queue[i].data()),
                                 queue[i].size()));
  return Status::Ok();
}

}  // namespace

Status check_unix_socket(const OpenFd& f, const std::vector<OpenFd>& fds) {
  auto d = unix_diag(socket_inode(f.target));
  if (!d) return d.error();
  std::string what = fd_name(f.fd) + " is a unix socket";
  bool peer_held = false;
  for (const auto& g : fds)
    if (g.fd > 2 && d.value().peer != 0 && socket_inode(g.target) == d.value().peer)
      peer_held = true;
  if (!peer_held || d.value().state != 1 /* TCP_ESTABLISHED */)
    return make_error(ErrorCode::kRefused,
                      what +
                          (d.value().peer == 0 ? " with no peer (listening, bound or unconnected)"
                                               : " whose peer is not held by this process") +
                          ": sockets cannot move");
  auto peer = unix_diag(d.value().peer);
  if (!peer) return peer.error();
  if (peer.value().peer != socket_inode(f.target))
    return make_error(ErrorCode::kRefused,
                      what + " whose peer is connected to another socket: sockets cannot move");
  if (d.value().named || peer.value().named)
    return make_error(ErrorCode::kRefused,
                      what + " bound to a name: only unnamed pairs (socketpair) move");
  int type = d.value().type;
  if (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET)
    return make_error(ErrorCode::kRefused,
                      what + " of type " + std::to_string(type) + ": it cannot move");
  return Status::Ok();
}

Status capture_unix_socket(pid_t pid, const OpenFd& f, wire::OpenFile::Builder out) {
  const std::string what = fd_name(f.fd) + " (a unix socket)";
  auto d = unix_diag(socket_inode(f.target));
  if (!d) return d.error();
  out.setKind(wire::OpenFile::Kind::UNIX_SOCKET);
  auto s = out.initSocket();
  s.setInode(socket_inode(f.target));
  s.setPeer(d.value().peer);
  s.setType(d.value().type);
  s.setShutdown(d.value().shutdown);
  UniqueFd pidfd(int(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd)
    return make_error(ErrorCode::kUnavailable, errno_message(what + ": pidfd_open", errno));
  UniqueFd copy(int(::syscall(SYS_pidfd_getfd, pidfd.get(), f.fd, 0)));
  if (!copy)
    return make_error(ErrorCode::kUnavailable, errno_message(what + ": pidfd_getfd", errno));
  int passcred = 0, sndbuf = 0, rcvbuf = 0;
  socklen_t len = sizeof passcred;
  if (::getsockopt(copy.get(), SOL_SOCKET, SO_PASSCRED, &passcred, &len) == 0)
    s.setPassCred(passcred != 0);
  len = sizeof sndbuf;
  if (::getsockopt(copy.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) == 0) s.setSendBuffer(sndbuf);
  len = sizeof rcvbuf;
  if (::getsockopt(copy.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len) == 0)
    s.setReceiveBuffer(rcvbuf);
  for (int opt : {SO_RCVTIMEO, SO_SNDTIMEO}) {
    timeval tv{};
    len = sizeof tv;
    if (::getsockopt(copy.get(), SOL_SOCKET, opt, &tv, &len) != 0) continue;
    uint64_t us = uint64_t(tv.tv_sec) * 1000000 + uint64_t(tv.tv_usec);
    opt == SO_RCVTIMEO ? s.setReceiveTimeoutUs(us) : s.setSendTimeoutUs(us);
  }
  return peek_queue(copy.get(), d.value().type, what, s);
}

namespace {

// Where a message is put in the process for a send: the scratch pages, or for a larger one
// a mapping of its own made for the purpose (unmapped by the destructor).
class Staging {
 public:
  explicit Staging(Builder& b) : b_(b) {}
  ~Staging() {
    if (big_) (void)b_.call("unmap the staging area", SYS_munmap, big_, big_size_);
  }
  Result<uint64_t> put(const capnp::Data::Reader& bytes) {
    if (bytes.size() <= (kScratchPages - 1) * kPage) return b_.put(bytes.begin(), bytes.size());
    if (bytes.size() > big_size_) {
      if (big_) (void)b_.call("unmap the staging area", SYS_munmap, big_, big_size_);
      big_ = 0;
      uint64_t size = (bytes.size() + kPage - 1) & ~(kPage - 1);
      auto m = b_.call("map a staging area", SYS_mmap, 0, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, uint64_t(-1), 0);
      if (!m) return m.error();
      big_ = uint64_t(m.value());
      big_size_ = size;
    }
    if (Status s = b_.tracee().write_memory(
            big_, std::span(reinterpret_cast<const std::byte*>(bytes.begin()), bytes.size()));
        !s)
      return s.error();
    return big_;
  }

 private:
  Builder& b_;
  uint64_t big_ = 0, big_size_ = 0;
};

// Sends `queue` (what waited at the other end) from `from` into the new pair.
Status refill(Builder& b, Staging& staging, long from, int type,
              capnp::List<capnp::Data>::Reader queue, const std::string& what) {
  for (auto m : queue) {
    // A stream's bytes may go in pieces; a message goes whole.
    size_t step = type == SOCK_STREAM ? (kScratchPages - 1) * kPage : m.size();
    size_t done = 0;
    do {
      size_t n = std::min(step, m.size() - done);
      auto p = staging.put(capnp::Data::Reader(m.begin() + done, n));
      if (!p) return p.error();
      auto r = b.call("put back what waited at " + what, SYS_sendto, uint64_t(from), p.value(), n,
                      MSG_DONTWAIT | MSG_NOSIGNAL, 0, 0);
      if (!r) return r.error();
      done += size_t(r.value());
    } while (done < m.size());
  }
  return Status::Ok();
}

// An option of `fd` (SOL_SOCKET) set to the `size` bytes at `value`.
Status set_option(Builder& b, long fd, int option, const void* value, size_t size,
                  const std::string& what) {
  auto p = b.put(value, size);
  if (!p) return p.error();
  auto r =
      b.call(what, SYS_setsockopt, uint64_t(fd), SOL_SOCKET, uint64_t(option), p.value(), size);
  return r ? Status::Ok() : Status(r.error());
}

// SO_PASSCRED, the timeouts and the buffer sizes of the new end `fd`, before anything is sent:
// what waited may need the room the program had made.
Status set_options(Builder& b, long fd, wire::UnixSocket::Reader s, const std::string& what) {
  if (s.getPassCred()) {
    int one = 1;
    if (Status st = set_option(b, fd, SO_PASSCRED, &one, sizeof one, "SO_PASSCRED on " + what); !st)
      return st;
  }
  for (auto [option, us] : {std::pair{SO_RCVTIMEO, s.getReceiveTimeoutUs()},
                            std::pair{SO_SNDTIMEO, s.getSendTimeoutUs()}}) {
    if (us == 0) continue;
    timeval tv{time_t(us / 1000000), suseconds_t(us % 1000000)};
    if (Status st = set_option(b, fd, option, &tv, sizeof tv, "the timeouts of " + what); !st)
      return st;
  }
  // The kernel doubles what it is asked for, and shows the doubled size; FORCE: past the
  // system's limits, as the program may have been (we are still privileged here).
  for (auto [option, size] : {std::pair{SO_SNDBUFFORCE, s.getSendBuffer()},
                              std::pair{SO_RCVBUFFORCE, s.getReceiveBuffer()}}) {
    if (size == 0) continue;
    int half = int(size / 2);
    if (Status st = set_option(b, fd, option, &half, sizeof half, "the buffer sizes of " + what);
        !st)
      return st;
  }
  return Status::Ok();
}

}  // namespace

Status restore_unix_sockets(Builder& b, wire::ProcessImage::Reader image) {
  int highest = 2;
  for (auto f : image.getFiles()) highest = std::max(highest, int(f.getFd()));
  std::map<uint64_t, std::vector<wire::OpenFile::Reader>> ends;  // by inode
  for (auto f : image.getFiles())
    if (f.getKind() == wire::OpenFile::Kind::UNIX_SOCKET)
      ends[f.getSocket().getInode()].push_back(f);
  Staging staging(b);
  for (auto& [inode, mine] : ends) {
    auto s = mine.front().getSocket();
    if (inode > s.getPeer()) continue;  // the pair is made from its lower inode
    auto theirs = ends.find(s.getPeer());
    if (theirs == ends.end())
      return make_error(ErrorCode::kInvalid,
                        "restore: " + fd_name(mine.front().getFd()) + ": the image lacks its peer");
    const std::string what =
        fd_name(mine.front().getFd()) + " (a unix " + type_name(s.getType()) + " socket)";
    int fds[2] = {-1, -1};
    auto p = b.put(fds, sizeof fds);
    if (!p) return p.error();
    if (auto r = b.call("socketpair for " + what, SYS_socketpair, AF_UNIX,
                        uint64_t(s.getType()) | SOCK_CLOEXEC, 0, p.value());
        !r)
      return r.error();
    if (Status st = b.tracee().read_memory(p.value(), std::as_writable_bytes(std::span(fds))); !st)
      return st;
    // Parked above every descriptor the image uses, so no dup3 below hits one of them.
    long parked[2];
    for (int i = 0; i < 2; ++i) {
      auto d = b.call("park a socket end", SYS_fcntl, uint64_t(fds[i]), F_DUPFD_CLOEXEC,
                      uint64_t(highest + 1));
      (void)b.call("close", SYS_close, uint64_t(fds[i]));
      if (!d) return d.error();
      parked[i] = d.value();
    }
    std::vector<wire::OpenFile::Reader>* side[2] = {&mine, &theirs->second};
    Status st = Status::Ok();
    for (int i = 0; i < 2 && st; ++i)
      st = set_options(b, parked[i], side[i]->front().getSocket(),
                       fd_name(side[i]->front().getFd()));
    // What waited at each end is sent from the other, before any shutdown forbids it.
    for (int i = 0; i < 2 && st; ++i)
      st = refill(b, staging, parked[1 - i], s.getType(), side[i]->front().getSocket().getQueue(),
                  fd_name(side[i]->front().getFd()));
    for (int i = 0; i < 2 && st; ++i) {
      uint8_t down = side[i]->front().getSocket().getShutdown();  // RCV_SHUTDOWN 1, SEND_SHUTDOWN 2
      if (down == 0) continue;
      int how = down == 3 ? SHUT_RDWR : down == 1 ? SHUT_RD : SHUT_WR;
      if (auto r = b.call("shut " + fd_name(side[i]->front().getFd()) + " down", SYS_shutdown,
                          uint64_t(parked[i]), uint64_t(how));
          !r)
        st = r.error();
    }
    for (int i = 0; i < 2 && st; ++i)
      for (auto f : *side[i]) {
        auto d = b.call("unix socket " + fd_name(f.getFd()), SYS_dup3, uint64_t(parked[i]),
                        uint64_t(f.getFd()), (f.getFlags() & O_CLOEXEC) ? O_CLOEXEC : 0);
        if (!d) {
          st = d.error();
          break;
        }
        if (f.getFlags() & O_NONBLOCK)
          (void)b.call("fcntl", SYS_fcntl, uint64_t(f.getFd()), F_SETFL, O_NONBLOCK);
      }
    (void)b.call("close", SYS_close, uint64_t(parked[0]));
    (void)b.call("close", SYS_close, uint64_t(parked[1]));
    if (!st) return st;
  }
  return Status::Ok();
}

}  // namespace ferry::pm
