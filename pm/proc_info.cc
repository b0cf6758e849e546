#include "pm/proc_info.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ferry::pm {
namespace {

bool parse_hex(std::string_view s, uint64_t& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out, 16);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::string_view next_field(std::string_view& line) {
  size_t i = line.find_first_not_of(' ');
  if (i == std::string_view::npos) {
    line = {};
    return {};
  }
  line.remove_prefix(i);
  size_t j = line.find(' ');
  auto f = line.substr(0, j);
  line = j == std::string_view::npos ? std::string_view{} : line.substr(j);
  return f;
}

std::string pid_dir(pid_t pid) { return "/proc/" + std::to_string(pid); }

}  // namespace

int Vma::prot() const { return (read ? PROT_READ : 0) | (write ? PROT_WRITE : 0) | (exec ? PROT_EXEC : 0); }

Result<std::vector<Vma>> parse_maps(std::string_view text) {
  std::vector<Vma> out;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line.empty()) continue;
    auto bad = [&] { return make_error(ErrorCode::kInvalid, "maps line " + std::to_string(line_no) + " is malformed: " + std::string(line)); };
    std::string_view rest = line;
    auto range = next_field(rest), perms = next_field(rest), offset = next_field(rest), dev = next_field(rest),
         inode = next_field(rest);
    Vma v;
    size_t dash = range.find('-'), colon = dev.find(':');
    if (dash == std::string_view::npos || colon == std::string_view::npos || perms.size() != 4) return bad();
    uint64_t major = 0, minor = 0;
    if (!parse_hex(range.substr(0, dash), v.start) || !parse_hex(range.substr(dash + 1), v.end) ||
        !parse_hex(offset, v.offset) || !parse_hex(dev.substr(0, colon), major) ||
        !parse_hex(dev.substr(colon + 1), minor))
      return bad();
    auto ir = std::from_chars(inode.data(), inode.data() + inode.size(), v.inode);
    if (ir.ec != std::errc()) return bad();
    v.dev_major = uint32_t(major);
    v.dev_minor = uint32_t(minor);
    v.read = perms[0] == 'r';
    v.write = perms[1] == 'w';
    v.exec = perms[2] == 'x';
    v.shared = perms[3] == 's';
    size_t p = rest.find_first_not_of(' ');
    if (p != std::string_view::npos) v.path = std::string(rest.substr(p));
    out.push_back(std::move(v));
  }
  return out;
}

Result<std::vector<Vma>> read_maps(pid_t pid) {
  std::string text = read_text(pid_dir(pid) + "/maps");
  if (text.empty()) return make_error(ErrorCode::kNotFound, "no memory map for process " + std::to_string(pid));
  return parse_maps(text);
}

Result<MmFields> parse_stat_mm(std::string_view text) {
  size_t paren = text.rfind(')');
  if (paren == std::string_view::npos) return make_error(ErrorCode::kInvalid, "stat has no command field");
  std::string_view rest = text.substr(paren + 1);
  std::vector<uint64_t> f(3, 0);  // fields 1..2 are pid and comm: keep numbering 1-based from field 3
  while (!rest.empty()) {
    auto field = next_field(rest);
    if (field.empty()) break;
    uint64_t v = 0;
    std::from_chars(field.data(), field.data() + field.size(), v);
    f.push_back(v);
  }
  // f[k] is stat field k+1 (1-based numbering of proc(5)), starting with field 3 at f[3]... so
  // field n is f[n] when f[3] holds field 3.
  if (f.size() <= 51) return make_error(ErrorCode::kInvalid, "stat has too few fields");
  MmFields m;
  m.start_code = f[26];
  m.end_code = f[27];
  m.start_stack = f[28];
  m.start_data = f[45];
  m.end_data = f[46];
  m.start_brk = f[47];
  m.arg_start = f[48];
  m.arg_end = f[49];
  m.env_start = f[50];
  m.env_end = f[51];
  return m;
}

Result<StatusInfo> parse_status(std::string_view text) {
  StatusInfo s;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    std::istringstream v(line.substr(colon + 1));
    if (key == "Threads") v >> s.threads;
    else if (key == "Umask") v >> std::oct >> s.umask;
    else if (key == "RssAnon") v >> s.rss_anon_kib;
    else if (key == "Uid") v >> s.uid[0] >> s.uid[1] >> s.uid[2] >> s.uid[3];
    else if (key == "Gid") v >> s.gid[0] >> s.gid[1] >> s.gid[2] >> s.gid[3];
    else if (key == "Groups") for (uint32_t g; v >> g;) s.groups.push_back(g);
    else if (key == "SigIgn") v >> std::hex >> s.sig_ignored;
    else if (key == "SigCgt") v >> std::hex >> s.sig_caught;
    else if (key == "SigPnd") v >> std::hex >> s.sig_pending_thread;
    else if (key == "ShdPnd") v >> std::hex >> s.sig_pending_shared;
    else if (key == "State") { std::getline(v >> std::ws, s.state); }
    else if (key == "TracerPid") { int t = 0; v >> t; s.traced = t != 0; }
  }
  if (s.threads == 0) return make_error(ErrorCode::kInvalid, "status has no Threads line");
  return s;
}

Status parse_fdinfo(std::string_view text, OpenFd& fd) {
  std::istringstream in{std::string(text)};
  bool pos = false, flags = false;
  for (std::string line; std::getline(in, line);) {
    std::istringstream v(line.substr(line.find(':') == std::string::npos ? 0 : line.find(':') + 1));
    if (line.rfind("pos:", 0) == 0) pos = bool(v >> fd.position);
    if (line.rfind("flags:", 0) == 0) flags = bool(v >> std::oct >> fd.flags);
  }
  if (!pos || !flags) return make_error(ErrorCode::kInvalid, "fdinfo lacks pos or flags");
  fd.cloexec = (fd.flags & O_CLOEXEC) != 0;
  return Status::Ok();
}

Result<std::vector<OpenFd>> read_fds(pid_t pid) {
  std::string dir = pid_dir(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return make_error(ErrorCode::kNotFound, errno_message("list " + dir, errno));
  std::vector<OpenFd> out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    OpenFd f;
    f.fd = std::atoi(e->d_name);
    f.target = read_link(dir + "/" + e->d_name);
    struct stat st {};
    if (::stat((dir + "/" + e->d_name).c_str(), &st) == 0) {
      f.mode = st.st_mode;
      f.inode = st.st_ino;
    }
    f.info = read_text(pid_dir(pid) + "/fdinfo/" + e->d_name);
    if (Status s = parse_fdinfo(f.info, f); !s) continue;  // closed meanwhile
    out.push_back(std::move(f));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const OpenFd& a, const OpenFd& b) { return a.fd < b.fd; });
  return out;
}

bool leader_exited(pid_t pid) {
  std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z' && task_ids(pid).size() > 1;
}

pid_t task_with_memory(pid_t pid) {
  if (!leader_exited(pid)) return pid;
  for (pid_t tid : task_ids(pid))
    if (tid != pid) return tid;
  return pid;
}

std::vector<pid_t> task_ids(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    pid_t tid = std::atoi(e.path().filename().c_str());
    if (tid > 0) out.push_back(tid);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string read_link(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

}  // namespace ferry::pm
