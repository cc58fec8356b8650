// GEMM driver: the BLIS / Goto loop nest around the packing routines and the
// microkernel (gemm_microkernel.h), plus threading and the batched loop.
//
//   for ic in M step MC            A block  (mc x kc, shared by the threads, L3)
//     for pc in K step KC          packed cooperatively, then a barrier (K is cut into
//                                  equal blocks <= KC; K <= 4/3 KC stays one block)
//       for jc in N step NC        B block  (kc x nc, private per thread, L2)
//         for ir in mc step MR     A micro-panel (MR x kc) stays in L1 ...
//           for jr in nc step NR   ... while the B micro-panels stream from L2
//             microkernel          C tile (MR x NR) in registers
//
// The epilogue (alpha/beta, biases, activation) is applied by the microkernel on the
// last kc block, so C is written once per k block and never revisited.
// Threads: the C block of each (ic, pc) is split either along N (the default, no duplicated
// work: column units of guided sizes claimed at run time, each thread packing the B block of
// the units it takes; no barriers: gemm_one_claimed) or along M (threads share A panels, each
// packs all of B: chosen when N has too few NR panels to keep the threads balanced, e.g.
// N = 10); split along N with an A block <= L2/2 (m = 256), each thread packs its own copy of
// it, else the A block is packed in claimed chunks into one of two shared buffers. Tall products (m >= 2n) instead loop B blocks
// outermost: the threads pack each B block together, then each runs its own rows with its
// own A blocks (gemm_shared_b: B packed once, B panels and A blocks of half an L2 claimed at run
// time, a barrier only between B blocks; on 1 thread too when B is a single block; on AVX-512 a
// unit-column-stride A is read in place, not packed).
// Small batched products run one per thread.
// Single large products on the AVX-512 level use the 8 x 48 tile (gemm_microkernel_big,
// gemm_pack_{a,b}_big: fewer loads per FMA) in the same loops (gemm_one<true>,
// gemm_shared_b<true>); batched ones keep the 12 x 32 tile.
// Small problems (m*n*k <= 8M multiply-adds, k <= 1024) skip packing B on the AVX-512
// level: the direct microkernel reads B rows in place (gemm_direct_tiles below); packing B
// only pays when its panels are reused many times. Unit-stride rows of A are read in place
// too (else one packed A micro-panel at a time), and the threads share the C tiles
// dynamically (own share first, then stealing), so a worker woken late does not stall the
// call. A B of < 16 columns is copied 16 wide (not 32). Narrow products (n <= 12: 64 x 128 x 10) with unit-stride rows of A,
// at any size, are dot products along k (gemm_narrow_dot.cpp: A read in place, no transpose);
// with a transposed A (m >= 16, k <= 512) they are computed as C^T = B^T A^T, so the tile's
// vectors run along m and use all 16 lanes (gemm_narrow_transposed).
// Bound: compute (FMA) for all dims >~ 100; packing is O(mk + kn) per O(mnk) work.
#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>

#include "fastnn/activation.h"
#include "fastnn/allocator.h"
#include "fastnn/config.h"
#include "fastnn/gemm.h"

#include "cpu/parallel.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/gemm_microkernel.h"
#include "cpu/kernels/gemm_narrow_dot.h"

