// Test harness over the real `ferry` CLI: runs commands, starts and removes clusters in a
// private state root, and checks that nothing is left behind. Used by every integration test
// that needs a cluster.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace ferry::testing {

struct CommandResult {
  int status = -1;   // exit status
  std::string out;   // stdout
  std::string err;   // stderr
};

// Runs build/bin/ferry with `args` (no shell), with FERRY_STATE_ROOT set to `state_root`.
CommandResult ferry(const std::filesystem::path& state_root, const std::vector<std::string>& args);

// A cluster for one test: a fresh state root under /tmp and a unique name; down() on
// destruction if the test did not do it.
class TestCluster {
 public:
  explicit TestCluster(std::string name);
  ~TestCluster();

  CommandResult up(const std::vector<std::string>& extra = {});
  CommandResult down();
  CommandResult run(std::vector<std::string> args) const;  // prepends --cluster NAME
  nlohmann::json nodes_json() const;                        // `ferry nodes --json`, parsed
  // Waits until `node` has `state` in `ferry nodes` or the timeout passes; returns the last state seen.
  std::string wait_for_state(const std::string& node, const std::string& state, int timeout_ms) const;
  nlohmann::json manifest() const;
  std::vector<int> daemon_pids() const;  // from the manifest
  const std::string& name() const { return name_; }
  // Leave the cluster running and its files in place when this object goes (for a post-mortem).
  void keep() { keep_ = true; }
  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path dir() const { return root_ / name_; }

 private:
  std::string name_;
  std::filesystem::path root_;
  bool is_up_ = false;
  bool keep_ = false;
};

bool process_alive(int pid);  // alive and not a zombie
std::vector<std::string> namespaces_with_prefix(const std::string& prefix);

}  // namespace ferry::testing
