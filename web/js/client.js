// The live protocol client (docs/PROTOCOL.md, v1): one websocket, hello/welcome, seq
// tracking, resume, backoff with jitter, ping-on-wake, commands with rid -> Promise of reply,
// and the topic state (snapshots and deltas) kept in `state`.

const BACKOFF_START = 250;
const BACKOFF_MAX = 5000;
const HIDDEN_PROBE_MS = 5000; // hidden longer than this: ping on wake
const PONG_WAIT_MS = 3000; // no pong within this: reconnect at once
const COMMAND_TIMEOUT_MS = 15000;

/**
 * An error from the jukebox (or from the connection): `code` as in PROTOCOL.md §8, and `data`,
 * the numbers a refusal states (revision 2), so nothing is read back out of the message.
 */
export class JukeboxError extends Error {
  constructor(err) {
    super(err.message || err.code);
    this.code = err.code;
    this.field = err.field;
    this.data = err.data || {};
    this.retryAfterMs = this.data.retry_after_ms ?? err.retry_after_ms;
  }
}

const collection = () => ({ items: new Map(), order: [] });

/** Ordered items of a collection topic: `order` drawn, ids without an item skipped. */
export function ordered(c) {
  const out = [];
  for (const id of c.order) {
    const it = c.items.get(id);
    if (it) out.push(it);
  }
  return out;
}

