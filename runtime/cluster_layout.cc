#include "runtime/cluster_layout.h"

#include <cstdlib>

namespace ferry::runtime {

ClusterLayout ClusterLayout::from_env(const std::string& name) {
  const char* root = std::getenv("FERRY_STATE_ROOT");
  const char* env_name = std::getenv("FERRY_CLUSTER");
  std::string n = !name.empty() ? name : (env_name && *env_name ? env_name : "default");
  return ClusterLayout(root && *root ? root : "/run/ferry", n);
}

bool ClusterLayout::valid_name(const std::string& name) {
  if (name.empty() || name.size() > 12) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

}  // namespace ferry::runtime
