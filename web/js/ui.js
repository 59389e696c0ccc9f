// Rendering helpers shared by the guest, host and TV pages. Everything that comes from tags or
// guest names goes into the page as text (textContent / text nodes), never as markup.

/** h('button', {class: 'x', onclick: fn, 'aria-label': 'Like'}, 'Like', child...) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const k in props) {
      const v = props[k];
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k in el && typeof v !== 'string') el[k] = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
  }
  for (const c of children) add(el, c);
  return el;
}

function add(el, c) {
  if (c == null || c === false) return;
  if (Array.isArray(c)) c.forEach((x) => add(el, x));
  else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** Sets text only when it changed (keeps the DOM quiet on a slow phone). */
export function text(el, s) {
  s = s == null ? '' : String(s);
  if (el.textContent !== s) el.textContent = s;
}

/**
 * Keyed list update: `items` drawn in order into `parent`, reusing the element made for each
 * key (so a tapped button keeps its place and focus). create(item) -> element;
 * update(element, item, index) fills it.
 */
export function syncList(parent, items, key, create, update) {
  const old = new Map();
  for (const el of parent.children) if (el._key !== undefined) old.set(el._key, el);
  let prev = null;
  items.forEach((item, i) => {
    const k = key(item);
    let el = old.get(k);
    if (el) old.delete(k);
    else {
      el = create(item);
      el._key = k;
    }
    update(el, item, i);
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (want !== el) parent.insertBefore(el, want);
    prev = el;
  });
  for (const el of old.values()) el.remove();
}

export function fmtTime(ms) {
  if (!(ms >= 0)) ms = 0;
  const s = Math.floor(ms / 1000);
  const m = Math.floor(s / 60);
  const hh = Math.floor(m / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(m % 60).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** "in 4 min", "in 1 h 5 min", "any moment now" */
export function fmtIn(ms) {
  const min = Math.round(ms / 60000);
  if (min < 1) return 'any moment now';
  if (min < 60) return `in ${min} min`;
  return `in ${Math.floor(min / 60)} h ${min % 60} min`;
}

export const plural = (n, one, many = one + 's') => `${n} ${n === 1 ? one : many}`;

/** Cover art: the track's art URL, or a placeholder drawn by CSS. */
export function cover(el, track) {
  const url = track && typeof track.art === 'string' && track.art.startsWith('/') ? track.art : '';
  if (el._art === url) return;
  el._art = url;
  el.textContent = '';
  el.classList.toggle('noart', !url);
  if (url) {
    const img = h('img', { src: url, alt: '', decoding: 'async' });
    img.onerror = () => {
      img.remove();
      el.classList.add('noart');
    };
    el.append(img);
  }
}

/** The playback position now: interpolated from position_ms at the jukebox's time. */
export function positionNow(np, client) {
  if (!np) return 0;
  let pos = np.position_ms || 0;
  if (!np.paused && np.server_time_ms) pos += Math.max(0, client.serverNow() - np.server_time_ms);
  return Math.min(pos, np.track ? np.track.duration_ms : pos);
}

/** Draws now playing's progress: the bar (`fill`, `bar`), the times and the paused state. */
export function drawProgress(np, client, { fill, bar, pos, dur, state }) {
  const total = np ? np.track.duration_ms : 0;
  const at = positionNow(np, client);
  const pct = total ? Math.min(100, (at / total) * 100) : 0;
  fill.style.transform = `scaleX(${pct / 100})`;
  bar.setAttribute('aria-valuenow', Math.round(pct));
  text(pos, fmtTime(at));
  text(dur, fmtTime(total));
  text(state, np && np.paused ? 'Paused' : '');
}

/** A render() that calls `draw` on the next frame, once however many updates arrive before. */
export function onNextFrame(draw) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      draw();
    });
  };
}

/** Milliseconds until each queue entry starts: what is left of the song, then each before it. */
export function etas(np, entries, client) {
  let t = np && np.track ? Math.max(0, np.track.duration_ms - positionNow(np, client)) : 0;
  return entries.map((e) => {
    const at = t;
    t += e.track ? e.track.duration_ms : 0;
    return at;
  });
}

