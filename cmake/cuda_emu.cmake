# The CUDA emulation build (SLM_CUDA_EMU=ON): kernels/cuda/*.cu compiled as C++ and backends/cuda/*.c as C by
# the host compilers, against the stand-in headers and host implementation in backends/cuda/emu/ (CUDA
# threads as fibers, a host runtime and a reference cuBLAS). The emulated device registers as cuda:N, so the
# CUDA tests run on a machine without a GPU or toolkit. It replaces the real CUDA backend in that build:
# SLM_CUDA must not be ON at the same time (AUTO is turned off).
option(SLM_CUDA_EMU "Build the CUDA backend against the host emulator (no GPU or toolkit needed)" OFF)
if(NOT SLM_CUDA_EMU)
  return()
endif()
string(TOUPPER "${SLM_CUDA}" _slm_emu_cuda_mode)
if(_slm_emu_cuda_mode STREQUAL "ON" OR _slm_emu_cuda_mode STREQUAL "TRUE" OR _slm_emu_cuda_mode STREQUAL "1")
  message(FATAL_ERROR "SLM_CUDA_EMU=ON and SLM_CUDA=ON: choose one (the emulator replaces the CUDA toolkit)")
endif()
# cmake/cuda.cmake reads this and stays out of the way.
set(SLM_CUDA OFF)

set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
file(GLOB SLM_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cuda/*.cu)
file(GLOB SLM_CUDA_BACKEND_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/backends/cuda/*.c)
file(GLOB SLM_CUDA_EMU_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/backends/cuda/emu/*.cpp)

# .cu is no C++ extension to g++: name the language for the compiler too. #pragma unroll is nvcc's.
set_source_files_properties(${SLM_CUDA_KERNEL_SOURCES} PROPERTIES LANGUAGE CXX COMPILE_OPTIONS
                            "-x;c++;-Wno-unknown-pragmas")
target_sources(slm_objects PRIVATE ${SLM_CUDA_KERNEL_SOURCES} ${SLM_CUDA_BACKEND_SOURCES} ${SLM_CUDA_EMU_SOURCES})
set_target_properties(slm_objects PROPERTIES CXX_VISIBILITY_PRESET hidden)
# The stand-in headers (cuda_runtime.h, cublas_v2.h, ...) come first for the CUDA sources only; core/ never
# sees them.
set_source_files_properties(${SLM_CUDA_KERNEL_SOURCES} ${SLM_CUDA_BACKEND_SOURCES} ${SLM_CUDA_EMU_SOURCES}
                            PROPERTIES INCLUDE_DIRECTORIES "${CMAKE_SOURCE_DIR}/backends/cuda/emu/include")
target_include_directories(slm_objects PRIVATE ${CMAKE_SOURCE_DIR}/backends/cuda ${CMAKE_SOURCE_DIR}/kernels/cuda)
# Tests include cuda_backend.h and cuda_kernels.h (which includes cuda_runtime_api.h).
target_include_directories(slm_internal INTERFACE ${CMAKE_SOURCE_DIR}/backends/cuda ${CMAKE_SOURCE_DIR}/kernels/cuda
                                                  ${CMAKE_SOURCE_DIR}/backends/cuda/emu/include)
target_compile_definitions(slm_internal INTERFACE SLM_HAVE_CUDA=1 SLM_CUDA_EMU=1)
# The emulator is C++: the C programs linking libslm.a need its runtime.
target_link_libraries(slm_deps INTERFACE stdc++)
message(STATUS "slm: CUDA backend on, emulated on the host (SLM_CUDA_EMU)")
