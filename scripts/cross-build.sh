#!/usr/bin/env bash
# Cross-builds the release binary for the Raspberry Pi on a Debian or Ubuntu PC, no Docker needed.
#   scripts/cross-build.sh                                # Pi 3/4/5 64-bit and Pi 2/3/4/5 32-bit
#   scripts/cross-build.sh aarch64-unknown-linux-gnu      # Raspberry Pi OS 64-bit (Pi 3/4/5, Zero 2 W)
#   scripts/cross-build.sh armv7-unknown-linux-gnueabihf  # Raspberry Pi OS 32-bit on Pi 2/3/4/5
#   scripts/cross-build.sh arm-unknown-linux-gnueabihf    # Raspberry Pi OS 32-bit on Pi Zero / Pi 1 (ARMv6)
#   scripts/cross-build.sh --prepare [TARGET...]          # installs what the targets need, builds nothing
# Each binary lands in target/TARGET/release/jukebox (ARMv6: target/armv6/TARGET/release/jukebox);
# package it with scripts/package-deb.sh.
#
# Installs what it lacks, and only that (safe to run again): the Rust target, Debian's cross gcc
# and the target's ALSA and Opus libraries (multiarch libasound2-dev / libopus-dev :arm64 /
# :armhf). Linkers and pkg-config are given to cargo through environment variables that name
# their target, for this build only, so native builds are untouched, no .cargo/config.toml is
# written, and one cargo command builds both gcc targets side by side. Both libraries are linked dynamically
# (libasound.so.2, libopus.so.0): the Pi's own copies are used at run time (the .deb depends on
# libasound2 and libopus0).
#
# ARMv6: Debian's armhf gcc and C runtime are built for ARMv7 and would put ARMv7 instructions
# into the binary, so that target links with zig instead (`cargo zigbuild`; zig and
# cargo-zigbuild come from PyPI into target/cross-tools/venv). zig builds its C runtime for the
# ARM1176 CPU, and the build checks that all the C code it compiled says ARMv6. Where rustup
# offers no prebuilt standard library for that target, it is compiled from the rust-src
# component. At run time the binary uses the Pi's own C, ALSA and Opus libraries.
#
# With Docker or Podman, `scripts/cross-build.sh --cross-rs [TARGET...]` builds in cross-rs's
# images instead (CROSS_CONFIG=cross.toml cross build ...).
#
# Environment: BUILD_LOCK=FILE runs each install and build under `flock FILE`, so that builds
# sharing a small machine never overlap.
set -euo pipefail
cd "$(dirname "$0")/.."

ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.0
GLIBC_MIN=2.34 # Raspberry Pi OS bookworm has 2.36; the native cross gcc links against 2.36 headers

