# slm.pc for `pkg-config --cflags --libs slm` (the shared library) and `pkg-config --static --libs slm`
# (libslm.a, whose dependencies the program must link itself: Requires.private and Libs.private).
set(SLM_PC_REQUIRES_PRIVATE "libpcre2-8")
set(SLM_PC_LIBS_PRIVATE "-pthread -lm")
if(ICU_FOUND)
  string(APPEND SLM_PC_REQUIRES_PRIVATE " icu-uc")
endif()
if(TARGET Vulkan::Vulkan)
  string(APPEND SLM_PC_LIBS_PRIVATE " -lvulkan")
endif()
if(TARGET slm_cuda_kernels)
  # the static runtime needs dl and rt; the kernels' host code is C++. No -lcublas: the backend loads cuBLAS
  # with dlopen when a CUDA device opens (backends/cuda/cuda_blas.c), so a program linked with libslm.a runs
  # on a machine without it, as slm does.
  string(APPEND SLM_PC_LIBS_PRIVATE " -L${CUDAToolkit_LIBRARY_DIR} -lcudart_static -ldl -lrt -lstdc++")
endif()
# The prefix is found from where slm.pc lies (${pcfiledir}), so the file stays right when the tree is installed
# with `cmake --install --prefix DIR` or moved; an absolute CMAKE_INSTALL_LIBDIR/INCLUDEDIR is kept as is.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(SLM_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _slm_pc_up "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
  string(REGEX REPLACE "/$" "" _slm_pc_up "${_slm_pc_up}")
  set(SLM_PC_PREFIX "\${pcfiledir}/${_slm_pc_up}")
endif()
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(SLM_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(SLM_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
configure_file(${CMAKE_SOURCE_DIR}/cmake/slm.pc.in ${CMAKE_BINARY_DIR}/slm.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/slm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
