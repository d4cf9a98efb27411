# Compiler warnings, optional -Werror (CI), and sanitizers.
add_compile_options(-Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes
  -Wmissing-prototypes -Wformat=2 -Wvla)
if(GRAFT_WERROR)
  add_compile_options(-Werror)
endif()
if(CMAKE_BUILD_TYPE STREQUAL "Release")
  add_compile_options(-O2)
endif()
# sqrtf and friends need not set errno: lets loops such as AdamW's vectorise.
add_compile_options(-fno-math-errno)
add_compile_definitions(_GNU_SOURCE)

if(GRAFT_SANITIZE)
  string(REPLACE ";" "," _graft_san "${GRAFT_SANITIZE}")
  add_compile_options(-fsanitize=${_graft_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_graft_san})
endif()

# libFuzzer: everything instrumented for coverage, with ASan and UBSan (tests/fuzz).
if(GRAFT_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "GRAFT_FUZZ needs clang (e.g. CC=clang-14), not ${CMAKE_C_COMPILER_ID}")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
    -fno-sanitize-recover=all -g)
  add_link_options(-fsanitize=address,undefined)
endif()