namespace {

int64_t cache_size(int name, int64_t fallback) {
  long v = sysconf(name);
  return v > 0 ? static_cast<int64_t>(v) : fallback;
}

GemmBlocking compute_blocking() {
  const int64_t l1 = cache_size(_SC_LEVEL1_DCACHE_SIZE, 32 << 10);
  const int64_t l2 = cache_size(_SC_LEVEL2_CACHE_SIZE, 1 << 20);
  const int64_t l3 = cache_size(_SC_LEVEL3_CACHE_SIZE, 8 << 20);
  // A micro-panel (MR x kc) in ~3/8 of L1, leaving room for the B rows streaming by.
  int64_t kc = (l1 * 3 / 8) / (kGemmMR * 4);
  kc = std::clamp<int64_t>(kc / 8 * 8, 128, 512);
  // B block (kc x nc) in half of L2 (the other half: C tiles, A panels in flight).
  int64_t nc = (l2 / 2) / (kc * 4);
  nc = std::clamp<int64_t>(nc / kGemmNR * kGemmNR, kGemmNR, 8192);
  // A block (mc x kc), shared, in at most a quarter of L3.
  int64_t mc = (l3 / 4) / (kc * 4);
  mc = std::clamp<int64_t>(mc / kGemmMR * kGemmMR, kGemmMR, 4096 / kGemmMR * kGemmMR);
  return GemmBlocking{mc, kc, nc, l2};
}

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Number of k blocks of depth <= kc, except that a k up to 4/3 kc stays one block (e.g.
// k = 512 with kc = 384: one pass over C instead of two of depth 256).
inline int64_t k_blocks(int64_t k, int64_t kc) {
  if (k <= kc * 4 / 3) return 1;
  return std::max<int64_t>(1, cdiv(k, kc));
}

// Largest multiple of `align` <= `max_block` cutting n into equal blocks: 4096 columns with
// nc = 672 become 6 x 672 + 64 -> 7 x 608, never a thin last block that re-streams the
// whole other operand for a sliver of work (and, along M, repacks all of B for it).
// max_block need not be a multiple of align (mc = 4092 rows is 12-aligned, not 8-aligned for the
// 8 x 48 tile): a block that is not whole tiles would leave a part-filled micro-panel inside C,
// whose rows the next block computes again (with beta applied twice), so it is rounded down.
inline int64_t balanced_block(int64_t n, int64_t max_block, int64_t align) {
  if (n <= max_block) return n;
  max_block = std::max(align, max_block / align * align);
  const int64_t blocks = cdiv(n, max_block);
  return std::min(max_block, cdiv(cdiv(n, blocks), align) * align);
}

constexpr int64_t kDirectMaxK = 1024;  // the direct path's A panel: MR x k floats on the stack

// [begin, end) of part `t` of `n` units split `parts` ways, in multiples of `align`.
inline void split_range(int64_t n, int parts, int t, int64_t align, int64_t* b, int64_t* e) {
  const int64_t units = cdiv(n, align);
  const int64_t base = units / parts, extra = units % parts;
  const int64_t ub = t * base + std::min<int64_t>(t, extra);
  const int64_t ue = ub + base + (t < extra ? 1 : 0);
  *b = std::min(n, ub * align);
  *e = std::min(n, ue * align);
}

// Fraction of the threads' time that is useful when `units` equal units are split `nt` ways.
inline double balance(int64_t units, int nt) {
  return static_cast<double>(units) / (nt * cdiv(units, nt));
}

struct Buffers {
  float* a = nullptr;       // shared A block
  float* b[64] = {};        // one B block per thread
  int nb = 0;
  Buffers(int64_t a_floats, int64_t b_floats, int nthreads) : nb(nthreads) {
    a = static_cast<float*>(cpu_allocator::allocate(std::max<int64_t>(a_floats, 16) * sizeof(float)));
    for (int t = 0; t < nb; ++t)
      b[t] = static_cast<float*>(cpu_allocator::allocate(std::max<int64_t>(b_floats, 16) * sizeof(float)));
  }
  ~Buffers() {
    cpu_allocator::release(a);
    for (int t = 0; t < nb; ++t) cpu_allocator::release(b[t]);
  }
  Buffers(const Buffers&) = delete;
  Buffers& operator=(const Buffers&) = delete;
};

// Small problems (AVX-512): B's full NR-column panels are read in place when its columns
// are unit-stride (the rest of B is packed once) and only one A micro-panel (MR x k, <= 48 KiB, on the stack) is packed at a
// time, reused across the row of C tiles. Packing B costs O(kn) memory passes that only pay
// off when reused over large m; packing one A panel costs 1/n_panels of its tiles' loads.
bool use_direct(const GemmArgs& g, int64_t k) {
  if (!kGemmHasDirect || k == 0 || k > kDirectMaxK) return false;
  return static_cast<double>(g.m) * g.n * k <= 8.0 * (1 << 20);
}

#if FASTNN_ISA_LEVEL == 2
// B of at most 16 columns (k x n), zero-padded to a 16-float row stride: what the direct
// microkernel reads for n_valid <= 16, a quarter of a packed 32-column panel.
void pack_b_narrow(int64_t k, int64_t n, const float* b, int64_t rs, int64_t cs, float* out) {
  if (cs == 1) {  // one masked load and one store per row
    const __mmask16 mask = static_cast<__mmask16>((1u << n) - 1u);
    for (int64_t p = 0; p < k; ++p) _mm512_store_ps(out + p * 16, _mm512_maskz_loadu_ps(mask, b + p * rs));
    return;
  }
  for (int64_t p = 0; p < k; ++p) {
    float* o = out + p * 16;
    const float* src = b + p * rs;
    int64_t j = 0;
    for (; j < n; ++j) o[j] = src[j * cs];
    for (; j < 16; ++j) o[j] = 0.0f;
  }
}
#endif

#if FASTNN_ISA_LEVEL == 2
// Narrow products (n <= MR = 12 columns, e.g. 64 x 128 x 10) computed as C^T = B^T A^T: a
// column of C is a run of m floats, so the tile's 32-wide vector dimension runs along m and
// every lane is used, where the row-major tile would use n of its 16 lanes (10/16 for
// n = 10) and pay one A broadcast per FMA. B^T is packed once as the MR x k A-panel (n rows
// of k), each 32-row slab of A is packed as a k x 32 B-panel (16 x 16 register transposes for
// a row-major A), and the microkernel stores its tile transposed (its unit-row-stride path).
// The same fused multiply-adds in the same k order as the row-major tile: bitwise the same C.
constexpr int64_t kNarrowMaxK = 512;  // the A slab, 32 x k floats, in a 64 KiB stack buffer

bool use_narrow_transposed(const GemmArgs& g, int64_t k) {
  return g.n <= kGemmMR && g.m >= 16 && g.c_cs == 1 && k <= kNarrowMaxK;
}

void gemm_narrow_transposed(const GemmArgs& g, int nt) {
  const int64_t m = g.m, n = g.n, k = g.k;
  const int64_t slabs = cdiv(m, kGemmNR);
  auto body = [&](int tid) {
    alignas(64) float bt[kGemmMR * kNarrowMaxK];  // B^T: ap[p*MR + j] = B(p, j)
    alignas(64) float at[kGemmNR * kNarrowMaxK];  // A slab: bp[p*NR + i] = A(r0 + i, p)
    gemm_pack_a(n, k, g.b, g.b_cs, g.b_rs, bt);
    GemmEpilogue ep;
    ep.alpha = g.alpha;
    ep.beta = g.beta;
    ep.act = g.activation;
    ep.bias_row = g.bias_col;  // rows of C^T are C's columns
    int64_t s0, s1;
    split_range(slabs, nt, tid, 1, &s0, &s1);
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t r0 = s * kGemmNR, rows = std::min<int64_t>(kGemmNR, m - r0);
      gemm_pack_b(k, rows, g.a + r0 * g.a_rs, g.a_cs, g.a_rs, at);
      ep.bias_col = g.bias_row ? g.bias_row + r0 : nullptr;
      gemm_microkernel(k, bt, at, g.c + r0 * g.c_rs, g.c_cs, g.c_rs, n, rows, ep);
    }
  };
  if (nt == 1) {
    body(0);
  } else {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num());
  }
}
#endif

