// The host page (/host): PIN login, playback, queue moderation, bans, party rules, library.
import { Client, api, ordered } from './client.js';
import { $, h, text, syncList, fmtTime, fmtIn, plural, cover, positionNow, etas, bindStatus, toast, eventToast, refusal, mountSearch, onNextFrame } from './ui.js';

const TOKEN_KEY = 'jukebox.host.token';
const store = {
  get: (k) => { try { return localStorage.getItem(k); } catch { return null; } },
  set: (k, v) => { try { v == null ? localStorage.removeItem(k) : localStorage.setItem(k, v); } catch { /* private mode */ } },
};

const client = new Client({
  topics: ['now_playing', 'queue', 'me', 'room', 'admin', 'rooms'],
  // No token: stop and show the login (a refused one is cleared in the 'unauthorized' handler).
  getToken: async () => store.get(TOKEN_KEY),
});
const S = client.state;
window.jukebox = client; // for the console (and the browser tests)

const el = {};
for (const id of ['status', 'login', 'login-form', 'login-error', 'pin', 'panel', 'np-cover', 'np-title', 'np-artist', 'np-by', 'np-stats', 'seek', 'np-pos', 'np-dur', 'np-state', 'play', 'pause', 'skip', 'volume', 'volume-out', 'queue', 'qcount', 'queue-empty', 'requests-paused', 'snapcast-control', 'rules', 'rules-note', 'sound', 'sound-note', 'sound-now', 'sound-pass', 'underruns', 'guests', 'guests-more', 'gcount', 'pair', 'pair-code', 'pair-note', 'screens', 'say', 'say-text', 'audio', 'libsize', 'scan-bar', 'scan-note', 'rescan', 'export-m3u', 'export-csv', 'logout', 'login-warning', 'host-sessions', 'logout-all', 'rooms-card', 'rooms', 'rooms-note', 'content', 'content-note', 'autodj-blocked']) {
  el[id.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = document.getElementById(id);
}

bindStatus(client, el.status);

// --- login ----------------------------------------------------------------------------------

function showLogin(msg) {
  el.login.hidden = false;
  el.panel.hidden = true;
  text(el.loginError, msg || '');
  el.pin.focus();
}

function showPanel() {
  el.login.hidden = true;
  el.panel.hidden = false;
}

el.loginForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const btn = el.loginForm.querySelector('button');
  btn.disabled = true;
  try {
    const r = await api('/api/host/login', { pin: el.pin.value.trim() });
    store.set(TOKEN_KEY, r.token);
    el.pin.value = '';
    text(el.loginError, '');
    showPanel();
    client.start();
  } catch (e) {
    text(el.loginError,
      e.code === 'unauthorized' ? 'That PIN is not right.'
        : e.code === 'rate_limited' ? `Too many tries. Wait ${Math.ceil((e.retryAfterMs || 60000) / 1000)} s.`
          : `Could not log in (${e.message}).`);
  } finally {
    btn.disabled = false;
  }
});

el.logout.addEventListener('click', async () => {
  // End this login on the jukebox too, so the token is worth nothing if the phone is lost.
  if (client.live) await client.command('logout').catch(() => {});
  client.stop();
  store.set(TOKEN_KEY, null);
  showLogin('');
});

client.on('unauthorized', () => {
  client.stop();
  store.set(TOKEN_KEY, null);
  showLogin('Please log in again.');
});

// --- commands -------------------------------------------------------------------------------

async function run(cmd, fields, btn, what) {
  if (btn) btn.disabled = true;
  try {
    return await client.command(cmd, fields);
  } catch (e) {
    toast(refusal(e, { room: S.room, me: S.me, what }), 'error', 6000);
  } finally {
    render();
  }
}

el.play.addEventListener('click', () => run('play', {}, el.play));
el.pause.addEventListener('click', () => run('pause', {}, el.pause));
el.skip.addEventListener('click', () => {
  const np = S.now_playing;
  run('skip', np ? { play_id: np.play_id } : {}, el.skip);
});

