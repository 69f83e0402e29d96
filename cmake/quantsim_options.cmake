# Per-target build settings: warnings, CPU tuning and sanitizers. Every quantsim target (library, tests,
# benchmarks, CLI, examples) calls quantsim_configure_target() so that flags never leak to consumers.
function(quantsim_configure_target target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-unknown-pragmas)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE -Wshadow=local)  # clang has no '=local' form (fuzz builds use clang)
    endif()
    # GCC 12 reports false -Wrestrict warnings inside libstdc++ for `"literal" + std::string` at -O2 (GCC bug
    # 105329); they say nothing about our code.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12
       AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
      target_compile_options(${target} PRIVATE -Wno-restrict)
    endif()
    if(QUANTSIM_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
    if(QUANTSIM_NATIVE)
      target_compile_options(${target} PRIVATE -march=native)
    endif()
  endif()
  if(QUANTSIM_SANITIZE)
    string(REPLACE ";" "," _san "${QUANTSIM_SANITIZE}")
    target_compile_options(${target} PRIVATE -fsanitize=${_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${_san})
  endif()
  if(QUANTSIM_BUILD_FUZZERS)
    # Coverage instrumentation for libFuzzer in every target; only the fuzz_* programs link libFuzzer's main.
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link)
  endif()
endfunction()
