// Logging for Ferry's daemons and CLI: one line per event, at info level by default,
//   2026-11-25T06:40:00.123 info [agent@n2] port agent@n2 registered with the master at ...
// The bracketed name is the daemon's port, so interleaved logs of a cluster stay readable.
#pragma once

#include <string>

namespace ferry::runtime {

// Sets the default logger: stderr, the pattern above, `level` ("debug", "info", "warn", ...).
// Returns false (and keeps "info") for an unknown level.
bool setup_logging(const std::string& name, const std::string& level);

}  // namespace ferry::runtime
