# The CUDA backend: resolves SLM_CUDA (AUTO/ON/OFF), compiles kernels/cuda/*.cu into the object library
# slm_cuda_kernels, which goes into libslm.a and libslm.so beside the library's own objects, and adds
# backends/cuda/*.c (plain C against the CUDA runtime API) to those objects.
#
# AUTO never fails a configure: whatever is missing or too old (toolkit, nvcc, CUDA < 12.0, an architecture
# the toolkit cannot build) turns the backend off with a message; ON fails with the same message.
#
# Architectures: CMAKE_CUDA_ARCHITECTURES, by default those of "75;80;86;89;90;120" (Turing gaming cards up
# to Blackwell) that this toolkit can build: nvcc --list-gpu-arch says which (120 needs 12.8; a toolkit
# that dropped 75 would drop it here too). Each entry also embeds its PTX, so newer parts (e.g. sm_100) JIT
# from compute_90. Set it on the command line to build fewer, e.g. -DCMAKE_CUDA_ARCHITECTURES=89 for a quick
# development build, or "native" for the GPUs of this machine (read from nvidia-smi here, with any CMake).
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
# check_language tries the compiler in a sub-project, unless one was given (CMAKE_CUDA_COMPILER, CUDACXX):
# then it trusts it, and a path that does not exist or an nvcc that rejects the host compiler would fail
# enable_language below. Such a given compiler is tried here instead, with a one-line kernel.
set(_slm_cuda_compiler_given FALSE)
if(CMAKE_CUDA_COMPILER)
  set(_slm_cuda_compiler_given TRUE)
endif()
check_language(CUDA)
if(CMAKE_CUDA_COMPILER AND _slm_cuda_compiler_given AND NOT _SLM_CUDA_COMPILER_TRIED STREQUAL "${CMAKE_CUDA_COMPILER}")
  set(_slm_try_dir ${CMAKE_BINARY_DIR}/CMakeFiles/slm_cuda_try)
  file(WRITE ${_slm_try_dir}/try.cu "__global__ void k(float *p) { p[threadIdx.x] = 1.0f; }\n")
  set(_slm_try_cmd "${CMAKE_CUDA_COMPILER}" -c try.cu -o try.o)
  if(CMAKE_CUDA_HOST_COMPILER)
    list(APPEND _slm_try_cmd -ccbin "${CMAKE_CUDA_HOST_COMPILER}")
  endif()
  execute_process(COMMAND ${_slm_try_cmd} WORKING_DIRECTORY ${_slm_try_dir} RESULT_VARIABLE _slm_try_rc
                  OUTPUT_QUIET ERROR_VARIABLE _slm_try_err)
  if(NOT _slm_try_rc EQUAL 0)
    string(STRIP "${_slm_try_err}" _slm_try_err)
    message(STATUS "slm: the CUDA compiler ${CMAKE_CUDA_COMPILER} does not work: ${_slm_try_rc} ${_slm_try_err}")
    set(CMAKE_CUDA_COMPILER "")
  else()
    set(_SLM_CUDA_COMPILER_TRIED "${CMAKE_CUDA_COMPILER}" CACHE INTERNAL "the given CUDA compiler compiled a kernel")
  endif()
endif()

set(_slm_cuda_missing "")
if(NOT CUDAToolkit_FOUND)
  list(APPEND _slm_cuda_missing "the CUDA toolkit (find_package(CUDAToolkit) failed, set CUDAToolkit_ROOT to help it)")
elseif(NOT TARGET CUDA::cublas)
  list(APPEND _slm_cuda_missing "cuBLAS (CUDA::cublas)")
endif()
if(NOT CMAKE_CUDA_COMPILER)
  list(APPEND _slm_cuda_missing "a working CUDA compiler (nvcc, or set CMAKE_CUDA_COMPILER)")
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

# From here on, a reason not to build the backend is one message: fatal for ON, a status line for AUTO.
# (Arguments are joined, so a list in the text keeps its items.)
macro(_slm_cuda_refuse)
  string(JOIN " " _slm_why ${ARGN})
  if(_slm_cuda_required)
    message(FATAL_ERROR "SLM_CUDA=ON but ${_slm_why}. Configure with -DSLM_CUDA=OFF, or AUTO to build without "
                        "CUDA when it cannot be built.")
  endif()
  message(STATUS "slm: CUDA backend off: ${_slm_why}")
  return()
endmacro()

# The decode path instantiates its captured graphs with the 12.0 API (cudaGraphInstantiate's three-argument
# form; 11.x had five).
if(CUDAToolkit_VERSION VERSION_LESS 12.0)
  _slm_cuda_refuse("CUDA ${CUDAToolkit_VERSION} is older than 12.0, the oldest toolkit slm builds with")
endif()

