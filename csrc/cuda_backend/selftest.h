// Self-test kernels for the emulator's own semantics (kernels/testing/*.cu),
// exposed by the backend modules as testing hooks (tests/test_cuda_emulator.py).
// Compiled by nvcc too, which proves they are valid CUDA. Each function allocates,
// launches and copies back itself; errors are thrown as fastnn::Error.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace fastnn::cuda_selftest {

// out[t] = s[t - 1] after every thread stored s[t] = t (out[0] = -1), one block.
std::vector<float> shift(int nthreads, bool with_barrier);
// Warp tree reduction in shared memory of 32 values 1..32, with or without __syncwarp.
float warp_tree_sum(bool with_syncwarp);
void divergent_barrier();     // two __syncthreads on different lines
void deadlock();              // warp op waiting for lanes stuck at __syncthreads
void exit_before_barrier();   // half the block returns before __syncthreads
void shuffle_outside_mask();  // reads a lane not named in the mask
void illegal_address();       // dereferences an invalid pointer
// Emulator only (throws fastnn::Error under nvcc): 0 = fiber stack overflow through
// deep recursion, 1 = integer division by zero (a trap on x86, not on a GPU).
void emulator_fault(int which);
// Rows (each nthreads long): shfl, shfl_up, shfl_down, shfl_xor of v = 10 * t + 1
// with the given width and argument, then ballot(t % 3 == 0), any(t == 5),
// all(t < 40), syncthreads_count(t % 2 == 0).
std::vector<int64_t> warp_ops(int nthreads, int width, int arg);
// Bits of shared memory read before any write: static, dynamic, and static in a
// second block after the first block wrote it (must be poison again).
std::vector<uint32_t> uninitialised_shared();
// [float atomicAdd total, int atomicAdd total, atomicMax, CAS-increment total, atomicExch
//  final value is one of the ids (1/0), atomicMin]
std::vector<double> atomics(int blocks, int threads);
// One 16x16 tile: D = A (16xK, row-major) * B (Kx16, col-major) + C; kind 0 half,
// 1 bfloat16 (K = 16), 2 tf32 (K = 16 as two m16n16k8 steps).
std::vector<float> wmma_tile(int kind, const std::vector<float>& a, const std::vector<float>& b,
                             const std::vector<float>& c);
// cp.async: 64 floats src[i] = i copied into shared memory in two groups of 32
// (one 4-byte copy per thread per group); mode 0 waits for both, mode 1 reads
// before any wait, mode 2 waits with wait_prior(1) (first group only).
std::vector<float> pipeline(int mode);
// Launch configurations: returns (cudaGetLastError code, error string, kernel ran).
struct LaunchResult {
  int code;
  std::string message;
  bool ran;
};
LaunchResult launch_config(int case_id);

}  // namespace fastnn::cuda_selftest
