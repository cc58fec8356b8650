// Counter-based Philox-4x32-10 (Salmon et al., SC'11) and the dropout mask built on it,
// shared bit for bit by the CPU dropout kernel, the CUDA dropout kernel and the attention
// kernels' dropout (CPU and CUDA).
//
// Mapping (a pure function of seed, offset and the element index e; no state):
//   key     = (k0, k1) = (seed & 0xffffffff, seed >> 32)
//   counter = (c0, c1, c2, c3) = (lo32(e / 4), hi32(e / 4), lo32(offset), hi32(offset))
//   u       = philox4x32_10(counter, key)[e % 4]      (one Philox call serves 4 elements)
//   keep(e) = u < threshold, threshold = floor((1 - p) * 2^32)  (0xffffffff when p <= 0)
// so P(keep) = 1 - p up to 2^-32. Dropout scales kept elements by 1 / (1 - p); p >= 1
// drops everything. The backward pass regenerates the mask from (seed, offset) instead of
// storing it. `offset` selects an independent stream for the same seed (e.g. one per call).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FASTNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FASTNN_HOST_DEVICE inline
#endif

namespace fastnn::philox {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

struct U4 {
  uint32_t x, y, z, w;
};

FASTNN_HOST_DEVICE U4 philox4x32_10(U4 c, uint32_t k0, uint32_t k1) {
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c.x;
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c.z;
    U4 n;
    n.x = static_cast<uint32_t>(p1 >> 32) ^ c.y ^ k0;
    n.y = static_cast<uint32_t>(p1);
    n.z = static_cast<uint32_t>(p0 >> 32) ^ c.w ^ k1;
    n.w = static_cast<uint32_t>(p0);
    c = n;
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

// The 4 words for elements 4*block .. 4*block+3.
FASTNN_HOST_DEVICE U4 block_words(uint64_t seed, uint64_t offset, uint64_t block) {
  U4 c{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), static_cast<uint32_t>(offset),
       static_cast<uint32_t>(offset >> 32)};
  return philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

FASTNN_HOST_DEVICE uint32_t word(uint64_t seed, uint64_t offset, uint64_t e) {
  const U4 u = block_words(seed, offset, e >> 2);
  const uint32_t k = static_cast<uint32_t>(e & 3);
  return k == 0 ? u.x : k == 1 ? u.y : k == 2 ? u.z : u.w;
}

// floor((1 - p) * 2^32), saturated; p <= 0 keeps everything, p >= 1 nothing.
FASTNN_HOST_DEVICE uint32_t keep_threshold(float p) {
  if (!(p > 0.0f)) return 0xFFFFFFFFu;
  if (p >= 1.0f) return 0u;
  const double t = (1.0 - static_cast<double>(p)) * 4294967296.0;
  return t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(t);
}

FASTNN_HOST_DEVICE bool keep(uint64_t seed, uint64_t offset, uint64_t e, uint32_t threshold) {
  return threshold == 0xFFFFFFFFu || word(seed, offset, e) < threshold;
}

}  // namespace fastnn::philox