die() {
  echo "cross-build: $*" >&2
  exit 1
}
locked() {
  if [ -n "${BUILD_LOCK:-}" ]; then flock "$BUILD_LOCK" "$@"; else "$@"; fi
}
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# Installs the Debian packages that are missing; foreign ones (name:arch) add the architecture.
apt_install() {
  local need=() pkg arch
  for pkg in "$@"; do installed "$pkg" || need+=("$pkg"); done
  [ ${#need[@]} -eq 0 ] && return 0
  for pkg in "${need[@]}"; do
    if [[ $pkg == *:* ]]; then
      arch=${pkg##*:}
      dpkg --print-foreign-architectures | grep -qx "$arch" || as_root dpkg --add-architecture "$arch"
    fi
  done
  echo "installing: ${need[*]}"
  # A partly failed update (a mirror in the middle of a sync) can still be enough: the install decides.
  locked as_root apt-get update -qq || echo "cross-build: apt-get update reported errors; trying the install anyway" >&2
  DEBIAN_FRONTEND=noninteractive locked as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    die "could not install ${need[*]} (apt-get install failed)"
  for pkg in "${need[@]}"; do installed "$pkg" || die "$pkg is still not installed"; done
}

# zig and cargo-zigbuild, in a virtual environment of their own.
zig_tools() {
  local venv=target/cross-tools/venv
  if ! "$venv/bin/cargo-zigbuild" --version 2>/dev/null | grep -q "$CARGO_ZIGBUILD_VERSION" ||
    ! "$venv/bin/python" -m ziglang version 2>/dev/null | grep -qx "$ZIGLANG_VERSION"; then
    echo "installing: ziglang $ZIGLANG_VERSION, cargo-zigbuild $CARGO_ZIGBUILD_VERSION (PyPI, into $venv)"
    command -v python3 >/dev/null || die "python3 is needed for zig (Debian: python3, python3-venv)"
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" || die "cannot create $venv (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" ||
      die "could not install ziglang and cargo-zigbuild from PyPI"
  fi
  # cargo-zigbuild finds zig through `python3 -m ziglang` of the venv.
  PATH="$PWD/$venv/bin:$PATH"
}

# What a target needs, installed; appends its cargo environment to `gcc_env` (Debian's cross
# gcc) or builds it at once (zig, which needs a cargo command of its own).
gcc_env=()
gcc_targets=()
prepare_target() {
  local target=$1 gnu debarch zig=0
  case "$target" in
    aarch64-unknown-linux-gnu) gnu=aarch64-linux-gnu debarch=arm64 ;;
    armv7-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf debarch=armhf ;;
    arm-unknown-linux-gnueabihf) gnu=arm-linux-gnueabihf debarch=armhf zig=1 ;;
    *) die "unknown target '$target': use aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf or arm-unknown-linux-gnueabihf" ;;
  esac
  local t_low=${target//-/_} t_up buildstd=0
  t_up=$(echo "$t_low" | tr '[:lower:]' '[:upper:]')

  command -v cargo >/dev/null || die "cargo is missing: install a Rust toolchain (rustup) first"
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "adding the Rust target $target"
    local out
    if ! out=$(rustup target add "$target" 2>&1); then
      local why
      why=$(grep -m1 -E '^error|status code' <<<"$out" || true)
      [ "$zig" = 1 ] || die "rustup target add $target failed: the Rust standard library for $target cannot be installed
$out"
      echo "no prebuilt Rust standard library for $target here ($why): building it from source"
      # No prebuilt standard library to download: compile it from source with this build.
      rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src ||
        die "no prebuilt standard library for $target and no rust-src to build one from (rustup component add rust-src failed)"
      buildstd=1
    fi
  fi

  if [ "$zig" = 0 ]; then
    apt_install pkg-config "gcc-$gnu" "libc6-dev-$debarch-cross" "libasound2-dev:$debarch" "libopus-dev:$debarch"
    # Every variable names its target, so that one cargo command builds them all. The cross
    # gcc finds the target's libopus.so in /usr/lib/$gnu by itself (opusic-sys only says
    # -lopus).
    gcc_env+=(
      "PKG_CONFIG_LIBDIR_$t_low=/usr/lib/$gnu/pkgconfig:/usr/share/pkgconfig"
      "CARGO_TARGET_${t_up}_LINKER=$gnu-gcc"
      "CC_$t_low=$gnu-gcc"
      "AR_$t_low=$gnu-ar"
    )
    gcc_targets+=("$target")
    return
  fi

  # The ARMv7 gcc is not used; only the target's ALSA and Opus libraries are (linked
  # against, never copied in).
  apt_install pkg-config "libasound2-dev:$debarch" "libopus-dev:$debarch"
  zig_tools
  [ "$prepare_only" = 0 ] || return 0
  local dir=${CARGO_TARGET_DIR:-target}
  # A target directory of its own: RUSTC_BOOTSTRAP changes how some build scripts see the
  # compiler, which would make the next native build start over.
  dir=$dir/armv6
  local env=(
    PKG_CONFIG_ALLOW_CROSS=1
    "PKG_CONFIG_LIBDIR_$t_low=/usr/lib/$gnu/pkgconfig:/usr/share/pkgconfig"
    # opusic-sys links -lopus from here (it does not ask pkg-config).
    "OPUS_LIB_DIR=/usr/lib/$gnu"
    "CARGO_TARGET_DIR=$dir"
  )
  # zig links against this glibc version's symbols.
  local cargo=(cargo zigbuild --release --locked --target "$target.$GLIBC_MIN")
  if [ "$buildstd" = 1 ]; then
    # -Zbuild-std is unstable: RUSTC_BOOTSTRAP=1 allows it on the stable compiler, for this
    # one build only.
    env+=(RUSTC_BOOTSTRAP=1)
    cargo+=(-Zbuild-std)
  fi
  echo "== building $target (release, zig)"
  local start=$SECONDS
  locked env "${env[@]}" "${cargo[@]}" || die "cargo build for $target failed"
  echo "  built in $((SECONDS - start)) s"
  local bin="$dir/$target/release/jukebox"
  # The linker keeps one object's ARM attributes, not the highest, so check the inputs: the
  # C code the build scripts compiled (SQLite, Ogg/Vorbis…) must all say ARMv6. The Rust code
  # is generated for the target's CPU (ARMv6, VFPv2), and zig builds its C runtime for it.
  local bad
  bad=$(find "$dir/$target/release/build" -path '*/out/*' \( -name '*.o' -o -name '*.a' \) -print0 |
    xargs -0 -r readelf -A 2>/dev/null | grep -o 'Tag_CPU_arch: .*' | grep -v ': v6' | sort -u || true)
  [ -z "$bad" ] || die "some C code for $target was built for a newer CPU ($bad): it would not run on a Pi Zero / Pi 1"
  readelf -A "$bin" | grep -q 'Tag_CPU_arch: v6' || die "$bin is not marked ARMv6"
  check_binary "$target" "$bin"
}

# The Debian-gcc targets in one cargo command: their final links (fat LTO, one codegen unit,
# one core each) run side by side instead of one after the other.
build_gcc_targets() {
  [ ${#gcc_targets[@]} -gt 0 ] || return 0
  local args=() target
  for target in "${gcc_targets[@]}"; do args+=(--target "$target"); done
  echo "== building ${gcc_targets[*]} (release)"
  local start=$SECONDS
  locked env PKG_CONFIG_ALLOW_CROSS=1 "${gcc_env[@]}" cargo build --release --locked "${args[@]}" ||
    die "cargo build for ${gcc_targets[*]} failed"
  echo "  built in $((SECONDS - start)) s"
  for target in "${gcc_targets[@]}"; do
    check_binary "$target" "${CARGO_TARGET_DIR:-target}/$target/release/jukebox"
  done
}

# The system libraries are dynamic dependencies, as the .deb's Depends says.
check_binary() {
  local target=$1 bin=$2 needed lib
  [ -x "$bin" ] || die "the build left no $bin"
  needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  for lib in libasound.so.2 libopus.so.0; do
    [[ " $needed" == *" $lib "* ]] || die "$bin does not link $lib dynamically (NEEDED: $needed)"
  done
  echo "built $target: $bin ($(stat -c %s "$bin") bytes; NEEDED: $needed)"
}

# With Docker or Podman: the same targets in cross-rs's images, configured by cross.toml.
cross_rs() {
  local target=$1
  command -v cross >/dev/null || die "cross-rs is not installed: cargo install cross (and Docker or Podman)"
  { command -v docker || command -v podman; } >/dev/null || die "cross-rs needs Docker or Podman; without them run scripts/cross-build.sh without --cross-rs"
  echo "== building $target (release, cross-rs)"
  locked env CROSS_CONFIG=cross.toml cross build --release --locked --target "$target" || die "cross build for $target failed"
  echo "built $target: target/$target/release/jukebox"
}

use_cross_rs=0 prepare_only=0
case "${1:-}" in
  --cross-rs) use_cross_rs=1 && shift ;;
  # The installs alone: scripts/test-appliance.sh makes them before it starts the build in the
  # background, so that apt never runs twice at once.
  --prepare) prepare_only=1 && shift ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
for target in "${targets[@]}"; do
  if [ "$use_cross_rs" = 1 ]; then cross_rs "$target"; else prepare_target "$target"; fi
done
[ "$use_cross_rs" = 1 ] || [ "$prepare_only" = 1 ] || build_gcc_targets
