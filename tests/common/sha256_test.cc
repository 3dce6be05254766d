#include "common/sha256.h"

#include <string>

#include "gtest/gtest.h"

namespace edge {
namespace {

std::string Sha256Of(const std::string& bytes) {
  return Sha256Hex(bytes.data(), bytes.size());
}

// Test vectors from FIPS 180-2, appendix B, and the empty message.
TEST(Sha256Test, EmptyInput) {
  EXPECT_EQ(Sha256Hex(nullptr, 0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256Test, OneBlock) {
  EXPECT_EQ(Sha256Of("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, TwoBlocks) {
  EXPECT_EQ(
      Sha256Of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, MillionAs) {
  EXPECT_EQ(Sha256Of(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Test, BinaryBytesCount) {
  // Embedded zero bytes are data, not terminators.
  const std::string with_nul("a\0c", 3);
  EXPECT_NE(Sha256Of(with_nul), Sha256Of("a"));
  EXPECT_EQ(Sha256Of(with_nul).size(), 64u);
}

}  // namespace
}  // namespace edge
