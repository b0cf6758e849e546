// What /proc tells about a process: its memory map, mm fields, open files, credentials and
// signal dispositions. The parsers are pure functions of the file's text (unit-tested); the
// readers open /proc/PID/... Internal to pm/ (capture uses it).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dipc/status.h"

namespace ferry::pm {

// One line of /proc/PID/maps.
struct Vma {
  uint64_t start = 0, end = 0;
  bool read = false, write = false, exec = false, shared = false;
  uint64_t offset = 0;
  uint32_t dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
  std::string path;  // "" for anonymous memory; "[heap]", "[stack]", "[vdso]", ... or a file

  uint64_t size() const { return end - start; }
  bool is_file() const { return inode != 0; }
  // [vdso], [vvar], [vsyscall], ...: not memory of the program's own. Named anonymous memory
  // ([anon:NAME], prctl PR_SET_VMA_ANON_NAME) is the program's.
  bool is_special() const {
    return !path.empty() && path.front() == '[' && path != "[heap]" && path != "[stack]" && path.rfind("[anon:", 0) != 0;
  }
  int prot() const;  // PROT_* bits
};

Result<std::vector<Vma>> parse_maps(std::string_view text);
Result<std::vector<Vma>> read_maps(pid_t pid);

// The mm fields PR_SET_MM_MAP restores, from /proc/PID/stat (brk itself is not there: ask
// the process with brk(0)).
struct MmFields {
  uint64_t start_code = 0, end_code = 0, start_data = 0, end_data = 0, start_brk = 0, start_stack = 0;
  uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
};
Result<MmFields> parse_stat_mm(std::string_view stat_text);

// From /proc/PID/status.
struct StatusInfo {
  int threads = 0;
  uint32_t umask = 022;
  uint32_t uid[4] = {0, 0, 0, 0};  // real, effective, saved, filesystem
  uint32_t gid[4] = {0, 0, 0, 0};
  std::vector<uint32_t> groups;
  uint64_t sig_ignored = 0, sig_caught = 0;  // bit n-1 for signal n
  uint64_t sig_pending_thread = 0, sig_pending_shared = 0;
  std::string state;  // "S (sleeping)", ...
  bool traced = false;  // TracerPid != 0
  uint64_t rss_anon_kib = 0;
};
Result<StatusInfo> parse_status(std::string_view text);

// An open file descriptor.
struct OpenFd {
  int fd = -1;
  std::string target;  // readlink of /proc/PID/fd/N: a path, "pipe:[123]", "socket:[456]", ...
  uint32_t mode = 0;   // st_mode of what it refers to
  uint64_t position = 0;
  uint32_t flags = 0;  // open flags from fdinfo (octal there)
  bool cloexec = false;
  uint64_t inode = 0;  // st_ino of what it refers to
  std::string info;    // /proc/PID/fdinfo/N as read
};
Result<std::vector<OpenFd>> read_fds(pid_t pid);
// "pos:\t0\nflags:\t0100002\n..." -> position and flags.
Status parse_fdinfo(std::string_view text, OpenFd& fd);

// The ids of a process's threads (/proc/PID/task), ascending; empty for an unknown pid.
std::vector<pid_t> task_ids(pid_t pid);
// Whether `pid` is a thread-group leader that has exited (a zombie) while other threads of its
// group run: its /proc entries of the process (maps, fd, mem) are then empty, and ptrace
// cannot attach to it.
bool leader_exited(pid_t pid);
// A task of process `pid` whose /proc entries show the process's memory and files: `pid`
// itself, or, when its leader has exited, its lowest live thread.
pid_t task_with_memory(pid_t pid);

std::string read_text(const std::string& path);  // "" when unreadable
std::string read_link(const std::string& path);   // "" when unreadable

}  // namespace ferry::pm
