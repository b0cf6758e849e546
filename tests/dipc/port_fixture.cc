#include "port_fixture.h"

#include <signal.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <stdexcept>
#include <vector>

#include "dipc/cluster_key.h"

namespace ferry::dipc::testing {

namespace fs = std::filesystem;

KeyDir::KeyDir() {
  std::random_device rd;
  dir = fs::temp_directory_path() / ("ferry-dipc-test-" + std::to_string(getpid()) + "-" + std::to_string(rd() % 1000000));
  fs::create_directories(dir);
  if (!ClusterKey::generate(key()).ok()) throw std::runtime_error("cannot write a cluster key");
}

KeyDir::~KeyDir() {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

bool maybe_serve() {
  const char* spec = std::getenv("FERRY_TEST_SERVE");  // "KEYFILE;SOCKETDIR;SERVICE;NAME;MASTER;FD"
  if (!spec) return false;
  std::vector<std::string> parts;
  std::string s(spec);
  for (size_t at = 0;;) {
    auto semi = s.find(';', at);
    parts.push_back(s.substr(at, semi == std::string::npos ? std::string::npos : semi - at));
    if (semi == std::string::npos) break;
    at = semi + 1;
  }
  if (parts.size() != 6) _exit(2);
  std::string key = parts[0], dir = parts[1], name = parts[3], master = parts[4];
  int fd = std::atoi(parts[5].c_str());
  auto loop = EventLoop::create().value();
  PortOptions o;
  o.name = name;
  o.fabric.host = "127.0.0.1";
  o.fabric.service = parts[2];
  o.key_file = key;
  if (name == "master") {
    o.control_socket = fs::path(dir) / "master.sock";
  } else {  // a port of a node ("agent@n2"), registered with that master
    o.node = name.substr(name.find('@') + 1);
    o.master = master;
    o.register_retry = std::chrono::milliseconds(50);
  }
  auto port = Port::open(o, *loop);
  if (!port) {
    std::string msg = "ERROR " + port.error().message + "\n";
    [[maybe_unused]] ssize_t n = write(fd, msg.data(), msg.size());
    _exit(1);
  }
  std::unique_ptr<NameService> names;
  if (name == "master") names = std::make_unique<NameService>(*port.value(), std::chrono::milliseconds(100));
  std::string line = port.value()->address_text() + "\n";
  [[maybe_unused]] ssize_t n = write(fd, line.data(), line.size());
  close(fd);
  loop->run();
  _exit(0);
}

ServerProcess::ServerProcess(const fs::path& key, const fs::path& socket_dir, const std::string& service,
                             const std::string& name, const std::string& master)
    : socket_dir_(socket_dir) {
  int p[2];
  if (pipe(p) != 0) throw std::runtime_error("pipe");
  pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(125);  // dies with the test
    close(p[0]);
    std::string spec = key.string() + ";" + socket_dir.string() + ";" + service + ";" + name + ";" + master + ";" +
                       std::to_string(p[1]);
    setenv("FERRY_TEST_SERVE", spec.c_str(), 1);
    execl("/proc/self/exe", "dipc-test-server", nullptr);
    _exit(127);
  }
  close(p[1]);
  char buf[256];
  ssize_t n = read(p[0], buf, sizeof buf - 1);
  close(p[0]);
  if (n <= 0) throw std::runtime_error("the test server did not start");
  address_.assign(buf, size_t(n));
  while (!address_.empty() && address_.back() == '\n') address_.pop_back();
  if (address_.rfind("ERROR", 0) == 0) throw std::runtime_error(address_);
}

ServerProcess::~ServerProcess() { kill(); }

void ServerProcess::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

Client::Client(const std::string& name, const std::string& node, const std::string& master, const fs::path& key) {
  loop_ = EventLoop::create().value();
  PortOptions o;
  o.name = name;
  o.node = node;
  o.fabric.host = "127.0.0.1";
  o.master = master;
  o.key_file = key;
  o.register_retry = std::chrono::milliseconds(50);
  auto p = Port::open(o, *loop_);
  if (!p) throw std::runtime_error(p.error().message);
  port_ = std::move(p).value();
  thread_ = std::thread([this] { loop_->run(); });
}

Client::~Client() {
  loop_->stop();
  thread_.join();
  port_.reset();
}

bool Client::wait_registered(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    bool done = false;
    std::promise<bool> answer;
    loop_->post([&] { answer.set_value(port_->registered()); });
    done = answer.get_future().get();
    if (done) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace ferry::dipc::testing
