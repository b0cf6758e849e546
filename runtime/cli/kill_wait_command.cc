// `ferry kill [-SIG] GPID`: sends a signal (number or name, default TERM) to a job wherever it
// runs. `ferry wait GPID`: waits for a job to end; exits with its exit status (1 if lost).
#include <fmt/format.h>
#include <signal.h>
#include <string.h>

#include <algorithm>
#include <cctype>
#include <iostream>
#include <thread>

#include "pm/pm.capnp.h"
#include "runtime/cli/agent_connection.h"

namespace ferry::cli {
namespace {

// "9", "KILL", "SIGKILL", "kill" -> 9; an error names what is not a signal.
Result<int> parse_signal(const std::string& text) {
  if (!text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
    int n = text.size() <= 3 ? std::stoi(text) : -1;
    if (n < 0 || n > SIGRTMAX) return make_error(ErrorCode::kInvalid, "no signal number " + text);
    return n;
  }
  std::string name;
  for (unsigned char c : text) name += char(std::toupper(c));
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  if (name == "RTMIN") return int(SIGRTMIN);
  if (name == "RTMAX") return int(SIGRTMAX);
  for (int s = 1; s < NSIG; ++s)
    if (const char* abbrev = sigabbrev_np(s); abbrev && name == abbrev) return s;
  return make_error(ErrorCode::kInvalid, "unknown signal " + text);
}

}  // namespace

int kill_job(const Context& ctx, uint64_t gpid, const std::string& signal) {
  auto sig = parse_signal(signal);
  if (!sig) {
    std::cerr << "ferry: kill: " << sig.error().message << "\n";
    return 1;
  }
  auto client = connect_agent(ctx);
  if (!client) {
    std::cerr << "ferry: kill: " << client.error().message << "\n";
    return 1;
  }
  auto r = client.value()->call<pm::wire::SignalProcess, dipc::wire::Empty>([&](pm::wire::SignalProcess::Builder b) {
    b.setGpid(gpid);
    b.setSignal(sig.value());
  });
  if (!r) {
    std::cerr << "ferry: kill: " << r.error().message << "\n";
    return 1;
  }
  return 0;
}

int wait_job(const Context& ctx, uint64_t gpid) {
  auto client = connect_agent(ctx);
  if (!client) {
    std::cerr << "ferry: wait: " << client.error().message << "\n";
    return 1;
  }
  int failures = 0;
  bool master_away = false;
  for (;;) {
    auto r = client.value()->call<pm::wire::LookupProcess, pm::wire::ProcessInfo>(
        [&](pm::wire::LookupProcess::Builder b) { b.setGpid(gpid); }, std::chrono::seconds(5));
    if (!r) {
      // The master away: the job goes on and so does the wait (it learns the end when it is back).
      if (r.error().message.find("the master is unreachable") != std::string::npos) {
        if (!master_away) std::cerr << "ferry: wait: " << r.error().message << "; still waiting\n";
        master_away = true;
        continue;
      }
      if (!transient(r.error()) || ++failures > 5) {
        std::cerr << "ferry: wait: " << r.error().message << "\n";
        return 1;
      }
      if (r.error().code != ErrorCode::kTimeout)  // the connection is gone: open a new one
        if (auto again = connect_agent(ctx)) client = std::move(again);
    } else {
      failures = 0;
      if (master_away) std::cerr << "ferry: wait: the master is back\n";
      master_away = false;
      auto info = r.value().get();
      if (info.getState() == pm::wire::ProcessState::EXITED) {
        std::cout << fmt::format("gpid {} exited with status {}\n", gpid, info.getExitStatus());
        return exit_code(info.getExitStatus());
      }
      if (info.getState() == pm::wire::ProcessState::LOST) {
        std::cerr << fmt::format("gpid {} lost: {}\n", gpid, info.getReason().cStr());
        return 1;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace ferry::cli
