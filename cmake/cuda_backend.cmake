# The CUDA backend, built twice from the same sources (csrc/cuda_backend/*.cpp +
# kernels/*.cu + kernels/testing/*.cu):
#   fastnn._cuda      kernels compiled by nvcc, CUDA runtime linked statically
#                     (never -lcuda: libcudart dlopens the driver at run time, so
#                     the module imports on machines without a GPU);
#   fastnn._cuda_emu  kernels compiled by the host compiler against the CPU emulator
#                     of the CUDA execution model (csrc/cuda_emu/), through generated
#                     one-line .cpp wrappers that #include each .cu (marking .cu files
#                     LANGUAGE CXX is directory-scoped and would break the nvcc target).
# Included from the top-level CMakeLists.txt (same scope): appends to FASTNN_PY_MODULES.

file(GLOB FASTNN_CUDA_TESTING_KERNEL_SOURCES CONFIGURE_DEPENDS "${CMAKE_SOURCE_DIR}/kernels/testing/*.cu")
set(_fastnn_cuda_includes
    "${CMAKE_SOURCE_DIR}/csrc/include" "${CMAKE_SOURCE_DIR}/csrc" "${CMAKE_SOURCE_DIR}/csrc/cuda_backend"
    "${CMAKE_SOURCE_DIR}/kernels")

# ---- emulated module ------------------------------------------------------------
if(FASTNN_WITH_CUDA_EMU)
  file(GLOB _emu_sources CONFIGURE_DEPENDS "${CMAKE_SOURCE_DIR}/csrc/cuda_emu/*.cpp")
  add_library(fastnn_cuda_emu STATIC ${_emu_sources})
  target_include_directories(fastnn_cuda_emu PUBLIC
      "${CMAKE_SOURCE_DIR}/csrc/include" "${CMAKE_SOURCE_DIR}/csrc" ${CUDAToolkit_INCLUDE_DIRS})
  target_compile_options(fastnn_cuda_emu PRIVATE ${FASTNN_WARNINGS} -O2)
  # Hidden: the emulator defines cudaMalloc & co.; they must never interpose on (or
  # be interposed by) a real libcudart loaded in the same process.
  set_target_properties(fastnn_cuda_emu PROPERTIES
      CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON POSITION_INDEPENDENT_CODE ON)

  set(_emu_wrappers)
  foreach(_cu ${FASTNN_CUDA_KERNEL_SOURCES} ${FASTNN_CUDA_TESTING_KERNEL_SOURCES})
    file(RELATIVE_PATH _rel "${CMAKE_SOURCE_DIR}/kernels" "${_cu}")
    string(REPLACE "/" "__" _name "${_rel}")
    set(_wrapper "${CMAKE_BINARY_DIR}/cuda_emu_wrappers/${_name}.cpp")
    # file(CONFIGURE) rewrites only on change; the compiler's depfile tracks the .cu.
    file(CONFIGURE OUTPUT "${_wrapper}" CONTENT "#include \"${_cu}\"\n" @ONLY)
    list(APPEND _emu_wrappers "${_wrapper}")
  endforeach()

  pybind11_add_module(_cuda_emu ${FASTNN_CUDA_BACKEND_SOURCES} ${_emu_wrappers})
  target_include_directories(_cuda_emu PRIVATE ${_fastnn_cuda_includes} ${CUDAToolkit_INCLUDE_DIRS})
  target_compile_definitions(_cuda_emu PRIVATE
      FASTNN_CUDA_MODULE_NAME=_cuda_emu FASTNN_CUDA_MODULE_NAME_STR="_cuda_emu" FASTNN_CUDA_BACKEND_EMULATED=1)
  # -O2 without fast-math: kernels keep IEEE semantics (NaN poisoning must show).
  target_compile_options(_cuda_emu PRIVATE ${FASTNN_WARNINGS} -Wno-unknown-pragmas -O2 -fno-math-errno)
  target_link_libraries(_cuda_emu PRIVATE fastnn_cuda_emu)
  list(APPEND FASTNN_PY_MODULES _cuda_emu)
endif()

# ---- real module ----------------------------------------------------------------
if(FASTNN_WITH_CUDA)
  find_package(CUDAToolkit REQUIRED)
  # The kernels as an object library, linked into _cuda and into the C++ library fastnn_cuda
  # (cmake/fastnn_sdk.cmake) without a second nvcc compilation. Hidden: they are reached
  # through the backend or fastnn/cuda.h, never by symbol from outside.
  add_library(fastnn_cuda_kernels OBJECT ${FASTNN_CUDA_KERNEL_SOURCES})
  target_include_directories(fastnn_cuda_kernels PRIVATE ${_fastnn_cuda_includes})
  set_target_properties(fastnn_cuda_kernels PROPERTIES
      CUDA_ARCHITECTURES "${FASTNN_CUDA_ARCHITECTURES}" CUDA_STANDARD 17 POSITION_INDEPENDENT_CODE ON
      CUDA_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_compile_options(fastnn_cuda_kernels PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:-Xptxas=-warn-spills --Werror=all-warnings --expt-relaxed-constexpr -lineinfo>)
  pybind11_add_module(_cuda ${FASTNN_CUDA_BACKEND_SOURCES} $<TARGET_OBJECTS:fastnn_cuda_kernels>
                      ${FASTNN_CUDA_TESTING_KERNEL_SOURCES})
  target_include_directories(_cuda PRIVATE ${_fastnn_cuda_includes})
  target_compile_definitions(_cuda PRIVATE FASTNN_CUDA_MODULE_NAME=_cuda FASTNN_CUDA_MODULE_NAME_STR="_cuda")
  set_target_properties(_cuda PROPERTIES
      CUDA_ARCHITECTURES "${FASTNN_CUDA_ARCHITECTURES}"
      CUDA_RUNTIME_LIBRARY Static
      CUDA_STANDARD 17)
  # Register spills are build errors (-warn-spills + --Werror all-warnings); the
  # per-kernel register / shared-memory table is produced by
  # tools/cuda_resource_table.py (target cuda_resource_table) into docs/CUDA.md.
  target_compile_options(_cuda PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:-Xptxas=-warn-spills --Werror=all-warnings --expt-relaxed-constexpr -lineinfo>
      $<$<COMPILE_LANGUAGE:CXX>:${FASTNN_WARNINGS}>)
  target_link_libraries(_cuda PRIVATE CUDA::cudart_static)
  list(APPEND FASTNN_PY_MODULES _cuda)

  add_custom_target(cuda_resource_table
      COMMAND "${Python_EXECUTABLE}" "${CMAKE_SOURCE_DIR}/tools/cuda_resource_table.py"
              --nvcc "${CMAKE_CUDA_COMPILER}" --archs "${FASTNN_CUDA_ARCHITECTURES}"
              --out "${CMAKE_SOURCE_DIR}/docs/CUDA.md"
      WORKING_DIRECTORY "${CMAKE_SOURCE_DIR}"
      COMMENT "nvcc -Xptxas -v over kernels/*.cu -> docs/CUDA.md")
endif()
