// The Python module of one CUDA backend: fastnn._cuda (real) or fastnn._cuda_emu
// (emulated), chosen by FASTNN_CUDA_MODULE_NAME. `_backend()` hands the core a
// capsule "fastnn.CudaBackend" holding the static CudaBackend*; the rest are
// diagnostics and testing hooks (tests/test_cuda_emulator.py), which work on raw
// device pointers (ints) and NumPy arrays so that they do not depend on fastnn._C.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "backend.h"
#include "bindings/allocator_stats.h"
#include "fastnn/errors.h"
#include "kernels.h"
#include "selftest.h"

#if defined(FASTNN_CUDA_BACKEND_EMULATED)
#include "cuda_emu/scheduler.h"
#endif

namespace py = pybind11;
using fastnn::CudaBackend;
using fastnn::DType;
using fastnn::bindings::stats_dict;

namespace {

CudaBackend& be() { return fastnn::cuda_backend_impl::backend(); }

DType parse_dtype(const std::string& s) {
  static const std::pair<const char*, DType> names[] = {
      {"float32", DType::float32}, {"float64", DType::float64}, {"float16", DType::float16},
      {"bfloat16", DType::bfloat16}, {"int32", DType::int32}, {"int64", DType::int64},
      {"uint8", DType::uint8}, {"bool", DType::bool_}};
  for (auto& [n, d] : names)
    if (s == n) return d;
  throw fastnn::ValueError("unknown dtype '" + s + "'");
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::float64: case DType::int64: return 8;
    case DType::float32: case DType::int32: return 4;
    case DType::float16: case DType::bfloat16: return 2;
    default: return 1;
  }
}

// Strided copy through the backend: `src` (raw bytes of a NumPy array of dtype
// src_dtype; bfloat16 travels as uint16) goes to the device with its strides, is
// copied / converted into a C- or F-ordered tensor of dst_dtype, and comes back.
py::array copy_hook(py::array src, const std::string& src_dtype, const std::string& dst_dtype, bool dst_fortran,
                    int device) {
  const DType sd = parse_dtype(src_dtype), dd = parse_dtype(dst_dtype);
  const size_t ssz = dtype_size(sd), dsz = dtype_size(dd);
  if (static_cast<size_t>(src.itemsize()) != ssz)
    throw fastnn::ValueError("copy hook: src itemsize does not match src_dtype");
  const int nd = static_cast<int>(src.ndim());
  std::vector<int64_t> shape(nd), sst(nd), dst_st(nd);
  int64_t numel = 1, lo = 0, hi = 0;
  for (int d = 0; d < nd; ++d) {
    shape[d] = src.shape(d);
    if (src.strides(d) % static_cast<py::ssize_t>(ssz)) throw fastnn::ValueError("copy hook: unaligned strides");
    sst[d] = src.strides(d) / static_cast<py::ssize_t>(ssz);
    numel *= shape[d];
    if (shape[d] > 0) (sst[d] < 0 ? lo : hi) += (shape[d] - 1) * sst[d];
  }
  int64_t acc = 1;
  for (int i = 0; i < nd; ++i) {
    const int d = dst_fortran ? i : nd - 1 - i;
    dst_st[d] = acc;
    acc *= shape[d];
  }
  std::vector<py::ssize_t> out_strides(nd);
  for (int d = 0; d < nd; ++d) out_strides[d] = static_cast<py::ssize_t>(dst_st[d] * static_cast<int64_t>(dsz));
  py::dtype out_dt = dd == DType::bfloat16 ? py::dtype("uint16") : py::dtype(dd == DType::bool_ ? "bool" : dst_dtype);
  py::array out(out_dt, std::vector<py::ssize_t>(shape.begin(), shape.end()), out_strides);
  if (numel == 0) return out;
  const size_t src_bytes = static_cast<size_t>(hi - lo + 1) * ssz, dst_bytes = static_cast<size_t>(numel) * dsz;
  const char* src_base = static_cast<const char*>(src.data()) + lo * static_cast<int64_t>(ssz);
  void* dsrc = be().malloc(src_bytes, device);
  void* ddst = be().malloc(dst_bytes, device);
  try {
    be().memcpy(dsrc, src_base, src_bytes, fastnn::MemcpyKind::host_to_device, device);
    fastnn::CopyArgs a;
    a.ndim = nd;
    a.shape = shape.data();
    a.dst = ddst;
    a.dst_strides = dst_st.data();
    a.dst_dtype = dd;
    a.src = static_cast<const char*>(dsrc) - lo * static_cast<int64_t>(ssz);
    a.src_strides = sst.data();
    a.src_dtype = sd;
    {
      py::gil_scoped_release nogil;
      be().copy(a, device);
    }
    be().memcpy(out.mutable_data(), ddst, dst_bytes, fastnn::MemcpyKind::device_to_host, device);
  } catch (...) {
    be().free(dsrc, device);
    be().free(ddst, device);
    throw;
  }
  be().free(dsrc, device);
  be().free(ddst, device);
  return out;
}

}  // namespace

