// CRC32C (Castagnoli): the checksum of every WAL record and snapshot file.
//
// Extend() uses the SSE4.2 crc32 instruction when the CPU has it (checked
// once at run time with cpuid, so the binary needs no -msse4.2) and a
// table-driven portable routine otherwise. Both give identical results;
// the portable one stays exported so tests can compare them.
//
// Stored checksums are masked (LevelDB's trick): the CRC of a string that
// itself contains CRCs is then not degenerate.
//
// Thread safety: pure functions; the one-time CPU probe is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace keel::crc32c {

// The CRC32C of data appended to a buffer whose CRC32C is `crc`.
uint32_t Extend(uint32_t crc, const char* data, size_t n);
inline uint32_t Value(const char* data, size_t n) { return Extend(0, data, n); }
inline uint32_t Value(std::string_view s) {
  return Extend(0, s.data(), s.size());
}

// The two implementations behind Extend(), for tests and benchmarks.
uint32_t ExtendPortable(uint32_t crc, const char* data, size_t n);
// Only valid when HardwareAvailable().
uint32_t ExtendHardware(uint32_t crc, const char* data, size_t n);
bool HardwareAvailable();

constexpr uint32_t kMaskDelta = 0xa282ead8u;

inline uint32_t Mask(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + kMaskDelta;
}

inline uint32_t Unmask(uint32_t masked) {
  uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace keel::crc32c
