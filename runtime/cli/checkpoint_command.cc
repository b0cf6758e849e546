// `ferry checkpoint PID --dir DIR [--leave-running]` and `ferry restore --dir DIR`: a process
// saved to a directory and brought back later on the same machine, with no daemon involved.
#include <fmt/format.h>
#include <unistd.h>

#include <iostream>

#include "pm/checkpoint.h"
#include "pm/job_namespace.h"
#include "pm/restore.h"
#include "runtime/cli/commands.h"

namespace ferry::cli {

int checkpoint(int pid, const std::string& dir, bool leave_running) {
  auto frozen = pm::FrozenProcess::freeze(pid);
  if (!frozen) {
    std::cerr << "ferry: checkpoint: " << frozen.error().message << "\n";
    return 1;
  }
  capnp::MallocMessageBuilder message;
  auto image = message.initRoot<pm::wire::ProcessImage>();
  if (Status s = frozen.value()->capture(image); !s) {
    std::cerr << "ferry: checkpoint: process " << pid << " cannot be checkpointed: " << s.error().message
              << " (it keeps running)\n";
    return 1;
  }
  auto summary = pm::write_checkpoint(dir, image.asReader(), *frozen.value());
  if (!summary) {
    std::cerr << "ferry: checkpoint: " << summary.error().message << " (process " << pid << " keeps running)\n";
    return 1;
  }
  if (leave_running) {
    if (Status s = frozen.value()->resume(); !s) std::cerr << "ferry: checkpoint: resuming: " << s.error().message << "\n";
  } else {
    frozen.value()->kill();
  }
  const auto& s = summary.value();
  std::cout << fmt::format("checkpointed process {} ({}) into {}: {} mappings, {:.1f} MiB in {} pages, {} open files; {}\n",
                           pid, image.getCommand().cStr(), dir, s.vmas, double(s.bytes) / (1 << 20), s.pages, s.files,
                           leave_running ? "it keeps running" : "it was stopped");
  return 0;
}

int restore(const std::string& dir) {
  auto cp = pm::Checkpoint::open(dir);
  if (!cp) {
    std::cerr << "ferry: restore: " << cp.error().message << "\n";
    return 1;
  }
  pm::RestoreOptions options;
  options.new_session = true;  // detached from this terminal's session
  auto image = cp.value()->image();
  // A job's process comes back in a namespace of its own with its pid there; any other
  // process with its pid if that is free on this machine.
  std::unique_ptr<pm::JobNamespace> ns;
  if (image.getPidInJob() != 0) {
    auto made = pm::JobNamespace::create();
    if (!made) {
      std::cerr << "ferry: restore: " << made.error().message << "\n";
      return 1;
    }
    ns = std::move(made).value();
    options.job = ns.get();
    options.pid = pid_t(image.getPidInJob());
  } else {
    options.pid = pid_t(image.getSourcePid());
  }
  auto carried = cp.value()->carried();
  if (!carried) {
    std::cerr << "ferry: restore: " << carried.error().message << "\n";
    return 1;
  }
  options.carried = &carried.value();
  auto proc = pm::RestoredProcess::build(image, cp.value()->pages(), options);
  if (!proc) {
    std::cerr << "ferry: restore: " << proc.error().message << "\n";
    return 1;
  }
  if (ns) {
    if (Status s = ns->watch(options.pid); !s) {
      std::cerr << "ferry: restore: " << s.error().message << "\n";
      return 1;
    }
  } else if (!proc.value()->stats().pid_kept) {
    std::cerr << fmt::format("ferry: restore: warning: pid {} is taken on this machine, so the process is pid {} now "
                             "(one that signals itself by a pid it saved will miss)\n",
                             options.pid, proc.value()->pid());
  }
  for (const auto& note : proc.value()->stats().notes) std::cerr << "ferry: restore: warning: " << note << "\n";
  if (Status s = proc.value()->start(); !s) {
    std::cerr << "ferry: restore: " << s.error().message << "\n";
    return 1;
  }
  std::cout << proc.value()->pid() << "\n";
  return 0;
}

}  // namespace ferry::cli
