#include "common/crc32c.h"

#include <gtest/gtest.h>

#include <string>

#include "common/rng.h"

namespace keel::crc32c {
namespace {

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Value("123456789"), 0xE3069283u);
  EXPECT_EQ(Value(""), 0u);
  // RFC 3720 (iSCSI) B.4 test patterns.
  EXPECT_EQ(Value(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Value(std::string(32, '\xff')), 0x62A8AB43u);
  std::string inc, dec;
  for (int i = 0; i < 32; i++) {
    inc.push_back(static_cast<char>(i));
    dec.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(Value(inc), 0x46DD794Eu);
  EXPECT_EQ(Value(dec), 0x113FDB5Cu);
}

TEST(Crc32cTest, ExtendEqualsWhole) {
  std::string s = "hello, write-ahead log world";
  for (size_t cut = 0; cut <= s.size(); cut++) {
    uint32_t a = Value(s.data(), cut);
    EXPECT_EQ(Extend(a, s.data() + cut, s.size() - cut), Value(s)) << cut;
  }
}

TEST(Crc32cTest, HardwareMatchesPortable) {
  if (!HardwareAvailable()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  SeededRng rng(42);
  std::string buf(4096, '\0');
  for (char& c : buf) c = static_cast<char>(rng.Next());
  // Every length and misalignment up to a few words, then big ones.
  for (size_t off = 0; off < 16; off++) {
    for (size_t n = 0; n < 200; n++) {
      ASSERT_EQ(ExtendHardware(7, buf.data() + off, n),
                ExtendPortable(7, buf.data() + off, n))
          << off << " " << n;
    }
  }
  EXPECT_EQ(ExtendHardware(0, buf.data(), buf.size()),
            ExtendPortable(0, buf.data(), buf.size()));
}

TEST(Crc32cTest, MaskRoundTrips) {
  uint32_t c = Value("foo");
  EXPECT_NE(Mask(c), c);
  EXPECT_NE(Mask(Mask(c)), c);
  EXPECT_EQ(Unmask(Mask(c)), c);
  EXPECT_EQ(Unmask(Unmask(Mask(Mask(c)))), c);
}

}  // namespace
}  // namespace keel::crc32c