#if FASTNN_ISA_LEVEL == 2
// Small products (use_direct). When A's rows are unit-stride (a_cs == 1) A is read in place
// by the microkernel (gemm_microkernel_direct_ab), so any C tile can be computed by any thread
// without packing; otherwise (a transposed A) each thread packs the A micro-panel of its
// current row of tiles into a stack buffer and keeps it for the next tile of that row.
// The MR x NR tiles (column panel by column panel when A is read in place, row panel by row
// panel when it is packed, so the packed panel is reused) are split into one contiguous share
// per thread; a thread works through its own share from the front, then steals tiles from the
// back of the others' (detail::StealRange, as the element-wise loops do). A thread that is late
// to the parallel region (a parked OpenMP worker woken up after a peer's call, a core busy with
// another process) then loses tiles to the running one instead of holding it at the end: with
// a fixed half each, a product took (wake-up + half) instead of ~(wake-up + all) / 2.
// B panels not read in place are packed once into a shared buffer by the first thread to
// need them (a thread steals from the back, so the two rarely meet on a panel). One that finds
// its panel being packed by the other thread waits a few microseconds, then packs a private copy
// rather than spin on a thread that may not be running (config.h's gemm_busy_panel_claims makes
// a thread's first claims take that path, for the tests).
void gemm_direct_tiles(const GemmArgs& g, int nt) {
  const int64_t m = g.m, n = g.n, k = g.k;
  const int64_t n_panels = cdiv(n, kGemmNR), m_panels = cdiv(m, kGemmMR);
  const bool a_in_place = g.a_cs == 1;
  // B of <= 16 columns that cannot be read in place: packed 16 wide by each thread into its
  // own stack buffer (<= 64 KiB, cheaper than sharing). Otherwise full panels of a
  // unit-stride B are read in place and the others packed once.
  const bool narrow = n < 16 || (n == 16 && g.b_cs != 1);
  const int64_t n_direct = g.b_cs == 1 ? n / kGemmNR : 0;
  const int64_t n_packed = narrow || (n == 16 && g.b_cs == 1) ? 0 : n_panels - n_direct;
  float* packed = nullptr;
  std::unique_ptr<std::atomic<int>[]> state;  // per packed panel: 0 not started, 1 being packed, 2 ready
  if (n_packed > 0) {
    packed = static_cast<float*>(cpu_allocator::allocate(n_packed * kGemmNR * k * sizeof(float)));
    state.reset(new std::atomic<int>[n_packed]);
    for (int64_t q = 0; q < n_packed; ++q) state[q].store(0, std::memory_order_relaxed);
  }
  auto pack_panel = [&](int64_t q, float* dst) {
    const int64_t c0 = (n_direct + q) * kGemmNR;
    gemm_pack_b(k, std::min<int64_t>(kGemmNR, n - c0), g.b + c0 * g.b_cs, g.b_rs, g.b_cs, dst);
  };
  const int64_t tiles = m_panels * n_panels;
  detail::StealRange shares[64];  // on the stack: no allocation per call
  nt = std::min(nt, 64);           // gemm_run's limit already
  for (int t = 0; t < nt; ++t)
    shares[t].init(static_cast<uint32_t>(tiles * t / nt), static_cast<uint32_t>(tiles * (t + 1) / nt));
  const int busy_claims_per_thread = gemm_busy_panel_claims();
  auto body = [&](int tid) {
    int busy_claims = busy_claims_per_thread;
    alignas(64) float b_narrow[16 * kDirectMaxK];
    if (narrow) pack_b_narrow(k, n, g.b, g.b_rs, g.b_cs, b_narrow);
    float* own = nullptr;  // this thread's private copy of panel own_q, if it ever needs one
    int64_t own_q = -1;
    alignas(64) float ap[kGemmMR * kDirectMaxK];  // packed A micro-panel of row panel ap_ir
    int64_t ap_ir = -1;
    GemmEpilogue ep;
    ep.alpha = g.alpha;
    ep.beta = g.beta;
    ep.act = g.activation;
    for (int s = 0; s < nt; ++s) {
      detail::StealRange& share = shares[(tid + s) % nt];
      for (int64_t t; (t = share.take(s == 0)) >= 0;) {
        const int64_t jr = a_in_place ? t / m_panels : t % n_panels;
        const int64_t ir = a_in_place ? t % m_panels : t / n_panels;
        const int64_t r0 = ir * kGemmMR, c0 = jr * kGemmNR;
        const int64_t m_valid = std::min<int64_t>(kGemmMR, m - r0), n_valid = std::min<int64_t>(kGemmNR, n - c0);
        const float* bp;
        int64_t bld;
        if (narrow) {
          bp = b_narrow, bld = 16;
        } else if (jr < n_direct || n == 16) {  // n == 16 here: unit column stride
          bp = g.b + c0, bld = g.b_rs;
        } else {
          const int64_t q = jr - n_direct;
          bp = packed + q * kGemmNR * k, bld = kGemmNR;
          int st = state[q].load(std::memory_order_acquire);
          const bool forced_busy = st != 2 && busy_claims > 0;  // testing aid (config.h)
          if (forced_busy) --busy_claims;
          if (!forced_busy && st == 0 && state[q].compare_exchange_strong(st, 1, std::memory_order_relaxed)) {
            pack_panel(q, packed + q * kGemmNR * k);
            state[q].store(2, std::memory_order_release);
          } else if (st != 2) {
            // Packing a 128-row panel takes ~1 us; 256 pauses are a few microseconds.
            for (int spins = 0; !forced_busy && spins < 256 && state[q].load(std::memory_order_acquire) != 2; ++spins)
              _mm_pause();
            if (forced_busy || state[q].load(std::memory_order_acquire) != 2) {
              if (!own) own = static_cast<float*>(cpu_allocator::allocate(kGemmNR * k * sizeof(float)));
              if (own_q != q) pack_panel(q, own), own_q = q;
              bp = own;
            }
          }
        }
        ep.bias_row = g.bias_row ? g.bias_row + r0 : nullptr;
        ep.bias_col = g.bias_col ? g.bias_col + c0 : nullptr;
        float* cp = g.c + r0 * g.c_rs + c0 * g.c_cs;
        if (a_in_place) {
          gemm_microkernel_direct_ab(k, g.a + r0 * g.a_rs, g.a_rs, bp, bld, cp, g.c_rs, g.c_cs, m_valid, n_valid, ep);
        } else {
          if (ap_ir != ir) gemm_pack_a(m_valid, k, g.a + r0 * g.a_rs, g.a_rs, g.a_cs, ap), ap_ir = ir;
          gemm_microkernel_direct(k, ap, bp, bld, cp, g.c_rs, g.c_cs, m_valid, n_valid, ep);
        }
      }
    }
    cpu_allocator::release(own);
  };
  if (nt == 1) {
    body(0);
  } else {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num());
  }
  cpu_allocator::release(packed);
}
#endif

void gemm_direct(const GemmArgs& g, int nt) {
#if FASTNN_ISA_LEVEL == 2
  if (use_narrow_transposed(g, g.k))
    gemm_narrow_transposed(g, nt);
  else
    gemm_direct_tiles(g, nt);
#else
  (void)g, (void)nt;
#endif
}

