#!/usr/bin/env bash
# Builds the jukebox .deb for one architecture from an already built binary.
#   scripts/package-deb.sh ARCH BINARY [OUTDIR]
#   scripts/package-deb.sh amd64 target/release/jukebox
#   scripts/package-deb.sh arm64 target/aarch64-unknown-linux-gnu/release/jukebox
#   scripts/package-deb.sh armhf target/armv7-unknown-linux-gnueabihf/release/jukebox
# ARCH is a Debian architecture: amd64, arm64 or armhf. OUTDIR defaults to target/deb.
# Prints the path of the package it wrote. Needs only dpkg-deb and readelf (binutils).
#
# The package: /usr/bin/jukebox, /lib/systemd/system/jukebox.service, the default
# /etc/jukebox/jukebox.toml (a conffile), the hotspot DNS snippet for NetworkManager's shared
# mode in /etc/NetworkManager/dnsmasq-shared.d/jukebox.conf (a conffile, inert until a hotspot
# is on), the docs in /usr/share/doc/jukebox, and the maintainer scripts in packaging/ (music
# folder, enable and start, purge).
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "package-deb: $*" >&2
  exit 1
}

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: scripts/package-deb.sh ARCH BINARY [OUTDIR]"
arch=$1
binary=$2
outdir=${3:-target/deb}

for tool in dpkg-deb readelf; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian packages dpkg, binutils)"
done
[ -f "$binary" ] || die "no binary at $binary: build it first (cargo build --release, or scripts/cross-build.sh)"

# The binary must be for the architecture it is packaged as.
machine=$(readelf -h "$binary" | sed -n 's/^ *Machine: *//p')
flags=$(readelf -h "$binary" | sed -n 's/^ *Flags: *//p')
case "$arch" in
  amd64) [[ $machine == *X86-64* ]] || die "$binary is a '$machine' binary, not amd64" ;;
  arm64) [[ $machine == AArch64 ]] || die "$binary is a '$machine' binary, not arm64" ;;
  armhf)
    [[ $machine == ARM ]] || die "$binary is a '$machine' binary, not armhf"
    [[ $flags == *hard-float* ]] || die "$binary is not a hard-float (armhf) binary: $flags"
    ;;
  *) die "unknown architecture '$arch': use amd64, arm64 or armhf" ;;
esac

version=$(awk -F'"' '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { print $2; exit }' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml's [package]"

# The newest glibc symbol version the binary uses is the libc6 it needs.
glibc=$(readelf --dyn-syms --wide "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
[ -n "$glibc" ] || die "$binary uses no versioned glibc symbols: is it a static or non-glibc binary?"

stage=$(mktemp -d "${TMPDIR:-/tmp}/jukebox-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/jukebox_${version}_$arch"

install -D -m 0755 "$binary" "$root/usr/bin/jukebox"
install -D -m 0644 systemd/jukebox.service "$root/lib/systemd/system/jukebox.service"
install -D -m 0644 packaging/jukebox.toml "$root/etc/jukebox/jukebox.toml"
install -D -m 0644 packaging/dnsmasq-hotspot.conf "$root/etc/NetworkManager/dnsmasq-shared.d/jukebox.conf"
install -D -m 0644 README.md "$root/usr/share/doc/jukebox/README.md"
install -D -m 0644 docs/INSTALL.md "$root/usr/share/doc/jukebox/INSTALL.md"
install -D -m 0644 docs/MULTIROOM.md "$root/usr/share/doc/jukebox/MULTIROOM.md"
license=$(sed -n 's/^license *= *"\(.*\)"/\1/p' Cargo.toml)
cat >"$root/usr/share/doc/jukebox/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: jukebox

Files: *
License: ${license:-see README.md}
EOF

mkdir -p "$root/DEBIAN"
install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$root/DEBIAN/"
printf '%s\n' /etc/jukebox/jukebox.toml /etc/NetworkManager/dnsmasq-shared.d/jukebox.conf >"$root/DEBIAN/conffiles"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: jukebox
Version: $version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-Jukebox maintainers <jukebox@localhost>}
Installed-Size: $installed_size
Depends: libasound2t64 | libasound2, libc6 (>= $glibc), libopus0
Suggests: alsa-utils, snapserver, snapclient, network-manager
Section: sound
Priority: optional
Description: party jukebox: guests request and vote on songs from their phones
 One program plays the music in a folder through the speakers. Guests join
 from their phones' browsers at http://jukebox.local (or by scanning the QR
 code on the TV view), search the library, request songs, vote on the queue,
 like what is playing and vote to skip it. The host moderates with a PIN.
 Everything lives in SQLite and survives a pulled plug; no Internet needed.
 .
 Runs as the sandboxed systemd service jukebox.service on port 80. Copy
 music into /var/lib/jukebox/music; settings are in /etc/jukebox/jukebox.toml.
EOF

mkdir -p "$outdir"
deb="$outdir/jukebox_${version}_$arch.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