let seeking = false;
el.seek.addEventListener('input', () => {
  seeking = true;
  const np = S.now_playing;
  if (np) text(el.npPos, fmtTime((el.seek.value / 1000) * np.track.duration_ms));
});
el.seek.addEventListener('change', async () => {
  const np = S.now_playing;
  if (np) await run('seek', { position_ms: Math.round((el.seek.value / 1000) * np.track.duration_ms) });
  seeking = false;
});

let volTimer = 0;
el.volume.addEventListener('input', () => {
  text(el.volumeOut, el.volume.value);
  clearTimeout(volTimer);
  volTimer = setTimeout(() => run('set_volume', { volume: +el.volume.value }), 120);
});

// --- now playing ----------------------------------------------------------------------------

function renderNowPlaying() {
  const np = S.now_playing;
  const room = S.room;
  const live = client.live;
  cover(el.npCover, np && np.track);
  text(el.npTitle, np ? np.track.title : 'Nothing playing');
  text(el.npArtist, np ? [np.track.artist, np.track.album].filter(Boolean).join(' · ') : '');
  text(el.npBy, np ? (np.requested_by ? `Requested by ${np.requested_by}${np.for ? ` for ${np.for}` : ''}` : np.auto ? 'Auto-DJ pick' : '') : '');
  text(el.npStats, np ? `${plural(np.likes, 'like')} · ${np.skip_votes} of ${np.skip_needed} skip votes` : '');
  el.play.disabled = !live || (np && !np.paused);
  el.pause.disabled = !live || !np || np.paused;
  el.skip.disabled = !live || !np;
  el.seek.disabled = !live || !np;
  el.volume.disabled = !live;
  if (room && document.activeElement !== el.volume) {
    el.volume.max = room.max_volume;
    el.volume.value = room.volume;
    text(el.volumeOut, room.volume);
  }
  tick();
}

function tick() {
  const np = S.now_playing;
  const dur = np ? np.track.duration_ms : 0;
  const pos = positionNow(np, client);
  if (!seeking) {
    el.seek.value = dur ? Math.round((pos / dur) * 1000) : 0;
    text(el.npPos, fmtTime(pos));
  }
  text(el.npDur, fmtTime(dur));
  text(el.npState, np && np.paused ? 'Paused' : '');
}

// --- queue ----------------------------------------------------------------------------------

/** Queue entry id -> the guest who requested it, from the admin topic's pending_requests. */
function requesters() {
  const by = new Map();
  for (const g of S.admin.items.values()) for (const id of g.pending_requests) by.set(id, g);
  return by;
}

const guestLabel = (g) => g.name || 'Guest ' + g.id.replace(/^g_/, '');

function renderQueue() {
  const entries = ordered(S.queue);
  const when = etas(S.now_playing, entries, client);
  const live = client.live;
  const who = requesters();
  el.queueEmpty.hidden = entries.length > 0;
  text(el.qcount, entries.length ? `(${entries.length})` : '');
  syncList(
    el.queue,
    entries,
    (e) => e.id,
    (e) => {
      const li = h('li', { class: 'item' },
        h('span', { class: 'pos', 'aria-hidden': 'true' }),
        h('div', { class: 'grow' }, h('p', { class: 't' }), h('p', { class: 's' }), h('p', { class: 'by' })),
        h('div', { class: 'tools' },
          h('button', { class: 'btn small ghost', type: 'button', 'aria-label': 'Move up', onclick: () => move(li, -1) }, '↑'),
          h('button', { class: 'btn small ghost', type: 'button', 'aria-label': 'Move down', onclick: () => move(li, +1) }, '↓'),
          h('button', { class: 'btn small danger', type: 'button', onclick: () => run('remove', { entry_id: li._entry.id }, null, 'vote') }, 'Remove'),
          h('button', { class: 'btn small danger', type: 'button', onclick: () => ban(li._guest, true) }, 'Ban')));
      return li;
    },
    (li, e, i) => {
      li._entry = e;
      const g = who.get(e.id) || null;
      li._guest = g;
      const [pos, info, tools] = li.children;
      text(pos, i + 1);
      text(info.children[0], e.track.title);
      text(info.children[1], `${[e.track.artist, fmtTime(e.track.duration_ms)].filter(Boolean).join(' · ')} · ${plural(e.votes, 'vote')}${e.pinned ? ' · pinned' : ''}`);
      text(info.children[2], `${e.by ? `Requested by ${e.by}` : 'Requested'}${e.for ? ` for ${e.for}` : ''} · plays ${fmtIn(when[i])}`);
      const [up, down, remove, banBtn] = tools.children;
      up.disabled = !live || i === 0;
      down.disabled = !live || i === entries.length - 1;
      remove.disabled = !live;
      banBtn.hidden = !g || g.role === 'host';
      banBtn.disabled = !live || !g || g.banned;
    }
  );
}

