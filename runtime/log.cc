#include "runtime/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace ferry::runtime {

bool setup_logging(const std::string& name, const std::string& level) {
  auto logger = spdlog::stderr_logger_mt(name);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l [%n] %v");
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  auto lvl = spdlog::level::from_str(level);
  bool known = spdlog::level::to_string_view(lvl) == level || (level == "warn" && lvl == spdlog::level::warn);
  spdlog::set_level(known ? lvl : spdlog::level::info);
  return known;
}

}  // namespace ferry::runtime