PYBIND11_MODULE(FASTNN_CUDA_MODULE_NAME, m) {
  m.doc() = "fastnn CUDA backend (" FASTNN_CUDA_MODULE_NAME_STR ")";
  m.def("_backend", [] { return py::capsule(static_cast<void*>(&be()), "fastnn.CudaBackend"); },
        "PyCapsule 'fastnn.CudaBackend' holding this module's CudaBackend* (static lifetime)");
  m.def("name", [] { return std::string(be().name()); });
  m.def("device_count", [] { return be().device_count(); });
  m.def("unavailable_reason", [] { return be().unavailable_reason(); });
  m.def("device_name", [](int d) { return be().device_name(d); }, py::arg("device") = 0);
  m.def("memory_stats", [](int d) { return stats_dict(be().memory_stats(d)); }, py::arg("device") = 0);
  m.def("empty_cache", [] { be().empty_cache(); });
  m.def("synchronize", [](int d) { be().synchronize(d); }, py::arg("device") = 0);
  m.def("host_device_copies", [] { return be().host_device_copies(); });
#if defined(FASTNN_CUDA_BACKEND_EMULATED)
  m.attr("emulated") = true;
  m.def("_set_order", [](const std::string& order, uint64_t seed) {
    fastnn::emu::Order o;
    if (!fastnn::emu::parse_order(order.c_str(), &o))
      throw fastnn::ValueError("_set_order: argument 'order': expected 'forward', 'reverse' or 'random', got '" +
                               order + "'");
    fastnn::emu::set_order(o, seed);
  }, py::arg("order"), py::arg("seed") = 0);
  m.def("_get_order", [] {
    return py::make_tuple(fastnn::emu::order_name(fastnn::emu::order()), fastnn::emu::order_seed());
  });
  m.def("_launches", [] { return fastnn::emu::launches_run(); });
#else
  m.attr("emulated") = false;
#endif

  // ---- raw device memory through the backend (ints are device pointers) ----
  m.def("_malloc", [](size_t n, int d) { return reinterpret_cast<uintptr_t>(be().malloc(n, d)); },
        py::arg("nbytes"), py::arg("device") = 0);
  m.def("_free", [](uintptr_t p, int d) { be().free(reinterpret_cast<void*>(p), d); }, py::arg("ptr"),
        py::arg("device") = 0);
  m.def("_htod", [](uintptr_t p, py::buffer b, int d) {
    py::buffer_info info = b.request();
    be().memcpy(reinterpret_cast<void*>(p), info.ptr, static_cast<size_t>(info.size * info.itemsize),
                fastnn::MemcpyKind::host_to_device, d);
  }, py::arg("ptr"), py::arg("data"), py::arg("device") = 0);
  m.def("_dtoh", [](uintptr_t p, size_t n, int d) {
    std::string s(n, '\0');
    be().memcpy(s.data(), reinterpret_cast<const void*>(p), n, fastnn::MemcpyKind::device_to_host, d);
    return py::bytes(s);
  }, py::arg("ptr"), py::arg("nbytes"), py::arg("device") = 0);
  m.def("_dtod", [](uintptr_t dst, uintptr_t src, size_t n, int d) {
    be().memcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n,
                fastnn::MemcpyKind::device_to_device, d);
  }, py::arg("dst"), py::arg("src"), py::arg("nbytes"), py::arg("device") = 0);
  m.def("_memset", [](uintptr_t p, int v, size_t n, int d) { be().memset(reinterpret_cast<void*>(p), v, n, d); },
        py::arg("ptr"), py::arg("value"), py::arg("nbytes"), py::arg("device") = 0);
  m.def("_fill", [](uintptr_t p, const std::string& dt, double v, int64_t n) {
    py::gil_scoped_release nogil;
    fastnn::cuda_kernels::fill(reinterpret_cast<void*>(p), parse_dtype(dt), v, n, nullptr);
  }, py::arg("ptr"), py::arg("dtype"), py::arg("value"), py::arg("n"));
  m.def("_copy", &copy_hook, py::arg("src"), py::arg("src_dtype"), py::arg("dst_dtype"),
        py::arg("dst_fortran") = false, py::arg("device") = 0);
  m.def("_gemm", [](py::array_t<float, py::array::c_style | py::array::forcecast> a,
                    py::array_t<float, py::array::c_style | py::array::forcecast> b, bool trans_a, bool trans_b,
                    float alpha, float beta, py::object c_in, int activation) {
    // Plain 2-D products for tests and timing: A (m x k, or k x m transposed), B likewise.
    if (a.ndim() != 2 || b.ndim() != 2) throw fastnn::ValueError("_gemm: 2-D operands expected");
    const int64_t m = trans_a ? a.shape(1) : a.shape(0), k = trans_a ? a.shape(0) : a.shape(1);
    const int64_t n = trans_b ? b.shape(0) : b.shape(1);
    if ((trans_b ? b.shape(1) : b.shape(0)) != k) throw fastnn::ValueError("_gemm: inner dimensions differ");
    py::array_t<float> c({m, n});
    if (!c_in.is_none()) {
      auto ci = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(c_in);
      std::memcpy(c.mutable_data(), ci.data(), static_cast<size_t>(m * n) * 4);
    }
    const size_t ab = static_cast<size_t>(a.size()) * 4, bb = static_cast<size_t>(b.size()) * 4,
                 cb = static_cast<size_t>(m * n) * 4;
    auto* da = static_cast<float*>(be().malloc(ab, 0));
    auto* db = static_cast<float*>(be().malloc(bb, 0));
    auto* dc = static_cast<float*>(be().malloc(cb, 0));
    be().memcpy(da, a.data(), ab, fastnn::MemcpyKind::host_to_device, 0);
    be().memcpy(db, b.data(), bb, fastnn::MemcpyKind::host_to_device, 0);
    be().memcpy(dc, c.data(), cb, fastnn::MemcpyKind::host_to_device, 0);
    fastnn::GemmArgs g;
    g.m = m; g.n = n; g.k = k;
    g.a = da; g.a_rs = trans_a ? 1 : k; g.a_cs = trans_a ? m : 1;
    g.b = db; g.b_rs = trans_b ? 1 : n; g.b_cs = trans_b ? k : 1;
    g.c = dc; g.c_rs = n; g.c_cs = 1;
    g.alpha = alpha; g.beta = beta;
    g.activation = static_cast<fastnn::Activation>(activation);
    try {
      py::gil_scoped_release nogil;
      be().gemm(g, 0);
    } catch (...) {
      be().free(da, 0); be().free(db, 0); be().free(dc, 0);
      throw;
    }
    be().memcpy(c.mutable_data(), dc, cb, fastnn::MemcpyKind::device_to_host, 0);
    be().free(da, 0); be().free(db, 0); be().free(dc, 0);
    return c;
  }, py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("alpha") = 1.0f,
     py::arg("beta") = 0.0f, py::arg("c") = py::none(), py::arg("activation") = 0);

  // ---- self-test kernels (kernels/testing/emu_selftest.cu) ----
  namespace st = fastnn::cuda_selftest;
  py::module_ t = m.def_submodule("_selftest", "kernels exercising the emulated CUDA semantics");
  t.def("shift", &st::shift, py::call_guard<py::gil_scoped_release>());
  t.def("warp_tree_sum", &st::warp_tree_sum, py::call_guard<py::gil_scoped_release>());
  t.def("divergent_barrier", &st::divergent_barrier, py::call_guard<py::gil_scoped_release>());
  t.def("deadlock", &st::deadlock, py::call_guard<py::gil_scoped_release>());
  t.def("exit_before_barrier", &st::exit_before_barrier, py::call_guard<py::gil_scoped_release>());
  t.def("shuffle_outside_mask", &st::shuffle_outside_mask, py::call_guard<py::gil_scoped_release>());
  t.def("illegal_address", &st::illegal_address, py::call_guard<py::gil_scoped_release>());
  t.def("emulator_fault", &st::emulator_fault, py::call_guard<py::gil_scoped_release>());
  t.def("warp_ops", &st::warp_ops, py::call_guard<py::gil_scoped_release>());
  t.def("uninitialised_shared", &st::uninitialised_shared, py::call_guard<py::gil_scoped_release>());
  t.def("atomics", &st::atomics, py::call_guard<py::gil_scoped_release>());
  t.def("wmma_tile", &st::wmma_tile, py::call_guard<py::gil_scoped_release>());
  t.def("pipeline", &st::pipeline, py::call_guard<py::gil_scoped_release>());
  t.def("launch_config", [](int c) {
    st::LaunchResult r;
    {
      py::gil_scoped_release nogil;
      r = st::launch_config(c);
    }
    return py::make_tuple(r.code, r.message, r.ran);
  });
}