export async function api(path, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const res = await fetch(path, {
    method: body === undefined ? 'GET' : 'POST',
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    /* empty or not JSON */
  }
  if (!res.ok) {
    throw new JukeboxError(data && data.code ? data : { code: 'http_' + res.status, message: res.statusText });
  }
  return data;
}

/**
 * new Client({ topics, getToken })
 *  (A screen, the TV, is not a guest because its token is a screen token from pairing.)
 *  - getToken(fresh): async, returns the token to send in hello; `fresh` is true after the
 *    jukebox refused the previous one (bye 4401). Return null to stop (e.g. host not logged in).
 *  - on(type, fn): 'status' (status string), 'update' (topic), 'event' (event frame),
 *    'welcome' (welcome frame), 'unauthorized' (the token was refused), 'bye' (frame).
 * status: 'connecting' | 'live' | 'reconnecting' | 'offline' | 'stopped'
 */
export class Client {
  constructor({ topics, getToken }) {
    this.topics = topics;
    this.getToken = getToken;
    this.handlers = {};
    this.state = {
      now_playing: null,
      queue: collection(),
      me: null,
      room: null,
      admin: collection(),
      rooms: collection(),
      history: collection(),
    };
    this.status = 'connecting';
    this.ws = null;
    this.session = null;
    this.lastSeq = 0;
    this.rid = 0;
    this.pending = new Map(); // rid -> {frame, resolve, reject, timer, sent}
    this.backoff = BACKOFF_START;
    this.retryTimer = 0;
    this.attempt = 0;
    this.connectingSince = 0;
    this.pongTimer = 0;
    this.lastRx = 0;
    this.heartbeatMs = 20000;
    this.hiddenAt = 0;
    this.freshToken = false;
    this.started = false;
    this.skews = []; // jukebox clock minus ours, per frame carrying server_time_ms
    this.everLive = false;
  }

  on(type, fn) {
    (this.handlers[type] ||= []).push(fn);
    return this;
  }

  emit(type, arg) {
    for (const fn of this.handlers[type] || []) {
      try {
        fn(arg);
      } catch (e) {
        console.error(e);
      }
    }
  }

  get live() {
    return this.status === 'live';
  }

  /** The jukebox's clock now, as best we know it (its clock may be far off ours). */
  serverNow() {
    const skew = this.skews.length ? Math.max(...this.skews) : 0;
    return Date.now() + skew;
  }

  setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    this.emit('status', s);
  }

  start() {
    this.started = true;
    this.freshToken = false;
    this.backoff = BACKOFF_START;
    if (!this.watching) {
      this.watching = true;
      this.watch();
    }
    this.connectNow();
  }

  stop() {
    this.started = false;
    clearTimeout(this.retryTimer);
    this.drop();
    this.failPending('stopped', 'stopped');
    this.setStatus('stopped');
  }

  // --- connection -------------------------------------------------------------------------

  connectNow() {
    if (!this.started) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    this.drop();
    const attempt = ++this.attempt;
    this.connectingSince = Date.now();
    this.open(attempt).catch((e) => {
      if (attempt !== this.attempt) return;
      console.warn('connect failed', e);
      this.scheduleReconnect();
    });
  }

  async open(attempt) {
    if (!navigator.onLine) {
      this.setStatus('offline');
      this.scheduleReconnect();
      return;
    }
    this.setStatus(this.everLive ? 'reconnecting' : 'connecting');
    const token = await this.getToken(this.freshToken);
    if (attempt !== this.attempt || !this.started) return; // superseded meanwhile
    if (token == null) {
      this.stop();
      return;
    }
    this.freshToken = false;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/ws?v=1`);
    this.ws = ws;
    this.bye = null;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      const hello = { cmd: 'hello', v: 1, token, topics: this.topics };
      if (this.session) {
        hello.session = this.session;
        hello.last_seq = this.lastSeq;
      }
      this.lastRx = Date.now();
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastRx = Date.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      this.receive(msg);
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.closed(this.bye);
    };
    ws.onerror = () => {};
  }

  /** Forget the current socket (its late events are ignored) and close it. */
  drop() {
    clearTimeout(this.pongTimer);
    this.pongTimer = 0;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        /* not open yet */
      }
    }
  }

  closed(bye) {
    if (!this.started) return;
    // Refused for now (too many connections, or the jukebox is full): wait as told.
    if (bye && typeof bye.retry_after_ms === 'number') {
      this.backoff = Math.max(this.backoff, Math.min(bye.retry_after_ms, 60000));
    }
    if (bye && bye.reconnect === false) {
      if (bye.code === 4401 || bye.code === 4403) {
        // The token was refused: get a new one (guest) or ask for the PIN again (host).
        this.freshToken = true;
        this.session = null;
        this.emit('unauthorized', bye);
      } else if (bye.code === 4426) {
        // This page speaks an old protocol: the jukebox serves the current page.
        setTimeout(() => location.reload(), 3000);
      } else {
        // 4008 (session taken over) or 4429 (too many tabs): start over, with patience.
        this.session = null;
        this.backoff = BACKOFF_MAX;
      }
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (!this.started) return;
    this.drop();
    this.setStatus(navigator.onLine ? 'reconnecting' : 'offline');
    clearTimeout(this.retryTimer);
    this.attempt++; // whatever attempt was under way is over
    const delay = this.backoff;
    this.backoff = Math.min(BACKOFF_MAX, this.backoff * (1.5 + Math.random() * 0.5));
    this.retryTimer = setTimeout(() => this.connectNow(), delay * (0.8 + Math.random() * 0.4));
  }

  // --- frames -----------------------------------------------------------------------------

  receive(msg) {
    switch (msg.cmd) {
      case 'ping':
        this.sendRaw({ cmd: 'pong' });
        return;
      case 'pong':
        clearTimeout(this.pongTimer);
        this.pongTimer = 0;
        return;
      case 'welcome':
        return this.welcome(msg);
      case 'bye':
        this.bye = msg;
        this.emit('bye', msg);
        return;
      case 'error':
        console.warn('jukebox error', msg);
        return;
    }
    if (typeof msg.seq !== 'number') return; // unknown and unsequenced: ignore
    if (msg.seq <= this.lastSeq) return; // already seen
    if (msg.seq !== this.lastSeq + 1) {
      // A gap: never patch over it. Reconnect and resume from what we have.
      console.warn('seq gap', this.lastSeq, msg.seq);
      this.connectNow();
      return;
    }
    this.lastSeq = msg.seq;
    if (msg.cmd === 'update') this.applyUpdate(msg);
    else if (msg.cmd === 'event') this.emit('event', msg);
    else if (msg.cmd === 'reply') this.reply(msg);
  }

  welcome(msg) {
    const resumed = msg.resumed === true && msg.session === this.session;
    this.heartbeatMs = msg.heartbeat_ms || 20000;
    if (!resumed) {
      this.lastSeq = 0;
      // The requests in flight belonged to a session that is gone; say so rather than guess.
      this.failPending('offline', 'the connection was lost; please try again');
      if (this.epoch && msg.epoch !== this.epoch) this.skews = [];
    } else {
      // Resend what the jukebox never received; the replies to the rest are in the replay.
      for (const [rid, p] of this.pending) {
        if (rid > (msg.last_rid || 0)) this.sendRaw(p.frame);
      }
    }
    this.lastWelcome = msg;
    this.epoch = msg.epoch;
    this.session = msg.session;
    this.rid = Math.max(this.rid, msg.last_rid || 0);
    this.backoff = BACKOFF_START;
    this.everLive = true;
    this.setStatus('live');
    this.emit('welcome', msg);
  }

  applyUpdate(msg) {
    const t = msg.topic;
    const s = this.state;
    if (t === 'now_playing') {
      s.now_playing = msg.data;
      if (msg.data && msg.data.server_time_ms) {
        this.skews.push(msg.data.server_time_ms - Date.now());
        if (this.skews.length > 20) this.skews.shift();
      }
    } else if (t === 'me' || t === 'room') {
      s[t] = msg.data;
    } else if (t === 'queue' || t === 'admin' || t === 'rooms' || t === 'history') {
      const c = s[t];
      // The admin topic's `sound` (revision 2) rides beside its guest list, and the rooms
      // topic's `snapserver` beside its rooms.
      if (t === 'admin' && msg.sound !== undefined) c.sound = msg.sound;
      if (t === 'rooms' && msg.snapserver !== undefined) c.snapserver = msg.snapserver;
      if (Array.isArray(msg.items)) {
        c.items = new Map(msg.items.map((it) => [it.id, it]));
        c.order = Array.isArray(msg.order) ? msg.order : msg.items.map((it) => it.id);
      } else {
        if (msg.id !== undefined) {
          if (msg.data === null) {
            c.items.delete(msg.id);
          } else {
            if (!c.items.has(msg.id) && t === 'admin') c.order = [...c.order, msg.id];
            c.items.set(msg.id, msg.data);
          }
        }
        if (Array.isArray(msg.order)) c.order = msg.order;
      }
    } else {
      return; // a topic this page does not know
    }
    this.emit('update', t);
  }

  /** Fills the shared topics from GET /api/state while the socket is not up yet (first visit). */
  prime(st) {
    if (this.everLive || !st) return;
    this.applyUpdate({ topic: 'now_playing', data: st.now_playing || null });
    if (st.queue) this.applyUpdate({ topic: 'queue', items: st.queue.items || [], order: st.queue.order });
    if (st.room) this.applyUpdate({ topic: 'room', data: st.room });
  }

  reply(msg) {
    const p = this.pending.get(msg.rid);
    if (!p) return;
    this.pending.delete(msg.rid);
    clearTimeout(p.timer);
    if (msg.ok) p.resolve(msg.data || {});
    else p.reject(new JukeboxError(msg.error || { code: 'internal' }));
  }

  failPending(code, message) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new JukeboxError({ code, message }));
    }
    this.pending.clear();
  }

  sendRaw(obj) {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  /** Sends a request; resolves with the reply's `data`, rejects with a JukeboxError. */
  command(cmd, fields = {}) {
    if (!this.live) {
      return Promise.reject(new JukeboxError({ code: 'offline', message: 'not connected' }));
    }
    const rid = ++this.rid;
    const frame = { ...fields, cmd, rid };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new JukeboxError({ code: 'timeout', message: 'no answer from the jukebox' }));
      }, COMMAND_TIMEOUT_MS);
      this.pending.set(rid, { frame, resolve, reject, timer });
      this.sendRaw(frame);
    });
  }

  // --- liveness ---------------------------------------------------------------------------

  /** Ping; without a pong within 3 s the socket is taken for dead and replaced at once. */
  probe() {
    if (!this.ws || this.ws.readyState !== 1 || !this.live) {
      this.connectNow();
      return;
    }
    if (this.pongTimer) return;
    this.sendRaw({ cmd: 'ping' });
    this.pongTimer = setTimeout(() => {
      this.pongTimer = 0;
      console.warn('no pong: reconnecting');
      this.connectNow();
    }, PONG_WAIT_MS);
  }

  /** Woken (screen on, tab back, network back): check the socket, or reconnect now. */
  wake(force) {
    if (!this.started) return;
    const hiddenFor = this.hiddenAt ? Date.now() - this.hiddenAt : 0;
    this.hiddenAt = 0;
    if (this.live) {
      if (force || hiddenFor > HIDDEN_PROBE_MS) this.probe();
    } else if (this.retryTimer || Date.now() - this.connectingSince > PONG_WAIT_MS) {
      // Waiting out a backoff, or an attempt that hangs: try again right now.
      this.backoff = BACKOFF_START;
      this.connectNow();
    }
  }

  watch() {
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') this.hiddenAt = Date.now();
      else this.wake(false);
    });
    addEventListener('pageshow', (e) => this.wake(e.persisted));
    addEventListener('focus', () => this.wake(false));
    document.addEventListener('resume', () => this.wake(true));
    addEventListener('online', () => this.wake(true));
    addEventListener('offline', () => {
      // Losing the network rarely closes a socket by itself: count it as gone now.
      if (!this.started) return;
      this.drop();
      clearTimeout(this.retryTimer);
      this.setStatus('offline');
      this.scheduleReconnect();
    });
    // Silence longer than the jukebox's heartbeat means a dead socket nobody told us about.
    setInterval(() => {
      if (this.live && Date.now() - this.lastRx > this.heartbeatMs + 10000) this.probe();
    }, 5000);
  }
}