export const trackLine = (t) => (t ? (t.artist ? `${t.title} — ${t.artist}` : t.title) : '');

// --- connection status ------------------------------------------------------------------------

const STATUS_TEXT = {
  live: 'Live',
  connecting: 'Connecting…',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
  stopped: 'Offline',
};

/** Keeps the role="status" element and the body's `offline` class in step with the client. */
export function bindStatus(client, el) {
  const show = (s) => {
    text(el, STATUS_TEXT[s] || s);
    el.dataset.state = s;
    document.body.classList.toggle('offline', s !== 'live');
  };
  show(client.status);
  client.on('status', show);
}

// --- toasts -----------------------------------------------------------------------------------

let toastBox;
export function toast(msg, kind = '', ms = 4000) {
  if (!toastBox) {
    toastBox = h('div', { class: 'toasts', role: 'log', 'aria-live': 'polite' });
    document.body.append(toastBox);
  }
  const el = h('div', { class: 'toast ' + kind }, msg);
  toastBox.append(el);
  while (toastBox.children.length > 3) toastBox.firstChild.remove();
  setTimeout(() => {
    el.classList.add('out');
    setTimeout(() => el.remove(), 300);
  }, ms);
  return el;
}

/**
 * Toasts an event. `me` is this page's own guest id (`me.guest_id`): what it did itself is not
 * toasted. Guests are told apart by id, never by name: two guests may share one.
 */
export function eventToast(ev, client, me) {
  // After a long sleep the resume replays old events: only toast fresh ones.
  if (ev.ts_ms && client.serverNow() - ev.ts_ms > 60000) return;
  const d = ev.data || {};
  const own = !!me && d.by_id === me;
  switch (ev.name) {
    case 'liked':
      if (own) return;
      return toast(`${d.by} liked this song`, 'like');
    case 'requested':
      if (own) return;
      return toast(`${d.by} requested ${d.title}${d.for ? ` for ${d.for}` : ''}`);
    case 'skip_vote':
      if (own) return;
      return toast(`${d.by} voted to skip (${d.votes} of ${d.needed})`);
    case 'skipped':
      return toast(
        d.reason === 'votes'
          ? 'Skipped by vote'
          : d.reason === 'host'
            ? 'The host skipped the song'
            : 'A song could not be played and was skipped'
      );
    case 'host_message':
      return toast(`Host: ${d.text}`, 'host', 10000);
    case 'your_request_next':
      return toast(`Your song is next: ${d.title}`, 'mine', 8000);
    case 'your_request_liked':
      return toast(`${d.by} liked your song`, 'mine');
  }
}

/** "for Anna, from Sam": a dedication and who made it, as one line (empty without one). */
export function dedicationLine(forWhom, by) {
  if (!forWhom) return '';
  return by ? `for ${forWhom}, from ${by}` : `for ${forWhom}`;
}

/**
 * Why a guest cannot request `track` again right now, from what the page knows (the
 * history's order and start times, the room's settings, what plays and the content rules'
 * `refused` from the server), or '' when it may. The jukebox's reply has the last word.
 */
export function requestableNow(item, ctx, now) {
  const room = ctx.room || {};
  const t = item.track;
  if (item.refused) return refusal(item.refused, ctx);
  if (ctx.me && ctx.me.banned) return 'The host has removed you from this party.';
  // Queued already: a request of it is an up-vote, which the other rules do not refuse.
  if ((ctx.queue || []).some((e) => e.track.id === t.id)) return '';
  if (room.requests_paused) return 'The host has paused requests for now.';
  if (ctx.np && ctx.np.track && ctx.np.track.id === t.id) return 'That song is playing right now.';
  const plays = ctx.history || [];
  const last = plays.find((p) => p.track.id === t.id);
  const windowMs = (room.no_repeat_minutes || 0) * 60000;
  if (last && now - last.started_ms < windowMs) {
    const ago = Math.max(0, now - last.started_ms);
    return refusal({
      code: 'recently_played',
      data: { minutes_ago: Math.floor(ago / 60000), wait_minutes: Math.ceil((windowMs - ago) / 60000) },
    }, ctx);
  }
  const spacing = room.artist_spacing || 0;
  const same = (a, b) => !!a && a.trim().toLowerCase() === (b || '').trim().toLowerCase();
  const at = plays.slice(0, spacing).findIndex((p) => same(p.track.artist, t.artist));
  if (at >= 0) {
    return refusal({ code: 'artist_spacing', data: { artist: t.artist, plays_ago: at, spacing } }, ctx);
  }
  if (ctx.me && ctx.me.role === 'guest' && ctx.me.requests_left === 0) {
    return refusal({ code: 'limit_reached', data: { limit: room.request_limit } }, ctx);
  }
  return '';
}

