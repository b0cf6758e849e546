// The CLI's side of a daemon's control socket: blocking request/reply over a unix socket,
// with the same Envelope as the fabric but no MAC (the daemon learns our uid from the kernel).
// One request at a time; not thread-safe.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>

#include "dipc/port.h"

namespace ferry::dipc {

class LocalClient {
 public:
  // Connects to a daemon's control socket. kUnavailable names the socket when nobody listens.
  static Result<std::unique_ptr<LocalClient>> connect(const std::filesystem::path& socket);
  ~LocalClient();

  template <class Req, class Rep>
  Result<Message<Rep>> call(const std::function<void(typename Req::Builder)>& fill,
                            std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto r = call_raw(capnp::typeId<Req>(), Port::type_name<Req>(),
                      [&](capnp::AnyPointer::Builder b) { fill(b.initAs<Req>()); }, timeout);
    if (!r) return r.error();
    if (!r.value()->template holds<Rep>())
      return make_error(ErrorCode::kBadMessage, "reply is a " + Port::describe_type(*r.value()) +
                                                    ", expected " + Port::type_name<Rep>());
    return Message<Rep>(std::move(r).value());
  }

  Result<std::unique_ptr<Inbound>> call_raw(uint64_t type, const std::string& type_name,
                                            const Port::BodyFill& fill, std::chrono::milliseconds timeout);

  // Sends raw bytes as one packet (tests of malformed input).
  Status send_bytes(std::span<const std::byte> bytes);

 private:
  LocalClient(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  uint64_t next_id_ = 1;
};

}  // namespace ferry::dipc
