// The Port's unix socket for the CLI: SOCK_SEQPACKET, one frame per packet, no MAC (the kernel
// tells us who the peer is: SO_PEERCRED gives the uid every request is authorized against).
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

#include "dipc/port_core.h"

namespace ferry::dipc {

Status PortCore::open_control_socket() {
  const std::string path = options_.control_socket.string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return make_error(ErrorCode::kInvalid, "control socket path " + path + " is too long");
  std::copy(path.begin(), path.end(), addr.sun_path);

  // A socket file left by a daemon that died is removed; one that answers belongs to a live daemon.
  int probe = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    bool live = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(probe);
    if (live) return make_error(ErrorCode::kUnavailable, "control socket " + path + " is in use by a running daemon");
  }
  ::unlink(path.c_str());

  listen_fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) return make_error(ErrorCode::kUnavailable, errno_message("socket", errno));
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chmod(path.c_str(), 0666) != 0 || ::listen(listen_fd_, 64) != 0) {
    int err = errno;
    ::close(listen_fd_);
    listen_fd_ = -1;
    return make_error(ErrorCode::kUnavailable, errno_message("control socket " + path, err));
  }
  local_buffer_.resize(kMaxFrameBytes + 1);
  return loop_.watch(listen_fd_, [this](uint32_t) { accept_local(); });
}

void PortCore::close_control_socket() {
  for (auto& [id, c] : local_) {
    loop_.unwatch(c.fd);
    ::close(c.fd);
  }
  local_.clear();
  if (listen_fd_ >= 0) {
    loop_.unwatch(listen_fd_);
    ::close(listen_fd_);
    listen_fd_ = -1;
    ::unlink(options_.control_socket.c_str());
  }
}

void PortCore::accept_local() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      ::close(fd);
      continue;
    }
    uint64_t id = next_conn_++;
    local_[id] = LocalConn{fd, cred.uid, cred.pid};
    std::weak_ptr<PortCore> weak = weak_from_this();
    (void)loop_.watch(fd, [weak, id](uint32_t) {
      if (auto core = weak.lock()) core->read_local(id);
    });
  }
}

void PortCore::read_local(uint64_t conn) {
  for (;;) {
    auto it = local_.find(conn);
    if (it == local_.end()) return;
    ssize_t n = ::recv(it->second.fd, local_buffer_.data(), local_buffer_.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) return drop_local(conn);
    if (size_t(n) > kMaxFrameBytes) {
      count_bad(make_error(ErrorCode::kBadMessage, "control socket frame exceeds the size limit"), conn);
      continue;
    }
    on_frame(std::span<const std::byte>(local_buffer_.data(), size_t(n)), conn);
  }
}

void PortCore::drop_local(uint64_t conn) {
  auto it = local_.find(conn);
  if (it == local_.end()) return;
  loop_.unwatch(it->second.fd);
  ::close(it->second.fd);
  local_.erase(it);
}

bool PortCore::send_local(uint64_t conn, const std::vector<std::byte>& frame) {
  auto it = local_.find(conn);
  if (it == local_.end()) return false;  // the client went away before its answer
  ssize_t n = ::send(it->second.fd, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n == ssize_t(frame.size())) return true;
  spdlog::warn("port {}: reply to local client (pid {}) not delivered: {}", options_.name, it->second.pid,
               n < 0 ? std::strerror(errno) : "short write");
  return false;
}

}  // namespace ferry::dipc
