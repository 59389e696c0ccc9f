#!/usr/bin/env bash
# The .deb under a real systemd. Boots Debian 12 in a container with systemd as PID 1
# (systemd-nspawn --boot, on a root made by debootstrap from Debian's packages and cached in
# target/nspawn), installs the package there and checks, from outside:
#  1. the unit reaches active (running) through Type=notify, /healthz answers on port 80, the
#     process runs as the dynamic user with CAP_NET_BIND_SERVICE as its only capability, the
#     database is in the StateDirectory, the journal has the start-up lines and systemd has no
#     warning about the unit;
#  2. a party (three guests, python `websockets`: a request, two up-votes, three likes);
#     `systemctl kill -s KILL` → systemd restarts it (Restart=on-failure) and the queue, the
#     votes and the likes are all there;
#  3. a hung jukebox (SIGSTOP) is killed by the watchdog (WatchdogSec=4s from a drop-in) and
#     restarted, the party still intact;
#  4. an upgrade to a newer version with apt-get: stopped and started by the maintainer
#     scripts, the party kept; `apt-get remove` stops it and keeps configuration and state;
#     `apt-get purge` removes them and systemd forgets the unit.
#   scripts/test-systemd.sh DEB
# Needs root. Installs what it lacks (systemd-container, debootstrap). If the container cannot
# boot, it fails saying why: it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
start_all=$SECONDS

die() {
  echo "test-systemd: FAIL: $*" >&2
  exit 1
}
ok() { echo "  ok: $*"; }
installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

[ $# -eq 1 ] && [ -f "$1" ] || die "usage: scripts/test-systemd.sh DEB (a jukebox .deb for this machine)"
deb=$(realpath "$1")
[ "$(id -u)" -eq 0 ] || die "systemd-nspawn needs root"
python3 -c 'import websockets' 2>/dev/null ||
  die "python3 with websockets is needed for the party: ./scripts/deps.sh test installs it"

need=()
for pkg in systemd-container debootstrap debian-archive-keyring ffmpeg; do installed "$pkg" || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq || echo "test-systemd: apt-get update reported errors; trying the install anyway" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    die "could not install ${need[*]}"
fi

# The Debian mirror this machine's apt uses (deb822 sources or a sources.list line).
mirror() {
  local m
  m=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '/^deb / && $0 !~ /security/ { print ($2 ~ /^\[/ ? $3 : $2); exit }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# The base root, made once and kept: a minimal Debian 12 with systemd, and what the package
# depends on.
base=${JUKEBOX_NSPAWN_CACHE:-target/nspawn}/bookworm
if [ ! -f "$base/.complete" ]; then
  t=$SECONDS
  rm -rf "$base.tmp"
  mkdir -p "$(dirname "$base")"
  echo "debootstrap bookworm from $(mirror) into $base"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libasound2,libopus0,curl,ca-certificates \
    bookworm "$base.tmp" "$(mirror)" >"$base.log" 2>&1 ||
    die "debootstrap could not make a Debian 12 root (the container cannot boot without one):
$(tail -n 20 "$base.log")"
  touch "$base.tmp/.complete"
  rm -rf "$base"
  mv "$base.tmp" "$base"
  echo "  debootstrap: $((SECONDS - t)) s"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/jukebox-systemd.XXXXXX")
nspawn=""
cleanup() {
  if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
    kill -TERM "$nspawn" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$nspawn" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

root="$work/root"
cp -a "$base" "$root"
# Music for the party, in the folder the package's configuration names: two-minute tones, so
# that what plays is still playing after the restarts, each by an artist of its own (the
# party's artist spacing would refuse the request otherwise).
mkdir -p "$root/var/lib/jukebox/music"
for f in 330 440 550; do
  ffmpeg -nostdin -loglevel error -f lavfi -i "sine=frequency=$f:duration=120" -ac 2 -c:a libvorbis \
    -metadata title="Tone $f" -metadata artist="Tones $f" "$root/var/lib/jukebox/music/tone-$f.ogg" ||
    die "ffmpeg could not make the music"
done
cp "$deb" "$root/root/jukebox.deb"
# A newer version of the same package, for the upgrade.
version=$(dpkg-deb -f "$deb" Version)
dpkg-deb -R "$deb" "$work/newer"
sed -i "s/^Version: .*/Version: $version+1/" "$work/newer/DEBIAN/control"
dpkg-deb -b --root-owner-group "$work/newer" "$root/root/jukebox-newer.deb" >/dev/null

echo "== booting Debian 12 with systemd as PID 1 (systemd-nspawn)"
t=$SECONDS
# --register=no --keep-unit: this machine's systemd (if any) is not asked over D-Bus.
systemd-nspawn -D "$root" --boot --register=no --keep-unit --console=pipe --private-network \
  >"$work/boot.log" 2>&1 </dev/null &
nspawn=$!
init=""
for _ in $(seq 150); do
  init=$(pgrep -P "$nspawn" -x systemd || true)
  [ -n "$init" ] && break
  kill -0 "$nspawn" 2>/dev/null || die "systemd-nspawn exited: the container did not boot:
$(tail -n 30 "$work/boot.log")"
  sleep 0.2
done
[ -n "$init" ] || die "no systemd in the container after 30 s:
$(tail -n 30 "$work/boot.log")"

# A command inside the container: all of its namespaces, its root and its PATH.
in_ct() {
  nsenter --target "$init" --mount --uts --ipc --net --pid --cgroup --root --wd \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}
state=$(in_ct timeout 90 systemctl is-system-running --wait 2>&1 || true)
case "$state" in
  running) ;;
  degraded) echo "  (booted degraded: $(in_ct systemctl --failed --no-legend --plain | awk '{print $1}' | tr '\n' ' '))" ;;
  *) die "the container's systemd did not finish booting ($state):
