// The parts of client/gateway_channel.h that need no server: code names
// (edge-client's output and edge-loadtest's report both print them) and
// the channel options it refuses.
#include "client/gateway_channel.h"

#include "gtest/gtest.h"

namespace edge::client {
namespace {

TEST(StatusCodeNameTest, NamesCanonicalCodesAndNumbersTheRest) {
  EXPECT_EQ(StatusCodeName(0), "OK");
  EXPECT_EQ(StatusCodeName(14), "UNAVAILABLE");
  EXPECT_EQ(StatusCodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(StatusCodeName(17), "CODE_17");
  EXPECT_EQ(StatusCodeName(-1), "CODE_-1");
}

TEST(CreateGatewayChannelTest, RefusesUnusableOptions) {
  ConnectionOptions options;
  options.target = "";
  EXPECT_EQ(CreateGatewayChannel(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = ConnectionOptions();
  options.timeout_ms = 0;
  EXPECT_EQ(CreateGatewayChannel(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = ConnectionOptions();
  options.tls_cert_file = "client.crt";  // Without its key.
  EXPECT_EQ(CreateGatewayChannel(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CreateGatewayChannel(ConnectionOptions()).ok());
}

}  // namespace
}  // namespace edge::client
