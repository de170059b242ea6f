# Cross-compiles for 64-bit ARM with Debian's cross compiler (g++-aarch64-linux-gnu) and runs the
# tests under qemu-user (qemu-aarch64, Debian's qemu-user): ctest prefixes every test program with
# CMAKE_CROSSCOMPILING_EMULATOR. Header-only dependencies (xsimd, nlohmann_json, doctest) come from
# the host's /usr/include, which the cross compiler searches. At run time every arm64 library comes
# from Debian's multiarch packages (dpkg --add-architecture arm64; libc6, libstdc++6, libonig5,
# libutf8proc2 :arm64), NOT from the cross toolchain's /usr/aarch64-linux-gnu: once libc6:arm64 is
# installed, mixing the two glibc builds makes pthread_create hang under qemu.
# (libonig-dev cannot be installed for two architectures: the amd64 one provides the header, and
# sgtTextDependencies.cmake links the arm64 runtime library libonig.so.5 directly.)
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /)
# Programs (cmake, bash) from the host; libraries from the arm64 multiarch folders; CMake package
# files of header-only dependencies from the host's /usr/share.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