// --- refusals in plain words ------------------------------------------------------------------

/**
 * Why the jukebox said no, in words a guest understands: from the error code and the numbers
 * in its `data` (PROTOCOL.md §8), never from the English message.
 */
export function refusal(err, ctx = {}) {
  const room = ctx.room || {};
  const d = err.data || {};
  const m = err.message || '';
  // The host's rooms: snapserver's reasons are the host's to read as they are.
  if (ctx.what === 'rooms' && (err.code === 'not_found' || err.code === 'internal')) {
    return err.code === 'not_found' ? 'snapserver does not know that room any more.' : m.charAt(0).toUpperCase() + m.slice(1);
  }
  switch (err.code) {
    case 'limit_reached': {
      const limit = d.limit ?? room.request_limit;
      return limit
        ? `You already have ${plural(limit, 'song')} waiting. Wait until one plays.`
        : 'You already have as many songs waiting as you may. Wait until one plays.';
    }
    case 'recently_played':
      if (d.playing_now) return 'That song is playing right now.';
      if (d.minutes_ago != null && d.wait_minutes != null) {
        const ago = d.minutes_ago < 1 ? 'just played' : `played ${plural(d.minutes_ago, 'minute')} ago`;
        return `That song was ${ago}. It can be requested again in ${plural(d.wait_minutes, 'minute')}.`;
      }
      return room.no_repeat_minutes
        ? `That song was played in the last ${room.no_repeat_minutes} minutes.`
        : 'That song was played very recently.';
    case 'artist_spacing': {
      const artist = d.artist || (ctx.track && ctx.track.artist) || 'That artist';
      if (d.plays_ago == null || d.spacing == null) return `${artist} was just played. Pick another artist for now.`;
      const when = d.plays_ago === 0 ? 'was just played' : `played ${plural(d.plays_ago, 'song')} ago`;
      const wait = d.spacing - d.plays_ago;
      return `${artist} ${when}. Pick another artist for ${wait > 1 ? `the next ${wait} songs` : 'one more song'}.`;
    }
    case 'not_allowed':
      return {
        blocked_artist: 'The host does not allow songs by this artist tonight.',
        blocked_word: 'The host does not allow this song tonight.',
        too_long: d.max_minutes
          ? `Tonight the host allows songs of up to ${plural(d.max_minutes, 'minute')}.`
          : 'That song is longer than the host allows tonight.',
        not_in_pool: 'The host only allows songs from a chosen folder tonight.',
      }[d.rule] || 'The host does not allow this song tonight.';
    case 'requests_paused':
      return 'The host has paused requests for now.';
    case 'bad_request':
      if (err.field === 'for') return `Dedication: ${m}.`;
      return m ? m.charAt(0).toUpperCase() + m.slice(1) : 'That did not work.';
    case 'forbidden':
      return ctx.me && ctx.me.banned ? 'The host has removed you from this party.' : 'Only the host can do that.';
    case 'not_found':
      return ctx.what === 'vote' ? 'That song has already left the queue.' : 'That song is not in the library any more.';
    case 'stale_play':
      return 'That song already ended.';
    case 'rate_limited':
      return `Too fast. Try again in ${Math.max(1, Math.ceil((err.retryAfterMs || 1000) / 1000))} s.`;
    case 'offline':
    case 'timeout':
    case 'stopped':
      return 'Not connected to the jukebox. Try again when it says Live.';
    case 'internal':
      return 'The jukebox had a problem. Try again.';
    default:
      return m ? m.charAt(0).toUpperCase() + m.slice(1) : 'That did not work.';
  }
}

