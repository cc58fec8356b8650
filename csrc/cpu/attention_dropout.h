// Dropout keep decisions of the attention kernels: a pure function of
// (seed, offset, element index), so that backward regenerates the forward mask.
//
// PROVISIONAL: fastnn/philox.h (shared with the dropout kernel) did not exist when this
// was written; until it does, this is a self-contained Philox-4x32-10 with
//   key = (seed lo, seed hi), counter = (e/4 lo, e/4 hi, offset lo, offset hi),
//   u = output word e % 4, keep iff u < threshold = round((1 - p) * 2^32).
#pragma once
#include <cmath>
#include <cstdint>

namespace fastnn::detail_attention {

inline uint32_t dropout_threshold(float p) {
  if (!(p > 0.0f)) return 0xFFFFFFFFu;
  const double t = std::ldexp(1.0 - static_cast<double>(p), 32);
  return t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(t);
}

inline void philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * ctr[2];
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ k1;
    ctr[1] = static_cast<uint32_t>(p1);
    ctr[3] = static_cast<uint32_t>(p0);
    ctr[0] = n0;
    ctr[2] = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

inline uint32_t philox_word(uint64_t seed, uint64_t offset, uint64_t e) {
  const uint64_t c = e >> 2;
  uint32_t ctr[4] = {static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), static_cast<uint32_t>(offset),
                     static_cast<uint32_t>(offset >> 32)};
  philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return ctr[e & 3];
}

inline bool dropout_keep(uint64_t seed, uint64_t offset, uint64_t e, uint32_t threshold) {
  if (threshold == 0xFFFFFFFFu) return true;
  return philox_word(seed, offset, e) < threshold;
}

// keep[t] = dropout_keep(seed, offset, e0 + t, threshold) for t < n, with one Philox
// call per 4 consecutive element indices.
inline void dropout_keep_run(uint64_t seed, uint64_t offset, uint64_t e0, int64_t n, uint32_t threshold,
                             uint8_t* keep) {
  int64_t t = 0;
  while (t < n) {
    const uint64_t e = e0 + static_cast<uint64_t>(t);
    const uint64_t c = e >> 2;
    uint32_t ctr[4] = {static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), static_cast<uint32_t>(offset),
                       static_cast<uint32_t>(offset >> 32)};
    philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    for (unsigned w = static_cast<unsigned>(e & 3); w < 4 && t < n; ++w, ++t) keep[t] = ctr[w] < threshold;
  }
}

}  // namespace fastnn::detail_attention
