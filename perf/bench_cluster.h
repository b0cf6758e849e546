// A real local Ferry cluster for a benchmark: `ferry cluster up` in a private state root
// ($FERRY_STATE_ROOT under /tmp) with a name of its own, so it runs beside any other cluster of
// the machine. Every CLI call goes through the real `ferry` binary next to ferry-bench. The
// destructor takes the cluster down (its agents kill their jobs, its pagers their shells) and
// removes the state root, also when the benchmark returns early or throws.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "dipc/local_client.h"

namespace ferry::bench {

struct CliResult {
  int status = -1;
  std::string out;  // stdout
  std::string err;  // stderr
  double ms = 0;    // wall time of the call
  std::string text() const { return out + err; }
};

class Cluster {
 public:
  // `tag` goes into the cluster's name (a few letters: "dt" for downtime).
  explicit Cluster(const std::string& tag, int nodes = 2);
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  ~Cluster();

  // "" or what went wrong (with the CLI's words).
  std::string up();
  void down();
  bool is_up() const { return up_; }

  // `ferry --cluster NAME ARGS...` (and `--node NODE` when given), stdin from /dev/null.
  CliResult cli(const std::vector<std::string>& args, const std::string& node = "") const;

  const std::string& name() const { return name_; }
  std::filesystem::path dir() const { return root_ / name_; }
  pid_t pager_pid(const std::string& node) const;
  pid_t agent_pid(const std::string& node) const;
  // A control connection to a node's pager (for the benchmarks' fine-grained polling).
  Result<std::unique_ptr<dipc::LocalClient>> pager(const std::string& node) const;

 private:
  std::string name_;
  std::filesystem::path root_;
  int nodes_;
  bool up_ = false;
};

}  // namespace ferry::bench
