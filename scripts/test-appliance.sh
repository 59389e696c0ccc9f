#!/usr/bin/env bash
# Tests the appliance end to end, on a Debian or Ubuntu PC:
#  1. the release binary and its amd64 .deb: contents, control fields, the shipped configuration
#     (as is, and with every commented key switched on), then install, upgrade, remove, purge
#     and reinstall with dpkg into a throwaway root; then the same package under a real systemd
#     as PID 1 in a Debian 12 container (scripts/test-systemd.sh);
#  2. the Raspberry Pi builds (aarch64, armv7) through scripts/cross-build.sh, each linked to
#     the system's libasound.so.2 and libopus.so.0 (readelf -d), the aarch64 one run under qemu
#     (--version, then a demo party answering /healthz, then SIGTERM), and their arm64 and
#     armhf .debs, which depend on libasound2 and libopus0;
#  3. the measured sizes of the stripped binaries and packages.
#   scripts/test-appliance.sh
# Installs what it lacks (qemu-user-static, curl, binutils, the cross toolchains).
# Environment: BUILD_LOCK=FILE (see scripts/cross-build.sh); APPLIANCE_ARMV6=1 also builds the
# ARMv6 (Pi Zero / Pi 1) binary, runs it under qemu and packages it.
set -euo pipefail
cd "$(dirname "$0")/.."
start_all=$SECONDS

die() {
  echo "test-appliance: FAIL: $*" >&2
  exit 1
}
ok() { echo "  ok: $*"; }
locked() {
  if [ -n "${BUILD_LOCK:-}" ]; then flock "$BUILD_LOCK" "$@"; else "$@"; fi
}
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

need=()
for pkg in binutils curl qemu-user-static dpkg-dev; do installed "$pkg" || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  locked as_root apt-get update -qq || echo "test-appliance: apt-get update reported errors; trying the install anyway" >&2
  DEBIAN_FRONTEND=noninteractive locked as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    die "could not install ${need[*]}"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/jukebox-appliance.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # The background Pi builds: their own process group, cargo and rustc with them.
  [ -z "${cross_build:-}" ] || kill -KILL -- "-$cross_build" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

version=$(awk -F'"' '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { print $2; exit }' Cargo.toml)

# Starts `"$@" --listen 127.0.0.1:0 ...` (the caller gives the rest), waits for
# "listening on http://ADDR" in its stderr, checks /healthz, stops it with SIGTERM and expects a
# clean exit. $1 is a name for messages, $2 how long start-up may take in seconds.
serve_and_stop() {
  local what=$1 limit=$2
  shift 2
  local log="$work/$what.log"
  : >"$log"
  timeout -s KILL $((limit + 60)) "$@" 2>"$log" >/dev/null &
  local pid=$!
  pids+=("$pid")
  local addr="" waited=0
  while [ -z "$addr" ]; do
    addr=$(sed -n 's|.*listening on http://\([^ ]*\).*|\1|p' "$log" | head -n1 || true)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || die "$what exited before listening:
$(tail -n 20 "$log")"
    [ "$waited" -lt $((limit * 5)) ] || die "$what did not listen within $limit s:
$(tail -n 20 "$log")"
    sleep 0.2
    waited=$((waited + 1))
  done
  local health
  health=$(curl -fsS --max-time 20 "http://$addr/healthz") || die "$what: GET /healthz failed"
  [[ $health == *'"status":"ok"'* ]] || die "$what: /healthz said $health"
  ok "$what listened on $addr and /healthz answered ok"
  # `timeout` passes SIGTERM on to the jukebox (or to qemu, which passes it to the guest).
  kill -TERM "$pid"
  local status=0
  wait "$pid" || status=$?
  [ "$status" -eq 0 ] || die "$what exited with $status after SIGTERM:
$(tail -n 20 "$log")"
  grep -q "stopped" "$log" || die "$what did not log that it stopped:
$(tail -n 20 "$log")"
  ok "$what stopped cleanly on SIGTERM"
}

# -------------------------------------------------------------------------------------------
echo "== 1. release build and the amd64 package"
t=$SECONDS
locked cargo build --release --locked
echo "  cargo build --release: $((SECONDS - t)) s"
native=target/release/jukebox

# The Raspberry Pi builds (part 2) take five minutes of both cores, and the rest of part 1
# mostly waits (dpkg, a container booting, restarts, a watchdog): they run beside it, at
# SCHED_IDLE, so that they only take the CPU nothing in part 1 wants. What they install comes
# first, in the foreground: test-systemd.sh installs with apt too, and apt runs once at a time.
targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
[ "${APPLIANCE_ARMV6:-0}" = 1 ] && targets+=(arm-unknown-linux-gnueabihf)
scripts/cross-build.sh --prepare "${targets[@]}"
t_cross=$SECONDS
setsid --wait chrt --idle 0 scripts/cross-build.sh "${targets[@]}" >"$work/cross-build.log" 2>&1 &
cross_build=$!

