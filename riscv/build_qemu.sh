#!/usr/bin/env bash
# Build the instruction-counting QEMU: qemu-riscv64 10.0.2 (user mode) with TCG plugins, plus libinsn.so.
#
# Why: no Debian package ships a plugin-capable qemu-riscv64 that also runs all RVV code (bookworm's 7.2
# aborts on vfncvt; backports' 10.0.2 is static, and static QEMU refuses plugins). So we build Debian's
# bookworm-backports source once per machine and cache it outside the repository:
#
#   ${CLOUDCOVER_QEMU_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudcover/qemu-10.0.2}/
#       bin/qemu-riscv64      the emulator (dynamically linked to glib)
#       lib/libinsn.so        the instruction-counting plugin (loads only into this very qemu)
#       STAMP                 written last: its presence means the build is complete
#
# Idempotent: a second run only checks STAMP. The system's apt sources are never touched: a private apt
# configuration under the cache holds the single deb-src line it needs.
set -euo pipefail

QEMU_DEB_VERSION="1:10.0.2+ds-2+deb13u1~bpo12+1"
QEMU_UPSTREAM="10.0.2"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/cloudcover"
PREFIX="${CLOUDCOVER_QEMU_DIR:-$CACHE_ROOT/qemu-$QEMU_UPSTREAM}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
# A Python that has pip (Debian's python3 may not): `make qemu` passes the project's .venv as the first
# argument. Deliberately not an environment variable: pip reads every PIP_<OPTION> variable as an option
# (PIP_PYTHON is pip's --python), and QEMU's configure runs pip inside its own build venv, so a variable of
# ours would redirect that pip into the project's .venv.
WHEEL_PY="${1:-python3}"

fail() { echo "build_qemu.sh: error: $*" >&2; exit 1; }

if [[ -f "$PREFIX/STAMP" && -x "$PREFIX/bin/qemu-riscv64" && -f "$PREFIX/lib/libinsn.so" ]]; then
    echo "build_qemu.sh: cached plugin qemu at $PREFIX/bin/qemu-riscv64"
    exit 0
fi

for tool in apt-get gcc ninja pkg-config python3 tar; do
    command -v "$tool" >/dev/null || fail "'$tool' not found; run 'make apt' (Debian build deps) first"
done
pkg-config --exists glib-2.0 || fail "glib-2.0 development files not found; run 'make apt' first"

WORK="$CACHE_ROOT/qemu-build"
mkdir -p "$WORK"
cd "$WORK"

# --- 1. the source tarball, through a private apt configuration ------------------------------------------
if ! ls qemu_*.orig.tar.* >/dev/null 2>&1; then
    # Reuse the Debian mirror that the machine's apt sources already use.
    # (only active lines: one-line `deb URI ...` entries and deb822 `URIs:` fields, never comments)
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
             | grep -E '^[[:space:]]*(deb|URIs:)' | grep -oE 'https?://[^ ]+/debian/?( |$)' \
             | tr -d ' ' | head -n1 || true)
    mirror="${mirror:-http://deb.debian.org/debian}"
    mirror="${mirror%/}"
    APT_DIR="$WORK/apt"
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/sources.list.d"
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    echo "deb-src [signed-by=$keyring] $mirror bookworm-backports main" > "$APT_DIR/sources.list"
    APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
              -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache" -o "Debug::NoLocking=1"
              -o "APT::Sandbox::User=root")
    echo "build_qemu.sh: fetching qemu $QEMU_DEB_VERSION source from $mirror (bookworm-backports)"
    apt-get "${APT_OPTS[@]}" -qq update || fail "apt-get update of the private deb-src list ($mirror bookworm-backports) failed"
    apt-get "${APT_OPTS[@]}" -qq source --download-only --tar-only "qemu=$QEMU_DEB_VERSION" \
        || fail "apt-get source qemu=$QEMU_DEB_VERSION failed (is $mirror reachable?)"
    ls qemu_*.orig.tar.* >/dev/null 2>&1 || fail "no qemu_*.orig.tar.* in $WORK after apt-get source"
fi

# --- 2. unpack, add the Python wheels Debian's tarball lacks ----------------------------------------------
SRC="$WORK/qemu-$QEMU_UPSTREAM"
if [[ ! -f "$SRC/configure" ]]; then
    rm -rf "$SRC"
    mkdir -p "$SRC"
    tar -xf qemu_*.orig.tar.* -C "$SRC" --strip-components=1 || fail "could not unpack the qemu tarball in $WORK"
fi
if ! ls "$SRC"/python/wheels/meson-1.5.0-*.whl >/dev/null 2>&1; then
    mkdir -p "$SRC/python/wheels"
    "$WHEEL_PY" -m pip download -q --no-deps --only-binary=:all: -d "$SRC/python/wheels" meson==1.5.0 pycotap==1.3.1 \
        || fail "pip download of meson==1.5.0 and pycotap==1.3.1 (QEMU's configure needs them) failed"
fi

# --- 3. configure and build only the two targets we need ------------------------------------------------
BUILD="$SRC/build"
if [[ ! -f "$BUILD/build.ninja" ]]; then
    rm -rf "$BUILD"
    mkdir -p "$BUILD"
    (cd "$BUILD" && ../configure --python=/usr/bin/python3 --target-list=riscv64-linux-user --enable-plugins \
        --disable-system --disable-tools --disable-docs --disable-werror --disable-download \
        --disable-install-blobs --disable-capstone --disable-gnutls --disable-nettle --disable-gcrypt \
        > "$WORK/configure.log" 2>&1) || fail "qemu configure failed; see $WORK/configure.log"
fi
echo "build_qemu.sh: building qemu-riscv64 $QEMU_UPSTREAM with plugins (about 2 minutes on 2 cores)"
ninja -C "$BUILD" -j"$JOBS" qemu-riscv64 tests/tcg/plugins/libinsn.so > "$WORK/build.log" 2>&1 \
    || fail "qemu build failed; see $WORK/build.log"

# --- 4. install into the cache prefix, stamp last --------------------------------------------------------
mkdir -p "$PREFIX/bin" "$PREFIX/lib"
install -m 755 "$BUILD/qemu-riscv64" "$PREFIX/bin/qemu-riscv64.tmp"
strip "$PREFIX/bin/qemu-riscv64.tmp" 2>/dev/null || true
mv "$PREFIX/bin/qemu-riscv64.tmp" "$PREFIX/bin/qemu-riscv64"
install -m 644 "$BUILD/tests/tcg/plugins/libinsn.so" "$PREFIX/lib/libinsn.so"
"$PREFIX/bin/qemu-riscv64" --version | head -n1 > "$PREFIX/STAMP" || fail "built qemu-riscv64 does not run"
echo "build_qemu.sh: installed $PREFIX/bin/qemu-riscv64 and $PREFIX/lib/libinsn.so"
