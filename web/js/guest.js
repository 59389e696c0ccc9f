// The guest page (/): now playing, like, vote to skip, search and request, the queue.
import { Client, api, ordered } from './client.js';
import { $, h, text, syncList, fmtTime, fmtIn, plural, cover, positionNow, etas, bindStatus, toast, eventToast, refusal, mountSearch, drawProgress, onNextFrame, dedicationLine, requestableNow } from './ui.js';

const TOKEN_KEY = 'jukebox.guest.token';
const NAME_KEY = 'jukebox.guest.name';
const store = {
  get: (k) => { try { return localStorage.getItem(k); } catch { return null; } },
  set: (k, v) => { try { v == null ? localStorage.removeItem(k) : localStorage.setItem(k, v); } catch { /* private mode */ } },
};

let creating = null;
async function getToken(fresh) {
  if (fresh) store.set(TOKEN_KEY, null);
  const have = store.get(TOKEN_KEY);
  if (have) return have;
  // One phone is one guest: never ask for two tokens at once.
  creating ||= api('/api/guest', { name: store.get(NAME_KEY) || null })
    .then((r) => {
      store.set(TOKEN_KEY, r.token);
      return r.token;
    })
    .finally(() => (creating = null));
  return creating;
}

const client = new Client({ topics: ['now_playing', 'queue', 'me', 'room', 'history'], getToken });
const S = client.state;
window.jukebox = client; // for the console (and the browser tests)

const el = {
  party: $('#party'),
  status: $('#status'),
  cover: $('#np-cover'),
  title: $('#np-title'),
  artist: $('#np-artist'),
  by: $('#np-by'),
  bar: $('#np-bar'),
  fill: $('#np-fill'),
  pos: $('#np-pos'),
  dur: $('#np-dur'),
  pstate: $('#np-state'),
  like: $('#like'),
  likes: $('#likes'),
  skip: $('#skip'),
  skips: $('#skips'),
  queue: $('#queue'),
  qcount: $('#qcount'),
  qempty: $('#queue-empty'),
  meNote: $('#me-note'),
  nameForm: $('#name-form'),
  name: $('#name'),
  dedication: $('#for'),
  history: $('#history'),
  hempty: $('#history-empty'),
};

bindStatus(client, el.status);

const queueEntries = () => ordered(S.queue);
const historyItems = () => ordered(S.history);
const ctx = () => ({ room: S.room, me: S.me, queue: queueEntries(), np: S.now_playing, history: historyItems() });
const search = mountSearch(client, { input: $('#q'), results: $('#results'), note: $('#search-note'), more: $('#more'), dedication: el.dedication }, ctx);

/** This guest's id: what tells me apart from a guest with the same name. */
const myId = () => (S.me ? S.me.guest_id : null);

async function act(btn, cmd, fields, what) {
  btn.disabled = true;
  try {
    await client.command(cmd, fields);
  } catch (e) {
    toast(refusal(e, { ...ctx(), what }), 'error', 6000);
  }
  render();
}

el.like.addEventListener('click', () => {
  const np = S.now_playing;
  if (!np) return;
  const liked = S.me && S.me.liked.includes(np.play_id);
  act(el.like, 'like', { play_id: np.play_id, on: !liked });
});

el.skip.addEventListener('click', () => {
  const np = S.now_playing;
  if (np) act(el.skip, 'vote_skip', { play_id: np.play_id });
});

// --- now playing ----------------------------------------------------------------------------

