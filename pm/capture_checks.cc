#include "pm/capture_checks.h"
#include "pm/carried_files.h"
#include "pm/job_namespace.h"
#include "pm/fifos.h"
#include "pm/kernel_objects.h"
#include "pm/posix_timers.h"
#include "pm/unix_sockets.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sstream>

namespace ferry::pm {
namespace {

Error refused(const std::string& why) { return make_error(ErrorCode::kRefused, why); }

std::string range(const Vma& v) {
  std::ostringstream s;
  s << std::hex << v.start << "-" << v.end;
  return s.str();
}

// Does /proc/PID/net/<table> list a socket with this inode? (inode is the 10th column of the
// tcp/udp tables and the 7th of unix.)
bool table_has_inode(pid_t pid, const std::string& table, const std::string& inode, int column) {
  std::string text = read_text("/proc/" + std::to_string(pid) + "/net/" + table);
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string field;
    for (int i = 0; i < column && f >> field; ++i) {
    }
    if (field == inode) return true;
  }
  return false;
}

}  // namespace

Status check_internal_pipe(pid_t pid, const OpenFd& f, const std::vector<OpenFd>& fds) {
  std::string fd = "fd " + std::to_string(f.fd);
  bool other_end = false;
  for (const auto& g : fds)
    if (g.fd != f.fd && g.target == f.target && (g.flags & O_ACCMODE) != (f.flags & O_ACCMODE)) other_end = true;
  if (!other_end)
    return refused(fd + " is a pipe to another process: only stdin, stdout and stderr may be such pipes");
  return Status::Ok();  // bytes in it are carried (capture.cc)
}

std::string socket_kind(pid_t pid, const std::string& target) {
  auto open = target.find('['), close = target.find(']');
  if (open == std::string::npos || close == std::string::npos) return "socket";
  std::string inode = target.substr(open + 1, close - open - 1);
  if (table_has_inode(pid, "tcp", inode, 10) || table_has_inode(pid, "tcp6", inode, 10)) return "TCP socket";
  if (table_has_inode(pid, "udp", inode, 10) || table_has_inode(pid, "udp6", inode, 10)) return "UDP socket";
  if (table_has_inode(pid, "unix", inode, 7)) return "unix socket";
  return "socket";
}

Status check_movable(pid_t pid, const StatusInfo& status, const std::vector<Vma>& maps,
                     const std::vector<OpenFd>& fds) {
  if (auto ns = namespace_pids(pid); ns && ns.value().size() > 2)
    return refused("it is " + std::to_string(ns.value().size() - 1) +
                   " pid namespaces below this node's: only a job's own namespace (one level) is recreated");
  for (const auto& f : fds) {
    std::string fd = "fd " + std::to_string(f.fd);
    bool stdio = f.fd <= 2;
    if (f.target.rfind("socket:", 0) == 0) {
      if (stdio) continue;  // stdio is reconnected by whoever restores the process
      Status pair = check_unix_socket(f, fds);
      if (pair) continue;  // one end of a pair the process holds: it moves (pm/unix_sockets.h)
      if (pair.error().code != ErrorCode::kNotFound) return pair;
      return refused(fd + " is a " + socket_kind(pid, f.target) + ": sockets cannot move");
    }
    if (f.target.rfind("pipe:", 0) == 0) {
      if (stdio) continue;
      if (Status s = check_internal_pipe(pid, f, fds); !s) return s;
      continue;
    }
    if (is_kernel_object(f)) {
      if (Status s = check_kernel_object(pid, f, fds); !s) return s;
      continue;
    }
    if (f.target.rfind("anon_inode:", 0) == 0) {
      std::string what = f.target.substr(11);
      if (what == "[io_uring]") what = "an io_uring instance";
      return refused(fd + " is " + what + ": it cannot move");
    }
    if (is_carried(f)) continue;  // its content travels with it (pm/carried_files.h)
    if (f.target.size() > 10 && f.target.compare(f.target.size() - 10, 10, " (deleted)") == 0)
      return refused(fd + " refers to a deleted file (" + f.target + ")");
    if (f.target.empty() || f.target.front() != '/')
      return refused(fd + " is " + (f.target.empty() ? std::string("unreadable") : f.target) + ": it cannot move");
    if (is_fifo(f)) {
      if (Status s = check_fifo(f, fds); !s) return s;
      continue;
    }
    if (!S_ISREG(f.mode) && !S_ISDIR(f.mode) && !S_ISCHR(f.mode))
      return refused(fd + " (" + f.target + ") is neither a regular file, a directory nor a character device");
  }
  if (Status s = check_posix_timers(pid, status.threads); !s) return s;
  for (const auto& v : maps) {
    if (is_carried(v, fds)) continue;  // its file's content travels with it (pm/carried_files.h)
    if (is_shared_memory(v, fds)) continue;  // moves as memory
    bool readonly_file = v.shared && !v.write && v.is_file() && !v.path.empty() && v.path.front() == '/' &&
                         v.path.rfind("/dev/", 0) != 0;
    if (v.shared && !readonly_file && v.path != "[vsyscall]")
      return refused("mapping " + range(v) + (v.path.empty() ? std::string(" (anonymous)") : " (" + v.path + ")") +
                     " is MAP_SHARED: shared memory cannot move");
    if (v.path.size() > 10 && v.path.compare(v.path.size() - 10, 10, " (deleted)") == 0)
      return refused("mapping " + range(v) + " is of a deleted file (" + v.path + ")");
    if (v.path.rfind("/memfd:", 0) == 0 || v.path.rfind("/SYSV", 0) == 0)
      return refused("mapping " + range(v) + " (" + v.path + ") cannot move");
  }
  return Status::Ok();
}

}  // namespace ferry::pm
