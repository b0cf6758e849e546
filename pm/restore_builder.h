// Internal to pm/: the process being rebuilt by a restore (restore.cc, kernel_objects.cc), one
// injected system call at a time, with errors that say what failed, and a few pages of scratch
// memory in it for the calls' arguments.
#pragma once

#include <fcntl.h>
#include <sys/syscall.h>

#include <cstdint>
#include <initializer_list>
#include <vector>
#include <cstring>
#include <span>
#include <string>

#include "dipc/status.h"
#include "pm/injected_code.h"
#include "pm/tracee.h"

namespace ferry::pm {

inline constexpr uint64_t kPage = 4096;
// Page 0: the injected code (pm/injected_code.h); pages 1..3: data for syscall arguments; then
// a page for each thread but the leader, for its own batch of calls.
inline constexpr uint64_t kScratchPages = 4;

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
  // A batch of calls laid out in the data pages (what put() wrote there is overwritten).
  class CallBatch batch() const;

 private:
  Tracee& t_;
  uint64_t data_;
};

// Calls run in one stop (Tracee::run_batch): the data their arguments point to, then their
// table, laid out in [base, base + size) of the process's memory. `what` names each in errors,
// after `context` ("restore: what: why").
class CallBatch {
 public:
  CallBatch(uint64_t base, size_t size, std::string context = "restore")
      : base_(base), size_(size), context_(std::move(context)) {}

  // Copies bytes into the area; their address there (0 if the area is full).
  uint64_t data(const void* bytes, size_t n) {
    size_t at = (data_.size() + 7) & ~size_t(7);
    if (at + n + (calls_.size() + 1) * kInjectedCallBytes > size_) return 0;
    data_.resize(at + n);
    std::memcpy(data_.data() + at, bytes, n);
    return base_ + at;
  }
  // Where data() puts the next bytes (for data that holds its own address).
  uint64_t next_data_address() const { return base_ + ((data_.size() + 7) & ~size_t(7)); }
  // False if the area is full.
  bool add(std::string what, long nr, std::initializer_list<uint64_t> args, bool may_fail = false) {
    if (table_offset() + (calls_.size() + 1) * kInjectedCallBytes > size_) return false;
    Tracee::Call c;
    c.number = nr;
    size_t i = 0;
    for (uint64_t a : args) c.args[i++] = a;
    c.may_fail = may_fail;
    calls_.push_back(c);
    what_.push_back(std::move(what));
    return true;
  }
  size_t size() const { return calls_.size(); }
  bool empty() const { return calls_.empty(); }

  Status start(Tracee& t) {
    if (!data_.empty())
      if (Status s = t.write_memory(base_, std::as_bytes(std::span(data_))); !s) return s;
    return t.start_batch(base_ + table_offset(), calls_);
  }
  // The results of all calls; an error naming the first that failed (and was not allowed to).
  Result<std::vector<long>> finish(Tracee& t) {
    auto r = t.finish_batch();
    if (!r) return r.error();
    const auto& results = r.value();
    if (results.size() < calls_.size() || (!results.empty() && failed(results.back()) && !calls_[results.size() - 1].may_fail)) {
      size_t i = results.empty() ? 0 : results.size() - 1;
      long e = results.empty() ? -EIO : results.back();
      return make_error(ErrorCode::kUnavailable, context_ + ": " + what_[i] + ": " + std::strerror(int(-e)));
    }
    return r;
  }
  Result<std::vector<long>> run(Tracee& t) {
    if (Status s = start(t); !s) return s.error();
    return finish(t);
  }
  static bool failed(long r) { return r < 0 && r > -4096; }

 private:
  size_t table_offset() const { return (data_.size() + 63) & ~size_t(63); }

  uint64_t base_;
  size_t size_;
  std::string context_;
  std::vector<std::byte> data_;
  std::vector<Tracee::Call> calls_;
  std::vector<std::string> what_;
};

inline CallBatch Builder::batch() const { return CallBatch(data_, (kScratchPages - 1) * kPage); }

// Runs batches[i] in threads[i], all at once: every batch started, then every started one
// waited for. Their results, or the first error (the others are still waited for).
inline Result<std::vector<std::vector<long>>> run_at_once(std::vector<CallBatch>& batches, const std::vector<Tracee*>& threads) {
  Status failed = Status::Ok();
  size_t started = 0;
  for (; started < batches.size() && started < threads.size(); ++started)
    if (failed = batches[started].start(*threads[started]); !failed) break;
  std::vector<std::vector<long>> results(started);
  for (size_t i = 0; i < started; ++i) {
    auto r = batches[i].finish(*threads[i]);
    if (r)
      results[i] = std::move(r).value();
    else if (failed)
      failed = r.error();
  }
  if (!failed) return failed.error();
  return results;
}

}  // namespace ferry::pm
