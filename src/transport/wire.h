// The transport's wire format: connection handshake, frames, peer URLs.
//
// Every TCP connection is opened by the sender (the dialer), which writes a
// Hello; the listener answers with a HelloAck and, if it refused, closes:
//
//   Hello    = "KEELRAFT" | fixed32 version | u8 stream kind |
//              fixed64 cluster_id | fixed64 from | fixed64 to | fixed32 crc
//   HelloAck = "KEELRACK" | fixed32 version | u8 code |
//              fixed64 cluster_id | fixed64 member_id | fixed32 crc
//
// (crc: masked CRC32C of every byte before it; integers little-endian.)
// After an accepted Hello both sides exchange frames:
//
//   frame = fixed32 len | fixed32 crc | u8 type | body     (len = 1 + |body|)
//
// crc is the masked CRC32C of type and body. A message stream carries kMsg
// (one raft::EncodeMessage each) and kPing from dialer to listener, kPong
// back. A snapshot stream carries one kSnapHeader (the encoded kSnap
// message, whose snapshot->data is the server's small descriptor), kSnapChunk
// frames of payload, a kSnapEnd (fixed64 total payload bytes), and is
// answered by one kSnapAck (u8 ok | reason) after the receiver's Finish().
//
// A membership query (StreamKind kMembers, sent by a member joining an
// existing cluster, which knows neither the cluster id nor its own member
// id yet: both are 0 in its Hello) is answered by a HelloAck carrying the
// cluster id and one kMembers frame (the server's encoded membership),
// then the listener closes. Like etcd's GET /members on the peer port.
//
// Thread safety: pure functions; a FrameDecoder belongs to one connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "raft/types.h"

namespace keel::transport {

constexpr uint32_t kProtocolVersion = 1;
// Normal frames above this are garbage (a raft message is far smaller).
constexpr size_t kMaxFrameBody = 512u << 20;
constexpr size_t kFrameHeaderSize = 8;

enum class StreamKind : uint8_t { kMessages = 1, kSnapshot = 2, kMembers = 3 };

struct Hello {
  uint32_t version = kProtocolVersion;
  StreamKind kind = StreamKind::kMessages;
  uint64_t cluster_id = 0;
  raft::NodeId from = 0;
  raft::NodeId to = 0;
};
constexpr size_t kHelloSize = 8 + 4 + 1 + 8 + 8 + 8 + 4;

enum class AckCode : uint8_t {
  kOk = 0,
  kClusterMismatch = 1,
  kWrongMember = 2,
  kBadVersion = 3,
};
const char* AckCodeName(AckCode c);

struct HelloAck {
  uint32_t version = kProtocolVersion;
  AckCode code = AckCode::kOk;
  uint64_t cluster_id = 0;
  raft::NodeId member_id = 0;  // who answered
};
constexpr size_t kHelloAckSize = 8 + 4 + 1 + 8 + 8 + 4;

void EncodeHello(const Hello& h, std::string* out);
// Corruption with a reason ("bad magic", "bad checksum", ...) on garbage.
Status DecodeHello(std::string_view in, Hello* h);
void EncodeHelloAck(const HelloAck& a, std::string* out);
Status DecodeHelloAck(std::string_view in, HelloAck* a);

enum class FrameType : uint8_t {
  kMsg = 1,
  kPing = 2,
  kPong = 3,
  kSnapHeader = 4,
  kSnapChunk = 5,
  kSnapEnd = 6,
  kSnapAck = 7,
  kMembers = 8,
};

void AppendFrame(FrameType type, std::string_view body, std::string* out);
// Encodes m straight into out (no intermediate copy).
void AppendMessageFrame(const raft::Message& m, std::string* out,
                        FrameType type = FrameType::kMsg);

struct Frame {
  FrameType type = FrameType::kMsg;
  std::string body;
};

// Splits a byte stream into verified frames.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_body = kMaxFrameBody)
      : max_body_(max_body) {}

  void Append(const char* data, size_t n);
  enum class State { kFrame, kNeedMore, kCorrupt };
  // kFrame: *f holds the next frame. kCorrupt: *error says why; the stream
  // cannot be resynchronised and the connection must be closed.
  State Next(Frame* f, std::string* error);
  size_t buffered() const { return buf_.size() - pos_; }
  void Reset() {
    buf_.clear();
    pos_ = 0;
  }

 private:
  const size_t max_body_;
  std::string buf_;
  size_t pos_ = 0;  // start of the unparsed bytes in buf_
};

struct HostPort {
  std::string host;
  std::string port;
  bool tls = false;  // https://
};
// "http://host:port", "https://host:port" (TLS), "host:port",
// "[::1]:2380". A path ("http://h:1/x") is ignored, as etcd does.
Result<HostPort> ParseUrl(std::string_view url);

}  // namespace keel::transport
