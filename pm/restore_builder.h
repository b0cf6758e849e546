// Internal to pm/: the process being rebuilt by a restore (restore.cc, kernel_objects.cc), one
// injected system call at a time, with errors that say what failed, and a few pages of scratch
// memory in it for the calls' arguments.
#pragma once

#include <fcntl.h>
#include <sys/syscall.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "dipc/status.h"
#include "pm/tracee.h"

namespace ferry::pm {

inline constexpr uint64_t kPage = 4096;
inline constexpr uint64_t kScratchPages = 4;  // page 0: code; pages 1..3: data for syscall arguments

// The stub being rebuilt: injected syscalls with errors that say what failed.
class Builder {
 public:
  Builder(Tracee& t, uint64_t data) : t_(t), data_(data) {}

  Result<long> call(const std::string& what, long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0,
                    uint64_t a4 = 0, uint64_t a5 = 0, uint64_t a6 = 0) {
    auto r = t_.syscall(nr, a1, a2, a3, a4, a5, a6);
    if (!r) return r.error();
    if (r.value() < 0 && r.value() > -4096)
      return make_error(ErrorCode::kUnavailable, "restore: " + what + ": " + std::strerror(int(-r.value())));
    return r.value();
  }
  // Copies bytes into the stub's data pages and returns their address there.
  Result<uint64_t> put(const void* bytes, size_t n) {
    if (n > (kScratchPages - 1) * kPage) return make_error(ErrorCode::kInvalid, "restore: argument too large");
    if (Status s = t_.write_memory(data_, std::span(static_cast<const std::byte*>(bytes), n)); !s) return s.error();
    return data_;
  }
  Result<uint64_t> put_string(const std::string& s) { return put(s.c_str(), s.size() + 1); }
  // Moves descriptor `from` (just made) to number `to` (dup3, then `from` closed); nothing to
  // do when they are the same. `what` names it in errors.
  Status move_fd(long from, int to, bool cloexec, const std::string& what) {
    if (from == to) return Status::Ok();
    auto d = call("move " + what + " to fd " + std::to_string(to), SYS_dup3, uint64_t(from), uint64_t(to),
                  cloexec ? O_CLOEXEC : 0);
    (void)call("close", SYS_close, uint64_t(from));
    if (!d) return d.error();
    return Status::Ok();
  }
  uint64_t data_address() const { return data_; }
  Tracee& tracee() { return t_; }

 private:
  Tracee& t_;
  uint64_t data_;
};

}  // namespace ferry::pm