"$native" --version | grep -qx "jukebox $version" || die "$native --version: $("$native" --version)"

# The system libraries the binary loads at run time, which the .deb's Depends must name.
needs_libs() {
  local bin=$1 needed lib
  needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  for lib in libasound.so.2 libopus.so.0; do
    [[ " $needed" == *" $lib "* ]] || die "$bin does not link $lib dynamically (NEEDED: $needed)"
  done
  ok "$bin NEEDED: $needed"
}
# The package's Depends names each of them.
depends_ok() {
  local deb=$1 depends
  depends=$(dpkg-deb -f "$deb" Depends)
  [[ $depends == *libasound2* && $depends == *libopus0* && $depends =~ libc6\ \(\>=\ 2\.[0-9]+\) ]] ||
    die "$deb Depends: $depends"
}
needs_libs "$native"

# The shipped configuration works: as it is, and with every commented key switched on.
mkdir -p "$work/conf/music"
sed 's/^# \([a-z_]* = \)/\1/' packaging/jukebox.toml >"$work/conf/all-keys.toml"
[ "$(grep -c '^[a-z_]* = ' "$work/conf/all-keys.toml")" -ge 20 ] || die "expected 20+ keys in the uncommented configuration"
for conf in packaging/jukebox.toml "$work/conf/all-keys.toml"; do
  rm -f "$work/conf/j.db"*
  # Flags win over the file: only the address, the paths and the audio output change.
  serve_and_stop "config-$(basename "$conf" .toml)" 30 "$native" --config "$conf" \
    --listen 127.0.0.1:0 --db "$work/conf/j.db" --music "$work/conf/music" --output null --no-mdns --no-mpd
done

deb_amd64=$(scripts/package-deb.sh amd64 "$native")
echo "  $deb_amd64"

contents=$(dpkg-deb -c "$deb_amd64")
hotspot_dns=/etc/NetworkManager/dnsmasq-shared.d/jukebox.conf
for path in ./usr/bin/jukebox ./lib/systemd/system/jukebox.service ./etc/jukebox/jukebox.toml \
  ".$hotspot_dns" ./usr/share/doc/jukebox/copyright ./usr/share/doc/jukebox/INSTALL.md; do
  grep -q " $path\$" <<<"$contents" || die "$deb_amd64 lacks $path:
$contents"
done
grep -q '^-rwxr-xr-x root/root .* ./usr/bin/jukebox$' <<<"$contents" || die "/usr/bin/jukebox should be root's, mode 0755"
# The hotspot DNS snippet is the one in packaging/ (tests/garden.rs runs it in dnsmasq), and
# only NetworkManager's shared mode reads its folder.
dpkg-deb --fsys-tarfile "$deb_amd64" | tar -xO ".$hotspot_dns" | cmp -s - packaging/dnsmasq-hotspot.conf ||
  die "$hotspot_dns in the package differs from packaging/dnsmasq-hotspot.conf"
grep -q '^-rw-r--r-- root/root .* \.'"$hotspot_dns"'$' <<<"$contents" || die "$hotspot_dns should be root's, mode 0644"
ok "contents: binary, unit, configuration, hotspot DNS snippet, docs"

field() { dpkg-deb -f "$1" "$2"; }
[ "$(field "$deb_amd64" Package)" = jukebox ] || die "Package: $(field "$deb_amd64" Package)"
[ "$(field "$deb_amd64" Version)" = "$version" ] || die "Version: $(field "$deb_amd64" Version)"
[ "$(field "$deb_amd64" Architecture)" = amd64 ] || die "Architecture: $(field "$deb_amd64" Architecture)"
depends=$(field "$deb_amd64" Depends)
depends_ok "$deb_amd64"
# The multi-room engine the snapcast output feeds (docs/MULTIROOM.md) is suggested.
suggests=$(field "$deb_amd64" Suggests)
[[ $suggests == *snapserver* && $suggests == *snapclient* ]] || die "Suggests: $suggests"
for f in Maintainer Section Priority Description Installed-Size; do
  [ -n "$(field "$deb_amd64" "$f")" ] || die "no $f field"
