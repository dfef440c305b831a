# CMake toolchain file for xpcargo's foreign targets. One file serves every target: it reads the target from the
# container's environment (XPCARGO_TARGET) and takes the compilers, archiver, emulator and sysroot from the
# variables xpcargo already sets for it (CC_<target>, CXX_<target>, AR_<target>, CARGO_TARGET_<TARGET>_RUNNER,
# QEMU_LD_PREFIX), so each of them is declared once, in toolchains.yaml. The cmake crate reads
# CMAKE_TOOLCHAIN_FILE_<target>, which xpcargo points here; a build script that runs cmake itself can pass
# -DCMAKE_TOOLCHAIN_FILE=$CMAKE_TOOLCHAIN_FILE_<target>.

set(_xpcargo_target "$ENV{XPCARGO_TARGET}")
if(_xpcargo_target STREQUAL "")
  message(FATAL_ERROR "xpcargo's toolchain file needs XPCARGO_TARGET (it is set in every xpcargo container)")
endif()
string(REPLACE "-" "_" _xpcargo_lower "${_xpcargo_target}")
string(TOUPPER "${_xpcargo_lower}" _xpcargo_upper)
set(_xpcargo_sysroot "$ENV{QEMU_LD_PREFIX}")
# Debian's cross sysroot is /usr/<gnu triple>; its first word is the processor CMake expects (aarch64, arm, ...).
get_filename_component(_xpcargo_gnu "${_xpcargo_sysroot}" NAME)
string(REGEX REPLACE "-.*" "" _xpcargo_processor "${_xpcargo_gnu}")

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR "${_xpcargo_processor}")
set(CMAKE_C_COMPILER "$ENV{CC_${_xpcargo_lower}}")
set(CMAKE_CXX_COMPILER "$ENV{CXX_${_xpcargo_lower}}")
set(CMAKE_AR "$ENV{AR_${_xpcargo_lower}}" CACHE FILEPATH "archiver")
# Debian's multiarch -dev packages (libssl-dev:arm64) install into /usr/lib/<gnu triple> and /usr/include.
set(CMAKE_LIBRARY_ARCHITECTURE "${_xpcargo_gnu}")
set(CMAKE_FIND_ROOT_PATH "${_xpcargo_sysroot}" "/")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# try_run() and add_test() run the target's programs under its emulator: the runner's words without xpcargo's
# binfmt wrapper in front (`sh <binfmt-run> <binfmt line>`), whose backslash escapes CMake would not keep intact.
string(REPLACE " " ";" _xpcargo_runner "$ENV{CARGO_TARGET_${_xpcargo_upper}_RUNNER}")
list(LENGTH _xpcargo_runner _xpcargo_words)
if(_xpcargo_words GREATER 3)
  list(GET _xpcargo_runner 1 _xpcargo_second)
  if(_xpcargo_second MATCHES "/binfmt-run$")
    list(SUBLIST _xpcargo_runner 3 -1 _xpcargo_runner)
  endif()
endif()
set(CMAKE_CROSSCOMPILING_EMULATOR ${_xpcargo_runner})