$(tail -n 30 "$work/boot.log")" ;;
esac
ok "booted in $((SECONDS - t)) s: $(in_ct systemctl --version | head -n1), system $state"

prop() { in_ct systemctl show -P "$1" jukebox.service; }
# Waits until the unit is active (running) with a main process other than $1; prints its pid.
wait_started() {
  local old=${1:-0} waited=0 pid
  while :; do
    pid=$(prop MainPID)
    if [ "$(prop ActiveState)/$(prop SubState)" = active/running ] && [ "$pid" != 0 ] && [ "$pid" != "$old" ]; then
      echo "$pid"
      return
    fi
    [ "$waited" -lt 300 ] || die "jukebox.service did not become active (running) with a new process within 60 s:
$(in_ct systemctl status --no-pager jukebox.service 2>&1 | tail -n 20)"
    sleep 0.2
    waited=$((waited + 1))
  done
}
api() { in_ct curl -fsS --max-time 10 "http://127.0.0.1:80$1"; }
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

# -------------------------------------------------------------------------------------------
echo "== 1. install: Type=notify, port 80, the dynamic user, the state directory, the journal"
in_ct dpkg -i /root/jukebox.deb >"$work/dpkg.log" 2>&1 || die "dpkg -i failed:
$(cat "$work/dpkg.log")"
pid=$(wait_started)
[ "$(prop Type)" = notify ] || die "Type=$(prop Type)"
[ "$(prop UnitFileState)" = enabled ] || die "the unit is $(prop UnitFileState), not enabled"
ok "dpkg -i: enabled, active (running) through Type=notify, main process $pid"
health=$(api /healthz) || die "GET /healthz on port 80 failed"
[[ $health == *'"status":"ok"'* ]] || die "/healthz said $health"
ok "/healthz on port 80: $health"
# $pid is the container's: its /proc is read from inside.
status=$(in_ct cat "/proc/$pid/status")
uid=$(awk '/^Uid:/ { print $2 }' <<<"$status")
[ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] || die "the jukebox runs as uid $uid, not a dynamic user (61184–65519)"
[ "$(prop User)" = jukebox ] && [ "$(prop DynamicUser)" = yes ] || die "User=$(prop User) DynamicUser=$(prop DynamicUser)"
for set in CapEff CapPrm CapBnd CapAmb; do
  caps=$(awk -v k="$set:" '$1 == k { print $2 }' <<<"$status")
  # Bit 10 is CAP_NET_BIND_SERVICE, and nothing else.
  [ "$caps" = 0000000000000400 ] || die "$set is $caps, not CAP_NET_BIND_SERVICE alone (0000000000000400)"
