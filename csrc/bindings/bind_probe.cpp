// Hardware-limit probes for `fastnn bench --probe`.
#include "bindings/common.h"
#include "fastnn/config.h"
#include "fastnn/probe.h"

namespace fastnn::bindings {

FASTNN_BINDINGS(probe) {
  m.def("_probe_fma_gflops", [](int threads, double seconds) {
    FASTNN_CHECK(threads >= 1, ValueError, "probe: argument 'threads': expected >= 1, got ", threads);
    py::gil_scoped_release nogil;
    return cpu::probe_fma_gflops(threads, seconds);
  }, py::arg("threads"), py::arg("seconds") = 0.3);
  m.def("_probe_bandwidth_gbs", [](const std::string& pattern, int64_t n, int threads, int repeats) {
    FASTNN_CHECK(pattern == "triad" || pattern == "adam", ValueError,
                 "probe: argument 'pattern': expected 'triad' or 'adam', got '", pattern, "'");
    FASTNN_CHECK(n >= 1 && threads >= 1 && repeats >= 1, ValueError, "probe: expected n, threads, repeats >= 1");
    py::gil_scoped_release nogil;
    return cpu::probe_bandwidth_gbs(pattern == "triad" ? 0 : 1, n, threads, repeats);
  }, py::arg("pattern"), py::arg("n"), py::arg("threads"), py::arg("repeats") = 5);
}

}  // namespace fastnn::bindings
