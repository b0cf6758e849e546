// Real ports in real processes for the dipc integration tests: a server process (a master
// port with its name service, started by exec of this test binary) and in-process clients,
// each with its own event loop thread.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <future>
#include <thread>

#include "dipc/name_service.h"
#include "dipc/port.h"

namespace ferry::dipc::testing {

// A temporary directory with a cluster key in it.
struct KeyDir {
  KeyDir();
  ~KeyDir();
  std::filesystem::path dir;
  std::filesystem::path key() const { return dir / "cluster.key"; }
};

// The test binary, run with FERRY_TEST_SERVE set, becomes a server: call this first in main().
// Returns true when this process was a server (and has finished serving).
bool maybe_serve();

class ServerProcess {
 public:
  // Starts a "master" port (with name service) on 127.0.0.1 in a child process, at the given
  // port ("0": one the kernel chooses). With another `name` ("agent@n2"), a node's port that
  // registers with the master at `master` instead.
  ServerProcess(const std::filesystem::path& key, const std::filesystem::path& socket_dir,
                const std::string& service = "0", const std::string& name = "master", const std::string& master = "");
  ~ServerProcess();  // SIGKILL
  void kill();
  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }  // "127.0.0.1:PORT"
  std::filesystem::path control_socket() const { return socket_dir_ / "master.sock"; }

 private:
  pid_t pid_ = -1;
  std::string address_;
  std::filesystem::path socket_dir_;
};

// A port in this process with its own loop thread.
class Client {
 public:
  Client(const std::string& name, const std::string& node, const std::string& master, const std::filesystem::path& key);
  ~Client();
  Port& port() { return *port_; }
  EventLoop& loop() { return *loop_; }
  bool wait_registered(std::chrono::milliseconds timeout);

 private:
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Port> port_;
  std::thread thread_;
};

}  // namespace ferry::dipc::testing