let marked = false;
function renderNowPlaying() {
  const np = S.now_playing;
  const me = S.me;
  const live = client.live;
  const banned = !!(me && me.banned);
  document.body.classList.toggle('idle', !np);
  if (!np) {
    cover(el.cover, null);
    text(el.title, S.room ? 'Nothing playing right now' : 'Waiting for the jukebox…');
    text(el.artist, '');
    text(el.by, '');
    text(el.likes, '');
    text(el.skips, '');
  } else {
    const t = np.track;
    cover(el.cover, t);
    text(el.title, t.title);
    text(el.artist, [t.artist, t.album].filter(Boolean).join(' · '));
    const mine = !!np.requested_by_id && np.requested_by_id === myId();
    const who = np.requested_by ? (mine ? 'Your request' : `Requested by ${np.requested_by}`) : np.auto ? 'Picked by the jukebox' : '';
    text(el.by, [who, np.for ? `for ${np.for}` : ''].filter(Boolean).join(' · '));
    text(el.likes, plural(np.likes, 'like'));
    text(el.skips, `${np.skip_votes} of ${np.skip_needed} to skip`);
    if (!marked) {
      marked = true;
      performance.mark('jukebox-now-playing');
    }
  }
  const liked = !!(np && me && me.liked.includes(np.play_id));
  const voted = !!(np && me && me.skip_voted.includes(np.play_id));
  el.like.setAttribute('aria-pressed', liked);
  el.skip.setAttribute('aria-pressed', voted);
  el.like.disabled = !live || !np || banned;
  el.skip.disabled = !live || !np || banned || voted;
  tick();
}

function tick() {
  drawProgress(S.now_playing, client, { fill: el.fill, bar: el.bar, pos: el.pos, dur: el.dur, state: el.pstate });
}

// --- queue ----------------------------------------------------------------------------------

function renderQueue() {
  const entries = queueEntries();
  const me = S.me;
  const mine = new Set(me ? me.pending_requests : []);
  const voted = new Set(me ? me.voted : []);
  const when = etas(S.now_playing, entries, client);
  const live = client.live;
  const banned = !!(me && me.banned);
  el.qempty.hidden = entries.length > 0;
  text(el.qcount, entries.length ? `(${entries.length})` : '');
  syncList(
    el.queue,
    entries,
    (e) => e.id,
    (e) => {
      const li = h('li', { class: 'item' },
        h('span', { class: 'pos', 'aria-hidden': 'true' }),
        h('div', { class: 'grow' }, h('p', { class: 't' }), h('p', { class: 's' }), h('p', { class: 'by' })),
        h('div', { class: 'vote' }, h('span', { class: 'count' }),
          h('button', { class: 'btn small', type: 'button', 'aria-pressed': 'false', onclick: () => upvote(li) }, 'Up-vote')));
      return li;
    },
    (li, e, i) => {
      li._entry = e;
      const own = mine.has(e.id);
      const has = voted.has(e.id);
      li.classList.toggle('mine', own);
      const [pos, info, vote] = li.children;
      text(pos, i + 1);
      text(info.children[0], e.track.title);
      text(info.children[1], [e.track.artist, fmtTime(e.track.duration_ms)].filter(Boolean).join(' · '));
      const who = (own ? 'Your request' : e.by ? `Requested by ${e.by}` : 'Requested') + (e.for ? ` for ${e.for}` : '');
      text(info.children[2], `${who} · ${i === 0 ? (when[0] < 60000 ? 'plays next' : `plays next, ${fmtIn(when[0])}`) : `plays ${fmtIn(when[i])}`}`);
      text(vote.children[0], plural(e.votes, 'vote'));
      const btn = vote.children[1];
      btn.setAttribute('aria-pressed', has);
      btn.disabled = !live || banned || own;
      btn.title = own ? 'Your own request already has your vote' : '';
    }
  );
}

function upvote(li) {
  const e = li._entry;
  const has = S.me && S.me.voted.includes(e.id);
  act(li.querySelector('button'), 'vote', { entry_id: e.id, on: !has }, 'vote');
}

// --- recently played --------------------------------------------------------------------------

const ENDED = { finished: '', skipped: 'skipped', error: 'could not be played' };

function renderHistory() {
  const items = historyItems();
  const c = ctx();
  const now = client.serverNow();
  const live = client.live;
  el.hempty.hidden = items.length > 0;
  syncList(
    el.history,
    items,
    (p) => p.id,
    (p) => {
      const li = h('li', { class: 'item' },
        h('div', { class: 'grow' }, h('p', { class: 't' }), h('p', { class: 's' }), h('p', { class: 'by' }), h('p', { class: 'why' })),
        h('button', { class: 'btn small', type: 'button', onclick: () => requestAgain(li) }, 'Request'));
      return li;
    },
    (li, p) => {
      li._play = p;
      const [info, btn] = li.children;
      text(info.children[0], p.track.title);
      const when = p.ended === null ? 'playing now' : ENDED[p.ended] || '';
      text(info.children[1], [p.track.artist, plural(p.likes, 'like'), when].filter(Boolean).join(' · '));
      const mine = !!p.requested_by_id && p.requested_by_id === myId();
      const who = p.requested_by ? (mine ? 'Your request' : `Requested by ${p.requested_by}`) : 'Picked by the jukebox';
      text(info.children[2], [who, p.for ? `for ${p.for}` : ''].filter(Boolean).join(' · '));
      const why = requestableNow(p, c, now);
      text(info.children[3], why);
      btn.disabled = !live || !!why;
      btn.title = why;
    }
  );
}