function move(li, delta) {
  const order = ordered(S.queue).map((e) => e.id);
  const i = order.indexOf(li._entry.id);
  if (i < 0) return;
  run('move', { entry_id: li._entry.id, to: Math.max(0, i + delta) });
}

async function ban(g, on) {
  if (!g) return;
  if (on && !confirm(`Ban ${guestLabel(g)}? Their requests leave the queue and their votes stop counting.`)) return;
  await run('ban', { guest_id: g.id, on });
  toast(on ? `${guestLabel(g)} is banned` : `${guestLabel(g)} may take part again`);
}

// --- guests (admin topic) -------------------------------------------------------------------

const GUESTS_SHOWN = 100;
function renderGuests() {
  renderScreens();
  const guests = ordered(S.admin).filter((g) => g.role !== 'screen');
  const live = client.live;
  const online = guests.filter((g) => g.connected).length;
  text(el.gcount, guests.length ? `(${online} connected, ${guests.length} in all)` : '');
  // Who matters for moderation first: with songs waiting, connected, banned; newest first.
  const rank = (g) => (g.pending_requests.length ? 4 : 0) + (g.connected ? 2 : 0) + (g.banned ? 1 : 0);
  const sorted = guests.slice().reverse().sort((a, b) => rank(b) - rank(a));
  const shown = sorted.slice(0, GUESTS_SHOWN);
  text(el.guestsMore, sorted.length > shown.length ? `and ${sorted.length - shown.length} more` : '');
  syncList(
    el.guests,
    shown,
    (g) => g.id,
    (g) => {
      const li = h('li', { class: 'item' },
        h('div', { class: 'grow' }, h('p', { class: 't' }, h('span', { class: 'dot' }), h('span')), h('p', { class: 's' })),
        h('button', { class: 'btn small danger', type: 'button', onclick: () => ban(li._g, !li._g.banned) }, 'Ban'));
      return li;
    },
    (li, g) => {
      li._g = g;
      const [info, btn] = li.children;
      li.classList.toggle('banned', g.banned);
      info.children[0].children[0].classList.toggle('on', g.connected);
      text(info.children[0].children[1], guestLabel(g) + (g.role === 'host' ? ' (host)' : ''));
      text(info.children[1], [g.connected ? 'connected' : 'away', `${plural(g.pending_requests.length, 'song')} waiting`, `${g.played_tonight} played tonight`, g.banned ? 'banned' : ''].filter(Boolean).join(' · '));
      btn.hidden = g.role === 'host';
      text(btn, g.banned ? 'Unban' : 'Ban');
      btn.disabled = !live;
    }
  );
}

// --- screens: the TV shows a code, the host types it here -----------------------------------

el.pair.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const code = el.pairCode.value.replace(/\D/g, '');
  if (!code) return;
  const r = await run('pair_screen', { code }, el.pair.querySelector('button'), 'pairing');
  if (r) {
    el.pairCode.value = '';
    text(el.pairNote, 'Paired: the TV shows the party in a moment.');
  }
});

