// MakeServerCredentials' error paths: every refusal names the field and the
// file. The working TLS and mutual TLS modes are exercised end to end, with
// real certificates, by tests/deploy/tls_test.py.
#include "server/server_credentials.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace edge {
namespace {

using test_support::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

ServerConfig TlsConfig(const std::string& cert, const std::string& key) {
  ServerConfig config = DefaultServerConfig();
  config.set_model_dir("/m");
  config.set_tls_cert_file(cert);
  config.set_tls_key_file(key);
  return config;
}

TEST(ServerCredentialsTest, PlaintextWithoutCertificate) {
  ServerConfig config = DefaultServerConfig();
  EXPECT_TRUE(MakeServerCredentials(config).ok());
  EXPECT_EQ(DescribeTransportSecurity(config), "plaintext");
}

TEST(ServerCredentialsTest, MissingFileIsNotFoundNamingFieldAndPath) {
  TempDir dir;
  const std::string cert = dir.Join("absent.crt");
  auto credentials = MakeServerCredentials(TlsConfig(cert, cert));
  ASSERT_FALSE(credentials.ok());
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(credentials.status().message(),
              AllOf(HasSubstr("tls_cert_file"), HasSubstr(cert)));
}

TEST(ServerCredentialsTest, FileWithoutPemIsInvalidArgument) {
  TempDir dir;
  const std::string cert = dir.Join("server.crt");
  const std::string key = dir.Join("server.key");
  test_support::WriteFileOrDie(cert, "not a certificate\n");
  test_support::WriteFileOrDie(key, "not a key\n");
  auto credentials = MakeServerCredentials(TlsConfig(cert, key));
  ASSERT_FALSE(credentials.ok());
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(credentials.status().message(),
              AllOf(HasSubstr("tls_cert_file"), HasSubstr(cert)));
}

TEST(ServerCredentialsTest, DescribesTlsAndMutualTls) {
  ServerConfig config = TlsConfig("s.crt", "s.key");
  EXPECT_EQ(DescribeTransportSecurity(config), "TLS (certificate s.crt)");
  config.set_tls_client_ca_file("ca.crt");
  EXPECT_EQ(DescribeTransportSecurity(config),
            "mutual TLS (certificate s.crt, client CA ca.crt)");
}

}  // namespace
}  // namespace edge
