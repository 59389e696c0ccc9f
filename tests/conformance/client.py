"""An independent client for the jukebox live protocol v1, written with the Python
`websockets` library: plain standard websocket + JSON, nothing of the jukebox's own.

usage: client.py HOST:PORT TOKEN
Prints one line per check and exits 0 when all pass.
"""
import json
import sys

from websockets.sync.client import connect

addr, token = sys.argv[1], sys.argv[2]
url = f"ws://{addr}/ws?v=1"
last_seq = 0


def recv(ws):
    global last_seq
    msg = json.loads(ws.recv(timeout=10))
    if "seq" in msg:
        assert msg["seq"] == last_seq + 1, f"seq gap: {msg['seq']} after {last_seq}"
        last_seq = msg["seq"]
    return msg


def until(ws, pred):
    for _ in range(500):
        m = recv(ws)
        if pred(m):
            return m
    raise AssertionError("no matching message")


def check(name):
    print(f"ok {name}", flush=True)


with connect(url) as ws:
    ws.send(json.dumps({"cmd": "hello", "v": 1, "token": token,
                        "topics": ["now_playing", "queue", "me", "room"]}))
    welcome = json.loads(ws.recv(timeout=10))
    assert welcome["cmd"] == "welcome" and welcome["v"] == 1, welcome
    assert welcome["resumed"] is False and welcome["role"] == "guest", welcome
    for key in ("build", "epoch", "session", "last_rid", "heartbeat_ms"):
        assert key in welcome, key
    assert {"ids", "refusals"} <= set(welcome.get("features", [])), welcome
    check("hello/welcome")

    topics = {}
    while len(topics) < 4:
        m = recv(ws)
        if m["cmd"] == "update":
            topics[m["topic"]] = m
    assert "items" in topics["queue"] and "order" in topics["queue"]
    now = topics["now_playing"]["data"]
    while now is None:
        now = until(ws, lambda m: m.get("topic") == "now_playing" and m["data"])["data"]
    check("snapshots")

    ws.send(json.dumps({"cmd": "like", "rid": 1, "play_id": now["play_id"], "on": True}))
    seen_update = False
    while True:
        m = recv(ws)
        if m.get("topic") == "now_playing" and m["data"] and m["data"]["likes"] >= 1:
            seen_update = True
        if m["cmd"] == "reply" and m["rid"] == 1:
            assert m["ok"] is True, m
            break
    assert seen_update, "the like's update comes before its reply"
    check("like")

    ws.send(json.dumps({"cmd": "search", "rid": 2, "q": "song", "limit": 10}))
    reply = until(ws, lambda m: m["cmd"] == "reply" and m["rid"] == 2)
    track = next(t for t in reply["data"]["results"] if t["id"] != now["track"]["id"])
    ws.send(json.dumps({"cmd": "request", "rid": 3, "track_id": track["id"]}))
    me = topics["me"]["data"]["guest_id"]
    requested = until(ws, lambda m: m.get("name") == "requested")
    assert requested["data"]["by_id"] == me, (requested, me)
    reply = until(ws, lambda m: m["cmd"] == "reply" and m["rid"] == 3)
    assert reply["ok"] is True and reply["data"]["entry_id"].startswith("r"), reply
    check("request")

    # Revision 2: the numbers of a refusal are data, not words.
    ws.send(json.dumps({"cmd": "request", "rid": 5, "track_id": now["track"]["id"]}))
    reply = until(ws, lambda m: m["cmd"] == "reply" and m["rid"] == 5)
    assert reply["ok"] is False and reply["error"]["code"] == "recently_played", reply
    # (playing now, or, should it have just ended, played 0 minutes ago)
    data = reply["error"]["data"]
    assert data == {"playing_now": True} or set(data) == {"minutes_ago", "wait_minutes"}, reply
    check("refusal data")

    ws.send(json.dumps({"cmd": "like", "rid": 6, "play_id": 5}))
    reply = until(ws, lambda m: m["cmd"] == "reply" and m["rid"] == 6)
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request", reply
    assert reply["error"]["field"] == "play_id", reply
    ws.send("{not json")
    err = json.loads(ws.recv(timeout=10))
    assert err["cmd"] == "error" and err["code"] == "bad_json" and "seq" not in err, err
    check("errors")
    session = welcome["session"]

with connect(url) as ws:
    ws.send(json.dumps({"cmd": "hello", "v": 1, "token": token,
                        "session": session, "last_seq": last_seq}))
    welcome = json.loads(ws.recv(timeout=10))
    assert welcome["resumed"] is True and welcome["session"] == session, welcome
    assert welcome["last_rid"] == 6, welcome
    ws.send(json.dumps({"cmd": "ping"}))
    until(ws, lambda m: m["cmd"] == "pong")
    check("resume")

print("conformance ok")
