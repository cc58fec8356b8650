// Dropout keep decisions of the attention kernels: a pure function of
// (seed, offset, element index e = ((b*H + h)*Nq + i)*Nk + j), so that backward
// regenerates the forward mask. The generator and the mapping are those of
// fastnn/philox.h (shared with the dropout kernel, bit for bit):
//   key = (seed lo, seed hi), counter = (e/4 lo, e/4 hi, offset lo, offset hi),
//   u = word e % 4 of Philox-4x32-10, keep iff u < floor((1 - p) * 2^32).
#pragma once
#include <cstdint>

#include "fastnn/philox.h"

namespace fastnn::detail_attention {
inline uint32_t dropout_threshold(float p) { return philox::keep_threshold(p); }
inline void philox_block(uint64_t seed, uint64_t offset, uint64_t block, uint32_t out[4]) {
  const philox::U4 u = philox::block_words(seed, offset, block);
  out[0] = u.x, out[1] = u.y, out[2] = u.z, out[3] = u.w;
}
}  // namespace fastnn::detail_attention

namespace fastnn::detail_attention {

inline bool dropout_keep(uint64_t seed, uint64_t offset, uint64_t e, uint32_t threshold) {
  if (threshold == 0xFFFFFFFFu) return true;
  uint32_t w[4];
  philox_block(seed, offset, e >> 2, w);
  return w[e & 3] < threshold;
}

// keep[t] = dropout_keep(seed, offset, e0 + t, threshold) for t < n <= 64, one
// Philox call per 4 consecutive element indices; the block loop has independent
// iterations, so it vectorises when this is inlined into an AVX2 / AVX-512 kernel.
inline void dropout_keep_run(uint64_t seed, uint64_t offset, uint64_t e0, int64_t n, uint32_t threshold,
                             uint8_t* keep) {
  uint32_t words[4 * 17];
  const uint64_t b0 = e0 >> 2;
  const int64_t nb = static_cast<int64_t>(((e0 + static_cast<uint64_t>(n) + 3) >> 2) - b0);
  for (int64_t bb = 0; bb < nb; ++bb) philox_block(seed, offset, b0 + static_cast<uint64_t>(bb), words + 4 * bb);
  const uint32_t* w = words + (e0 & 3);
  for (int64_t t = 0; t < n; ++t) keep[t] = threshold == 0xFFFFFFFFu || w[t] < threshold;
}

}  // namespace fastnn::detail_attention