// Microkernel calls over one packed A block (micro-panels ir0..ir1 of rows starting at C
// row `ic`) and one packed B block (columns jc..jc+ncb) of depth kc; the k block is the
// first (user's beta) and/or the last (bias, activation) of the product as flagged.
// a_ld > 0 (the big tile on AVX-512 only): `a_buf` is A itself at row ic, column pc, rows a_ld
// floats apart with unit column stride, read in place (gemm_microkernel_big_direct_a).
template <bool BIG>
void macro_kernel(const GemmArgs& g, const float* a_buf, const float* b_buf, int64_t ic, int64_t ir0, int64_t ir1,
                  int64_t jc, int64_t ncb, int64_t kc, bool first, bool last, int64_t a_ld = 0) {
  constexpr int64_t MR = BIG ? kGemmBigMR : kGemmMR, NR = BIG ? kGemmBigNR : kGemmNR;
  GemmEpilogue ep;
  ep.alpha = g.alpha;
  ep.beta = first ? g.beta : 1.0f;
  ep.act = last ? g.activation : Activation::none;
  // The next A micro-panel is fetched into L2 a slice per microkernel call: the A block
  // lives in L3 (it is larger than L2 beside the B block once m*kc >~ 1M floats), and
  // otherwise each panel's first call waits on L3 latency for every line of it.
  const int64_t a_lines = cdiv(MR * kc * int64_t(sizeof(float)), 64);
  const int64_t lines_per_call = cdiv(a_lines, cdiv(ncb, NR));
  for (int64_t ir = ir0; ir < ir1; ++ir) {
    const int64_t i0 = ic + ir * MR;
    const float* ap = a_buf + ir * MR * (a_ld ? a_ld : kc);
    const char* ap_next = ir + 1 < ir1 && !a_ld ? reinterpret_cast<const char*>(ap + MR * kc) : nullptr;
    const int64_t m_valid = std::min<int64_t>(MR, g.m - i0);
    ep.bias_row = last && g.bias_row ? g.bias_row + i0 : nullptr;
    for (int64_t jr = 0; jr < ncb; jr += NR) {
      if (ap_next) {
        const int64_t l0 = jr / NR * lines_per_call, l1 = std::min(a_lines, l0 + lines_per_call);
        for (int64_t l = l0; l < l1; ++l) __builtin_prefetch(ap_next + 64 * l, 0, 2);
      }
      const int64_t j0 = jc + jr;
      ep.bias_col = last && g.bias_col ? g.bias_col + j0 : nullptr;
      float* cp = g.c + i0 * g.c_rs + j0 * g.c_cs;
      const int64_t n_valid = std::min<int64_t>(NR, ncb - jr);
#if FASTNN_ISA_LEVEL == 2
      if (BIG && a_ld) {
        gemm_microkernel_big_direct_a(kc, ap, a_ld, b_buf + jr * kc, cp, g.c_rs, g.c_cs, m_valid, n_valid, ep);
        continue;
      }
#endif
      (BIG ? gemm_microkernel_big : gemm_microkernel)(kc, ap, b_buf + jr * kc, cp, g.c_rs, g.c_cs, m_valid, n_valid, ep);
    }
  }
}

// Tall products (m >= 2n) on several threads (or one, below): the threads share each packed B block and
// pack their own A blocks. B is packed once in all; a thread never waits for the other's A
// packing. Both are claimed at run time, so a thread that starts late (a parked OpenMP worker
// woken after a peer's call, a core busy with another process) neither holds the other at a
// barrier nor leaves it idle at the end:
//  * B panels of the current block are claimed one at a time (an atomic counter); a thread
//    that finds none left waits only until the claimed ones are packed, not for the other
//    thread to arrive. On a quiet machine each thread packs about half of them.
//  * A blocks (gemm rows, mc_step each) start as one contiguous share per thread; a thread
//    works through its own from the front, then steals from the back of the others'
//    (detail::StealRange). Every C tile is computed the same way whichever thread takes it:
//    the result is bitwise that of 1 thread.
// With one B block (n <= nc, k <= 4/3 kc: e.g. 8192 x 512 x 512) the threads never meet at a
// barrier; with several, a barrier before each repack of the shared block.
// `b_buf` holds ceil(min(nc, n)/NR)*NR*kc floats; a_bufs[t] shared_b_rows(...)*kc (unused, may
// be empty, when shared_b_a_in_place).
// On AVX-512 a unit-column-stride A is not packed at all: the 8 x 48 tile broadcasts from its 8
// rows in place (gemm_microkernel_big_direct_a). Each A micro-panel is used by one row of tiles
// and never again, so packing it only moved it through L2 (the packed block, 1 MiB, beside the
// 1 MiB B block in a 2 MiB L2) at a cost of ~5 % of the product (perf: pack_transpose_avx512<8>
// 4.8 % of the samples, stalled on its loads). Same FMAs in the same order: bitwise the packed
// result. 8192 x 512 x 512, same process, alternating with the packed A (loaded VM, load ~4.5,
// medians of 15): 1 thread 3.1 / 3.2 % faster, 2 threads 4.8 / 12 %. Row strides of 1024..4096
// floats (the 8 rows in 1-2 L1 sets) were no slower than packing either (1 thread, minimum of 15).
// A transposed A (a_cs != 1) is still packed block by block: its in-place rows are k-strided.
// On 1 thread too when B is a single block (n <= nc, one k block): B is packed once and stays in
// L2, where gemm_one repacks B for every A block of L3 size (numbers below: with packed A). 1 thread, same
// process, alternating, medians of 15: 8192 x 512 x 512 7 % and 16384 x 256 x 256 4 % faster;
// with several B blocks (4096 x 1024 x 1024) the C passes per B block made it 4 % slower.
bool use_shared_b(const GemmArgs& g, int nt, const GemmBlocking& blk, int64_t k) {
  if (g.m < 2 * g.n || g.m < 4 * kGemmMR * nt) return false;
  return nt > 1 || (g.n <= blk.nc && k_blocks(k, blk.kc) == 1);
}

// A block rows (also the unit of the run-time claims when A is read in place): the packed A
// block in half of the thread's own L2, beside the B block
// (<= L2/2), so the microkernels read A panels from L2, not L3. 8192 x 512 x 512 on 2 threads
// (kc = 512): 512 rows (1 MiB) are ~9 % faster than 4096 (8 MiB, through L3); 2 threads,
// same process, alternating, medians of 15. At least one block per thread.
int64_t shared_b_rows(const GemmBlocking& blk, int64_t m, int64_t kc, int64_t mr, int nt) {
  const int64_t fit = (blk.l2_bytes / 2) / (std::max<int64_t>(kc, 1) * int64_t(sizeof(float)));
  const int64_t cap = std::clamp<int64_t>(fit / mr * mr, 4 * mr, blk.mc);
  return balanced_block(m, std::min(cap, cdiv(cdiv(m, nt), mr) * mr), mr);
}

inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// config.h's gemm_late_thread_blocks (tests only): thread 0 holds back until the others have
// claimed every B panel of the step (`next` >= n_panels) and stolen the back of its share of A
// blocks down to `back_target`, so they run the stealing branches. Yields rather than spins: the
// tests oversubscribe the cores.
void wait_until_stolen(const std::atomic<int64_t>& next, int64_t n_panels, const detail::StealRange& share,
                       uint32_t back_target) {
  while (next.load(std::memory_order_relaxed) < n_panels ||
         static_cast<uint32_t>(share.fb.load(std::memory_order_relaxed) >> 32) > back_target)
    std::this_thread::yield();
}

// Whether gemm_shared_b<true> reads A in place (then it needs no A buffers).
inline bool shared_b_a_in_place(const GemmArgs& g) { return kGemmHasBig && g.a_cs == 1; }

template <bool BIG>
void gemm_shared_b(const GemmArgs& g, const GemmBlocking& blk, int nt, float* const* a_bufs, float* b_buf) {
  constexpr int64_t MR = BIG ? kGemmBigMR : kGemmMR, NR = BIG ? kGemmBigNR : kGemmNR;
  const bool a_in_place = BIG && shared_b_a_in_place(g);
  const int64_t m = g.m, n = g.n;
  const int64_t k = g.alpha == 0.0f ? 0 : g.k;
  const int64_t nk = k_blocks(k, blk.kc);
  const int64_t kc_step = k == 0 ? 0 : cdiv(k, nk);
  const int64_t nc_step = balanced_block(n, blk.nc, NR);
  const int64_t mc_step = shared_b_rows(blk, m, kc_step, MR, nt);
  const int64_t a_blocks = cdiv(m, mc_step);
  const int64_t steps = cdiv(n, nc_step) * nk;  // (B block, k block) pairs, jc outer
  // Per step: the B panel claim and done counters, and each thread's share of A blocks.
  struct alignas(64) PanelCounters {
    std::atomic<int64_t> next{0}, done{0};
  };
  std::unique_ptr<PanelCounters[]> panels(new PanelCounters[steps]);
  std::unique_ptr<detail::StealRange[]> shares(new detail::StealRange[steps * nt]);
  for (int64_t s = 0; s < steps; ++s)
    for (int t = 0; t < nt; ++t)
      shares[s * nt + t].init(static_cast<uint32_t>(a_blocks * t / nt), static_cast<uint32_t>(a_blocks * (t + 1) / nt));
  // Testing aid (config.h): thread 0 waits until its share [0, a_blocks / nt) is stolen down to this.
  const int late_blocks = nt > 1 ? gemm_late_thread_blocks() : 0;
  const int64_t late_target = late_blocks > 0 ? std::max<int64_t>(0, a_blocks / nt - late_blocks) : -1;
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    const int team = omp_get_num_threads();  // < nt if OpenMP gave fewer: then nobody else may steal
    float* abuf = a_bufs[tid];
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t jc = s / nk * nc_step, kb = s % nk;
      const int64_t ncb = std::min(nc_step, n - jc);
      const int64_t pc = kb * kc_step;
      const int64_t kc = std::min(kc_step, k - pc);
      const int64_t n_panels = cdiv(ncb, NR);
      PanelCounters& pk = panels[s];
      if (late_target >= 0 && tid == 0 && team > 1)
        wait_until_stolen(pk.next, n_panels, shares[s * nt], static_cast<uint32_t>(late_target));
      for (int64_t q; (q = pk.next.fetch_add(1, std::memory_order_relaxed)) < n_panels;) {
        const int64_t c0 = q * NR;
        if (kc > 0)
          (BIG ? gemm_pack_b_big : gemm_pack_b)(kc, std::min(NR, ncb - c0), g.b + pc * g.b_rs + (jc + c0) * g.b_cs,
                                                g.b_rs, g.b_cs, b_buf + c0 * kc);
        pk.done.fetch_add(1, std::memory_order_release);
      }
      while (pk.done.load(std::memory_order_acquire) < n_panels) spin_pause();
      for (int v = 0; v < nt; ++v) {
        detail::StealRange& share = shares[s * nt + (tid + v) % nt];
        for (int64_t ab; (ab = share.take(v == 0)) >= 0;) {
          const int64_t ic = ab * mc_step;
          const int64_t mc = std::min(mc_step, m - ic);
          if (a_in_place) {
            macro_kernel<BIG>(g, g.a + ic * g.a_rs + pc, b_buf, ic, 0, cdiv(mc, MR), jc, ncb, kc, kb == 0, kb == nk - 1,
                              g.a_rs);
            continue;
          }
          if (kc > 0) (BIG ? gemm_pack_a_big : gemm_pack_a)(mc, kc, g.a + ic * g.a_rs + pc * g.a_cs, g.a_rs, g.a_cs, abuf);
          macro_kernel<BIG>(g, abuf, b_buf, ic, 0, cdiv(mc, MR), jc, ncb, kc, kb == 0, kb == nk - 1);
        }
      }
      if (s + 1 < steps) {
#pragma omp barrier  // the B block is repacked next step
      }
    }
  }
}

// Column panels of one C block cut into units claimed at run time (gemm_one_claimed): guided
// sizes, each unit about 1/(2 nt) of the panels not yet given out and at most `max_panels` (a B
// block of nc columns), so the first units are large (few passes over the A block) and the
// last ones single panels (the threads finish within a panel of each other). 22 panels on 2
// threads: 6 4 3 3 2 1 1 1 1. Returns the number of units; starts[u] is unit u's first panel,
// starts[units] == panels.
inline int64_t column_units(int64_t panels, int nt, int64_t max_panels, int64_t* starts) {
  int64_t u = 0;
  for (int64_t p = 0; p < panels; ++u) {
    starts[u] = p;
    p += std::clamp<int64_t>(cdiv(panels - p, 2 * int64_t(nt)), 1, std::max<int64_t>(1, max_panels));
  }
  starts[u] = panels;
  return u;
}

