# CMake toolchain file: cross-build the cloudcover runtime for riscv64 Linux with Debian's GCC.
#   cmake -S runtime -B build/riscv64/rv64gc -DCMAKE_TOOLCHAIN_FILE=cmake/riscv64-linux-gnu.cmake \
#         -DCC_MARCH=rv64gc -DCC_MODEL_DIR=build/model/rv64gc
# Binaries are static (qemu-riscv64 then needs no riscv64 sysroot); ctest runs them through qemu-riscv64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR riscv64)

set(CMAKE_C_COMPILER riscv64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER riscv64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/riscv64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)

# rv64gc (scalar) or rv64gcv (vector extension); must match the target the model was compiled for.
set(CC_MARCH rv64gc CACHE STRING "RISC-V -march: rv64gc or rv64gcv")
set(CMAKE_C_FLAGS_INIT "-march=${CC_MARCH} -mabi=lp64d")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")

# ctest runs the binaries through QEMU: the 10.0.2 build from riscv/build_qemu.sh when present (Debian's 7.2
# aborts on the RVV vfncvt instruction LLVM emits), else the system qemu-riscv64.
# Same lookup order as riscv/qemu.py and riscv/build_qemu.sh: CLOUDCOVER_QEMU_DIR, then the XDG cache.
if(DEFINED ENV{CLOUDCOVER_QEMU_DIR})
  set(_cc_qemu "$ENV{CLOUDCOVER_QEMU_DIR}/bin/qemu-riscv64")
elseif(DEFINED ENV{XDG_CACHE_HOME})
  set(_cc_qemu "$ENV{XDG_CACHE_HOME}/cloudcover/qemu-10.0.2/bin/qemu-riscv64")
else()
  set(_cc_qemu "$ENV{HOME}/.cache/cloudcover/qemu-10.0.2/bin/qemu-riscv64")
endif()
if(NOT EXISTS "${_cc_qemu}")
  set(_cc_qemu qemu-riscv64)
endif()
if(CC_MARCH MATCHES "v$")
  set(CMAKE_CROSSCOMPILING_EMULATOR ${_cc_qemu} -cpu rv64,v=true,vlen=128,vext_spec=v1.0)
else()
  set(CMAKE_CROSSCOMPILING_EMULATOR ${_cc_qemu})
endif()
