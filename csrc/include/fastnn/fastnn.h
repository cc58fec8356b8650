// fastnn's C++ API: every CPU kernel as a plain function on raw pointers, sizes and element
// strides (an argument struct per kernel family), no Python, no tensors.
//
//   #include <fastnn/fastnn.h>
//   fastnn::GemmArgs g;  g.m = m; g.n = n; g.k = k;
//   g.a = a; g.a_rs = k; g.a_cs = 1;  g.b = b; g.b_rs = n; g.b_cs = 1;  g.c = c; g.c_rs = n; g.c_cs = 1;
//   fastnn::cpu::gemm(g);
//
// CMake: find_package(fastnn CONFIG REQUIRED) + target_link_libraries(app PRIVATE fastnn::fastnn)
// (prefix: `python -m fastnn --cmake-prefix-path`). The kernels trust their arguments (the Python
// bindings and the C ABI of fastnn_c.h validate them); the contract of each struct is in its
// header. Threads: fastnn::set_num_threads; SIMD level: fastnn::set_simd_level (config.h).
#pragma once

#include "fastnn/activation.h"
#include "fastnn/attention.h"
#include "fastnn/config.h"
#include "fastnn/conv.h"
#include "fastnn/errors.h"
#include "fastnn/gemm.h"
#include "fastnn/nn_kernels.h"
#include "fastnn/optim.h"
#include "fastnn/pool.h"