// Waits for `ready()` (another thread's progress): spins briefly, then yields the core, which
// the awaited thread may need when the cores are oversubscribed.
template <typename Ready>
inline void wait_for(Ready&& ready) {
  for (int spins = 0; !ready(); ++spins) {
    if (spins < 4096)
      spin_pause();
    else
      sched_yield();
  }
}

// gemm_one on several threads with the C block split along N: the steps (A block ic, k block
// kb) run in order, and within a step the column units (column_units) are claimed one at a time
// from an atomic counter, so a thread that starts late or is descheduled for a while (this VM's
// vCPUs) leaves its work to the other instead of holding it at the end; there are no barriers:
//  * shared A (a_bufs[0], a_bufs[1]: the A blocks of even and odd steps): its micro-panels are
//    packed in chunks claimed at run time; a thread waits only until every chunk of the step is
//    packed, and before repacking a buffer, until every unit of the step two back is done.
//  * private A (a_bufs[t], each thread's own, given when the block fits half of L2): a thread
//    packs the whole block when it takes its first unit of a step, and never waits for that.
// A unit of a later k block of the same rows waits until the same columns' previous k block is
// done (k blocks accumulate in C in order). Every C tile is computed with the same k blocks in the
// same order whichever thread takes it: the result is bitwise that of gemm_one on 1 thread.
// Measured (session 9, 2 threads, same process, alternating with the static split it replaced,
// timings kept only when no other non-niced process ran; niced builds and tests did): medians
// 1024^3 0.67-0.98x the static time (the static split waited at its barriers whenever a niced
// process took a core), 2048^3 0.95-0.97x, 4096^3 0.985x, 512 x 512 x 8192 0.91-0.99x,
// 256 x 4096 x 1024 0.97-1.03x; the minima within +-2 %. Units of cdiv(rest, nt) panels (fewer
// passes over A) were 1-17 % slower at 256 x 4096 x 1024; claims from both ends (thread 0 from
// the front, so each thread keeps its columns of C from one k block to the next) and, for
// private A blocks, the 8 x 48 tile reading A in place were within the noise (+-5 %).
template <bool BIG>
void gemm_one_claimed(const GemmArgs& g, const GemmBlocking& blk, int nt, float* const* a_bufs, bool private_a,
                      float* const* b_bufs) {
  constexpr int64_t MR = BIG ? kGemmBigMR : kGemmMR, NR = BIG ? kGemmBigNR : kGemmNR;
  const int64_t m = g.m, n = g.n;
  const int64_t k = g.alpha == 0.0f ? 0 : g.k;
  const int64_t nk = k_blocks(k, blk.kc);
  const int64_t kc_step = k == 0 ? 0 : cdiv(k, nk);
  const int64_t mc_step = balanced_block(m, blk.mc, MR);
  const int64_t steps = cdiv(m, mc_step) * nk;
  const int64_t panels = cdiv(n, NR);
  std::unique_ptr<int64_t[]> starts(new int64_t[panels + 1]);
  const int64_t units = column_units(panels, nt, std::max<int64_t>(1, blk.nc / NR), starts.get());
  constexpr int64_t kChunkPanels = 16;  // A micro-panels per packing claim (128-192 rows)
  struct alignas(64) StepCounters {
    std::atomic<int64_t> next_unit{0}, units_done{0}, next_chunk{0}, chunks_done{0};
  };
  struct alignas(64) UnitProgress {
    std::atomic<int64_t> steps_done{0};  // the unit's columns are done up to this step (exclusive)
  };
  std::unique_ptr<StepCounters[]> step_ctr(new StepCounters[steps]);
  std::unique_ptr<UnitProgress[]> unit_ctr(new UnitProgress[units]);
  const int64_t late_steps = gemm_late_thread_blocks();  // testing aid (config.h), 0 by default
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    const bool late = tid == 0 && omp_get_num_threads() > 1;  // never wait for threads OpenMP did not give
    float* bbuf = b_bufs[tid];
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t ic = s / nk * mc_step, kb = s % nk;
      const int64_t mc = std::min(mc_step, m - ic);
      const int64_t a_panels = cdiv(mc, MR);
      const int64_t pc = kb * kc_step;
      const int64_t kc = std::min(kc_step, k - pc);
      StepCounters& sc = step_ctr[s];
      if (late && s < late_steps) wait_for([&] { return sc.next_unit.load(std::memory_order_relaxed) >= units; });
      float* abuf = private_a ? a_bufs[tid] : a_bufs[s & 1];
      auto pack_a = [&](int64_t p0, int64_t p1) {
        if (kc > 0)
          (BIG ? gemm_pack_a_big : gemm_pack_a)(std::min(mc, p1 * MR) - p0 * MR, kc,
                                                g.a + (ic + p0 * MR) * g.a_rs + pc * g.a_cs, g.a_rs, g.a_cs,
                                                abuf + p0 * MR * kc);
      };
      if (!private_a) {
        const int64_t chunks = cdiv(a_panels, kChunkPanels);
        if (s >= 2 && sc.next_chunk.load(std::memory_order_relaxed) < chunks) {
          StepCounters& old = step_ctr[s - 2];  // its A block is in the buffer repacked now
          wait_for([&] { return old.units_done.load(std::memory_order_acquire) == units; });
        }
        for (int64_t q; (q = sc.next_chunk.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
          pack_a(q * kChunkPanels, std::min(a_panels, (q + 1) * kChunkPanels));
          sc.chunks_done.fetch_add(1, std::memory_order_release);
        }
        if (sc.next_unit.load(std::memory_order_relaxed) >= units) continue;  // nothing left to claim
        wait_for([&] { return sc.chunks_done.load(std::memory_order_acquire) == chunks; });
      }
      bool a_packed = !private_a;
      for (int64_t u; (u = sc.next_unit.fetch_add(1, std::memory_order_relaxed)) < units;) {
        if (!a_packed) pack_a(0, a_panels), a_packed = true;
        const int64_t jc = starts[u] * NR, ncb = std::min(n, starts[u + 1] * NR) - jc;
        // kb > 0: the same columns' previous k block accumulates into this C first. kb == 0: other
        // rows, but waiting keeps steps_done monotonic (the previous step's store must not land last).
        wait_for([&] { return unit_ctr[u].steps_done.load(std::memory_order_acquire) >= s; });
        if (kc > 0) (BIG ? gemm_pack_b_big : gemm_pack_b)(kc, ncb, g.b + pc * g.b_rs + jc * g.b_cs, g.b_rs, g.b_cs, bbuf);
        macro_kernel<BIG>(g, abuf, bbuf, ic, 0, a_panels, jc, ncb, kc, kb == 0, kb == nk - 1);
        unit_ctr[u].steps_done.store(s + 1, std::memory_order_release);
        sc.units_done.fetch_add(1, std::memory_order_release);
      }
    }
  }
}

