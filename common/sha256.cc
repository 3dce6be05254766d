#include "common/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "absl/strings/escaping.h"

namespace edge {

std::string Sha256Hex(const void* data, size_t size) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  // EVP_Digest fails only on allocation failure or a broken libcrypto; there
  // is no useful digest to return then, and returning a wrong one would
  // accept or reject weight files at random.
  if (EVP_Digest(data, size, digest, &digest_size, EVP_sha256(), nullptr) !=
      1) {
    std::abort();
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), digest_size));
}

}  // namespace edge
