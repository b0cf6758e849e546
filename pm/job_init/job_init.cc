// ferry-job-init: pid 1 of a job's own pid namespace (pm/job_namespace.h starts it there, in a
// mount namespace of its own).
//
// It mounts the namespace's /proc (so that /proc/self inside is the job's own pid), tells the
// agent it is ready, and learns from it which process is the job's main one (its pid in the
// namespace). From then on it reaps orphans that the kernel hands it, passes SIGTERM, SIGINT,
// SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 on to the main process, and exits once the main process
// has ended: the kernel then ends every process left in the namespace.
//
// Control: fd 3, a stream socket to the agent. It writes "R" once /proc is mounted (or "E"
// and an errno, and exits 1), then reads the main process's pid (4 bytes). End of file before
// that: the agent gave up on the job, and the init exits.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>

namespace {

constexpr int kControl = 3;
constexpr int kPassedOn[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

bool read_all(int fd, void* p, size_t n) {
  auto* b = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= size_t(r);
  }
  return true;
}

[[noreturn]] void fail(int err) {
  char msg[1 + sizeof err] = {'E'};
  __builtin_memcpy(msg + 1, &err, sizeof err);
  [[maybe_unused]] ssize_t n = ::write(kControl, msg, sizeof msg);
  _exit(1);
}

void reap_orphans() {
  while (::waitpid(-1, nullptr, WNOHANG | __WALL) > 0) {
  }
}

}  // namespace

int main() {
  if (::getpid() != 1) return 2;  // only meaningful as a namespace's init
  sigset_t handled;
  sigemptyset(&handled);
  sigaddset(&handled, SIGCHLD);
  for (int s : kPassedOn) sigaddset(&handled, s);
  ::sigprocmask(SIG_BLOCK, &handled, nullptr);
  int signals = ::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signals < 0) fail(errno);

  // Nothing mounted here propagates back to the node, then the namespace's own /proc.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail(errno);
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) fail(errno);
  if (::write(kControl, "R", 1) != 1) return 1;

  int32_t main_pid = 0;
  if (!read_all(kControl, &main_pid, sizeof main_pid) || main_pid <= 1) return 1;
  ::close(kControl);
  int main_fd = int(::syscall(SYS_pidfd_open, main_pid, 0));
  if (main_fd < 0) return 1;  // it has ended already

  for (;;) {
    pollfd fds[2] = {{main_fd, POLLIN, 0}, {signals, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return 1;
    if (fds[0].revents) return 0;  // the main process ended: so does the job
    signalfd_siginfo si;
    while (::read(signals, &si, sizeof si) == sizeof si) {
      if (si.ssi_signo == SIGCHLD)
        reap_orphans();
      else
        ::syscall(SYS_pidfd_send_signal, main_fd, int(si.ssi_signo), nullptr, 0);
    }
    reap_orphans();
  }
}