// One product with `nt` threads (nt == 1: no parallel region). `a_buf` holds
// ceil(min(mc, m)/MR)*MR*kc floats; b_bufs[t] ceil(min(nc, n)/NR)*NR*kc each. With nt > 1 either
// a_private (each thread's own A block, when one fits in half of L2) or a_buf2 (a second shared
// A block) is needed for the split along N (gemm_one_claimed).
template <bool BIG>
void gemm_one(const GemmArgs& g, const GemmBlocking& blk, int nt, float* a_buf, float* const* b_bufs,
              float* const* a_private = nullptr, float* a_buf2 = nullptr) {
  constexpr int64_t MR = BIG ? kGemmBigMR : kGemmMR, NR = BIG ? kGemmBigNR : kGemmNR;
  const int64_t m = g.m, n = g.n;
  const int64_t k = g.alpha == 0.0f ? 0 : g.k;  // BLAS: alpha == 0 does not read A or B
  const int64_t nk = k_blocks(k, blk.kc);
  const int64_t kc_step = k == 0 ? 0 : cdiv(k, nk);  // balanced k blocks, none tiny
#if FASTNN_ISA_LEVEL == 2
  if (gemm_narrow_dot_applies(g)) {
    gemm_narrow_dot(g, nt);
    return;
  }
#endif
  if (use_direct(g, k)) {
    gemm_direct(g, nt);
    return;
  }

  // Split along N unless that leaves the threads clearly less balanced than along M.
  const int64_t n_units = cdiv(n, NR), m_units = cdiv(std::min(m, blk.mc), MR);
  const bool split_n = balance(n_units, nt) >= 0.99 * balance(m_units, nt) || balance(n_units, nt) >= 0.9;
  if (nt > 1 && split_n) {
    float* shared[2] = {a_buf, a_buf2};
    gemm_one_claimed<BIG>(g, blk, nt, a_private ? a_private : shared, a_private != nullptr, b_bufs);
    return;
  }
  // 1 thread, or the C block split along M: the threads pack the shared A block together and
  // each runs its own micro-panels of it against all of B.
  auto body = [&](int tid) {
    float* bbuf = b_bufs[tid];
    float* const abuf = a_buf;
    const int64_t mc_step = balanced_block(m, blk.mc, MR);
    const int64_t nc_step = balanced_block(n, blk.nc, NR);
    for (int64_t ic = 0; ic < m; ic += mc_step) {
      const int64_t mc = std::min(mc_step, m - ic);
      const int64_t panels = cdiv(mc, MR);
      int64_t ir0 = 0, ir1 = panels;
      split_range(panels, nt, tid, 1, &ir0, &ir1);
      for (int64_t kb = 0; kb < nk; ++kb) {
        const int64_t pc = kb * kc_step;
        const int64_t kc = std::min(kc_step, k - pc);
        // Cooperative packing of the A block: thread t packs its share of the panels.
        int64_t p0 = 0, p1 = panels;
        split_range(panels, nt, tid, 1, &p0, &p1);
        if (kc > 0 && p1 > p0)
          (BIG ? gemm_pack_a_big : gemm_pack_a)(std::min(mc, p1 * MR) - p0 * MR, kc,
                      g.a + (ic + p0 * MR) * g.a_rs + pc * g.a_cs, g.a_rs, g.a_cs,
                      abuf + p0 * MR * kc);
        if (nt > 1) {
#pragma omp barrier
        }
        for (int64_t jc = 0; jc < n; jc += nc_step) {
          const int64_t ncb = std::min(nc_step, n - jc);
          if (kc > 0) (BIG ? gemm_pack_b_big : gemm_pack_b)(kc, ncb, g.b + pc * g.b_rs + jc * g.b_cs, g.b_rs, g.b_cs, bbuf);
          macro_kernel<BIG>(g, abuf, bbuf, ic, ir0, ir1, jc, ncb, kc, kb == 0, kb == nk - 1);
        }
        if (nt > 1) {
#pragma omp barrier  // the A block is repacked next iteration
        }
      }
    }
  };

  if (nt == 1) {
    body(0);
  } else {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num());
  }
}

}  // namespace

GemmBlocking gemm_blocking() {
  static const GemmBlocking blk = compute_blocking();
  return blk;
}

// Blocking of the single products on the big tile (gemm_one<true>): the 8-row A micro-panel
// is 2/3 of the 12-row one, so the same share of L1 holds a k block 1.5x deeper (512 on a
// 48 KiB L1, clamped as compute_blocking's): k = 1024 runs in 2 blocks instead of 3 of 342,
// one pass less over C and one packing round less. 1 thread, same process, alternating:
// 1024^3 and 2048^3 2-5 % faster, 256 x 4096 x 1024 0-3 %; k = 768 or 1024 blocks were 5-16 %
// slower (the B block outgrows half of L2). The tall path (gemm_shared_b) uses it too.
// 1024^3 on 2 threads with these blocks (session 8, same process, alternating, loaded VM): a
// second A buffer that drops the barrier after each k block: within 0.3 %; private A blocks
// (each thread packs all of A): 1-3 % slower. The barriers are not what 1024^3 loses to MKL.
static GemmBlocking big_tile_blocking() {
  static const GemmBlocking blk = [] {
    GemmBlocking b = gemm_blocking();
    if (kGemmHasBig) {
      const int64_t l1 = cache_size(_SC_LEVEL1_DCACHE_SIZE, 32 << 10);
      b.kc = std::clamp<int64_t>((l1 * 3 / 8) / (kGemmBigMR * 4) / 8 * 8, 128, 512);
    }
    return b;
  }();
  return blk;
}

