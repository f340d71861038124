// Revision: (main, sub). Every write transaction gets one new main
// revision; its changes are numbered sub = 0, 1, 2... in order.
//
// On disk a revision is 16 bytes, main then sub, each big-endian, so that
// RocksDB's bytewise order is revision order (revisions are never negative).
//
// Thread safety: values and pure functions.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace keel::mvcc {

struct Revision {
  int64_t main = 0;
  int64_t sub = 0;
  friend auto operator<=>(const Revision&, const Revision&) = default;
};

inline constexpr size_t kRevisionBytes = 16;

inline std::string EncodeRevision(Revision r) {
  std::string out(kRevisionBytes, '\0');
  const uint64_t parts[2] = {static_cast<uint64_t>(r.main),
                             static_cast<uint64_t>(r.sub)};
  for (int p = 0; p < 2; p++) {
    for (int i = 0; i < 8; i++) {
      out[p * 8 + i] = static_cast<char>(parts[p] >> (8 * (7 - i)));
    }
  }
  return out;
}

inline bool DecodeRevision(std::string_view in, Revision* r) {
  if (in.size() != kRevisionBytes) return false;
  uint64_t parts[2] = {0, 0};
  for (int p = 0; p < 2; p++) {
    for (int i = 0; i < 8; i++) {
      parts[p] = (parts[p] << 8) | static_cast<uint8_t>(in[p * 8 + i]);
    }
  }
  r->main = static_cast<int64_t>(parts[0]);
  r->sub = static_cast<int64_t>(parts[1]);
  return true;
}

}  // namespace keel::mvcc