done
[ "$(dpkg-deb -I "$deb_amd64" conffiles)" = "/etc/jukebox/jukebox.toml
$hotspot_dns" ] || die "conffiles: $(dpkg-deb -I "$deb_amd64" conffiles)"
ok "control: jukebox $version amd64, Depends: $depends; conffiles /etc/jukebox/jukebox.toml, $hotspot_dns"

# dpkg into a throwaway root. Maintainer scripts run without chroot and act on $DPKG_ROOT. The
# root's status lists this machine's libc6, libasound2 and libopus0, so Depends is checked for
# real.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
host_arch=$(dpkg --print-architecture)
for dep in libc6 libasound2t64 libasound2 libopus0; do
  if installed "$dep:$host_arch"; then
    dpkg-query -s "$dep:$host_arch" >>"$root/var/lib/dpkg/status"
    echo >>"$root/var/lib/dpkg/status"
    : >"$root/var/lib/dpkg/info/$dep:$host_arch.list" # none of its files are in this root
  fi
done
cp /var/lib/dpkg/info/format "$root/var/lib/dpkg/info/format" 2>/dev/null || echo 1 >"$root/var/lib/dpkg/info/format"
dpkg_root() {
  local out status=0
  out=$(dpkg --root="$root" --force-script-chrootless --log=/dev/null "$@" 2>&1) || status=$?
  # In this nearly empty root dpkg also tries to remove /etc itself on purge (the package had a
  # conffile below it) and finds other things there; a real system's /etc is never empty. Any
  # other warning, about the package's own directories for one, fails the test.
  out=$(grep -vE "^dpkg: warning: while removing jukebox, directory '/(etc|var|var/lib|lib|usr)' not empty so not removed\.?$" <<<"$out" || true)
  if [ "$status" -ne 0 ] || grep -qiE 'error|warning' <<<"$out"; then
    die "dpkg $* (exit $status):
$out"
  fi
}
enabled="$root/etc/systemd/system/multi-user.target.wants/jukebox.service"
state() { dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${db:Status-Abbrev}' jukebox 2>/dev/null || true; }

dpkg_root -i "$deb_amd64"
[ "$(state)" = "ii " ] || die "after install, dpkg status is '$(state)'"
"$root/usr/bin/jukebox" --version >/dev/null || die "the installed binary does not run"
[ -d "$root/var/lib/jukebox/music" ] || die "postinst made no /var/lib/jukebox/music"
[ -L "$enabled" ] || die "postinst did not enable jukebox.service"
[ -f "$root/lib/systemd/system/jukebox.service" ] || die "no unit installed"
cmp -s "$root$hotspot_dns" packaging/dnsmasq-hotspot.conf || die "install: no $hotspot_dns"
ok "install: files in place (the hotspot DNS snippet too), music folder made, service enabled"

# As systemd leaves it after a start with DynamicUser=: the state under /var/lib/private.
mkdir -p "$root/var/lib/private"
mv "$root/var/lib/jukebox" "$root/var/lib/private/jukebox"
ln -s private/jukebox "$root/var/lib/jukebox"
touch "$root/var/lib/jukebox/jukebox.db" "$root/var/lib/jukebox/music/song.mp3"
echo 'name = "garden"' >>"$root/etc/jukebox/jukebox.toml"
# A host whose hotspot has another address edits the snippet; one who wants no captive DNS
# deletes it: an upgrade keeps either choice.
sed -i 's|^address=/#/10.42.0.1$|address=/#/192.168.50.1|' "$root$hotspot_dns"
dpkg_root -i "$deb_amd64"
grep -q '^name = "garden"' "$root/etc/jukebox/jukebox.toml" || die "an upgrade lost the edited configuration"
grep -q '^address=/#/192.168.50.1$' "$root$hotspot_dns" || die "an upgrade lost the edited $hotspot_dns"
rm "$root$hotspot_dns"
dpkg_root -i "$deb_amd64"
[ ! -e "$root$hotspot_dns" ] || die "an upgrade brought back the deleted $hotspot_dns"
[ -f "$root/var/lib/jukebox/music/song.mp3" ] || die "an upgrade lost the music"
ok "upgrade (same version again): edited configuration, edited or deleted hotspot DNS snippet, and state kept"

dpkg_root -r jukebox
[ "$(state)" = "rc " ] || die "after remove, dpkg status is '$(state)'"
[ ! -e "$root/usr/bin/jukebox" ] || die "remove left /usr/bin/jukebox"
[ -f "$root/etc/jukebox/jukebox.toml" ] || die "remove took the configuration (only purge should)"
[ -f "$root/var/lib/jukebox/jukebox.db" ] || die "remove took the database (only purge should)"
ok "remove: program gone, configuration and state kept"

dpkg_root -P jukebox
[ -z "$(state)" ] || die "after purge, dpkg status is '$(state)'"
for gone in /etc/jukebox "$hotspot_dns" /var/lib/jukebox /var/lib/private/jukebox "${enabled#"$root"}"; do
  [ ! -e "$root$gone" ] && [ ! -L "$root$gone" ] || die "purge left $gone"
done
ok "purge: configuration, state and enablement gone"

dpkg_root -i "$deb_amd64"
[ "$(state)" = "ii " ] && [ -L "$enabled" ] && [ -d "$root/var/lib/jukebox/music" ] && [ -f "$root$hotspot_dns" ] &&
  grep -q '^listen = "0.0.0.0:80"' "$root/etc/jukebox/jukebox.toml" || die "reinstall after purge is incomplete"
dpkg_root -P jukebox
[ -z "$(state)" ] || die "second purge left '$(state)'"
ok "reinstall after purge, and purge again"

# -------------------------------------------------------------------------------------------
echo "== 1b. the amd64 package under a real systemd (Debian 12 in systemd-nspawn)"
scripts/test-systemd.sh "$deb_amd64"

# -------------------------------------------------------------------------------------------
echo "== 2. Raspberry Pi builds"
t=$SECONDS
cross_rc=0
wait "$cross_build" || cross_rc=$?
cat "$work/cross-build.log"
[ "$cross_rc" = 0 ] || die "scripts/cross-build.sh ${targets[*]} failed (exit $cross_rc)"
echo "  cross builds: $((SECONDS - t_cross)) s, beside part 1; $((SECONDS - t)) s after it"

a64=target/aarch64-unknown-linux-gnu/release/jukebox
a32=target/armv7-unknown-linux-gnueabihf/release/jukebox
needs_libs "$a64"
needs_libs "$a32"
# Never `-L /usr/aarch64-linux-gnu`: qemu finds the multiarch loader and libraries itself.
out=$(timeout 60 qemu-aarch64-static "$a64" --version) || die "qemu-aarch64-static $a64 --version failed"
[ "$out" = "jukebox $version" ] || die "aarch64 --version said '$out'"
ok "aarch64 under qemu: $out"
serve_and_stop aarch64-demo 120 qemu-aarch64-static "$a64" --demo --no-mdns --no-mpd \
  --output "wav:$work/aarch64.wav" --listen 127.0.0.1:0 --db "$work/aarch64.db"
[ -s "$work/aarch64.wav" ] || die "the aarch64 demo wrote no audio"
out=$(timeout 60 qemu-arm-static "$a32" --version) || die "qemu-arm-static $a32 --version failed"
[ "$out" = "jukebox $version" ] || die "armv7 --version said '$out'"
ok "armv7 under qemu: $out"
if [ "${APPLIANCE_ARMV6:-0}" = 1 ]; then
  a6=target/armv6/arm-unknown-linux-gnueabihf/release/jukebox
  needs_libs "$a6"
  # Not as an ARM1176 (-cpu arm1176): the only armhf C library here is Debian's, built for
  # ARMv7, and its loader stops at its first ARMv7 instruction. cross-build.sh has checked the
  # code compiled into the binary; this checks it loads and runs with armhf libraries.
  out=$(timeout 60 qemu-arm-static "$a6" --version) || die "qemu-arm-static $a6 --version failed"
  [ "$out" = "jukebox $version" ] || die "armv6 --version said '$out'"
  ok "armv6 under qemu: $out"
  deb_armv6=$(scripts/package-deb.sh armhf "$a6" "$work/deb-armv6")
  [ "$(field "$deb_armv6" Architecture)" = armhf ] || die "the ARMv6 package is not armhf"
  depends_ok "$deb_armv6"
  ok "ARMv6 binary packaged as armhf"
fi

deb_arm64=$(scripts/package-deb.sh arm64 "$a64")
deb_armhf=$(scripts/package-deb.sh armhf "$a32")
[ "$(field "$deb_arm64" Architecture)" = arm64 ] || die "$deb_arm64 Architecture: $(field "$deb_arm64" Architecture)"
[ "$(field "$deb_armhf" Architecture)" = armhf ] || die "$deb_armhf Architecture: $(field "$deb_armhf" Architecture)"
depends_ok "$deb_arm64"
depends_ok "$deb_armhf"
ok "$deb_arm64 (Depends: $(field "$deb_arm64" Depends))"
ok "$deb_armhf (Depends: $(field "$deb_armhf" Depends))"

# -------------------------------------------------------------------------------------------
echo "== 3. sizes"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
report() {
  local name=$1 bin=$2 deb=${3:-}
  readelf -S "$bin" | grep -q '\.symtab' && die "$bin is not stripped"
  local size
  size=$(stat -c %s "$bin")
  printf '  %-32s binary %s (%s bytes, stripped)' "$name" "$(mib "$size")" "$size"
  [ -n "$deb" ] && printf ', %s %s' "$(basename "$deb")" "$(mib "$(stat -c %s "$deb")")"
  echo
}
report x86_64-unknown-linux-gnu "$native" "$deb_amd64"
report aarch64-unknown-linux-gnu "$a64" "$deb_arm64"
report armv7-unknown-linux-gnueabihf "$a32" "$deb_armhf"
[ "${APPLIANCE_ARMV6:-0}" = 1 ] && report arm-unknown-linux-gnueabihf "$a6" "$deb_armv6"

echo "test-appliance: all passed in $((SECONDS - start_all)) s"