done
ok "runs as dynamic user jukebox (uid $uid) with CAP_NET_BIND_SERVICE alone (effective, permitted, bounding, ambient)"
[ -L "$root/var/lib/jukebox" ] && [ "$(readlink "$root/var/lib/jukebox")" = private/jukebox ] ||
  die "/var/lib/jukebox is not systemd's link to private/jukebox"
db="$root/var/lib/private/jukebox/jukebox.db"
[ -f "$db" ] && [ "$(stat -c %u "$db")" = "$uid" ] && [ "$(stat -c %a "$db")" = 600 ] ||
  die "no database owned by the service (mode 600) in the state directory: $(ls -la "$root/var/lib/private/jukebox" 2>&1)"
ok "database in the StateDirectory: /var/lib/private/jukebox/jukebox.db, uid $uid, mode 600"
journal() { in_ct journalctl --no-pager -o cat "$@"; }
startup=$(journal -u jukebox.service _PID="$pid")
grep -q 'listening on http://0.0.0.0:80' <<<"$startup" || die "the journal has no 'listening on' line:
$startup"
grep -qi 'audio output' <<<"$startup" || die "the journal does not say which audio output the jukebox chose:
$startup"
ok "journal: $(grep -m1 -i 'audio output' <<<"$startup" | cut -c1-120)"
# systemd's own lines about the unit (PID 1 logs them), from the boot on.
unit_warnings() {
  in_ct journalctl --no-pager -o cat -b _PID=1 -p warning | grep -i jukebox | grep -vE "$1" || true
}
warnings=$(unit_warnings '^$')
[ -z "$warnings" ] || die "systemd warns about the unit:
$warnings"
ok "systemd has no warning about the unit"