// --- search as you type -------------------------------------------------------------------------

/**
 * Wires a search box to the websocket `search` command, with a "Request" button per result.
 * els: {input, results, note, more, dedication?}; ctx(): {room, me, queue entries, np} for
 * labels and refusals. A non-empty dedication input goes with the request as `for`.
 */
export function mountSearch(client, els, ctx) {
  let timer = 0;
  let ticket = 0;
  let shown = []; // tracks on screen
  let cursor = null;
  let q = '';
  let failed = false;
  const why = new Map(); // track id -> refusal text

  const run = async (more) => {
    const my = ++ticket;
    if (!more) {
      q = els.input.value.trim();
      cursor = null;
    }
    if (!q) {
      shown = [];
      why.clear();
      text(els.note, '');
      draw();
      return;
    }
    if (!client.live) {
      failed = true;
      text(els.note, 'Searching as soon as the jukebox is back…');
      return;
    }
    try {
      const data = await client.command('search', { q, limit: 20, cursor: more ? cursor : null });
      if (my !== ticket) return;
      failed = false;
      if (!more) {
        shown = [];
        why.clear();
      }
      shown = shown.concat(data.results || []);
      cursor = data.next_cursor || null;
      text(els.note, shown.length ? '' : `Nothing found for “${q}”.`);
      draw();
    } catch (e) {
      if (my !== ticket) return;
      failed = true;
      text(els.note, refusal(e, ctx()));
    }
  };

  const request = async (t, row) => {
    const c = ctx();
    const btn = row.querySelector('button');
    btn.disabled = true;
    try {
      const dedication = els.dedication ? els.dedication.value.trim() : '';
      const d = await client.command('request', dedication ? { track_id: t.id, for: dedication } : { track_id: t.id });
      why.delete(t.id);
      if (!d.upvoted && els.dedication) els.dedication.value = '';
      toast(
        d.upvoted
          ? `Already in the queue: your vote moves “${t.title}” up`
          : `Requested “${t.title}”${dedication ? ` for ${dedication}` : ''}`,
        'mine'
      );
    } catch (e) {
      const msg = refusal(e, { ...c, track: t });
      why.set(t.id, msg);
      toast(msg, 'error', 6000);
    }
    draw();
  };

  const draw = () => {
    const c = ctx();
    const queued = new Set(c.queue.map((e) => e.track && e.track.id));
    const playing = c.np && c.np.track ? c.np.track.id : null;
    syncList(
      els.results,
      shown,
      (t) => t.id,
      (t) => {
        const row = h('li', { class: 'item' },
          h('div', { class: 'grow' }, h('p', { class: 't' }), h('p', { class: 's' }), h('p', { class: 'why', role: 'alert' })),
          h('button', { class: 'btn', type: 'button', onclick: () => request(t, row) }, 'Request'));
        return row;
      },
      (row, t) => {
        const [info, btn] = row.children;
        text(info.children[0], t.title);
        const tag = t.id === playing ? ' · playing now' : queued.has(t.id) ? ' · in the queue' : '';
        text(info.children[1], [t.artist, t.album, fmtTime(t.duration_ms)].filter(Boolean).join(' · ') + tag);
        // The host's content rules: the search shows what they refuse, and why, before a tap.
        const ruled = t.refused ? refusal(t.refused, { ...c, track: t }) : '';
        row.classList.toggle('refused', !!ruled);
        text(info.children[2], ruled || why.get(t.id) || '');
        btn.disabled = !client.live || (c.me && c.me.banned) || !!ruled;
      }
    );
    els.more.hidden = !cursor;
    els.more.disabled = !client.live;
  };

  els.input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => run(false), 200);
  });
  els.input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      clearTimeout(timer);
      run(false);
      els.input.blur(); // closes the phone keyboard so the results show
    }
  });
  els.more.addEventListener('click', () => run(true));
  client.on('status', (s) => {
    if (s === 'live' && failed) run(false);
  });
  return { draw };
}
