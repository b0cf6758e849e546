#include "pm/process_table.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace ferry::pm {

namespace fs = std::filesystem;
using nlohmann::json;

ProcessTable::ProcessTable(dipc::Port& port, fs::path store) : port_(port), store_(std::move(store)) {}

Result<std::unique_ptr<ProcessTable>> ProcessTable::open(dipc::Port& port, fs::path store) {
  std::unique_ptr<ProcessTable> t(new ProcessTable(port, std::move(store)));
  if (Status s = t->load(); !s) return s.error();
  t->serve();
  return t;
}

Status ProcessTable::load() {
  if (store_.empty() || !fs::exists(store_)) return {};
  try {
    std::ifstream in(store_);
    json j = json::parse(in);
    next_gpid_ = j.at("next_gpid");
    for (const auto& x : j.at("entries")) {
      Entry e;
      e.gpid = x.at("gpid");
      e.uid = x.at("uid");
      e.node = x.at("node");
      e.home = x.at("home");
      e.command = x.at("command");
      e.output = x.at("output");
      e.reason = x.at("reason");
      e.pid = x.at("pid");
      e.job_pid = x.value("job_pid", 0u);
      e.state = static_cast<wire::ProcessState>(x.at("state").get<int>());
      e.migrations = x.at("migrations");
      e.exit_status = x.at("exit_status");
      entries_[e.gpid] = e;
    }
    committed_ = j.at("committed").get<std::set<std::string>>();
    cancelled_ = j.at("cancelled").get<std::set<std::string>>();
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInvalid, "the process table " + store_.string() + " is damaged: " + e.what());
  }
  spdlog::info("master: process table loaded from {}: {} jobs, next gpid {}", store_.string(), entries_.size(), next_gpid_);
  return {};
}

void ProcessTable::save() {
  if (store_.empty()) return;
  json entries = json::array();
  for (const auto& [gpid, e] : entries_)
    entries.push_back({{"gpid", e.gpid}, {"uid", e.uid}, {"node", e.node}, {"home", e.home}, {"command", e.command},
                       {"output", e.output}, {"reason", e.reason}, {"pid", e.pid}, {"job_pid", e.job_pid}, {"state", int(e.state)},
                       {"migrations", e.migrations}, {"exit_status", e.exit_status}});
  std::string text = json{{"next_gpid", next_gpid_}, {"entries", entries}, {"committed", committed_},
                          {"cancelled", cancelled_}}.dump();
  fs::path tmp = store_.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == ssize_t(text.size()) && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  ok = ok && ::rename(tmp.c_str(), store_.c_str()) == 0;
  if (!ok) spdlog::error("master: cannot write the process table to {}: {}", store_.string(), std::strerror(errno));
}

std::set<std::string> ProcessTable::nodes_with_jobs() const {
  std::set<std::string> out;
  for (const auto& [gpid, e] : entries_)
    if (e.state == wire::ProcessState::RUNNING || e.state == wire::ProcessState::MIGRATING) out.insert(e.node);
  return out;
}

const ProcessTable::Entry* ProcessTable::find(uint64_t gpid) const {
  auto it = entries_.find(gpid);
  return it == entries_.end() ? nullptr : &it->second;
}

void ProcessTable::node_died(const std::string& node, const std::string& why) {
  for (auto& [gpid, e] : entries_)
    if (e.node == node && (e.state == wire::ProcessState::RUNNING || e.state == wire::ProcessState::MIGRATING)) {
      e.state = wire::ProcessState::LOST;
      e.reason = "node " + node + " died (" + why + ")";
      spdlog::info("master: gpid {} lost: {}", gpid, e.reason);
    }
  save();
}

void ProcessTable::fill(const Entry& e, wire::ProcessInfo::Builder out) {
  out.setGpid(e.gpid);
  out.setUid(e.uid);
  out.setNode(e.node);
  out.setPid(e.pid);
  out.setJobPid(e.job_pid);
  out.setState(e.state);
  out.setCommand(e.command);
  out.setMigrations(e.migrations);
  out.setExitStatus(e.exit_status);
  out.setReason(e.reason);
  out.setOutput(e.output);
  out.setHome(e.home);
}