function renderScreens() {
  const screens = ordered(S.admin).filter((g) => g.role === 'screen');
  const live = client.live;
  syncList(
    el.screens,
    screens,
    (g) => g.id,
    (g) => {
      const li = h('li', { class: 'item' },
        h('div', { class: 'grow' }, h('p', { class: 't' }, h('span', { class: 'dot' }), h('span'))),
        h('button', { class: 'btn small danger', type: 'button', onclick: () => removeScreen(li._g) }, 'Remove'));
      return li;
    },
    (li, g) => {
      li._g = g;
      const [info, btn] = li.children;
      info.children[0].children[0].classList.toggle('on', g.connected);
      text(info.children[0].children[1], `${g.name} · ${g.connected ? 'showing the party' : 'off'}`);
      btn.disabled = !live;
    }
  );
}

async function removeScreen(g) {
  if (!confirm(`Remove ${g.name}? It has to be paired again to show the party.`)) return;
  await run('remove_screen', { guest_id: g.id });
}

// --- rooms: snapserver's clients (the rooms topic) --------------------------------------------

function roomVolume(li) {
  clearTimeout(li._timer);
  li._timer = setTimeout(() => run('room_volume', { room: li._r.id, volume: +li._slider.value }, null, 'rooms'), 120);
}

function renderRooms() {
  const c = S.rooms;
  const link = c.snapserver;
  // Shown only when the jukebox is connected to snapserver's control port.
  el.roomsCard.hidden = !link;
  if (!link) return;
  const live = client.live;
  const rooms = ordered(c);
  text(el.roomsNote,
    !link.reachable && link.error ? `snapserver unreachable at ${link.address} (${link.error}); retrying…`
      : !link.reachable ? `Connecting to snapserver at ${link.address}…`
        : rooms.length ? '' : 'No rooms yet: start a snapclient in each room.');
  el.roomsNote.style.color = link.reachable ? '' : 'var(--bad)';
  syncList(
    el.rooms,
    rooms,
    (r) => r.id,
    (r) => {
      const slider = h('input', { type: 'range', min: '0', max: '100', step: '1', class: 'grow' });
      const li = h('li', { class: 'item room' },
        h('div', { class: 'grow' },
          h('p', { class: 't' }, h('span', { class: 'dot' }), h('span')),
          h('p', { class: 's' }),
          slider),
        h('button', { class: 'btn small ghost', type: 'button', onclick: () => run('room_mute', { room: li._r.id, on: !li._r.muted }, null, 'rooms') }, 'Mute'));
      li._slider = slider;
      slider.addEventListener('input', () => roomVolume(li));
      return li;
    },
    (li, r) => {
      li._r = r;
      const [info, mute] = li.children;
      info.children[0].children[0].classList.toggle('on', r.connected);
      text(info.children[0].children[1], r.name);
      text(info.children[1], [r.connected ? 'connected' : 'not connected', r.muted ? 'muted' : `volume ${r.volume}`].join(' · '));
      li._slider.setAttribute('aria-label', `Volume of ${r.name}`);
      if (document.activeElement !== li._slider) li._slider.value = r.volume;
      li._slider.disabled = !live || !link.reachable;
      text(mute, r.muted ? 'Unmute' : 'Mute');
      mute.setAttribute('aria-label', `${r.muted ? 'Unmute' : 'Mute'} ${r.name}`);
      mute.disabled = !live || !link.reachable;
    }
  );
}

// --- party rules ----------------------------------------------------------------------------

const RULES = ['request_limit', 'no_repeat_minutes', 'artist_spacing', 'skip_min_votes', 'skip_percent', 'max_volume'];
let rulesDirty = false;
el.rules.addEventListener('input', () => (rulesDirty = true));
el.rules.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const patch = {};
  for (const k of RULES) {
    const v = el.rules.elements[k].value;
    if (v !== '' && S.room && +v !== S.room[k]) patch[k] = +v;
  }
  if (!Object.keys(patch).length) {
    rulesDirty = false;
    text(el.rulesNote, 'Nothing changed.');
    return;
  }
  const r = await run('settings', patch, el.rules.querySelector('button'));
  if (r) {
    rulesDirty = false;
    text(el.rulesNote, 'Saved.');
    render();
  }
});
el.requestsPaused.addEventListener('change', () => run('settings', { requests_paused: el.requestsPaused.checked }));
el.snapcastControl.addEventListener('change', () => run('settings', { snapcast_control: el.snapcastControl.checked }));

