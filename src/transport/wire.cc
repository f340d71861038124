#include "transport/wire.h"

#include <cstring>

#include "common/coding.h"
#include "common/crc32c.h"
#include "raft/codec.h"

namespace keel::transport {
namespace {

constexpr char kHelloMagic[] = "KEELRAFT";
constexpr char kAckMagic[] = "KEELRACK";

void PutCrc(std::string* out, size_t start) {
  PutFixed32(out, crc32c::Mask(
                      crc32c::Value(out->data() + start, out->size() - start)));
}

// Checks size, magic and checksum; leaves `in` after the magic.
Status CheckEnvelope(std::string_view* in, size_t size, const char* magic) {
  if (in->size() != size) return Status::Corruption("bad handshake length");
  if (std::memcmp(in->data(), magic, 8) != 0) {
    return Status::Corruption("bad magic");
  }
  uint32_t want = DecodeFixed32(in->data() + size - 4);
  if (crc32c::Unmask(want) != crc32c::Value(in->data(), size - 4)) {
    return Status::Corruption("bad handshake checksum");
  }
  in->remove_prefix(8);
  return Status::OK();
}

}  // namespace

const char* AckCodeName(AckCode c) {
  switch (c) {
    case AckCode::kOk:
      return "ok";
    case AckCode::kClusterMismatch:
      return "cluster id mismatch";
    case AckCode::kWrongMember:
      return "wrong member id";
    case AckCode::kBadVersion:
      return "unsupported protocol version";
  }
  return "unknown";
}

void EncodeHello(const Hello& h, std::string* out) {
  size_t start = out->size();
  out->append(kHelloMagic, 8);
  PutFixed32(out, h.version);
  out->push_back(static_cast<char>(h.kind));
  PutFixed64(out, h.cluster_id);
  PutFixed64(out, h.from);
  PutFixed64(out, h.to);
  PutCrc(out, start);
}

Status DecodeHello(std::string_view in, Hello* h) {
  KEEL_RETURN_IF_ERROR(CheckEnvelope(&in, kHelloSize, kHelloMagic));
  uint32_t version = 0;
  GetFixed32(&in, &version);
  auto kind = static_cast<uint8_t>(in[0]);
  in.remove_prefix(1);
  if (kind != static_cast<uint8_t>(StreamKind::kMessages) &&
      kind != static_cast<uint8_t>(StreamKind::kSnapshot) &&
      kind != static_cast<uint8_t>(StreamKind::kMembers)) {
    return Status::Corruption("bad stream kind");
  }
  h->version = version;
  h->kind = static_cast<StreamKind>(kind);
  GetFixed64(&in, &h->cluster_id);
  GetFixed64(&in, &h->from);
  GetFixed64(&in, &h->to);
  return Status::OK();
}

void EncodeHelloAck(const HelloAck& a, std::string* out) {
  size_t start = out->size();
  out->append(kAckMagic, 8);
  PutFixed32(out, a.version);
  out->push_back(static_cast<char>(a.code));
  PutFixed64(out, a.cluster_id);
  PutFixed64(out, a.member_id);
  PutCrc(out, start);
}

Status DecodeHelloAck(std::string_view in, HelloAck* a) {
  KEEL_RETURN_IF_ERROR(CheckEnvelope(&in, kHelloAckSize, kAckMagic));
  GetFixed32(&in, &a->version);
  auto code = static_cast<uint8_t>(in[0]);
  in.remove_prefix(1);
  if (code > static_cast<uint8_t>(AckCode::kBadVersion)) {
    return Status::Corruption("bad handshake answer code");
  }
  a->code = static_cast<AckCode>(code);
  GetFixed64(&in, &a->cluster_id);
  GetFixed64(&in, &a->member_id);
  return Status::OK();
}

namespace {

// Fills in the header of the frame whose header starts at `start`.
void SealFrame(std::string* out, size_t start) {
  size_t body = start + kFrameHeaderSize;
  size_t len = out->size() - body;
  uint32_t crc = crc32c::Mask(crc32c::Value(out->data() + body, len));
  for (int i = 0; i < 4; i++) {
    (*out)[start + i] = static_cast<char>(len >> (8 * i));
    (*out)[start + 4 + i] = static_cast<char>(crc >> (8 * i));
  }
}

}  // namespace

void AppendFrame(FrameType type, std::string_view body, std::string* out) {
  size_t start = out->size();
  out->append(kFrameHeaderSize, '\0');
  out->push_back(static_cast<char>(type));
  out->append(body.data(), body.size());
  SealFrame(out, start);
}

void AppendMessageFrame(const raft::Message& m, std::string* out,
                        FrameType type) {
  size_t start = out->size();
  out->append(kFrameHeaderSize, '\0');
  out->push_back(static_cast<char>(type));
  raft::EncodeMessage(m, out);
  SealFrame(out, start);
}

void FrameDecoder::Append(const char* data, size_t n) {
  // Drop consumed bytes once they dominate, so the buffer stays bounded by
  // about one frame plus one read.
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(data, n);
}

FrameDecoder::State FrameDecoder::Next(Frame* f, std::string* error) {
  size_t avail = buf_.size() - pos_;
  if (avail < kFrameHeaderSize) return State::kNeedMore;
  const char* p = buf_.data() + pos_;
  uint32_t len = DecodeFixed32(p);
  if (len == 0 || len - 1 > max_body_) {
    *error = "bad frame length " + std::to_string(len);
    return State::kCorrupt;
  }
  if (avail < kFrameHeaderSize + len) return State::kNeedMore;
  uint32_t crc = crc32c::Unmask(DecodeFixed32(p + 4));
  if (crc != crc32c::Value(p + kFrameHeaderSize, len)) {
    *error = "bad frame checksum";
    return State::kCorrupt;
  }
  auto type = static_cast<uint8_t>(p[kFrameHeaderSize]);
  if (type < static_cast<uint8_t>(FrameType::kMsg) ||
      type > static_cast<uint8_t>(FrameType::kMembers)) {
    *error = "bad frame type " + std::to_string(type);
    return State::kCorrupt;
  }
  f->type = static_cast<FrameType>(type);
  f->body.assign(p + kFrameHeaderSize + 1, len - 1);
  pos_ += kFrameHeaderSize + len;
  return State::kFrame;
}

Result<HostPort> ParseUrl(std::string_view url) {
  std::string_view rest = url;
  bool tls = false;
  if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
    tls = true;
  } else if (rest.find("://") != std::string_view::npos) {
    return Status::InvalidArgument("unknown URL scheme: " + std::string(url));
  }
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    rest = rest.substr(0, slash);
  }
  HostPort hp;
  hp.tls = tls;
  size_t colon;
  if (rest.starts_with("[")) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() ||
        rest[close + 1] != ':') {
      return Status::InvalidArgument("bad URL: " + std::string(url));
    }
    hp.host = std::string(rest.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return Status::InvalidArgument("URL has no port: " + std::string(url));
    }
    hp.host = std::string(rest.substr(0, colon));
  }
  hp.port = std::string(rest.substr(colon + 1));
  if (hp.host.empty() || hp.port.empty() || hp.port.size() > 5 ||
      hp.port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(hp.port) > 65535) {
    return Status::InvalidArgument("bad URL: " + std::string(url));
  }
  return hp;
}

}  // namespace keel::transport
