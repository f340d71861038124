// Rng: the one source of randomness, injected wherever a choice is random.
//
// The consensus core never draws from a global source: it is handed an Rng,
// so a simulation seeded with one 64-bit value replays exactly.
// SeededRng is xoshiro256** seeded through splitmix64: fast, small state,
// identical output on every platform.
//
// Thread safety: none; one Rng per owner.
#pragma once

#include <cstdint>

namespace keel {

class Rng {
 public:
  virtual ~Rng() = default;
  virtual uint64_t Next() = 0;

  // Uniform in [0, n); n > 0.
  uint64_t Uniform(uint64_t n) { return n == 0 ? 0 : Next() % n; }
  // Uniform in [lo, hi]; lo <= hi.
  uint64_t Range(uint64_t lo, uint64_t hi) { return lo + Uniform(hi - lo + 1); }
  // True with probability p (0..1).
  bool Chance(double p) {
    return static_cast<double>(Next() >> 11) * 0x1.0p-53 < p;
  }
};

class SeededRng final : public Rng {
 public:
  explicit SeededRng(uint64_t seed) { Reseed(seed); }

  void Reseed(uint64_t seed) {
    for (auto& s : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      s = z ^ (z >> 31);
    }
  }

  uint64_t Next() override {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace keel
