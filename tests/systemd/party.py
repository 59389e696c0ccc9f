"""A small party against a running jukebox, with the Python `websockets` library (nothing of
the jukebox's own): three guests join over HTTP; the first requests a song that is not playing,
the other two up-vote it, and all three like what is playing. Every action waits for its reply
(acknowledged, so on disk). Prints what the party should hold afterwards, as one JSON line:
{"entry_id": ..., "votes": 3, "play_id": ..., "likes": 3}

usage: party.py http://HOST:PORT
"""
import contextlib
import json
import sys
import urllib.request

from websockets.sync.client import connect

base = sys.argv[1].rstrip("/")
ws_url = base.replace("http://", "ws://", 1) + "/ws?v=1"


def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.loads(r.read())


class Phone:
    def __init__(self, name):
        self.token = post("/api/guest", {"name": name})["token"]
        self.ws = sockets.enter_context(connect(ws_url, open_timeout=10))
        self.rid = 0
        self.ws.send(json.dumps({"cmd": "hello", "v": 1, "token": self.token,
                                 "topics": ["now_playing"]}))
        welcome = json.loads(self.ws.recv(timeout=10))
        assert welcome["cmd"] == "welcome", welcome
        self.now = None
        while self.now is None:
            m = json.loads(self.ws.recv(timeout=10))
            if m.get("cmd") == "update" and m.get("topic") == "now_playing" and m["data"]:
                self.now = m["data"]

    def ok(self, cmd):
        self.rid += 1
        cmd["rid"] = self.rid
        self.ws.send(json.dumps(cmd))
        for _ in range(1000):
            m = json.loads(self.ws.recv(timeout=10))
            if m.get("cmd") == "reply" and m.get("rid") == self.rid:
                assert m["ok"], f"{cmd} was refused: {m}"
                return m.get("data")
        raise AssertionError(f"no reply to {cmd}")


sockets = contextlib.ExitStack()
phones = [Phone(name) for name in ("Ada", "Bo", "Cy")]
playing = phones[0].now
other = next(t for t in get("/api/search?q=&limit=100")["results"]
             if t["id"] != playing["track"]["id"])
entry = phones[0].ok({"cmd": "request", "track_id": other["id"]})["entry_id"]
for p in phones[1:]:
    p.ok({"cmd": "vote", "entry_id": entry, "on": True})
for p in phones:
    p.ok({"cmd": "like", "play_id": playing["play_id"], "on": True})
sockets.close()
print(json.dumps({"entry_id": entry, "votes": len(phones), "play_id": playing["play_id"],
                  "likes": len(phones)}))
