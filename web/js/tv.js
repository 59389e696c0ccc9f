// The TV page (/tv): now playing, up next, likes flying in, and how to join. No interaction.
import { Client, api, ordered } from './client.js';
import { h, text, syncList, fmtTime, fmtIn, plural, cover, positionNow, etas, bindStatus, eventToast, toast, drawProgress, onNextFrame, dedicationLine } from './ui.js';

// The TV is a screen: the host pairs it by typing the code it shows (a screen never votes and
// is not a guest in the room). Its token is kept apart from a phone's guest on the same browser.
const TOKEN_KEY = 'jukebox.tv.screen';
const store = {
  get: (k) => { try { return localStorage.getItem(k); } catch { return null; } },
  set: (k, v) => { try { v == null ? localStorage.removeItem(k) : localStorage.setItem(k, v); } catch { /* kiosk without storage */ } },
};
let memToken = null;
let creating = null;
async function getToken(fresh) {
  if (fresh) {
    store.set(TOKEN_KEY, null);
    memToken = null;
  }
  const have = store.get(TOKEN_KEY) || memToken;
  if (have) return have;
  creating ||= pair()
    .then((token) => {
      memToken = token;
      store.set(TOKEN_KEY, token);
      return token;
    })
    .finally(() => (creating = null));
  return creating;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Shows a pairing code until the host typed it on the host page; resolves to the token. */
async function pair() {
  const box = document.getElementById('pair');
  const code = document.getElementById('pair-code');
  const note = document.getElementById('pair-note');
  for (;;) {
    let p;
    try {
      p = await api('/api/screen/pair', {});
    } catch (e) {
      text(note, 'Cannot get a pairing code right now; trying again…');
      await sleep(e.retryAfterMs || 5000);
      continue;
    }
    text(code, p.code.replace(/^(\d{3})(\d{3})$/, '$1 $2'));
    text(note, 'On the host page, type this code under “Screens”.');
    box.hidden = false;
    const until = Date.now() + (p.expires_in_ms || 600000);
    while (Date.now() < until) {
      await sleep(1500);
      try {
        const r = await api('/api/screen/claim', { claim: p.claim });
        if (r && r.token) {
          box.hidden = true;
          return r.token;
        }
      } catch (e) {
        if (e.code === 'not_found') break; // expired: a new code
      }
    }
  }
}

const client = new Client({ topics: ['now_playing', 'queue', 'room', 'history'], getToken });
const S = client.state;
window.jukebox = client; // for the console (and the browser tests)
const el = {};
for (const id of ['party', 'status', 'np-cover', 'np-title', 'np-artist', 'np-by', 'np-for', 'recent', 'np-bar', 'np-fill', 'np-pos', 'np-dur', 'np-state', 'likes', 'queue', 'queue-empty', 'qr', 'join-url', 'join-alt', 'hearts']) {
  el[id.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = document.getElementById(id);
}
bindStatus(client, el.status);

function renderNowPlaying() {
  const np = S.now_playing;
  const room = S.room;
  if (room) text(el.party, room.name && room.name !== 'jukebox' ? room.name : 'Jukebox');
  cover(el.npCover, np && np.track);
  text(el.npTitle, np ? np.track.title : room ? 'Nothing playing right now' : 'Waiting for the jukebox…');
  text(el.npArtist, np ? [np.track.artist, np.track.album].filter(Boolean).join(' · ') : '');
  // A dedication is the line the room reads: "for Anna, from Sam"; the requester otherwise.
  const dedicated = np && np.for ? dedicationLine(np.for, np.requested_by) : '';
  text(el.npFor, dedicated);
  text(el.npBy, np && np.requested_by && !dedicated ? `Requested by ${np.requested_by}` : '');
  text(el.likes, np ? `♥ ${plural(np.likes, 'like')}` : '');
  tick();
}

function tick() {
  drawProgress(S.now_playing, client, { fill: el.npFill, bar: el.npBar, pos: el.npPos, dur: el.npDur, state: el.npState });
}

function renderQueue() {
  const entries = ordered(S.queue).slice(0, 8);
  const when = etas(S.now_playing, entries, client);
  el.queueEmpty.hidden = entries.length > 0;
  syncList(
    el.queue,
    entries,
    (e) => e.id,
    () => h('li', { class: 'item' }, h('span', { class: 'pos', 'aria-hidden': 'true' }),
      h('div', { class: 'grow' }, h('p', { class: 't' }), h('p', { class: 's' }))),
    (li, e, i) => {
      const [pos, info] = li.children;
      text(pos, i + 1);
      text(info.children[0], e.track.title);
      text(info.children[1], [e.track.artist, e.by ? `requested by ${e.by}` : '', plural(e.votes, 'vote'), fmtIn(when[i])].filter(Boolean).join(' · '));
    }
  );
}

/** The last three plays before what plays now: "what was that song?" from across the room. */
function renderRecent() {
  const np = S.now_playing;
  const plays = ordered(S.history)
    .filter((p) => p.ended !== null && (!np || p.id !== np.play_id))
    .slice(0, 3);
  syncList(
    el.recent,
    plays,
    (p) => p.id,
    () => h('li', { class: 'item' }, h('div', { class: 'grow' }, h('p', { class: 't' }), h('p', { class: 's' }))),
    (li, p) => {
      const [info] = li.children;
      text(info.children[0], p.track.title);
      const who = p.for ? dedicationLine(p.for, p.requested_by) : p.requested_by ? `requested by ${p.requested_by}` : '';
      text(info.children[1], [p.track.artist, who, p.likes ? `♥ ${p.likes}` : ''].filter(Boolean).join(' · '));
    }
  );
}

function heart() {
  if (el.hearts.children.length > 30) return;
  const x = h('span', { class: 'heart', style: `left:${5 + Math.random() * 90}%` }, '♥');
  el.hearts.append(x);
  setTimeout(() => x.remove(), 3600);
}

// How to join: the URL big, the addresses small (for phones without mDNS).
async function loadJoin() {
  try {
    const j = await api('/api/join');
    text(el.joinUrl, (j.url || location.origin + '/').replace(/^https?:\/\//, '').replace(/\/$/, ''));
    // Without mDNS the main URL is an address already: not twice.
    const alts = (j.addresses || []).filter((a) => a !== j.url).map((a) => a.replace(/^https?:\/\//, '').replace(/\/$/, ''));
    text(el.joinAlt, alts.length ? `or ${alts.join(' · ')}` : '');
    renderWifi(j.wifi);
  } catch {
    text(el.joinUrl, location.host);
    text(el.joinAlt, '');
  }
}

// The garden party: with a Wi-Fi to join (`/api/join` `wifi`), two steps side by side, "1. Join
// the Wi-Fi" (its QR code, and its name as text) and "2. Open the jukebox"; otherwise the one
// join QR code. The Wi-Fi QR code is asked for again after a restart (a new password).
const wifiEl = {
  join: document.getElementById('join'),
  box: document.getElementById('wifi'),
  qr: document.getElementById('wifi-qr'),
  ssid: document.getElementById('wifi-ssid'),
  heading: document.getElementById('join-h'),
};
function renderWifi(wifi) {
  const on = Boolean(wifi && wifi.ssid);
  wifiEl.box.hidden = !on;
  wifiEl.join.classList.toggle('two', on);
  text(wifiEl.heading, on ? '2. Open the jukebox' : 'Join from your phone');
  text(wifiEl.ssid, on ? wifi.ssid : '');
  const src = on ? `${wifi.qr || '/api/wifi-qr.svg'}?e=${encodeURIComponent(epoch || '')}` : null;
  if (src && wifiEl.qr.getAttribute('src') !== src) wifiEl.qr.src = src;
  if (!src) wifiEl.qr.removeAttribute('src');
}
wifiEl.qr.onerror = () => setTimeout(() => {
  if (!wifiEl.box.hidden) wifiEl.qr.src = `/api/wifi-qr.svg?r=${Date.now()}`;
}, 5000);

/** Redraws on the next frame, once however many updates arrive before it. */
function render() {
  redraw();
}
const redraw = onNextFrame(draw);

function draw() {
  renderNowPlaying();
  renderQueue();
  renderRecent();
}

let epoch = null;
client.on('update', render);
client.on('status', draw); // at once, with the status text
client.on('welcome', (w) => {
  if (w.epoch !== epoch) {
    // A (re)started jukebox may have new addresses: refresh the text and the QR code.
    if (epoch !== null) el.qr.src = `/api/qr.svg?e=${encodeURIComponent(w.epoch)}`;
    epoch = w.epoch;
    loadJoin();
  }
});
client.on('event', (ev) => {
  const fresh = !ev.ts_ms || client.serverNow() - ev.ts_ms < 60000;
  if (ev.name === 'liked' && fresh) heart();
  if (ev.name === 'track_started' && fresh && ev.data && ev.data.for) {
    toast(`♪ ${ev.data.title} ${dedicationLine(ev.data.for, ev.data.requested_by)}`, 'mine', 10000);
  }
  eventToast(ev, client, null);
});
el.qr.onerror = () => setTimeout(() => (el.qr.src = `/api/qr.svg?r=${Date.now()}`), 5000);

setInterval(() => {
  tick();
  if (S.queue.order.length) renderQueue();
}, 1000);

loadJoin();
client.start();
