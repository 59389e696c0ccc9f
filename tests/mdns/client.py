"""An independent mDNS client (python-zeroconf) for the jukebox's mDNS test.

    client.py find SERVICE_TYPE NAME TIMEOUT_S [watch]
        Browses for SERVICE_TYPE until instance NAME appears, resolves it (SRV, TXT, host
        addresses) and fetches /healthz through the host name's address. Prints one JSON line.
        With "watch", keeps watching and prints {"removed": NAME} when the service says goodbye.
    client.py resolve HOST TIMEOUT_S
        Resolves HOST (e.g. jukebox.local.) to its addresses; prints one JSON line.
"""

import json
import sys
import time
import urllib.request

from zeroconf import AddressResolver, IPVersion, ServiceBrowser, ServiceListener, Zeroconf


def out(obj):
    print(json.dumps(obj), flush=True)


def resolve(zc, host, timeout_s):
    """Every address HOST answers with: A and AAAA records may come in separate answers,
    so keep asking for a moment after the first one."""
    deadline = time.monotonic() + timeout_s
    found = set()
    while time.monotonic() < deadline:
        r = AddressResolver(host)
        if r.request(zc, 1000):
            found.update(r.parsed_addresses(IPVersion.All))
            if found:
                deadline = min(deadline, time.monotonic() + 1.5)
    return sorted(found)


class Watch(ServiceListener):
    def __init__(self):
        self.added = set()
        self.removed = set()

    def add_service(self, zc, type_, name):
        self.added.add(name)

    def update_service(self, zc, type_, name):
        self.added.add(name)

    def remove_service(self, zc, type_, name):
        self.removed.add(name)


def find(zc, type_, name, timeout_s, watch_removal):
    full = f"{name}.{type_}"
    watch = Watch()
    ServiceBrowser(zc, type_, watch)
    deadline = time.monotonic() + timeout_s
    while full not in watch.added and time.monotonic() < deadline:
        time.sleep(0.05)
    if full not in watch.added:
        out({"error": f"{full} not found in {timeout_s} s", "seen": sorted(watch.added)})
        return
    info = zc.get_service_info(type_, full, timeout=3000)
    if info is None:
        out({"error": f"{full} did not resolve"})
        return
    host = info.server
    addrs = resolve(zc, host, 5)
    health = None
    v4 = [a for a in addrs if ":" not in a]
    # The web services answer /healthz; the MPD port speaks MPD, not HTTP.
    if v4 and not type_.startswith("_mpd."):
        url = f"http://{v4[0]}:{info.port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as r:
            health = json.loads(r.read())
    out({
        "name": full,
        "host": host,
        "port": info.port,
        "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()},
        "addresses": addrs,
        "healthz": health,
    })
    if not watch_removal:
        return
    # Goodbyes: the service disappears at once when the jukebox stops.
    deadline = time.monotonic() + timeout_s
    while full not in watch.removed and time.monotonic() < deadline:
        time.sleep(0.05)
    if full in watch.removed:
        out({"removed": full})


def main():
    zc = Zeroconf()
    try:
        if sys.argv[1] == "find":
            find(zc, sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5:] == ["watch"])
        elif sys.argv[1] == "resolve":
            out({"host": sys.argv[2], "addresses": resolve(zc, sys.argv[2], float(sys.argv[3]))})
    finally:
        zc.close()


if __name__ == "__main__":
    main()
