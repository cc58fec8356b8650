# Reliability builds (tools/sanitize.sh, tools/coverage.py; docs/RELIABILITY.md):
#   -DFASTNN_SANITIZE=address,undefined   ASan + UBSan (any -fsanitize= list; "" = off)
#   -DFASTNN_SANITIZE_BINDINGS=OFF        leave the pybind11 glue (csrc/bindings/, the CUDA modules'
#                                         module.cpp) uninstrumented at -O0: the CI subset build
#   -DFASTNN_COVERAGE=ON                  gcov instrumentation (--coverage, -O1 for usable line data)
# Included once from the top-level CMakeLists.txt. The flags are appended to every target of the
# project at the end of the top-level directory (cmake_language(DEFER)), after each target's own
# options, so they win over -O3 and pick up targets added later (new kernel families, modules).
set(FASTNN_SANITIZE "" CACHE STRING "comma-separated -fsanitize= list, e.g. address,undefined (empty: off)")
option(FASTNN_SANITIZE_BINDINGS "with FASTNN_SANITIZE: instrument the pybind11 binding sources too" ON)
option(FASTNN_COVERAGE "instrument C++ (CPU kernels, core, emulated CUDA module) for gcov" OFF)

function(_fastnn_reliability_apply)
  set(_cflags)
  set(_lflags)
  if(FASTNN_SANITIZE)
    # -fno-sanitize-recover: a UBSan report aborts the process, so a test run cannot pass over it.
    # -O1 keeps reports' stacks readable and the build fast enough on a small machine.
    list(APPEND _cflags -fsanitize=${FASTNN_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1)
    list(APPEND _lflags -fsanitize=${FASTNN_SANITIZE})
  endif()
  if(FASTNN_COVERAGE)
    # -O1 rather than -O0: the emulator runs thousands of fibers per launch; -O1 keeps line
    # attribution good (no vectorisation / loop restructuring) at a tolerable speed.
    # -fprofile-update=atomic: OpenMP threads update the same counters.
    list(APPEND _cflags --coverage -O1 -fprofile-update=atomic -fno-inline-functions)
    list(APPEND _lflags --coverage)
  endif()
  if(NOT _cflags)
    return()
  endif()
  # The binding sources (csrc/bindings/, the CUDA modules' module.cpp) are pybind11 template glue:
  # instrumented, they are most of the build time (minutes each at -O1 -g with ASan + UBSan or
  # gcov) and hold no kernel code. Left plain at -O0 they still link against, and call into, the
  # instrumented core and kernels. Source options come after the target's on the command line,
  # so these win. Coverage builds always do this (tools/coverage.py measures kernels only).
  set(_plain)
  if(FASTNN_SANITIZE AND NOT FASTNN_SANITIZE_BINDINGS)
    list(APPEND _plain -fno-sanitize=all)
  endif()
  if(FASTNN_COVERAGE)
    list(APPEND _plain -fno-profile-arcs -fno-test-coverage)
  endif()
  if(_plain)
    file(GLOB _bindings "${CMAKE_SOURCE_DIR}/csrc/bindings/*.cpp" "${CMAKE_SOURCE_DIR}/csrc/cuda_backend/module.cpp")
    set_source_files_properties(${_bindings} DIRECTORY "${CMAKE_SOURCE_DIR}"
                                PROPERTIES COMPILE_OPTIONS "${_plain};-O0;-g0")
  endif()
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY BUILDSYSTEM_TARGETS)
  foreach(_t ${_targets})
    get_target_property(_type ${_t} TYPE)
    if(_type MATCHES "^(OBJECT_LIBRARY|STATIC_LIBRARY|SHARED_LIBRARY|MODULE_LIBRARY|EXECUTABLE)$")
      target_compile_options(${_t} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${_cflags}>)
      if(NOT _type MATCHES "^(OBJECT_LIBRARY|STATIC_LIBRARY)$")
        target_link_options(${_t} PRIVATE ${_lflags})
      endif()
    endif()
  endforeach()
  message(STATUS "fastnn: reliability build: sanitize='${FASTNN_SANITIZE}' (bindings ${FASTNN_SANITIZE_BINDINGS}) coverage=${FASTNN_COVERAGE}")
endfunction()

if(FASTNN_SANITIZE OR FASTNN_COVERAGE)
  # No link-time optimisation (pybind11 adds -flto by default): an LTO link of instrumented
  # modules recompiles everything at -O3 and took longer than the whole compile here.
  set(CMAKE_INTERPROCEDURAL_OPTIMIZATION OFF)
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _fastnn_reliability_apply)
endif()
