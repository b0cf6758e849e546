#include "dipc/name_service.h"

#include <spdlog/spdlog.h>

namespace ferry::dipc {
namespace {

std::string to_string(capnp::Data::Reader d) { return std::string(reinterpret_cast<const char*>(d.begin()), d.size()); }

// Port names are "master" or "role@node"; a node name is short and printable.
bool valid_name(const std::string& name, const std::string& node) {
  if (name.empty() || name.size() > 64 || node.size() > 32) return false;
  for (char c : name)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '@' || c == '-' || c == '_' || c == '.')) return false;
  return node.empty() ? name == "master" : name.size() > node.size() + 1 && name.substr(name.size() - node.size() - 1) == "@" + node;
}

}  // namespace

NameService::NameService(Port& port, std::chrono::milliseconds heartbeat) : port_(port), heartbeat_(heartbeat) {
  port_.set_resolver([this](const std::string& name) -> std::optional<std::string> {
    if (name == port_.name()) return port_.address();
    if (auto* r = find(name); r && !(why_down_ && why_down_(*r))) return r->address;
    return std::nullopt;
  });

  port_.serve<wire::RegisterPort>([this](Request& req) {
    auto r = req.body<wire::RegisterPort>();
    std::string name = r.getName(), node = r.getNode();
    if (!valid_name(name, node))
      return req.fail(ErrorCode::kInvalid, "'" + name + "' on node '" + node + "' is not a valid port name");
    auto now = std::chrono::steady_clock::now();
    auto& rec = table_[name];
    bool moved = !rec.address.empty() && rec.address != to_string(r.getAddress());
    rec = PortRecord{name, node, to_string(r.getAddress()), r.getAddressText(), r.getPid(), now, now};
    port_.forget(name);
    if (heard_) heard_(rec);
    spdlog::info("name service: {} registered at {} (pid {}){}", name, rec.address_text, rec.pid,
                 moved ? ", replacing an earlier registration" : "");
    req.reply<wire::RegisterReply>([&](wire::RegisterReply::Builder b) { b.setHeartbeatMs(uint32_t(heartbeat_.count())); });
  });

  port_.serve<wire::Heartbeat>([this](Request& req) {
    std::string name = req.body<wire::Heartbeat>().getName();
    auto it = table_.find(name);
    if (it == table_.end()) return req.fail(ErrorCode::kUnknownPort, "no port named '" + name + "' is registered");
    it->second.last_heard = std::chrono::steady_clock::now();
    if (heard_) heard_(it->second);
    req.reply<wire::Empty>([](wire::Empty::Builder) {});
  });

  port_.serve<wire::UnregisterPort>([this](Request& req) {
    std::string name = req.body<wire::UnregisterPort>().getName();
    if (table_.erase(name)) spdlog::info("name service: {} unregistered", name);
    req.reply<wire::Empty>([](wire::Empty::Builder) {});
  });

  port_.serve<wire::Resolve>([this](Request& req) {
    std::string name = req.body<wire::Resolve>().getName();
    const PortRecord* rec = find(name);
    if (name == port_.name()) {
      return req.reply<wire::ResolveReply>([&](wire::ResolveReply::Builder b) {
        b.setAddress(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(port_.address().data()), port_.address().size()));
        b.setAddressText(port_.address_text());
      });
    }
    if (!rec) return req.fail(ErrorCode::kUnknownPort, "no port named '" + name + "' is registered");
    if (why_down_)
      if (auto why = why_down_(*rec)) return req.fail(ErrorCode::kUnreachable, name + " is down: " + *why);
    req.reply<wire::ResolveReply>([&](wire::ResolveReply::Builder b) {
      b.setAddress(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(rec->address.data()), rec->address.size()));
      b.setAddressText(rec->address_text);
    });
  });
}

std::vector<PortRecord> NameService::ports() const {
  std::vector<PortRecord> out;
  for (auto& [name, rec] : table_) out.push_back(rec);
  return out;
}

const PortRecord* NameService::find(const std::string& name) const {
  auto it = table_.find(name);
  return it == table_.end() ? nullptr : &it->second;
}

}  // namespace ferry::dipc