# What this nvcc can build, as "75;80;...": the architectures it can emit code for. The list exists since
# CUDA 11; if the query fails, a table by version stands in (12.0-12.7: 50-90; 12.8, 12.9: up to 121;
# 13.x: 75 and newer).
execute_process(COMMAND "${CMAKE_CUDA_COMPILER}" --list-gpu-arch OUTPUT_VARIABLE _slm_nvcc_arch
                RESULT_VARIABLE _slm_nvcc_rc ERROR_QUIET)
set(_slm_cuda_supported "")
if(_slm_nvcc_rc EQUAL 0)
  string(REGEX MATCHALL "compute_[0-9]+" _slm_nvcc_arch "${_slm_nvcc_arch}")
  foreach(_a IN LISTS _slm_nvcc_arch)
    string(REPLACE "compute_" "" _a "${_a}")
    list(APPEND _slm_cuda_supported ${_a})
  endforeach()
endif()
if(NOT _slm_cuda_supported)
  if(CUDAToolkit_VERSION VERSION_GREATER_EQUAL 13.0)
    set(_slm_cuda_supported 75 80 86 87 89 90 100 103 110 120 121)
  elseif(CUDAToolkit_VERSION VERSION_GREATER_EQUAL 12.8)
    set(_slm_cuda_supported 50 52 53 60 61 62 70 72 75 80 86 87 89 90 100 101 120)
  else()
    set(_slm_cuda_supported 50 52 53 60 61 62 70 72 75 80 86 87 89 90)
  endif()
endif()

# Must be set before enable_language(CUDA), which would otherwise pick the compiler's default.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR "${CMAKE_CUDA_ARCHITECTURES}" STREQUAL "")
  set(_slm_cuda_default "")
  foreach(_a 75 80 86 89 90 120)
    if(_a IN_LIST _slm_cuda_supported)
      list(APPEND _slm_cuda_default ${_a})
    endif()
  endforeach()
  if(NOT _slm_cuda_default)
    _slm_cuda_refuse("CUDA ${CUDAToolkit_VERSION} builds none of the architectures slm supports (7.5 and newer)")
  endif()
  set(CMAKE_CUDA_ARCHITECTURES "${_slm_cuda_default}" CACHE STRING
      "CUDA architectures to build for (e.g. 89, or native)" FORCE)
else()
  # "native" is resolved here, from nvidia-smi, rather than by CMake (which needs 3.24 and fails the
  # generate step on a machine without a GPU).
  if(CMAKE_CUDA_ARCHITECTURES STREQUAL "native")
    execute_process(COMMAND nvidia-smi --query-gpu=compute_cap --format=csv,noheader
                    OUTPUT_VARIABLE _slm_caps RESULT_VARIABLE _slm_smi_rc ERROR_QUIET)
    string(REGEX MATCHALL "[0-9]+\\.[0-9]+" _slm_caps "${_slm_caps}")
    if(NOT _slm_smi_rc EQUAL 0 OR NOT _slm_caps)
      _slm_cuda_refuse("CMAKE_CUDA_ARCHITECTURES=native but nvidia-smi finds no GPU here")
    endif()
    string(REPLACE "." "" _slm_caps "${_slm_caps}")
    list(REMOVE_DUPLICATES _slm_caps)
    set(CMAKE_CUDA_ARCHITECTURES "${_slm_caps}")
    message(STATUS "slm: CUDA architectures of this machine's GPUs: ${_slm_caps}")
  endif()
  # A list given on the command line: each numeric entry (90, 90a, 90-real, 90-virtual) must be one this
  # toolkit builds and one slm runs on; all and all-major are CMake's to resolve.
  foreach(_a IN LISTS CMAKE_CUDA_ARCHITECTURES)
    if(_a MATCHES "^([0-9]+)")
      set(_n "${CMAKE_MATCH_1}")
      if(NOT _n IN_LIST _slm_cuda_supported)
        _slm_cuda_refuse("CUDA ${CUDAToolkit_VERSION} cannot build architecture ${_a} of CMAKE_CUDA_ARCHITECTURES"
                         "(it builds ${_slm_cuda_supported})")
      endif()
      if(_n LESS 75)
        _slm_cuda_refuse("architecture ${_a} of CMAKE_CUDA_ARCHITECTURES is older than 7.5 (Turing), the oldest "
                         "slm's kernels run on")
      endif()
    endif()
  endforeach()
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
# backend reports zero devices. cuBLAS is not linked (a CPU user of this build would need it to start the
# program): backends/cuda/cuda_blas.c loads it with dlopen when a CUDA device opens; its headers are in
# CUDAToolkit_INCLUDE_DIRS beside the runtime's.
target_link_libraries(slm_deps INTERFACE CUDA::cudart_static ${CMAKE_DL_LIBS})
target_compile_definitions(slm_internal INTERFACE SLM_HAVE_CUDA=1)
message(STATUS "slm: CUDA backend on (CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
