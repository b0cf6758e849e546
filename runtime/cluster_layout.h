// Where a cluster's files live, shared by the daemons and the CLI. A cluster named NAME keeps
// everything under one state directory, so several clusters never clash:
//
//   <root>/<NAME>/cluster.json      what `ferry cluster up` started (read by `down`)
//   <root>/<NAME>/cluster.key       the cluster key, mode 0600
//   <root>/<NAME>/master/           master.sock, master.pid, master.address, master.log
//   <root>/<NAME>/<node>/           agent.sock, agent.pid, agent.log, pager.sock, pager.pid, ...
//
// <root> is $FERRY_STATE_ROOT or /run/ferry; NAME is --cluster, $FERRY_CLUSTER or "default".
#pragma once

#include <filesystem>
#include <string>

namespace ferry::runtime {

class ClusterLayout {
 public:
  ClusterLayout(std::filesystem::path root, std::string name)
      : root_(std::move(root)), name_(std::move(name)) {}
  // From the environment, with `name` overriding $FERRY_CLUSTER when not empty.
  static ClusterLayout from_env(const std::string& name);
  static bool valid_name(const std::string& name);  // [a-z0-9-], 1..12 characters

  const std::string& name() const { return name_; }
  std::filesystem::path dir() const { return root_ / name_; }
  std::filesystem::path manifest() const { return dir() / "cluster.json"; }
  std::filesystem::path key_file() const { return dir() / "cluster.key"; }
  std::filesystem::path daemon_dir(const std::string& node) const {
    return dir() / (node.empty() ? "master" : node);
  }
  // role: "master", "agent" or "pager"; node empty for the master.
  std::filesystem::path socket(const std::string& role, const std::string& node) const {
    return daemon_dir(node) / (role + ".sock");
  }

 private:
  std::filesystem::path root_;
  std::string name_;
};

}  // namespace ferry::runtime
