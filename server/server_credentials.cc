#include "server/server_credentials.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/security/server_credentials.h"

namespace edge {
namespace {

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

// The whole file, or an error naming `field` and `path` with the OS reason
// (NOT_FOUND, PERMISSION_DENIED, ... as absl maps errno).
absl::StatusOr<std::string> ReadPemFile(absl::string_view field,
                                        const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat(field, " ", path, ": cannot read"));
  }
  std::string text;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) {
    text.append(buffer, n);
  }
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) {
    return absl::UnavailableError(
        absl::StrCat(field, " ", path, ": read error"));
  }
  return text;
}

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())),
                &BIO_free);
}

// The first certificate of a PEM text; nullptr if there is none.
X509Ptr FirstCertificate(const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr),
               &X509_free);
  ERR_clear_error();
  return cert;
}

// Refuses a passphrase: OpenSSL's default callback would prompt on the
// terminal, and a server has nobody to answer it.
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) {
  return 0;
}

absl::Status CheckCertificateAndKey(const ServerConfig& config,
                                    const std::string& cert_pem,
                                    const std::string& key_pem) {
  X509Ptr cert = FirstCertificate(cert_pem);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls_cert_file ", config.tls_cert_file(),
                     ": no PEM certificate (BEGIN CERTIFICATE) in it"));
  }
  BioPtr bio = MemoryBio(key_pem);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr),
             &EVP_PKEY_free);
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls_key_file ", config.tls_key_file(),
        ": no unencrypted PEM private key in it (encrypted keys are not "
        "supported)"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "tls_key_file ", config.tls_key_file(),
        " is not the key of tls_cert_file ", config.tls_cert_file()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerConfig& config) {
  if (config.tls_cert_file().empty()) return grpc::InsecureServerCredentials();
  ASSIGN_OR_RETURN(std::string cert_pem,
                   ReadPemFile("tls_cert_file", config.tls_cert_file()));
  ASSIGN_OR_RETURN(std::string key_pem,
                   ReadPemFile("tls_key_file", config.tls_key_file()));
  RETURN_IF_ERROR(CheckCertificateAndKey(config, cert_pem, key_pem));

  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({key_pem, cert_pem});
  options.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  if (!config.tls_client_ca_file().empty()) {
    ASSIGN_OR_RETURN(
        options.pem_root_certs,
        ReadPemFile("tls_client_ca_file", config.tls_client_ca_file()));
    if (FirstCertificate(options.pem_root_certs) == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("tls_client_ca_file ", config.tls_client_ca_file(),
                       ": no PEM certificate (BEGIN CERTIFICATE) in it"));
    }
    // A handshake without a client certificate, or with one these CAs did
    // not sign, fails before any RPC is seen.
    options.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(options);
}

std::string DescribeTransportSecurity(const ServerConfig& config) {
  if (config.tls_cert_file().empty()) return "plaintext";
  if (config.tls_client_ca_file().empty()) {
    return absl::StrCat("TLS (certificate ", config.tls_cert_file(), ")");
  }
  return absl::StrCat("mutual TLS (certificate ", config.tls_cert_file(),
                      ", client CA ", config.tls_client_ca_file(), ")");
}

}  // namespace edge
