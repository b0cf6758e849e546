// Errors as values, the way every Ferry module reports failure across its boundary.
//
// An Error carries a code a program can branch on and a message a person can act on
// ("request 7 (Ping) to agent@n2 timed out after 2000 ms"). Result<T> is either a T or an
// Error. Neither throws; both are cheap to move.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace ferry {

enum class ErrorCode {
  kTimeout,      // no reply within the deadline
  kUnreachable,  // the peer's endpoint could not be reached
  kUnknownPort,  // a port name the name service does not know
  kBadMessage,   // a message that failed to decode or to authenticate
  kUnauthorized, // the caller may not do this
  kRefused,      // the peer understood and said no
  kNotFound,     // the thing named does not exist
  kInvalid,      // the caller's input is malformed
  kUnavailable,  // a resource (file, socket, address) is not available
  kInternal,     // a bug or an unexpected system error
};

const char* error_code_name(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

// Result<void> is spelled Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  T& operator*() & { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}
  static Status Ok() { return {}; }
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Error make_error(ErrorCode code, std::string message) { return Error{code, std::move(message)}; }

// "errno-name: strerror" for a failed system call, e.g. errno_message("bind /run/x.sock").
std::string errno_message(const std::string& what, int err);

}  // namespace ferry