# -------------------------------------------------------------------------------------------
echo "== 2. a party, then systemctl kill -s KILL"
party=$(nsenter --target "$init" --net python3 tests/systemd/party.py http://127.0.0.1:80) ||
  die "the party's guests failed"
entry=$(json 'd["entry_id"]' <<<"$party")
play=$(json 'd["play_id"]' <<<"$party")
# What the party holds: the entry's votes and the play's likes, as GET /api/state shows them.
holds() {
  api /api/state | python3 -c '
import json, sys
s, entry, play = json.load(sys.stdin), sys.argv[1], sys.argv[2]
votes = next((i["votes"] for i in s["queue"]["items"] if i["id"] == entry), None)
now = s["now_playing"] or {}
print("entry %s votes %s, play %s likes %s" % (entry, votes, now.get("play_id"), now.get("likes")))' "$entry" "$play"
}
want="entry $entry votes $(json 'd["votes"]' <<<"$party"), play $play likes $(json 'd["likes"]' <<<"$party")"
[ "$(holds)" = "$want" ] || die "after the party the state holds '$(holds)', not '$want'"
ok "party: $want"
in_ct systemctl kill -s KILL jukebox.service
pid=$(wait_started "$pid")
[ "$(prop NRestarts)" = 1 ] || die "NRestarts=$(prop NRestarts) after the kill"
[ "$(holds)" = "$want" ] || die "after the restart the state holds '$(holds)', not '$want'"
ok "killed with SIGKILL, restarted by systemd (NRestarts=1, process $pid), the party intact"

# -------------------------------------------------------------------------------------------
echo "== 3. a hung jukebox: the watchdog"
mkdir -p "$root/etc/systemd/system/jukebox.service.d"
printf '[Service]\nWatchdogSec=4s\n' >"$root/etc/systemd/system/jukebox.service.d/watchdog.conf"
in_ct systemctl daemon-reload
in_ct systemctl restart jukebox.service
pid=$(wait_started "$pid")
[ "$(prop WatchdogUSec)" = 4s ] || die "the drop-in did not shorten the watchdog: WatchdogUSec=$(prop WatchdogUSec)"
restarts=$(prop NRestarts)
t=$SECONDS
# The root has no kill(1) (minbase has no procps): systemd sends the signal.
in_ct systemctl kill --kill-whom=main -s SIGSTOP jukebox.service
pid=$(wait_started "$pid")
[ "$(prop NRestarts)" = $((restarts + 1)) ] || die "NRestarts=$(prop NRestarts) after the watchdog"
in_ct journalctl --no-pager -o cat -b _PID=1 | grep -q 'jukebox.service: Watchdog timeout' ||
  die "the journal has no watchdog timeout for the unit"
[ "$(holds)" = "$want" ] || die "after the watchdog's restart the state holds '$(holds)', not '$want'"
ok "stopped with SIGSTOP: killed by the watchdog and restarted in $((SECONDS - t)) s (process $pid), the party intact"
rm -r "$root/etc/systemd/system/jukebox.service.d"
in_ct systemctl daemon-reload

# -------------------------------------------------------------------------------------------
echo "== 4. upgrade, remove, purge with apt-get under the running systemd"
apt() { in_ct env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" >"$work/apt.log" 2>&1 || die "apt-get $* failed:
$(cat "$work/apt.log")"; }
apt install /root/jukebox-newer.deb
[ "$(in_ct dpkg-query -W -f='${Version}' jukebox)" = "$version+1" ] || die "the upgrade did not install $version+1"
pid=$(wait_started "$pid")
[ "$(holds)" = "$want" ] || die "after the upgrade the state holds '$(holds)', not '$want'"
ok "upgrade $version → $version+1: stopped by prerm, started again by postinst (process $pid), the party kept"
apt remove jukebox
[ "$(prop ActiveState)" = inactive ] || die "after apt-get remove the unit is $(prop ActiveState)"
in_ct test ! -e "/proc/$pid" || die "after apt-get remove the jukebox (pid $pid) still runs"
[ ! -e "$root/lib/systemd/system/jukebox.service" ] || die "remove left the unit file"
[ "$(prop LoadState)" = not-found ] || die "after remove systemd still has the unit loaded ($(prop LoadState)): no daemon-reload?"
[ -f "$db" ] && [ -f "$root/etc/jukebox/jukebox.toml" ] || die "remove took the database or the configuration (only purge should)"
ok "apt-get remove: stopped, the unit gone from systemd, configuration and database kept"
apt purge jukebox
for gone in /etc/jukebox /var/lib/jukebox /var/lib/private/jukebox /etc/systemd/system/multi-user.target.wants/jukebox.service; do
  [ ! -e "$root$gone" ] && [ ! -L "$root$gone" ] || die "purge left $gone"
done
in_ct systemctl list-units --all --no-legend --plain | grep -q '^jukebox' && die "systemd still lists the unit after purge"
ok "apt-get purge: configuration, state and enablement gone; systemd lists no jukebox unit"

# Only the kill and the watchdog, on purpose: nothing else from systemd about the unit.
expected='Watchdog timeout|Killing process .* with signal SIGABRT|Main process exited, code=(killed|dumped)|Failed with result .(signal|watchdog).'
warnings=$(unit_warnings "$expected")
[ -z "$warnings" ] || die "systemd warned about the unit:
$warnings"
# And the check sees warnings at all: the kill's and the watchdog's are there.
seen=$(in_ct journalctl --no-pager -o cat -b _PID=1 -p warning | grep -i jukebox | grep -cE "$expected" || true)
[ "$seen" -ge 2 ] || die "the journal shows $seen of systemd's warnings about the kill and the watchdog; expected them"
ok "journal: no warning from systemd about the unit but the $seen of the kill and the watchdog"

# The manager drops the connection as it powers off.
in_ct systemctl poweroff 2>/dev/null || true
for _ in $(seq 150); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.2; done
kill -0 "$nspawn" 2>/dev/null && die "the container did not power off within 30 s"
nspawn=""
echo "test-systemd: all passed in $((SECONDS - start_all)) s"
