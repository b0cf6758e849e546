#include "dipc/status.h"

#include <cstring>

namespace ferry {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kUnreachable: return "unreachable";
    case ErrorCode::kUnknownPort: return "unknown-port";
    case ErrorCode::kBadMessage: return "bad-message";
    case ErrorCode::kUnauthorized: return "unauthorized";
    case ErrorCode::kRefused: return "refused";
    case ErrorCode::kNotFound: return "not-found";
    case ErrorCode::kInvalid: return "invalid";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kInternal: return "internal";
  }
  return "internal";
}

std::string errno_message(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

}  // namespace ferry