function renderRules() {
  const room = S.room;
  if (!room) return;
  const live = client.live;
  el.requestsPaused.checked = room.requests_paused;
  el.requestsPaused.disabled = !live;
  el.snapcastControl.checked = !!room.snapcast_control;
  el.snapcastControl.disabled = !live;
  if (!rulesDirty) for (const k of RULES) el.rules.elements[k].value = room[k];
  el.rules.querySelector('button').disabled = !live;
}

// --- content rules: what may play tonight ---------------------------------------------------

const lines = (v) => v.split('\n').map((l) => l.trim()).filter(Boolean);
const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
let contentDirty = false;
el.content.addEventListener('input', () => (contentDirty = true));
el.content.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const room = S.room;
  if (!room) return;
  const f = el.content.elements;
  const patch = {};
  for (const k of ['blocked_artists', 'blocked_words']) {
    const v = lines(f[k].value);
    if (!sameList(v, room[k] || [])) patch[k] = v;
  }
  const minutes = f.max_track_minutes.value;
  if (minutes !== '' && +minutes !== room.max_track_minutes) patch.max_track_minutes = +minutes;
  const pool = f.pool.value.trim() || null;
  if (pool !== (room.pool ?? null)) patch.pool = pool;
  if (!Object.keys(patch).length) {
    contentDirty = false;
    text(el.contentNote, 'Nothing changed.');
    return;
  }
  const r = await run('settings', patch, el.content.querySelector('button'));
  if (r) {
    contentDirty = false;
    text(el.contentNote, 'Saved.');
    render();
  }
});

function renderContent() {
  const room = S.room;
  if (!room) return;
  const f = el.content.elements;
  if (!contentDirty) {
    f.blocked_artists.value = (room.blocked_artists || []).join('\n');
    f.blocked_words.value = (room.blocked_words || []).join('\n');
    f.max_track_minutes.value = room.max_track_minutes ?? 0;
    f.pool.value = room.pool || '';
  }
  for (const x of f) x.disabled = !client.live;
  el.autodjBlocked.hidden = !room.autodj_blocked;
  text(el.autodjBlocked, room.autodj_blocked
    ? `The jukebox has nothing to pick: no song of the library passes these rules${room.pool ? ` (is “${room.pool}” a folder of the music folder?)` : ''}. Only requests play until you change them.`
    : '');
}

// --- sound: levelling, crossfade, and how what plays is levelled ------------------------------

const SOUND = { normalize: String, loudness_lufs: Number, crossfade_s: Number };
let soundDirty = false;
el.sound.addEventListener('input', () => (soundDirty = true));
el.sound.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const patch = {};
  for (const [k, as] of Object.entries(SOUND)) {
    const v = el.sound.elements[k].value;
    if (v !== '' && S.room && as(v) !== S.room[k]) patch[k] = as(v);
  }
  if (!Object.keys(patch).length) {
    soundDirty = false;
    text(el.soundNote, 'Nothing changed.');
    return;
  }
  const r = await run('settings', patch, el.sound.querySelector('button'));
  if (r) {
    soundDirty = false;
    text(el.soundNote, 'Saved.');
    render();
  }
});

const num = (x) => x.toLocaleString('en');
const signed = (x) => (x > 0 ? '+' : x < 0 ? '−' : '') + Math.abs(x).toFixed(1);
const SOURCE = { measured: 'measured', tags: 'from its tags', estimated: 'estimated: not measured yet', off: 'levelling off' };

