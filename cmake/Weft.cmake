# Helpers shared by every CMakeLists.txt of the project.

# Warnings are errors on our own targets only (never on third-party headers, which are SYSTEM).
set(WEFT_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Werror)
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  list(APPEND WEFT_WARNINGS -Wthread-safety)
elseif(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # GCC 12 false positive inside Asio's coroutine frame allocator (operator new/delete of
  # awaitable_frame_base), seen only with -fsanitize at -O1 (GCC bug 105708 family).
  list(APPEND WEFT_WARNINGS -Wno-mismatched-new-delete)
endif()

function(weft_target_defaults target)
  target_compile_options(${target} PRIVATE ${WEFT_WARNINGS})
  if(NOT CMAKE_BUILD_TYPE STREQUAL "Debug" AND NOT CMAKE_BUILD_TYPE STREQUAL "Fuzz")
    target_compile_definitions(${target} PRIVATE WEFT_NDEBUG=1)
  endif()
endfunction()

# weft_add_library(NAME SOURCES ... DEPS ...)
function(weft_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PUBLIC_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_DEPS})
  weft_target_defaults(${name})
  if(WEFT_LTO)
    # Optimiser IR for weft-proxy's link-time optimisation, and ordinary code for every other
    # binary and test, which link without it (CMakeLists.txt, WEFT_LTO).
    target_compile_options(${name} PRIVATE -flto=auto -ffat-lto-objects)
  endif()
endfunction()

# weft_add_binary(NAME SOURCES ... DEPS ...)
function(weft_add_binary name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR})
  weft_target_defaults(${name})
endfunction()

# weft_add_test(NAME SOURCES ... DEPS ... [LABELS ...])
# A GoogleTest binary registered with CTest under NAME.
function(weft_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/test-bin)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR})
  weft_target_defaults(${name})
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS "unit;${ARG_LABELS}" TIMEOUT 120)
endfunction()

# weft_add_fuzz_test(NAME SOURCE ... DEPS ... CORPUS dir)
# In the Fuzz build type: a libFuzzer binary. In every build: a test that replays the seed
# corpus through the same entry point (test/fuzz/corpus_main.cc), so the corpus always runs.
function(weft_add_fuzz_test name)
  cmake_parse_arguments(ARG "" "CORPUS" "SOURCES;DEPS" ${ARGN})
  if(CMAKE_BUILD_TYPE STREQUAL "Fuzz")
    add_executable(${name}_fuzzer ${ARG_SOURCES})
    target_link_options(${name}_fuzzer PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${name}_fuzzer PRIVATE ${ARG_DEPS})
    target_include_directories(${name}_fuzzer PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR})
    set_target_properties(${name}_fuzzer PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
    weft_target_defaults(${name}_fuzzer)
  endif()
  add_executable(${name} ${ARG_SOURCES} ${PROJECT_SOURCE_DIR}/test/fuzz/corpus_main.cc)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/test-bin)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR})
  weft_target_defaults(${name})
  add_test(NAME ${name} COMMAND ${name} ${ARG_CORPUS})
  set_tests_properties(${name} PROPERTIES LABELS "unit;fuzz-corpus" TIMEOUT 300)
endfunction()
