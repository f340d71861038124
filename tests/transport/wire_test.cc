// The transport's wire format: handshake, frames, URLs.
#include "transport/wire.h"

#include <gtest/gtest.h>

#include "raft/codec.h"

namespace keel::transport {
namespace {

TEST(WireTest, HelloRoundTrip) {
  Hello h;
  h.kind = StreamKind::kSnapshot;
  h.cluster_id = 0xdeadbeefcafe;
  h.from = 3;
  h.to = 7;
  std::string buf;
  EncodeHello(h, &buf);
  ASSERT_EQ(buf.size(), kHelloSize);
  Hello got;
  ASSERT_TRUE(DecodeHello(buf, &got).ok());
  EXPECT_EQ(got.kind, StreamKind::kSnapshot);
  EXPECT_EQ(got.cluster_id, h.cluster_id);
  EXPECT_EQ(got.from, 3u);
  EXPECT_EQ(got.to, 7u);
  EXPECT_EQ(got.version, kProtocolVersion);
}

TEST(WireTest, HelloRejectsGarbage) {
  Hello h;
  std::string buf;
  EncodeHello(h, &buf);
  Hello got;
  std::string bad_magic = buf;
  bad_magic[0] = 'X';
  EXPECT_EQ(DecodeHello(bad_magic, &got).message(), "bad magic");
  std::string bad_crc = buf;
  bad_crc[20] ^= 1;
  EXPECT_TRUE(DecodeHello(bad_crc, &got).IsCorruption());
  EXPECT_TRUE(DecodeHello(buf.substr(1), &got).IsCorruption());
  std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abc";
  http.resize(kHelloSize);
  EXPECT_TRUE(DecodeHello(http, &got).IsCorruption());
}

TEST(WireTest, HelloAckRoundTrip) {
  HelloAck a;
  a.code = AckCode::kClusterMismatch;
  a.cluster_id = 42;
  a.member_id = 9;
  std::string buf;
  EncodeHelloAck(a, &buf);
  ASSERT_EQ(buf.size(), kHelloAckSize);
  HelloAck got;
  ASSERT_TRUE(DecodeHelloAck(buf, &got).ok());
  EXPECT_EQ(got.code, AckCode::kClusterMismatch);
  EXPECT_EQ(got.cluster_id, 42u);
  EXPECT_EQ(got.member_id, 9u);
}

raft::Message SampleMessage(uint64_t i) {
  raft::Message m;
  m.type = raft::MessageType::kApp;
  m.from = 1;
  m.to = 2;
  m.term = 5;
  m.index = i;
  m.entries.push_back({5, i + 1, raft::EntryType::kNormal, "payload"});
  return m;
}

TEST(WireTest, FramesSplitAnywhere) {
  std::string stream;
  for (uint64_t i = 0; i < 50; i++)
    AppendMessageFrame(SampleMessage(i), &stream);
  AppendFrame(FrameType::kPing, "12345678", &stream);
  // Feed in awkward pieces: every frame must come out once, in order.
  FrameDecoder d;
  std::vector<Frame> frames;
  for (size_t pos = 0; pos < stream.size(); pos += 7) {
    d.Append(stream.data() + pos, std::min<size_t>(7, stream.size() - pos));
    Frame f;
    std::string err;
    while (d.Next(&f, &err) == FrameDecoder::State::kFrame) frames.push_back(f);
  }
  ASSERT_EQ(frames.size(), 51u);
  for (uint64_t i = 0; i < 50; i++) {
    ASSERT_EQ(frames[i].type, FrameType::kMsg);
    raft::Message m;
    ASSERT_TRUE(raft::DecodeMessage(frames[i].body, &m));
    EXPECT_EQ(m, SampleMessage(i));
  }
  EXPECT_EQ(frames[50].type, FrameType::kPing);
  EXPECT_EQ(frames[50].body, "12345678");
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(WireTest, CorruptFramesAreRefused) {
  std::string frame;
  AppendFrame(FrameType::kMsg, "hello", &frame);
  Frame f;
  std::string err;
  {
    std::string bad = frame;
    bad.back() ^= 0x40;
    FrameDecoder d;
    d.Append(bad.data(), bad.size());
    EXPECT_EQ(d.Next(&f, &err), FrameDecoder::State::kCorrupt);
    EXPECT_EQ(err, "bad frame checksum");
  }
  {
    FrameDecoder d(1024);
    std::string huge(8, '\xff');  // length 4 GiB
    d.Append(huge.data(), huge.size());
    EXPECT_EQ(d.Next(&f, &err), FrameDecoder::State::kCorrupt);
  }
  {
    std::string zero(8, '\0');
    FrameDecoder d;
    d.Append(zero.data(), zero.size());
    EXPECT_EQ(d.Next(&f, &err), FrameDecoder::State::kCorrupt);
  }
}

TEST(WireTest, ParseUrl) {
  auto a = ParseUrl("http://127.0.0.1:2380");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, "2380");
  auto b = ParseUrl("localhost:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "localhost");
  EXPECT_EQ(b->port, "0");
  auto c = ParseUrl("http://[::1]:2380/");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "::1");
  EXPECT_FALSE(ParseUrl("http://127.0.0.1").ok());
  auto tls_url = ParseUrl("https://127.0.0.1:2380");
  ASSERT_TRUE(tls_url.ok());
  EXPECT_TRUE(tls_url->tls);
  EXPECT_EQ(tls_url->port, "2380");
  EXPECT_FALSE(ParseUrl("unix://x:1").ok());
  EXPECT_FALSE(ParseUrl("h:99999").ok());
  EXPECT_FALSE(ParseUrl("h:2x").ok());
}

}  // namespace
}  // namespace keel::transport