float gemm_activation_scalar(Activation act, float v) {
  switch (act) {
    case Activation::relu: return v < 0.0f ? 0.0f : v;
    case Activation::gelu: return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
    case Activation::gelu_tanh:
      return 0.5f * v * (1.0f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    case Activation::sigmoid: return 1.0f / (1.0f + std::exp(-v));
    case Activation::tanh: return std::tanh(v);
    default: return v;
  }
}

// Entry point of this ISA level (called by fastnn::cpu::gemm, csrc/cpu/gemm.cpp).
void gemm_run(const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
  const GemmBlocking blk = gemm_blocking();
  const int64_t k_eff = g.alpha == 0.0f ? 0 : g.k;
  const int64_t kc = k_eff == 0 ? 0 : cdiv(k_eff, k_blocks(k_eff, blk.kc));
  const int64_t a_floats = cdiv(std::min(blk.mc, g.m), kGemmMR) * kGemmMR * kc;
  const int64_t b_floats = cdiv(std::min(blk.nc, g.n), kGemmNR) * kGemmNR * kc;
  // Work in multiply-adds; below ~128K per thread a parallel region costs more than it saves.
  const double work = static_cast<double>(g.m) * g.n * std::max<int64_t>(k_eff, 1);
  const int max_threads = std::min(num_threads(), 64);
  constexpr double kGrain = 131072.0;

  const int nt_one = static_cast<int>(std::max(1.0, std::min<double>(max_threads, work / kGrain)));
#if FASTNN_ISA_LEVEL == 2
  if (g.batch == 1 && gemm_narrow_dot_applies(g)) {  // n <= 12, A rows unit-stride: no packed blocks
    gemm_narrow_dot(g, nt_one);
    return;
  }
#endif
  if (g.batch == 1 && use_direct(g, k_eff)) {  // no packed blocks to allocate
    gemm_direct(g, nt_one);
    return;
  }
  // Single products run the big tile in gemm_shared_b or gemm_one with the same k blocks, so a
  // tall product gives the same bits on 1 thread (gemm_one) as on 2 (gemm_shared_b).
  const GemmBlocking big = big_tile_blocking();
  const int64_t kc_big = k_eff == 0 ? 0 : cdiv(k_eff, k_blocks(k_eff, big.kc));
  if (g.batch == 1 && use_shared_b(g, nt_one, big, k_eff) && !use_direct(g, k_eff)) {
    constexpr int64_t mr = kGemmBigMR, nr = kGemmBigNR;  // == kGemmMR, kGemmNR below AVX-512
    const int64_t a_floats_t =
        shared_b_a_in_place(g) ? 0 : cdiv(shared_b_rows(big, g.m, kc_big, mr, nt_one), mr) * mr * kc_big;
    // `a`: the shared B block; `b[t]`: thread t's A block
    Buffers buf(cdiv(std::min(big.nc, g.n), nr) * nr * kc_big, a_floats_t, nt_one);
    gemm_shared_b<true>(g, big, nt_one, buf.b, buf.a);
    return;
  }
  if (g.batch == 1) {  // the 8 x 48 tile on AVX-512 (gemm_microkernel_big: fewer loads per FMA)
    const int64_t a_big = cdiv(std::min(big.mc, g.m), kGemmBigMR) * kGemmBigMR * kc_big;
    const int64_t b_big = cdiv(std::min(big.nc, g.n), kGemmBigNR) * kGemmBigNR * kc_big;
    // A block <= L2/2 (256 x 4096 x 1024: 256 x 512; measured at 256 x 373): each thread packs
    // its own copy rather than meet the other at two barriers per k block. 2 threads, same
    // process, alternating, medians of 15: 256 x 4096 x 1024 4-27 % faster (the more so the more
    // loaded the machine), 512 x 512 x 8192 (1 MiB A block, one k block, two barriers) unchanged.
    // Larger A blocks (squares) stay shared: two copies through L3 were up to 4 % slower at 4096^2.
    // (Session 8, before gemm_one_claimed replaced the barriers.)
    const bool private_a = nt_one > 1 && a_big * int64_t(sizeof(float)) <= big.l2_bytes / 2;
    const bool two_a = nt_one > 1 && !private_a;  // shared A blocks of even and odd steps
    Buffers buf(two_a ? 2 * a_big : a_big, b_big, nt_one);
    if (private_a) {
      Buffers a_own(0, a_big, nt_one);  // the "b" slots hold each thread's A block
      gemm_one<true>(g, big, nt_one, buf.a, buf.b, a_own.b);
    } else {
      gemm_one<true>(g, big, nt_one, buf.a, buf.b, nullptr, two_a ? buf.a + a_big : nullptr);
    }
    return;
  }
  if (nt_one >= max_threads) {
    // Batched products one after another, each using all the threads it can.
    Buffers buf(nt_one > 1 ? 2 * a_floats : a_floats, b_floats, nt_one);
    for (int64_t bi = 0; bi < g.batch; ++bi) {
      GemmArgs one = g;
      one.a = g.a + bi * g.a_batch_stride;
      one.b = g.b + bi * g.b_batch_stride;
      one.c = g.c + bi * g.c_batch_stride;
      gemm_one<false>(one, blk, nt_one, buf.a, buf.b, nullptr, nt_one > 1 ? buf.a + a_floats : nullptr);
    }
    return;
  }
  // Many small products: one per thread at a time.
  const int nt = static_cast<int>(std::max(1.0, std::min<double>({double(max_threads), double(g.batch),
                                                                   work * g.batch / kGrain})));
  if (nt == 1) {
    Buffers buf(a_floats, b_floats, 1);
    for (int64_t bi = 0; bi < g.batch; ++bi) {
      GemmArgs one = g;
      one.a = g.a + bi * g.a_batch_stride;
      one.b = g.b + bi * g.b_batch_stride;
      one.c = g.c + bi * g.c_batch_stride;
      gemm_one<false>(one, blk, 1, buf.a, buf.b);
    }
    return;
  }
  Buffers per_thread_a(0, a_floats, nt);  // the "b" slots hold each thread's A block
  Buffers per_thread_b(0, b_floats, nt);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    const int t = omp_get_thread_num();
    GemmArgs one = g;
    one.a = g.a + bi * g.a_batch_stride;
    one.b = g.b + bi * g.b_batch_stride;
    one.c = g.c + bi * g.c_batch_stride;
    gemm_one<false>(one, blk, 1, per_thread_a.b[t], &per_thread_b.b[t]);
  }
}

#include "cpu/isa_end.h"
