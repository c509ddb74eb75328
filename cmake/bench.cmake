# slm-bench: bench/slm_bench.c (main) over a small library of the other bench/*.c files, which
# tests/test_bench.c links too. Include this after add_subdirectory(tests) so test_bench exists.
file(GLOB SLM_BENCH_LIB_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/bench/bench_*.c)
add_library(slm_bench_lib STATIC ${SLM_BENCH_LIB_SOURCES})
# bench builds on the public API: its include path is include/ (slm's only public folder), support/ and bench/,
# plus tools/ for what both command lines share (cli_number.h, cli_io.h: its only headers from there).
target_link_libraries(slm_bench_lib PUBLIC slm_support slm slm_cli_util)
target_include_directories(slm_bench_lib PUBLIC ${CMAKE_SOURCE_DIR}/bench)
# Build facts for the report header: version, commit (at configure time), build type.
set(SLM_BENCH_COMMIT "unknown")
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short HEAD WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
                  OUTPUT_VARIABLE SLM_BENCH_GIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE SLM_BENCH_GIT_RC)
  if(SLM_BENCH_GIT_RC EQUAL 0 AND SLM_BENCH_GIT)
    set(SLM_BENCH_COMMIT ${SLM_BENCH_GIT})
  endif()
endif()
set_source_files_properties(${CMAKE_SOURCE_DIR}/bench/bench_sysinfo.c PROPERTIES COMPILE_DEFINITIONS
  "SLM_BENCH_VERSION=\"${PROJECT_VERSION}\";SLM_BENCH_COMMIT=\"${SLM_BENCH_COMMIT}\";SLM_BENCH_BUILD_TYPE=\"${CMAKE_BUILD_TYPE}\"")

add_executable(slm-bench ${CMAKE_SOURCE_DIR}/bench/slm_bench.c)
target_link_libraries(slm-bench PRIVATE slm_bench_lib)

if(TARGET test_bench)
  target_link_libraries(test_bench PRIVATE slm_bench_lib)
  target_compile_definitions(test_bench PRIVATE SLM_BENCH_LIB)
endif()
