#include "dipc/cluster_key.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace ferry::dipc {

// Two cipher contexts keyed once (one to sign, one to verify); each message only sets its IV.
struct ClusterKey::State {
  EVP_CIPHER_CTX* sign = nullptr;
  EVP_CIPHER_CTX* check = nullptr;
  uint64_t prefix = 0;
  uint32_t counter = 0;
  ~State() {
    EVP_CIPHER_CTX_free(sign);
    EVP_CIPHER_CTX_free(check);
  }
  void new_prefix() { RAND_bytes(reinterpret_cast<unsigned char*>(&prefix), sizeof prefix); }
};

ClusterKey::ClusterKey(std::unique_ptr<State> s) : s_(std::move(s)) {}
ClusterKey::ClusterKey(ClusterKey&&) noexcept = default;
ClusterKey& ClusterKey::operator=(ClusterKey&&) noexcept = default;
ClusterKey::~ClusterKey() = default;

namespace {

// GMAC: GCM with the data as associated data and nothing to encrypt.
bool gmac(EVP_CIPHER_CTX* ctx, const unsigned char* nonce, std::span<const std::byte> data, unsigned char* tag,
          bool encrypting) {
  int len = 0;
  if (encrypting) {
    if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) != 1) return false;
    if (EVP_EncryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), int(data.size())) != 1)
      return false;
    if (EVP_EncryptFinal_ex(ctx, nullptr, &len) != 1) return false;
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1;
  }
  if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce) != 1) return false;
  if (EVP_DecryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), int(data.size())) != 1)
    return false;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag) != 1) return false;
  return EVP_DecryptFinal_ex(ctx, nullptr, &len) == 1;  // checks the tag in constant time
}

}  // namespace

ClusterKey ClusterKey::from_bytes(std::span<const std::byte> secret) {
  unsigned char aes_key[32];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), aes_key);
  auto s = std::make_unique<State>();
  s->sign = EVP_CIPHER_CTX_new();
  s->check = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(s->sign, EVP_aes_256_gcm(), nullptr, aes_key, nullptr);
  EVP_DecryptInit_ex(s->check, EVP_aes_256_gcm(), nullptr, aes_key, nullptr);
  OPENSSL_cleanse(aes_key, sizeof aes_key);
  s->new_prefix();
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
  auto key = from_bytes(bytes);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return key;
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

ClusterKey::Tag ClusterKey::sign(std::span<const std::byte> data) {
  Tag tag{};
  if (++s_->counter == 0) s_->new_prefix();  // never reuse a nonce
  unsigned char* nonce = reinterpret_cast<unsigned char*>(tag.data());
  std::memcpy(nonce, &s_->prefix, 8);
  std::memcpy(nonce + 8, &s_->counter, 4);
  gmac(s_->sign, nonce, data, nonce + kNonceBytes, true);
  return tag;
}

bool ClusterKey::verify(std::span<const std::byte> data, std::span<const std::byte> tag) const {
  if (tag.size() != kTagBytes) return false;
  unsigned char nonce[kNonceBytes], mac[16];
  std::memcpy(nonce, tag.data(), kNonceBytes);
  std::memcpy(mac, tag.data() + kNonceBytes, 16);
  return gmac(s_->check, nonce, data, mac, false);
}

}  // namespace ferry::dipc
