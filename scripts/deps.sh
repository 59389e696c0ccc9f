#!/usr/bin/env bash
# Installs what the jukebox needs, and nothing that is already there. Safe to run again.
#   scripts/deps.sh build   # to build and run: ALSA headers, pkg-config
#   scripts/deps.sh test    # also what the tests use: ffmpeg (test audio), sox, avahi, a
#                           # browser (chromium) with node and playwright-core, python clients,
#                           # snapserver and snapclient
#   scripts/deps.sh bench   # the tests' tools (MPD among them, which the benchmarks also
#                           # measure the jukebox beside)
set -euo pipefail
what=${1:-build}

pkgs=(libasound2-dev libopus-dev pkg-config)
# ffmpeg makes test audio; iproute2 and avahi-daemon are for the mDNS test's namespaces;
# chromium runs the phone app's tests; systemd brings systemd-analyze for the unit's checks;
# strace checks the unit's system-call filter. The tests install nothing themselves
# (tests/systemd.rs fails naming this script when a tool is missing).
# snapserver and snapclient are the multi-room engine the snapcast output feeds; mpc is an
# MPD client the MPD front end is tested with, ncmpcpp (in tmux) another, and Debian's mpd
# the real server its answers are compared with. The garden party's tests read the QR codes
# back with zbarimg (zbar-tools) after rsvg-convert (librsvg2-bin) turns the SVG into a PNG,
# and run the shipped dnsmasq snippet in dnsmasq, asking it with dig (bind9-dnsutils).
if [ "$what" = test ] || [ "$what" = bench ]; then
  pkgs+=(ffmpeg sox iproute2 avahi-daemon chromium systemd strace python3-pip)
  pkgs+=(snapserver snapclient mpc ncmpcpp tmux mpd)
  pkgs+=(zbar-tools librsvg2-bin dnsmasq bind9-dnsutils)
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
fi

need=()
for pkg in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Their packages would start system services (snapserver on 0.0.0.0:1704-1780, MPD on
  # 6600, a DNS server on port 53) on a machine with systemd: the tests and benchmarks start
  # their own, on loopback or in a network namespace.
  for unit in snapserver.service snapclient.service mpd.service mpd.socket dnsmasq.service; do
    $SUDO systemctl mask "$unit" >/dev/null 2>&1 || true
  done
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install a Rust toolchain (rustup or your distribution) first" >&2
  exit 1
fi
if [ "$what" = test ] || [ "$what" = bench ]; then
  # Independent clients: a websocket library for the protocol conformance test, an mDNS one
  # for the mDNS test, and python-mpd2 (what Home Assistant speaks MPD with). Each is the
  # module to import and the package that has it.
  for mod in websockets:websockets zeroconf:zeroconf mpd:python-mpd2; do
    if ! python3 -c "import ${mod%%:*}" 2>/dev/null; then
      echo "installing: python ${mod#*:}"
      python3 -m pip install --quiet "${mod#*:}" 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages "${mod#*:}"
    fi
  done
  # playwright-core drives the system's chromium (it never downloads a browser).
  if [ ! -d tests/web/node_modules/playwright-core ]; then
    echo "installing: playwright-core (npm)"
    (cd tests/web && npm ci --silent --no-audit --no-fund)
  fi
  for c in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" || echo "warning: cannot add $c" >&2
  done
fi
