// fastnn._C: the extension module. Exception translation, configuration, build info,
// allocator statistics, CUDA backend registration; every bind_*.cpp registers itself.
#include <omp.h>

#include "bindings/allocator_stats.h"
#include "bindings/common.h"
#include "fastnn/allocator.h"
#include "fastnn/config.h"

namespace py = pybind11;
using namespace fastnn;
using namespace fastnn::bindings;

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastnn native core: tensors, CPU kernels, bindings";

  // fastnn's own exception types; the std ones are translated by pybind11
  // (invalid_argument -> ValueError, out_of_range -> IndexError, bad_alloc -> MemoryError).
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastnn::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const fastnn::IndexError& e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const fastnn::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const fastnn::OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const fastnn::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  simd_level();  // reads FASTNN_SIMD now, so a bad value fails the import with its message
  m.def("get_num_threads", &num_threads);
  m.def("set_num_threads", [](py::handle n) {
    FASTNN_CHECK(py::isinstance<py::int_>(n) && !py::isinstance<py::bool_>(n), TypeError,
                 "set_num_threads: argument 'n': expected int, got ",
                 std::string(py::str(py::type::handle_of(n).attr("__name__"))));
    set_num_threads(n.cast<int>());
  }, py::arg("n"));
  m.def("get_simd_level", [] { return std::string(simd_level_name(simd_level())); });
  m.def("max_simd_level", [] { return std::string(simd_level_name(max_supported_simd_level())); });
  m.def("set_simd_level", [](const std::string& level) {
    SimdLevel l;
    FASTNN_CHECK(parse_simd_level(level.c_str(), &l), ValueError,
                 "set_simd_level: argument 'level': expected 'avx512', 'avx2' or 'generic', got '", level, "'");
    set_simd_level(l);
  }, py::arg("level"));

  // Testing aid (fastnn/config.h): forces gemm_direct_tiles' private B-panel copies.
  m.def("_get_gemm_busy_panel_claims", &gemm_busy_panel_claims);
  m.def("_set_gemm_busy_panel_claims", [](int n) { set_gemm_busy_panel_claims(n); }, py::arg("n"));
  // Testing aid (fastnn/config.h): makes gemm_shared_b's other threads steal thread 0's work.
  m.def("_get_gemm_late_thread_blocks", &gemm_late_thread_blocks);
  m.def("_set_gemm_late_thread_blocks", [](int n) { set_gemm_late_thread_blocks(n); }, py::arg("n"));

  py::dict build;
  build["version"] = FASTNN_VERSION;
  build["mode"] = FASTNN_BUILD_MODE_STR;
  build["cuda_architectures"] = FASTNN_CUDA_ARCHS_STR;
  build["compiler"] = __VERSION__;
  build["openmp"] = _OPENMP;
  m.attr("build_info") = build;

  m.def("memory_stats", [] { return stats_dict(cpu_allocator::stats()); });
  m.def("empty_cache", [] { cpu_allocator::empty_cache(); });
  m.def("reset_peak_memory_stats", [] { cpu_allocator::reset_peak(); });

  // CUDA backend: python/fastnn/cuda.py passes the capsule exported by _cuda or _cuda_emu.
  m.def("_set_cuda_backend", [](py::object capsule) {
    if (capsule.is_none()) {
      set_cuda_backend(nullptr);
      return;
    }
    auto* b = static_cast<CudaBackend*>(PyCapsule_GetPointer(capsule.ptr(), "fastnn.CudaBackend"));
    if (b == nullptr) throw py::error_already_set();
    FASTNN_CHECK(b->abi_version() == CudaBackend::kAbiVersion, Error, "CUDA backend ABI version ",
                 b->abi_version(), " does not match the core's ", CudaBackend::kAbiVersion,
                 " (mixed builds? reinstall fastnn)");
    set_cuda_backend(b);
  });
  m.def("_cuda_backend_name", []() -> py::object {
    CudaBackend* b = cuda_backend();
    if (!b) return py::none();
    return py::str(b->name());
  });
  m.def("_cuda_memory_stats", [](int device) { return stats_dict(require_cuda_backend().memory_stats(device)); });
  m.def("_cuda_empty_cache", [] { require_cuda_backend().empty_cache(); });
  m.def("_cuda_synchronize", [](int device) {
    py::gil_scoped_release nogil;
    require_cuda_backend().synchronize(device);
  });
  m.def("_cuda_host_device_copies", [] { return require_cuda_backend().host_device_copies(); });
  // Streams as integer handles (the cudaStream_t value; 0 = default stream), see python/fastnn/cuda.py.
  m.def("_cuda_stream_create", [](int device) {
    return reinterpret_cast<uintptr_t>(require_cuda_backend().stream_create(device));
  });
  m.def("_cuda_stream_destroy", [](uintptr_t s, int device) {
    py::gil_scoped_release nogil;
    require_cuda_backend().stream_destroy(reinterpret_cast<void*>(s), device);
  });
  m.def("_cuda_stream_synchronize", [](uintptr_t s, int device) {
    py::gil_scoped_release nogil;
    require_cuda_backend().stream_synchronize(reinterpret_cast<void*>(s), device);
  });
  m.def("_cuda_set_current_stream", [](uintptr_t s, int device) {
    require_cuda_backend().set_current_stream(reinterpret_cast<void*>(s), device);
  });
  m.def("_cuda_current_stream", [](int device) {
    return reinterpret_cast<uintptr_t>(require_cuda_backend().current_stream(device));
  });

  run_registered_bindings(m);
}
