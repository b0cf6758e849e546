#include "dipc/cluster_key.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace ferry::dipc {

// One MAC context keyed once; EVP_MAC_init with a null key re-uses the key for each message.
struct ClusterKey::State {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
  ~State() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
};

ClusterKey::ClusterKey(std::unique_ptr<State> s) : s_(std::move(s)) {}
ClusterKey::ClusterKey(ClusterKey&&) noexcept = default;
ClusterKey& ClusterKey::operator=(ClusterKey&&) noexcept = default;
ClusterKey::~ClusterKey() = default;

ClusterKey ClusterKey::from_bytes(std::span<const std::byte> secret) {
  auto s = std::make_unique<State>();
  s->mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  s->ctx = EVP_MAC_CTX_new(s->mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  EVP_MAC_init(s->ctx, reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
               params);
  return ClusterKey(std::move(s));
}

Result<ClusterKey> ClusterKey::load(const std::filesystem::path& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(ErrorCode::kUnavailable, errno_message("cluster key " + file.string(), errno));
  struct stat st {};
  fstat(fd, &st);
  std::vector<std::byte> bytes(4096);
  ssize_t n = ::read(fd, bytes.data(), bytes.size());
  ::close(fd);
  if ((st.st_mode & 077) != 0)
    return make_error(ErrorCode::kUnauthorized,
                      "cluster key " + file.string() + " is readable by others (mode must be 0600)");
  if (n < 16)
    return make_error(ErrorCode::kInvalid, "cluster key " + file.string() + " is shorter than 16 bytes");
  bytes.resize(size_t(n));
  return from_bytes(bytes);
}

Status ClusterKey::generate(const std::filesystem::path& file) {
  std::array<unsigned char, 32> secret{};
  if (RAND_bytes(secret.data(), int(secret.size())) != 1)
    return make_error(ErrorCode::kInternal, "no randomness for a cluster key");
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(ErrorCode::kUnavailable, errno_message("create cluster key " + file.string(), errno));
  ssize_t n = ::write(fd, secret.data(), secret.size());
  ::close(fd);
  OPENSSL_cleanse(secret.data(), secret.size());
  if (n != ssize_t(secret.size()))
    return make_error(ErrorCode::kUnavailable, errno_message("write cluster key " + file.string(), errno));
  return Status::Ok();
}

ClusterKey::Mac ClusterKey::mac(std::span<const std::byte> a, std::span<const std::byte> b) const {
  Mac out{};
  size_t len = 0;
  EVP_MAC_init(s_->ctx, nullptr, 0, nullptr);
  EVP_MAC_update(s_->ctx, reinterpret_cast<const unsigned char*>(a.data()), a.size());
  if (!b.empty()) EVP_MAC_update(s_->ctx, reinterpret_cast<const unsigned char*>(b.data()), b.size());
  EVP_MAC_final(s_->ctx, reinterpret_cast<unsigned char*>(out.data()), &len, out.size());
  return out;
}

bool ClusterKey::verify(std::span<const std::byte> a, std::span<const std::byte> b,
                        std::span<const std::byte> expected) const {
  if (expected.size() != kMacBytes) return false;
  Mac m = mac(a, b);
  return CRYPTO_memcmp(m.data(), expected.data(), kMacBytes) == 0;
}

}  // namespace ferry::dipc
