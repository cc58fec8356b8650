# The C++ library and C ABI for other programs: libfastnn.so (CPU kernels + core, no Python;
# the C functions of fastnn_c.h included), the headers, and a CMake package so that a project
# can `find_package(fastnn CONFIG REQUIRED)` and link `fastnn::fastnn`.
#
# No kernel is compiled twice: the library is the fastnn_core static archive (already built
# for fastnn._C, position-independent) linked whole, plus csrc/capi/.
#
# Layout, identical in a wheel and in a developer tree (<build>/python):
#   fastnn/include/fastnn/*.h   fastnn/lib/libfastnn.so   fastnn/lib/cmake/fastnn/*.cmake
# A developer build installs it there with the `fastnn_sdk` target (in ALL).
# Included from the top-level CMakeLists.txt (same scope).

include(CMakePackageConfigHelpers)

file(GLOB FASTNN_CAPI_SOURCES CONFIGURE_DEPENDS "${CMAKE_SOURCE_DIR}/csrc/capi/*.cpp")
add_library(fastnn SHARED ${FASTNN_CAPI_SOURCES})
add_library(fastnn::fastnn ALIAS fastnn)
target_link_libraries(fastnn PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,fastnn_core>")
target_compile_options(fastnn PRIVATE ${FASTNN_WARNINGS} ${FASTNN_CXX_OPT})
target_compile_features(fastnn PUBLIC cxx_std_17)
set(_fastnn_sdk_dir fastnn)  # relative to the install prefix (the wheel's site-packages)
target_include_directories(fastnn INTERFACE
    "$<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/csrc/include>" "$<INSTALL_INTERFACE:${_fastnn_sdk_dir}/include>")
# The library finds nothing of its own at run time (libgomp/libstdc++ come from the system).
set_target_properties(fastnn PROPERTIES INSTALL_RPATH "" BUILD_WITH_INSTALL_RPATH OFF)

set(_fastnn_sdk_targets fastnn)

# CUDA kernels as a C++ library (fastnn/cuda.h), from the object files _cuda links too.
if(FASTNN_WITH_CUDA AND TARGET fastnn_cuda_kernels)
  set(_fastnn_cuda_lib_sources ${FASTNN_CUDA_BACKEND_SOURCES})  # DeviceScratch & co. for launchers
  list(FILTER _fastnn_cuda_lib_sources EXCLUDE REGEX "/module\\.cpp$")  # the Python module
  add_library(fastnn_cuda SHARED "${CMAKE_SOURCE_DIR}/csrc/cuda_lib/cuda_api.cpp" ${_fastnn_cuda_lib_sources}
              $<TARGET_OBJECTS:fastnn_cuda_kernels>)
  add_library(fastnn::fastnn_cuda ALIAS fastnn_cuda)
  target_include_directories(fastnn_cuda PRIVATE ${_fastnn_cuda_includes})
  target_compile_options(fastnn_cuda PRIVATE ${FASTNN_WARNINGS})
  target_link_libraries(fastnn_cuda PUBLIC fastnn PRIVATE CUDA::cudart_static)
  set_target_properties(fastnn_cuda PROPERTIES INSTALL_RPATH "$ORIGIN" CUDA_RUNTIME_LIBRARY Static)
  list(APPEND _fastnn_sdk_targets fastnn_cuda)
endif()

install(TARGETS ${_fastnn_sdk_targets} EXPORT fastnnTargets
        LIBRARY DESTINATION ${_fastnn_sdk_dir}/lib COMPONENT fastnn_sdk
        ARCHIVE DESTINATION ${_fastnn_sdk_dir}/lib COMPONENT fastnn_sdk
        RUNTIME DESTINATION ${_fastnn_sdk_dir}/lib COMPONENT fastnn_sdk)
install(DIRECTORY "${CMAKE_SOURCE_DIR}/csrc/include/fastnn" DESTINATION ${_fastnn_sdk_dir}/include
        COMPONENT fastnn_sdk FILES_MATCHING PATTERN "*.h")
install(EXPORT fastnnTargets NAMESPACE fastnn:: DESTINATION ${_fastnn_sdk_dir}/lib/cmake/fastnn
        COMPONENT fastnn_sdk)
configure_package_config_file("${CMAKE_SOURCE_DIR}/cmake/fastnnConfig.cmake.in"
    "${CMAKE_BINARY_DIR}/fastnn_sdk/fastnnConfig.cmake" INSTALL_DESTINATION ${_fastnn_sdk_dir}/lib/cmake/fastnn)
write_basic_package_version_file("${CMAKE_BINARY_DIR}/fastnn_sdk/fastnnConfigVersion.cmake"
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_BINARY_DIR}/fastnn_sdk/fastnnConfig.cmake"
              "${CMAKE_BINARY_DIR}/fastnn_sdk/fastnnConfigVersion.cmake"
        DESTINATION ${_fastnn_sdk_dir}/lib/cmake/fastnn COMPONENT fastnn_sdk)

if(NOT SKBUILD)
  add_custom_target(fastnn_sdk ALL
    COMMAND "${CMAKE_COMMAND}" --install "${CMAKE_BINARY_DIR}" --component fastnn_sdk
            --prefix "${CMAKE_BINARY_DIR}/python"
    COMMENT "Installing the C++ library, headers and CMake package into ${CMAKE_BINARY_DIR}/python/fastnn")
  add_dependencies(fastnn_sdk ${_fastnn_sdk_targets})
endif()
