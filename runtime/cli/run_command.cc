// `ferry run [--node N] [-d] -- CMD ARGS...`: starts a job (a process with a global pid) on node
// N (default: the local agent's node), with this directory and environment. With -d it prints
// the gpid and returns; otherwise it streams the job's output log to stdout until the job ends
// and exits with its exit status (1 if it was lost).
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <thread>

#include "pm/pm.capnp.h"
#include "runtime/cli/agent_connection.h"

extern char** environ;

namespace ferry::cli {
namespace {

constexpr auto kRequestTimeout = std::chrono::seconds(5);
constexpr int kMaxRetries = 5;  // consecutive transient failures of ReadOutput before giving up

int fail(const std::string& message) {
  std::cerr << "ferry: run: " << message << "\n";
  return 1;
}

}  // namespace

int run(const Context& ctx, const std::vector<std::string>& argv, const std::string& node, bool detach) {
  std::error_code ec;
  auto cwd = std::filesystem::current_path(ec);
  if (ec) return fail("cannot get the current directory: " + ec.message());
  auto client = connect_agent(ctx);
  if (!client) return fail(client.error().message);

  auto r = client.value()->call<pm::wire::RunJob, pm::wire::RunReply>(
      [&](pm::wire::RunJob::Builder b) {
        auto a = b.initArgv(unsigned(argv.size()));
        for (size_t i = 0; i < argv.size(); ++i) a.set(unsigned(i), argv[i]);
        b.setCwd(cwd.string());
        size_t n = 0;
        while (environ && environ[n]) ++n;
        auto e = b.initEnv(unsigned(n));
        for (size_t i = 0; i < n; ++i) e.set(unsigned(i), environ[i]);
        b.setNode(node);
      },
      kRequestTimeout);
  if (!r) return fail(r.error().message);
  uint64_t gpid = r.value().get().getGpid();
  if (detach) {
    std::cout << gpid << "\n";
    return 0;
  }
  std::cerr << fmt::format("ferry: gpid {} on {}\n", gpid, r.value().get().getNode().cStr());

  uint64_t offset = 0;
  int failures = 0;
  for (;;) {
    auto chunk = client.value()->call<pm::wire::ReadOutput, pm::wire::OutputChunk>(
        [&](pm::wire::ReadOutput::Builder b) {
          b.setGpid(gpid);
          b.setOffset(offset);
        },
        kRequestTimeout);
    if (!chunk) {
      if (!transient(chunk.error()) || ++failures > kMaxRetries) return fail(chunk.error().message);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (chunk.error().code != ErrorCode::kTimeout)  // the connection is gone: open a new one
        if (auto again = connect_agent(ctx)) client = std::move(again);
      continue;
    }
    failures = 0;
    auto c = chunk.value().get();
    auto data = c.getData();
    if (data.size() > 0) {
      std::cout.write(reinterpret_cast<const char*>(data.begin()), std::streamsize(data.size()));
      std::cout.flush();
      offset += data.size();
      continue;
    }
    auto info = c.getInfo();
    if (info.getState() == pm::wire::ProcessState::EXITED) return exit_code(info.getExitStatus());
    if (info.getState() == pm::wire::ProcessState::LOST) {
      std::cerr << fmt::format("ferry: gpid {} lost: {}\n", gpid, info.getReason().cStr());
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace ferry::cli