void ProcessTable::serve() {
  port_.serve<wire::RegisterProcess>([this](dipc::Request& req) {
    auto r = req.body<wire::RegisterProcess>();
    Entry e;
    e.gpid = next_gpid_++;
    e.uid = r.getUid();
    e.node = e.home = r.getNode();
    e.pid = r.getPid();
    e.job_pid = r.getJobPid();
    e.command = r.getCommand();
    e.output = r.getOutput();
    entries_[e.gpid] = e;
    save();
    spdlog::info("master: gpid {} registered: pid {} on {} (pid {} in its job) for uid {}: {}", e.gpid, e.pid, e.node,
                 e.job_pid, e.uid, e.command);
    req.reply<wire::RegisterReply>([&](wire::RegisterReply::Builder b) { b.setGpid(e.gpid); });
  });

  port_.serve<wire::ProcessEnded>([this](dipc::Request& req) {
    auto r = req.body<wire::ProcessEnded>();
    auto it = entries_.find(r.getGpid());
    if (it == entries_.end()) return req.fail(ErrorCode::kNotFound, "no gpid " + std::to_string(r.getGpid()));
    Entry& e = it->second;
    if (e.state == wire::ProcessState::RUNNING || e.state == wire::ProcessState::MIGRATING) {
      if (std::string(r.getNode()) != e.node) {
        spdlog::warn("master: gpid {}: end reported by {} but it is on {}: ignored", e.gpid, r.getNode().cStr(), e.node);
        return req.fail(ErrorCode::kRefused, "gpid " + std::to_string(e.gpid) + " is on " + e.node);
      }
      e.state = r.getLost() ? wire::ProcessState::LOST : wire::ProcessState::EXITED;
      e.exit_status = r.getExitStatus();
      e.reason = r.getReason();
      save();
      spdlog::info("master: gpid {} {} on {}{}{}", e.gpid, r.getLost() ? "lost" : "exited with status " + std::to_string(e.exit_status),
                   e.node, e.reason.empty() ? "" : ": ", e.reason);
    }
    req.reply<dipc::wire::Empty>([](auto) {});
  });

  port_.serve<wire::CommitMigration>([this](dipc::Request& req) {
    auto r = req.body<wire::CommitMigration>();
    std::string id = r.getMigrationId();
    auto it = entries_.find(r.getGpid());
    if (it == entries_.end()) return req.fail(ErrorCode::kNotFound, "no gpid " + std::to_string(r.getGpid()));
    Entry& e = it->second;
    if (committed_.count(id)) {
      if (e.node != std::string(r.getTo()))
        return req.fail(ErrorCode::kRefused, "migration " + id + " was committed for another destination");
      return req.reply<dipc::wire::Empty>([](auto) {});
    }
    if (cancelled_.count(id)) return req.fail(ErrorCode::kRefused, "migration " + id + " was cancelled by its source");
    if (e.state != wire::ProcessState::RUNNING && e.state != wire::ProcessState::MIGRATING)
      return req.fail(ErrorCode::kRefused, "gpid " + std::to_string(e.gpid) + " has ended");
    if (e.node != std::string(r.getFrom()))
      return req.fail(ErrorCode::kRefused, "gpid " + std::to_string(e.gpid) + " is on " + e.node + ", not " + r.getFrom().cStr());
    committed_.insert(id);
    e.node = r.getTo();
    e.pid = r.getPid();
    ++e.migrations;
    save();
    spdlog::info("master: gpid {} migration {} committed: {} -> {} (pid {}), migration {} of this job", e.gpid, id,
                 r.getFrom().cStr(), e.node, e.pid, e.migrations);
    req.reply<dipc::wire::Empty>([](auto) {});
  });

  port_.serve<wire::CancelMigration>([this](dipc::Request& req) {
    auto r = req.body<wire::CancelMigration>();
    std::string id = r.getMigrationId();
    bool done = committed_.count(id) > 0;
    if (!done) {
      cancelled_.insert(id);
      save();
    }
    spdlog::info("master: gpid {} migration {}: cancel asked: {}", r.getGpid(), id, done ? "already committed" : "cancelled");
    req.reply<wire::CancelReply>([&](wire::CancelReply::Builder b) { b.setCommitted(done); });
  });

  port_.serve<wire::ListProcesses>([this](dipc::Request& req) {
    req.reply<wire::ProcessList>([&](wire::ProcessList::Builder b) {
      auto list = b.initProcesses(uint32_t(entries_.size()));
      uint32_t i = 0;
      for (const auto& [gpid, e] : entries_) fill(e, list[i++]);
    });
  });

  port_.serve<wire::LookupProcess>([this](dipc::Request& req) {
    uint64_t gpid = req.body<wire::LookupProcess>().getGpid();
    const Entry* e = find(gpid);
    if (!e) return req.fail(ErrorCode::kNotFound, "no process with gpid " + std::to_string(gpid));
    req.reply<wire::ProcessInfo>([&](wire::ProcessInfo::Builder b) { fill(*e, b); });
  });
}

}  // namespace ferry::pm