function renderSound() {
  const room = S.room;
  if (!room) return;
  const live = client.live;
  if (!soundDirty) for (const k of Object.keys(SOUND)) el.sound.elements[k].value = room[k];
  for (const k of Object.keys(SOUND)) el.sound.elements[k].disabled = !live;
  el.sound.querySelector('button').disabled = !live;
  const snd = S.admin.sound;
  const p = snd && snd.playing;
  const np = S.now_playing;
  if (p && np && p.play_id === np.play_id) {
    const lufs = p.track_lufs == null ? 'loudness unknown' : `${signed(p.track_lufs)} LUFS`;
    text(el.soundNow, `${lufs}, ${signed(p.gain_db)} dB${p.album ? ' (album)' : ''} · ${SOURCE[p.source] || p.source}`);
  } else {
    text(el.soundNow, np ? '…' : 'nothing playing');
  }
  const failed = snd && snd.failed ? ` (${num(snd.failed)} cannot be)` : '';
  text(el.soundPass, snd && snd.total != null ? `${num(snd.measured)} of ${num(snd.total)} ${snd.total === 1 ? 'track' : 'tracks'} measured${failed}` : 'not started yet');
  const under = snd ? snd.underruns : health && health.audio ? health.audio.underruns : null;
  text(el.underruns, under == null ? '…' : under === 0 ? 'none' : plural(under, 'dropout'));
  el.underruns.style.color = under > 0 ? 'var(--bad)' : '';
}

// --- announce -------------------------------------------------------------------------------

el.say.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const t = el.sayText.value.trim();
  if (!t) return;
  const r = await run('announce', { text: t }, el.say.querySelector('button'));
  if (r) el.sayText.value = '';
});

// --- host logins and failed logins -----------------------------------------------------------

let hostSessions = null;
async function loadSessions() {
  if (!client.live) return;
  try {
    hostSessions = await client.command('host_sessions');
  } catch {
    return;
  }
  renderSessions();
}

function ago(ms) {
  const min = Math.round((Date.now() - ms) / 60000);
  if (min < 1) return 'just now';
  if (min < 60) return `${min} min ago`;
  return `${Math.floor(min / 60)} h ${min % 60} min ago`;
}

const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

function renderSessions() {
  const d = hostSessions;
  if (!d) return;
  const f = d.failed_logins;
  const parts = [];
  if (f.wrong_last_minute > 0) parts.push(`${plural(f.wrong_last_minute, 'wrong PIN')} in the last minute`);
  else if (f.wrong_last_hour > 0) parts.push(`${plural(f.wrong_last_hour, 'wrong PIN')} in the last hour`);
  if (f.refused_last_minute > 0) parts.push(`${plural(f.refused_last_minute, 'login')} refused in the last minute`);
  if (f.locked_ms > 0) parts.push(`new logins wait ${Math.ceil(f.locked_ms / 1000)} s`);
  el.loginWarning.hidden = parts.length === 0;
  text(el.loginWarning, parts.length ? `Someone may be guessing the PIN: ${parts.join(' · ')}.` : '');
  el.loginWarning.style.color = parts.length ? 'var(--bad)' : '';
  syncList(
    el.hostSessions,
    d.sessions,
    (s) => s.guest_id,
    (s) => {
      const li = h('li', { class: 'item' },
        h('div', { class: 'grow' }, h('p', { class: 't' }), h('p', { class: 's' })),
        h('button', { class: 'btn small danger', type: 'button', onclick: () => logoutOne(li._s) }, 'Log out'));
      return li;
    },
    (li, s) => {
      li._s = s;
      const [info, btn] = li.children;
      text(info.children[0], `${s.current ? 'This phone' : 'Host'} · from ${s.from}`);
      text(info.children[1], `logged in at ${clock(s.created_ms)} · last seen ${ago(s.last_seen_ms)} · until ${clock(s.expires_ms)}`);
      btn.disabled = !client.live;
    }
  );
}

async function logoutOne(s) {
  if (s.current) {
    el.logout.click();
    return;
  }
  if (await run('logout', { guest_id: s.guest_id })) loadSessions();
}

el.logoutAll.addEventListener('click', async () => {
  if (!confirm('Log out every host, this phone included?')) return;
  await run('logout_all', {}, el.logoutAll);
  // The jukebox closes this socket (4401): the login shows again.
});

// --- the jukebox: audio, library, export ----------------------------------------------------

