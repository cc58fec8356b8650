// Warp-level primitives for emulated kernels: shuffles, votes, __syncwarp, match.
// Each is a per-warp barrier (scheduler.h): the lanes named in the mask publish
// their value and the lane they read from; the scheduler computes all results once
// every lane has arrived. Source-lane rules follow the CUDA programming guide,
// including `width` (a power of two <= 32 splitting the warp into segments):
//  __shfl_sync:      src = segment base + (srcLane mod width)
//  __shfl_up_sync:   src = lane - delta, own value if that leaves the segment
//  __shfl_down_sync: src = lane + delta, own value if that leaves the segment
//  __shfl_xor_sync:  src = lane ^ laneMask, own value if src is in a later segment
// Reading a lane outside the mask (or one that does not exist in a partial warp)
// is an error, as is a mask naming a lane that has exited.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_emu/device.h"

namespace fastnn::emu {
template <typename T>
inline uint64_t pack_lane_value(const T& v) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                "warp shuffles move trivially copyable values of at most 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <typename T>
inline T unpack_lane_value(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}
inline int checked_width(int width, const char* file, int line) {
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
    device_error("shuffle width must be a power of two in [1, 32]", file, line);
  return width;
}
template <typename T>
inline T shfl_from(unsigned mask, T var, int src, const char* file, int line) {
  return unpack_lane_value<T>(warp_sync(WarpOp::shfl, mask, pack_lane_value(var), src, file, line));
}
}  // namespace fastnn::emu

template <typename T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32, const char* file = __builtin_FILE(),
                     int line = __builtin_LINE()) {
  using namespace fastnn::emu;
  const int w = checked_width(width, file, line);
  const int lane = current_lane();
  const int src = (lane & ~(w - 1)) + (srcLane & (w - 1));
  return shfl_from(mask, var, src, file, line);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                        int line = __builtin_LINE()) {
  using namespace fastnn::emu;
  const int w = checked_width(width, file, line);
  const int lane = current_lane();
  const int src = static_cast<unsigned>(lane & (w - 1)) < delta ? lane : lane - static_cast<int>(delta);
  return shfl_from(mask, var, src, file, line);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                          int line = __builtin_LINE()) {
  using namespace fastnn::emu;
  const int w = checked_width(width, file, line);
  const int lane = current_lane();
  const int src = static_cast<unsigned>(lane & (w - 1)) + delta >= static_cast<unsigned>(w)
                      ? lane
                      : lane + static_cast<int>(delta);
  return shfl_from(mask, var, src, file, line);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32, const char* file = __builtin_FILE(),
                         int line = __builtin_LINE()) {
  using namespace fastnn::emu;
  const int w = checked_width(width, file, line);
  const int lane = current_lane();
  int src = lane ^ laneMask;
  if (src >= (lane & ~(w - 1)) + w || src < 0) src = lane;  // later segments are out of reach
  return shfl_from(mask, var, src, file, line);
}

inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(
      fastnn::emu::warp_sync(fastnn::emu::WarpOp::ballot, mask, pred != 0, 0, file, line) & 0xFFFFFFFFu);
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return __ballot_sync(mask, pred, file, line) != 0;
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  // High word of the result: the ballot equals the (existing part of the) mask.
  return static_cast<int>(fastnn::emu::warp_sync(fastnn::emu::WarpOp::ballot, mask, pred != 0, 0, file, line) >> 32);
}
inline void __syncwarp(unsigned mask = 0xFFFFFFFFu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  fastnn::emu::warp_sync(fastnn::emu::WarpOp::syncwarp, mask, 0, 0, file, line);
}
inline unsigned __activemask() { return fastnn::emu::current_live_lanes(); }

template <typename T>
inline unsigned __match_any_sync(unsigned mask, T value, const char* file = __builtin_FILE(),
                                 int line = __builtin_LINE()) {
  using namespace fastnn::emu;
  return static_cast<unsigned>(warp_sync(WarpOp::match, mask, pack_lane_value(value), 0, file, line));
}
template <typename T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred, const char* file = __builtin_FILE(),
                                 int line = __builtin_LINE()) {
  using namespace fastnn::emu;
  const uint64_t r = warp_sync(WarpOp::match, mask, pack_lane_value(value), 0, file, line);
  const unsigned same = static_cast<unsigned>(r), m = static_cast<unsigned>(r >> 32);  // high word: the mask
  *pred = same == m;
  return same == m ? m : 0u;
}

// sm_80 warp reductions, built on shuffles (every lane of the mask gets the result).
#define FASTNN_EMU_WARP_REDUCE(NAME, T, OP)                                                    \
  inline T NAME(unsigned mask, T value, const char* file = __builtin_FILE(),                   \
                int line = __builtin_LINE()) {                                                 \
    T acc = value;                                                                             \
    const unsigned m = mask & fastnn::emu::current_live_lanes();                               \
    for (int l = 0; l < 32; ++l) {                                                             \
      if (!(m & (1u << l))) continue;                                                          \
      T other = __shfl_sync(mask, value, l, 32, file, line);                                   \
      if (l != fastnn::emu::current_lane()) acc = OP;                                          \
    }                                                                                          \
    return acc;                                                                                \
  }
FASTNN_EMU_WARP_REDUCE(__reduce_add_sync, unsigned, acc + other)
FASTNN_EMU_WARP_REDUCE(__reduce_add_sync, int, acc + other)
FASTNN_EMU_WARP_REDUCE(__reduce_min_sync, unsigned, (other < acc ? other : acc))
FASTNN_EMU_WARP_REDUCE(__reduce_min_sync, int, (other < acc ? other : acc))
FASTNN_EMU_WARP_REDUCE(__reduce_max_sync, unsigned, (other > acc ? other : acc))
FASTNN_EMU_WARP_REDUCE(__reduce_max_sync, int, (other > acc ? other : acc))
FASTNN_EMU_WARP_REDUCE(__reduce_and_sync, unsigned, acc & other)
FASTNN_EMU_WARP_REDUCE(__reduce_or_sync, unsigned, acc | other)
FASTNN_EMU_WARP_REDUCE(__reduce_xor_sync, unsigned, acc ^ other)
#undef FASTNN_EMU_WARP_REDUCE