async function requestAgain(li) {
  const p = li._play;
  const btn = li.querySelector('button');
  btn.disabled = true;
  try {
    const d = await client.command('request', { track_id: p.track.id });
    toast(d.upvoted ? `Already in the queue: your vote moves “${p.track.title}” up` : `Requested “${p.track.title}”`, 'mine');
  } catch (e) {
    toast(refusal(e, { ...ctx(), track: p.track }), 'error', 6000);
  }
  render();
}

// --- me -------------------------------------------------------------------------------------

function renderMe() {
  const me = S.me;
  const room = S.room;
  if (room) {
    text(el.party, room.name && room.name !== 'jukebox' ? room.name : 'Jukebox');
    document.title = room.name && room.name !== 'jukebox' ? `${room.name} · Jukebox` : 'Jukebox';
  }
  let note = '';
  if (me && me.banned) note = 'The host has removed you from this party. You can still see what plays.';
  else if (room && room.requests_paused) note = 'The host has paused requests for now.';
  else if (me && room) {
    note = me.requests_left > 0
      ? `You can request ${plural(me.requests_left, 'more song')}.`
      : `You have ${plural(room.request_limit, 'song')} waiting: request more when one has played.`;
  }
  text(el.meNote, note);
  if (me && document.activeElement !== el.name && !el.name.dataset.dirty) {
    el.name.value = store.get(NAME_KEY) ?? me.name;
  }
}

el.name.addEventListener('input', () => (el.name.dataset.dirty = '1'));
el.nameForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = el.name.value.trim();
  store.set(NAME_KEY, name);
  delete el.name.dataset.dirty;
  el.name.blur();
  syncName(true);
});

/** The name lives on this phone and is sent whenever the jukebox's copy differs. */
async function syncName(say) {
  const want = store.get(NAME_KEY);
  if (want == null || !S.me || S.me.name === want) {
    if (say && want != null) toast(want ? `Your name is ${want}` : 'Your name is cleared');
    return;
  }
  if (!client.live) {
    if (say) toast('Saved on this phone; it will reach the jukebox when it is back');
    return;
  }
  try {
    await client.command('set_name', { name: want });
    if (say) toast(want ? `Your name is ${want}` : 'Your name is cleared');
  } catch (e) {
    toast(refusal(e, ctx()), 'error', 6000);
  }
}

// --- wiring ---------------------------------------------------------------------------------

/** Redraws on the next frame, once however many updates arrive before it. */
function render() {
  redraw();
}
const redraw = onNextFrame(draw);

function draw() {
  renderNowPlaying();
  renderQueue();
  renderHistory();
  renderMe();
  search.draw();
}

let synced = false;
client.on('update', (topic) => {
  if (topic === 'me' && !synced) {
    synced = true;
    syncName(false);
  }
  render();
});
client.on('status', draw); // at once: no tap on a dead button while it says Offline
client.on('welcome', () => (synced = false));
client.on('event', (ev) => {
  // A like of my own song comes again as your_request_liked: one toast is enough.
  const np = S.now_playing;
  if (ev.name === 'liked' && np && np.play_id === ev.data.play_id && np.requested_by_id === myId()) return;
  eventToast(ev, client, myId());
});

setInterval(() => {
  tick();
  if (document.visibilityState === 'visible' && S.queue.order.length) renderQueue();
  // The no-repeat window runs out with time, not with an update.
  if (document.visibilityState === 'visible' && S.history.order.length) renderHistory();
}, 1000);

client.start();
// A first visit waits for a guest token before the socket: show what plays meanwhile.
if (!store.get(TOKEN_KEY)) api('/api/state').then((st) => client.prime(st), () => {});