let health = null;
async function loadHealth() {
  try {
    health = await api('/healthz');
  } catch {
    health = null;
  }
  renderSystem();
}

function renderSystem() {
  const room = S.room;
  const live = client.live;
  if (room) {
    const out = health && health.audio ? health.audio.output : '';
    text(el.audio, room.audio_ok ? `OK${out ? ' · ' + out : ''}` : `Missing: ${out || 'the chosen output is not there'} — nothing is heard`);
    el.audio.style.color = room.audio_ok ? '' : 'var(--bad)';
    text(el.libsize, plural(room.library_size, 'song'));
    const sc = room.scan;
    if (sc && !sc.done) {
      if (sc.files > 0 && sc.read > 0) {
        el.scanBar.max = sc.files;
        el.scanBar.value = Math.min(sc.read, sc.files);
      } else el.scanBar.removeAttribute('value'); // not known yet: indeterminate
      text(el.scanNote, `Scanning… ${plural(sc.files, 'file')} found, ${sc.read} read`);
    } else {
      el.scanBar.max = 1;
      el.scanBar.value = 1;
      text(el.scanNote, sc ? `Last scan: ${plural(sc.files, 'file')}, ${sc.read} new or changed` : '');
    }
    el.rescan.disabled = !live || !!(sc && !sc.done);
  }
}

el.rescan.addEventListener('click', () => run('rescan', {}, el.rescan).then(() => setTimeout(loadHealth, 500)));

async function download(format) {
  const btn = format === 'csv' ? el.exportCsv : el.exportM3u;
  btn.disabled = true;
  try {
    const res = await fetch(`/api/host/export?format=${format}`, {
      headers: { Authorization: 'Bearer ' + store.get(TOKEN_KEY) },
      cache: 'no-store',
    });
    if (!res.ok) {
      let msg = res.statusText;
      try {
        msg = (await res.json()).message || msg;
      } catch { /* not JSON */ }
      throw new Error(msg);
    }
    const blob = await res.blob();
    const cd = res.headers.get('Content-Disposition') || '';
    const m = /filename="?([^";]+)"?/.exec(cd);
    const name = m ? m[1] : `jukebox-${new Date().toISOString().slice(0, 10)}.${format}`;
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    toast(`Could not export: ${e.message}`, 'error', 6000);
  } finally {
    btn.disabled = false;
  }
}
el.exportM3u.addEventListener('click', () => download('m3u'));
el.exportCsv.addEventListener('click', () => download('csv'));

// --- wiring ---------------------------------------------------------------------------------

/** Redraws on the next frame, once however many updates arrive before it. */
function render() {
  redraw();
}
const redraw = onNextFrame(draw);

function draw() {
  renderNowPlaying();
  renderQueue();
  renderGuests();
  renderRooms();
  renderRules();
  renderContent();
  renderSound();
  renderSystem();
  search.draw();
}

const search = mountSearch(client, { input: $('#q'), results: $('#results'), note: $('#search-note'), more: $('#more') },
  () => ({ room: S.room, me: S.me, queue: ordered(S.queue), np: S.now_playing }));

client.on('update', render);
client.on('status', draw); // at once: no tap on a dead button while it says Offline
client.on('welcome', (w) => {
  if (w.role !== 'host') {
    // A guest token in the host's place: log in properly.
    client.stop();
    store.set(TOKEN_KEY, null);
    showLogin('Please log in with the host PIN.');
    return;
  }
  showPanel();
  loadHealth();
  loadSessions();
});
// What this host login did itself is not toasted; another host's (or a guest's) actions are.
client.on('event', (ev) => eventToast(ev, client, S.me ? S.me.guest_id : null));

setInterval(() => {
  tick();
  if (document.visibilityState === 'visible' && client.live) renderQueue();
}, 1000);
setInterval(() => client.live && document.visibilityState === 'visible' && loadHealth(), 30000);
setInterval(() => client.live && document.visibilityState === 'visible' && loadSessions(), 15000);

if (store.get(TOKEN_KEY)) {
  showPanel();
  client.start();
} else {
  showLogin('');
}
