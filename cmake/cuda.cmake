# The CUDA backend: resolves SLM_CUDA (AUTO/ON/OFF), compiles kernels/cuda/*.cu into the object library
# slm_cuda_kernels, which goes into libslm.a and libslm.so beside the library's own objects, and adds
# backends/cuda/*.c (plain C against the CUDA runtime API) to those objects.
#
# Architectures: CMAKE_CUDA_ARCHITECTURES, default "75;80;86;89;90;120" (Turing gaming cards up to
# Blackwell). Set it on the command line to build fewer, e.g. -DCMAKE_CUDA_ARCHITECTURES=89 for a quick
# development build, or "native" for the GPU in this machine.
string(TOUPPER "${SLM_CUDA}" _slm_cuda_mode)
if(_slm_cuda_mode STREQUAL "OFF" OR _slm_cuda_mode STREQUAL "FALSE" OR _slm_cuda_mode STREQUAL "0")
  message(STATUS "slm: CUDA backend off (SLM_CUDA=${SLM_CUDA})")
  return()
endif()
set(_slm_cuda_required FALSE)
if(_slm_cuda_mode STREQUAL "ON" OR _slm_cuda_mode STREQUAL "TRUE" OR _slm_cuda_mode STREQUAL "1")
  set(_slm_cuda_required TRUE)
endif()

include(CheckLanguage)
find_package(CUDAToolkit QUIET)
check_language(CUDA)

set(_slm_cuda_missing "")
if(NOT CUDAToolkit_FOUND)
  list(APPEND _slm_cuda_missing "the CUDA toolkit (find_package(CUDAToolkit) failed, set CUDAToolkit_ROOT to help it)")
elseif(NOT TARGET CUDA::cublas)
  list(APPEND _slm_cuda_missing "cuBLAS (CUDA::cublas)")
endif()
if(NOT CMAKE_CUDA_COMPILER)
  list(APPEND _slm_cuda_missing "a working CUDA compiler (nvcc; set CMAKE_CUDA_COMPILER)")
endif()
if(_slm_cuda_missing)
  string(JOIN " and " _slm_cuda_missing_text ${_slm_cuda_missing})
  if(_slm_cuda_required)
    message(FATAL_ERROR "SLM_CUDA=ON but ${_slm_cuda_missing_text} not found. Install the CUDA toolkit or "
                        "configure with -DSLM_CUDA=OFF (or AUTO to build without CUDA when it is missing).")
  endif()
  message(STATUS "slm: CUDA backend off: ${_slm_cuda_missing_text} not found")
  return()
endif()

# Must be set before enable_language(CUDA), which would otherwise pick the compiler's default.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR "${CMAKE_CUDA_ARCHITECTURES}" STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES "75;80;86;89;90;120" CACHE STRING
      "CUDA architectures to build for (e.g. 89, or native)" FORCE)
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

file(GLOB SLM_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu)
file(GLOB SLM_CUDA_BACKEND_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/backends/cuda/*.c)

add_library(slm_cuda_kernels OBJECT ${SLM_CUDA_KERNEL_SOURCES})
target_include_directories(slm_cuda_kernels PRIVATE
  ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/core ${CMAKE_SOURCE_DIR}/kernels
  ${CMAKE_SOURCE_DIR}/kernels/cuda)
# The directory-wide options (warnings, sanitizers) are host-compiler flags nvcc may not accept: replace
# them with the warnings forwarded to the host compiler. No -use_fast_math: RoPE angles of long contexts
# and the softmax need the accurate sin/cos/exp.
set_property(TARGET slm_cuda_kernels PROPERTY COMPILE_OPTIONS
  "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter,-Wno-missing-field-initializers,-Wno-unknown-pragmas>")
set_target_properties(slm_cuda_kernels PROPERTIES
  POSITION_INDEPENDENT_CODE ON
  CUDA_VISIBILITY_PRESET hidden
  CUDA_RUNTIME_LIBRARY Static)
# The launchers report through slm_fail (core/error.c) and name types with slm_dtype_name (core/types.c):
# being objects of the same libraries as those, they need no link order.
target_link_libraries(slm_cuda_kernels PRIVATE slm_internal CUDA::cudart_static)
target_sources(slm PRIVATE $<TARGET_OBJECTS:slm_cuda_kernels>)
target_sources(slm_shared PRIVATE $<TARGET_OBJECTS:slm_cuda_kernels>)

target_sources(slm_objects PRIVATE ${SLM_CUDA_BACKEND_SOURCES})
# The libraries were created before CUDA was enabled, so their architecture property is empty (CMP0104
# refuses that).
set_target_properties(slm_objects slm slm_shared PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
target_include_directories(slm_objects PRIVATE ${CMAKE_SOURCE_DIR}/backends/cuda ${CMAKE_SOURCE_DIR}/kernels/cuda)
target_include_directories(slm_internal INTERFACE ${CMAKE_SOURCE_DIR}/backends/cuda ${CMAKE_SOURCE_DIR}/kernels/cuda)
# The backend .c files include the runtime API headers only; core/ never sees them.
set_source_files_properties(${SLM_CUDA_BACKEND_SOURCES} PROPERTIES
  INCLUDE_DIRECTORIES "${CUDAToolkit_INCLUDE_DIRS}")
# The runtime is linked statically: without a driver (no libcuda) cudaGetDeviceCount fails cleanly and the
# backend reports zero devices. cuBLAS is a shared library.
target_link_libraries(slm_deps INTERFACE CUDA::cudart_static CUDA::cublas)
target_compile_definitions(slm_internal INTERFACE SLM_HAVE_CUDA=1)
message(STATUS "slm: CUDA backend on (CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
