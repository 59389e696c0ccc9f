// Browser tests of the jukebox's web app against the real binary.
//
//   node tests/web/run.mjs              all tests
//   node tests/web/run.mjs offline      only tests whose name contains "offline"
//
// Env: JUKEBOX_BIN (default target/debug/jukebox), JUKEBOX_WEB_DIR (serve web/ from disk),
// CHROMIUM (default /usr/bin/chromium). Needs `npm install` in tests/web (playwright-core).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as L from './lib.mjs';

const only = process.argv[2];
const t = (name, opts, fn) => (only && !name.includes(only) ? test.skip(name, opts, fn) : test(name, opts, fn));

let browser;
let music;
before(async () => {
  assert.ok(fs.existsSync(L.BIN), `no jukebox binary at ${L.BIN} (set JUKEBOX_BIN)`);
  music = L.testMusic();
  browser = await L.launch();
});
after(async () => {
  await browser?.close();
});

/** Runs fn with a fresh server; stops it and closes every context afterwards. */
async function withServer(opts, fn) {
  const srv = await L.startServer({ music, ...opts });
  const contexts = [];
  const open = async (p, o) => {
    const r = await L.openPage(browser, srv.url + p, o);
    contexts.push(r.context);
    return r;
  };
  try {
    await fn(srv, open);
  } catch (e) {
    e.message += `\n--- jukebox log (last 3000 chars) ---\n${srv.log().slice(-3000)}`;
    throw e;
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
    await srv.stop();
  }
}

// --- page helpers -----------------------------------------------------------------------------

const npTitle = (page) => page.locator('#np-title');
const status = (page) => page.getByRole('status');
const queueItem = (page, title) => page.getByRole('list', { name: 'Queue' }).getByRole('listitem').filter({ hasText: title });
const resultItem = (page, title) => page.getByRole('list', { name: 'Search results' }).getByRole('listitem').filter({ hasText: title });

async function search(page, q) {
  await page.getByRole('searchbox', { name: 'Search' }).fill(q);
}

async function request(page, title, q = title) {
  await search(page, q);
  const row = resultItem(page, title).first();
  await row.getByRole('button', { name: 'Request', exact: true }).click();
  return row;
}

async function setName(page, name) {
  await page.getByRole('textbox', { name: /Your name/ }).fill(name);
  await page.getByRole('button', { name: 'Save name' }).click();
}

async function expectText(locator, re, timeout = 10000) {
  await locator.filter({ hasText: re }).first().waitFor({ timeout });
}

async function expectTitle(pages, title, timeout = 10000) {
  for (const p of pages) {
    await L.until(`now playing "${title}" on ${p.url()}`, async () => (await npTitle(p).textContent()) === title, timeout);
  }
}

/** Waits until every element of the locator is disabled (or enabled). */
async function expectDisabled(locator, disabled = true, what = 'button', timeout = 5000) {
  await L.until(`${what} ${disabled ? 'disabled' : 'enabled'}`, async () => {
    const n = await locator.count();
    if (!n) return false;
    for (let i = 0; i < n; i++) if ((await locator.nth(i).isDisabled()) !== disabled) return false;
    return true;
  }, timeout);
}

/** Two guests' phones, a TV paired by the host, and the host logged in: all live. */
async function room(srv, open) {
  const { page: a } = await open('/');
  const { page: b } = await open('/');
  const { page: tv } = await open('/tv', L.TV);
  const { page: host } = await open('/host');
  await L.hostLogin(host);
  await L.pairTv(srv.url, tv, host);
  await Promise.all([L.live(a), L.live(b), L.live(tv)]);
  return { a, b, tv, host };
}

function noErrors(...pages) {
  for (const p of pages) assert.deepEqual(p.errors, [], `page errors on ${p.url()}`);
}

// --- 1 -----------------------------------------------------------------------------------------

t('live: a request, a like, skip votes and a host skip reach every screen', { timeout: 90000 }, async () => {
  await withServer({ args: ['--skip-min-votes', '2', '--skip-percent', '50'] }, async (srv, open) => {
    const { page: a } = await open('/');
    const { page: b } = await open('/');
    const { page: tv } = await open('/tv', L.TV);
    await L.pairTv(srv.url, tv);
    await Promise.all([L.live(a), L.live(b), L.live(tv)]);
    const first = (await L.state(srv.url)).now_playing.track.title;
    await expectTitle([a, b, tv], first);

    // A name is optional and set at any time; it travels with the request.
    await setName(a, 'Mia');
    const [wanted] = await L.requestable(srv.url, 1);
    await request(a, wanted);
    const mine = queueItem(a, wanted);
    await expectText(mine, /Your request/);
    await expectText(a.locator('.toast'), `Your song is next: ${wanted}`);
    await expectText(b.locator('.toast'), `Mia requested ${wanted}`);
    assert.ok(await mine.evaluate((li) => li.classList.contains('mine')), 'own request is marked');
    await expectText(queueItem(b, wanted), /Requested by Mia/);
    await expectText(queueItem(tv, wanted), /requested by Mia/);
    // B can up-vote A's entry; A cannot up-vote its own (the request is its vote).
    assert.equal(await queueItem(a, wanted).getByRole('button', { name: 'Up-vote', exact: true }).isDisabled(), true);
    await queueItem(b, wanted).getByRole('button', { name: 'Up-vote', exact: true }).click();
    await expectText(queueItem(a, wanted), /2 votes/);
    await expectText(queueItem(tv, wanted), /2 votes/);

    // A like on B shows on A and the TV.
    await b.getByRole('button', { name: 'Like', exact: true }).click();
    await expectText(a.locator('#likes'), /^1 like$/);
    await expectText(tv.locator('#likes'), /1 like/);
    await b.locator('#like[aria-pressed="true"]').waitFor();

    // Skip votes: 2 needed (A, B and the TV are connected: max(2, ceil(50% of 3)) = 2).
    await expectText(a.locator('#skips'), /^0 of 2/);
    await a.getByRole('button', { name: 'Vote to skip', exact: true }).click();
    await expectText(b.locator('#skips'), /^1 of 2/);
    await expectDisabled(a.getByRole('button', { name: 'Vote to skip', exact: true }), true, 'one vote per play');
    await b.getByRole('button', { name: 'Vote to skip', exact: true }).click();
    // The skipped song gives way to A's request, everywhere.
    await expectTitle([a, b, tv], wanted);
    await expectText(a.locator('#np-by'), /Your request/);
    await expectText(b.locator('#np-by'), /Requested by Mia/);
    await queueItem(a, wanted).waitFor({ state: 'detached' });
    // A like of Mia's song: Mia hears about it.
    await b.getByRole('button', { name: 'Like', exact: true }).click();
    await expectText(a.locator('.toast'), /liked your song/);

    // The host: log in with the PIN, pause, play, volume, skip.
    const { page: host } = await open('/host');
    await L.hostLogin(host);
    await expectTitle([host], wanted);
    await host.getByRole('button', { name: 'Pause', exact: true }).click();
    await expectText(a.locator('#np-state'), /Paused/);
    await host.getByRole('button', { name: 'Play', exact: true }).click();
    await L.until('play resumes on A', async () => (await a.locator('#np-state').textContent()) === '');
    await host.getByRole('slider', { name: 'Volume', exact: true }).fill('35');
    await L.until('volume 35', async () => (await L.state(srv.url)).room.volume === 35);
    await host.getByRole('button', { name: 'Skip', exact: true }).click();
    const next = await L.until('a new song after the host skip', async () => {
      const np = (await L.state(srv.url)).now_playing;
      return np && np.track.title !== wanted && np.track.title;
    });
    await expectTitle([a, b, tv, host], next);
    noErrors(a, b, tv, host);
  });
});

// --- 2 -----------------------------------------------------------------------------------------

t('offline: a phone that loses the network says so, disables actions and catches up by itself', { timeout: 90000 }, async () => {
  await withServer({}, async (srv, open) => {
    const { context: ca, page: a } = await open('/');
    const { page: b } = await open('/');
    await Promise.all([L.live(a), L.live(b)]);
    await a.evaluate(() => (window.__sameDocument = true));
    await search(a, 'a'); // results on screen, so their Request buttons can be checked too
    await resultItem(a, /./).first().waitFor();

    await ca.setOffline(true);
    await expectText(status(a), /Offline|Reconnecting/, 5000);
    // The buttons are disabled as the status changes (not a frame later).
    for (const name of ['Like', 'Vote to skip', 'Request']) {
      const btns = a.getByRole('button', { name, exact: true });
      const n = await btns.count();
      assert.ok(n > 0, `a ${name} button exists`);
      for (let i = 0; i < n; i++) assert.equal(await btns.nth(i).isDisabled(), true, `${name} is disabled offline`);
    }

    // Meanwhile B requests a song; A, offline, cannot know yet.
    const [wanted] = await L.requestable(srv.url, 1);
    await request(b, wanted);
    await queueItem(b, wanted).waitFor();
    await L.sleep(1000);
    assert.equal(await queueItem(a, wanted).count(), 0, 'A is really cut off');

    // Back online: Live again and the request shows, without a reload.
    await ca.setOffline(false);
    await L.live(a, 10000);
    await queueItem(a, wanted).waitFor();
    assert.equal(await a.evaluate(() => window.__sameDocument), true, 'no reload');
    await expectDisabled(a.getByRole('button', { name: 'Like', exact: true }), false);
    // It resumed its session: what it missed was replayed, not re-sent as snapshots.
    assert.equal(await a.evaluate(() => window.jukebox.lastWelcome.resumed), true, 'resumed the session');

    // A socket that silently stops answering (a frozen jukebox, a Wi-Fi that drops packets):
    // on wake the page pings, gets no pong within 3 s, says so and reconnects when it can.
    process.kill(srv.proc.pid, 'SIGSTOP');
    try {
      await a.evaluate(() => dispatchEvent(new Event('online')));
      await expectText(status(a), /Offline|Reconnecting/, 6000);
      assert.equal(await a.getByRole('button', { name: 'Like', exact: true }).isDisabled(), true);
    } finally {
      process.kill(srv.proc.pid, 'SIGCONT');
    }
    await L.live(a, 15000);
    // And it still works: A likes, B sees it.
    await a.getByRole('button', { name: 'Like', exact: true }).click();
    await expectText(b.locator('#likes'), /^1 like$/);
    noErrors(b);
  });
});

// --- 3 -----------------------------------------------------------------------------------------

t('restart: guest, host and TV pages recover by themselves when the jukebox restarts', { timeout: 90000 }, async () => {
  const dir = L.tmpdir('restart');
  let srv = await L.startServer({ music, dir });
  const port = srv.port;
  const contexts = [];
  const open = async (p, o) => {
    const r = await L.openPage(browser, srv.url + p, o);
    contexts.push(r.context);
    return r.page;
  };
  try {
    const a = await open('/');
    const host = await open('/host');
    const tv = await open('/tv', L.TV);
    await L.hostLogin(host);
    await L.pairTv(srv.url, tv, host);
    await Promise.all([L.live(a), L.live(tv)]);
    const [wanted] = await L.requestable(srv.url, 1);
    await request(a, wanted);
    await queueItem(tv, wanted).waitFor();
    await queueItem(host, wanted).waitFor();
    for (const p of [a, host, tv]) await p.evaluate(() => (window.__sameDocument = true));

    await srv.stop();
    for (const p of [a, host, tv]) await expectText(status(p), /Offline|Reconnecting/, 5000);
    assert.equal(await a.getByRole('button', { name: 'Like', exact: true }).isDisabled(), true);
    assert.equal(await host.getByRole('button', { name: 'Skip', exact: true }).isDisabled(), true);
    await L.sleep(2000); // down for a while: the pages back off

    srv = await L.startServer({ music, dir, listen: `127.0.0.1:${port}` });
    const t0 = Date.now();
    await Promise.all([L.live(a, 20000), L.live(host, 20000), L.live(tv, 20000)]);
    console.log(`# pages live again ${Date.now() - t0} ms after the jukebox listened again`);
    const st = await L.state(srv.url);
    await expectTitle([a, host, tv], st.now_playing.track.title);
    for (const p of [a, host, tv]) {
      await queueItem(p, wanted).waitFor();
      assert.equal(await p.evaluate(() => window.__sameDocument), true, 'no reload');
    }
    assert.equal(await host.locator('#panel').isVisible(), true, 'the host stays logged in');
    for (const p of [a, host, tv]) {
      const w = await p.evaluate(() => window.jukebox.lastWelcome);
      assert.equal(w.resumed, false);
      assert.equal(w.reason, 'epoch', 'it asked to resume its old session');
    }
    // It works, not just looks live: a like from A shows on the TV, the host can skip.
    await a.getByRole('button', { name: 'Like', exact: true }).click();
    await expectText(tv.locator('#likes'), /1 like/);
    await host.getByRole('button', { name: 'Skip', exact: true }).click();
    await expectTitle([a, tv], wanted);
  } catch (e) {
    e.message += `\n--- jukebox log ---\n${srv.log().slice(-3000)}`;
    throw e;
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
    await srv.stop();
  }
});

// --- 4 -----------------------------------------------------------------------------------------

t('xss: tags and guest names with markup are shown as text', { timeout: 60000 }, async () => {
  const TITLE = '<img src=x onerror=alert(1)>';
  const NAME = '<img src=x onerror=alert(3)>';
  // No no-repeat window and no artist spacing: the auto-DJ may have just played the very
  // track this test requests.
  await withServer({ args: ['--no-repeat-minutes', '0', '--artist-spacing', '0'] }, async (srv, open) => {
    const { a, b, tv, host } = await room(srv, open);
    await setName(a, NAME);
    await L.until('the name reached the jukebox', async () => (await a.locator('.toast').allTextContents()).some((s) => s.includes('Your name is')));

    if ((await L.state(srv.url)).now_playing.track.title === TITLE) {
      // The auto-DJ happened to pick it: move on, so that it can be requested.
      await host.getByRole('button', { name: 'Skip', exact: true }).click();
      await L.until('another song', async () => (await L.state(srv.url)).now_playing.track.title !== TITLE);
    }
    const row = await request(a, TITLE, 'onerror');
    assert.equal(await row.locator('.t').textContent(), TITLE);
    await expectText(queueItem(b, TITLE), /Requested by/);
    assert.equal(await queueItem(b, TITLE).locator('.t').textContent(), TITLE);
    assert.equal(await queueItem(b, TITLE).locator('.by').textContent().then((s) => s.startsWith(`Requested by ${NAME} ·`)), true);
    assert.ok((await queueItem(tv, TITLE).locator('.s').textContent()).includes(`requested by ${NAME}`));
    // Host: the guest list and the queue show the name as text too.
    await expectText(host.getByRole('list', { name: 'Guests' }).getByRole('listitem'), NAME);

    // Play it: now playing shows title and artist literally everywhere.
    await host.getByRole('button', { name: 'Skip', exact: true }).click();
    await expectTitle([a, b, tv, host], TITLE);
    assert.equal(await b.locator('#np-artist').textContent(), '<b>x</b> · <script>alert(2)</script>');
    assert.equal(await b.locator('#np-by').textContent(), `Requested by ${NAME}`);
    for (const p of [a, b, tv, host]) {
      assert.equal(await p.locator('img[src="x"], b, script:not([type="module"]):not([src])').count(), 0, `no injected elements on ${p.url()}`);
      assert.deepEqual(p.dialogs, [], `no dialog on ${p.url()}`);
    }
    await L.sleep(500); // a late onerror would fire by now
    for (const p of [a, b, tv]) assert.deepEqual(p.dialogs, []);
  });
});

// --- 5 -----------------------------------------------------------------------------------------

t('budget: the guest view renders on a slow phone on slow 3G and weighs under 150 KB', { timeout: 90000 }, async () => {
  // --demo: the library a newcomer sees; the app as the binary ships it (embedded, gzipped).
  await withServer({ music: undefined, embedded: true }, async (srv) => {
    const context = await browser.newContext({ ...L.PHONE });
    try {
      const page = await context.newPage();
      const cdp = await context.newCDPSession(page);
      await cdp.send('Network.enable');
      await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false,
        latency: 400,
        downloadThroughput: (400 * 1000) / 8,
        uploadThroughput: (400 * 1000) / 8,
      });
      await cdp.send('Emulation.setCPUThrottlingRate', { rate: 4 });
      const t0 = Date.now();
      await page.goto(srv.url + '/', { waitUntil: 'load', timeout: 30000 });
      await page.waitForFunction(() => performance.getEntriesByName('jukebox-now-playing').length > 0, null, { timeout: 30000 });
      const wall = Date.now() - t0;
      const m = await page.evaluate(() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        const np = performance.getEntriesByName('jukebox-now-playing')[0];
        const res = performance.getEntriesByType('resource').filter((r) => /\.(js|css)(\?|$)/.test(new URL(r.name).pathname));
        return {
          fcp: fcp && fcp.startTime,
          nowPlaying: np.startTime,
          html: nav.decodedBodySize,
          htmlWire: nav.transferSize,
          files: res.map((r) => [new URL(r.name).pathname, r.decodedBodySize, r.transferSize]),
        };
      });
      const bytes = m.html + m.files.reduce((s, f) => s + f[1], 0);
      const wire = m.htmlWire + m.files.reduce((s, f) => s + f[2], 0);
      console.log(`# guest view, 4x CPU throttle, 400 ms / 400 kbit/s: first contentful paint ${Math.round(m.fcp)} ms, now playing shown ${Math.round(m.nowPlaying)} ms (wall ${wall} ms)`);
      console.log(`# guest view HTML+CSS+JS: ${bytes} bytes uncompressed, ${wire} bytes on the wire: ${JSON.stringify([['/', m.html, m.htmlWire], ...m.files])}`);
      assert.ok(m.fcp > 0, 'first contentful paint measured');
      // The render time depends on how busy this machine is: it is printed above and its goal
      // (1.5 s) is tracked in bench/README.md, not asserted here.
      assert.ok(m.files.some((f) => f[0] === '/app.css') && m.files.some((f) => f[0] === '/js/client.js'), 'CSS and JS counted');
      assert.ok(bytes <= 150 * 1024, `guest view is ${bytes} bytes > 150 KB`);
      // The same from the files themselves (what the binary embeds).
      const web = path.join(L.ROOT, 'web');
      const disk = ['index.html', 'app.css', 'js/client.js', 'js/ui.js', 'js/guest.js'].reduce((s, f) => s + fs.statSync(path.join(web, f)).size, 0);
      console.log(`# guest view files on disk: ${disk} bytes`);
      assert.ok(disk <= 150 * 1024);
      if (disk !== bytes) console.log('# NOTE: the binary serves another version of web/ than the one on disk: rebuild it to measure this one');
    } finally {
      await context.close();
    }
  });
});

// --- 6 -----------------------------------------------------------------------------------------

t('host: remove, move, ban, pause requests and live rules reach the guests', { timeout: 90000 }, async () => {
  await withServer({ args: ['--request-limit', '2'] }, async (srv, open) => {
    const { page: a } = await open('/');
    const { page: b } = await open('/');
    const { page: host } = await open('/host');
    // A wrong PIN says so; the right one logs in.
    await host.getByRole('textbox', { name: 'PIN', exact: true }).fill('0000');
    await host.getByRole('button', { name: 'Log in' }).click();
    await expectText(host.locator('#login-error'), /not right/);
    host.errors = host.errors.filter((e) => !/status of 401/.test(e)); // that one was expected
    await L.hostLogin(host);
    await Promise.all([L.live(a), L.live(b)]);
    await setName(b, 'Sam');
    const titles = await L.requestable(srv.url, 4);
    await request(a, titles[0]);
    await queueItem(a, titles[0]).waitFor();
    await request(a, titles[1]);
    await queueItem(a, titles[1]).waitFor();
    // The limit is 2: a third request is refused in plain words.
    const row = await request(a, titles[2]);
    await expectText(row.locator('.why'), /You already have 2 songs waiting/);
    await request(b, titles[2]);
    await queueItem(host, titles[2]).waitFor();

    // Move the last entry up: the guests see the new order.
    await queueItem(host, titles[2]).getByRole('button', { name: 'Move up', exact: true }).click();
    await L.until('moved', async () => {
      const items = await a.getByRole('list', { name: 'Queue' }).getByRole('listitem').locator('.t').allTextContents();
      return items.indexOf(titles[2]) === 1 && items;
    });
    // Remove one of A's.
    await queueItem(host, titles[1]).getByRole('button', { name: 'Remove', exact: true }).click();
    await queueItem(a, titles[1]).waitFor({ state: 'detached' });
    await expectText(a.locator('#me-note'), /request 1 more song/);

    // Ban Sam from the queue entry: the entry goes, Sam's phone says so and its actions stop.
    await queueItem(host, titles[2]).getByRole('button', { name: 'Ban', exact: true }).click();
    await queueItem(a, titles[2]).waitFor({ state: 'detached' });
    await expectText(b.locator('#me-note'), /removed you/);
    await expectDisabled(b.getByRole('button', { name: 'Like', exact: true }), true, "a banned guest's Like");
    await expectText(host.getByRole('list', { name: 'Guests' }).getByRole('listitem').filter({ hasText: 'Sam' }), /banned/);

    // Pause requests, and change a rule live.
    await host.getByRole('checkbox', { name: /Pause requests/ }).check();
    await expectText(a.locator('#me-note'), /paused requests/);
    const refused = await request(a, titles[3]);
    await expectText(refused.locator('.why'), /The host has paused requests/);
    await host.getByRole('checkbox', { name: /Pause requests/ }).uncheck();
    await host.getByRole('spinbutton', { name: 'Skip: votes at least' }).fill('3');
    await host.getByRole('button', { name: 'Save rules' }).click();
    await expectText(a.locator('#skips'), / of 3 to skip/);

    // An announcement reaches the phones, as text.
    await host.getByRole('textbox', { name: /message on every phone/ }).fill('Pizza <b>is</b> here!');
    await host.getByRole('button', { name: 'Announce' }).click();
    await expectText(a.locator('.toast'), 'Host: Pizza <b>is</b> here!');

    // A library rescan shows its outcome (nothing changed: 8 files, none read again).
    await expectText(host.locator('#scan-note'), /Last scan: 8 files, 8 new or changed/);
    await host.getByRole('button', { name: 'Rescan library' }).click();
    await expectText(host.locator('#scan-note'), /Last scan: 8 files, 0 new or changed/);
    await expectText(host.locator('#audio'), /^OK · null/);

    // Tonight's list, downloaded with the host token.
    for (const [label, head] of [['Download CSV', /^started_at,title,/], ['Download M3U', /^#EXTM3U/]]) {
      const [dl] = await Promise.all([host.waitForEvent('download', { timeout: 10000 }), host.getByRole('button', { name: label }).click()]);
      const body = fs.readFileSync(await dl.path(), 'utf8');
      assert.match(body, head, `${label}: ${body.slice(0, 200)}`);
      assert.ok(body.includes((await L.state(srv.url)).now_playing.track.title), `${label} lists the song playing`);
      assert.match(dl.suggestedFilename(), label.endsWith('CSV') ? /\.csv$/ : /\.m3u8?$/);
    }
    noErrors(a, b, host);
  });
});

t('sound: the host page shows the three sound settings, the level of what plays, and changes them live', { timeout: 150000 }, async () => {
  await withServer({}, async (srv, open) => {
    const { page: host } = await open('/host');
    await L.hostLogin(host);
    const levelling = host.getByRole('combobox', { name: 'Loudness levelling' });
    const target = host.getByRole('spinbutton', { name: 'Target loudness (LUFS)' });
    const fade = host.getByRole('spinbutton', { name: 'Crossfade (seconds)' });
    // The defaults, as the room says.
    await L.until('the sound settings shown', async () => (await levelling.inputValue()) === 'auto' && (await target.inputValue()) === '-14' && (await fade.inputValue()) === '0');
    // What plays: its gain in dB and where it came from; the pass; the dropouts.
    // Once the pass has measured the library, what plays shows its measured loudness and
    // the gain that brings it to −14 LUFS (clamped to −20…+12 dB), and no dropouts.
    // The pass runs at idle priority: on a busy machine it waits its turn.
    await expectText(host.locator('#sound-pass'), /^8 of 8 tracks measured$/, 100000);
    const shown = /^(−?\d+\.\d) LUFS, ([+−]?\d+\.\d) dB(?: \(album\))? · measured$/;
    await expectText(host.locator('#sound-now'), shown, 20000);
    const nowText = await host.locator('#sound-now').textContent();
    const [, lufs, gain] = nowText.match(shown).map((x) => Number(String(x).replace('−', '-')));
    assert.ok(lufs < -5 && lufs > -60, `a measured loudness: ${nowText}`);
    assert.ok(gain >= -20 && gain <= 12, nowText);
    // A track's own gain follows from its loudness; an album's from the album's.
    if (!nowText.includes('(album)')) assert.ok(Math.abs(gain - Math.min(12, Math.max(-20, -14 - lufs))) <= 0.11, nowText);
    // The dropouts the player counted, as /healthz has them (none on an idle machine).
    await L.until('the dropouts shown as counted', async () => {
      const u = (await (await fetch(srv.url + '/healthz')).json()).audio.underruns;
      const shown = await host.locator('#underruns').textContent();
      return shown === (u === 0 ? 'none' : `${u} dropout${u === 1 ? '' : 's'}`);
    });
    // Change all three: the jukebox keeps them, and a second host page shows them.
    await levelling.selectOption('track');
    await target.fill('-18');
    await fade.fill('4');
    await host.getByRole('button', { name: 'Save sound' }).click();
    await expectText(host.locator('#sound-note'), /Saved/);
    const room = await L.until('the room has the new sound', async () => {
      const r = (await L.state(srv.url)).room;
      return r.normalize === 'track' && r.loudness_lufs === -18 && r.crossfade_s === 4 && r;
    });
    assert.equal(room.crossfade_s, 4);
    const { page: other } = await open('/host');
    await L.hostLogin(other);
    await L.until('the other host page shows them', async () => (await other.getByRole('combobox', { name: 'Loudness levelling' }).inputValue()) === 'track' && (await other.getByRole('spinbutton', { name: 'Target loudness (LUFS)' }).inputValue()) === '-18');
    // Off: what plays gets 0 dB at once.
    await levelling.selectOption('off');
    await host.getByRole('button', { name: 'Save sound' }).click();
    await expectText(host.locator('#sound-now'), /0\.0 dB · levelling off/);
    // The switch that lets Snapcast's apps control the party: off by default, saved at once.
    const snap = host.getByRole('checkbox', { name: /Let Snapweb and Snapdroid/ });
    assert.equal(await snap.isChecked(), false);
    await snap.check();
    await L.until('the room lets Snapcast control it', async () => (await L.state(srv.url)).room.snapcast_control === true);
    await L.until('the other host page shows it', async () => other.getByRole('checkbox', { name: /Let Snapweb and Snapdroid/ }).isChecked());
    noErrors(host, other);
  });
});

// --- 7 -----------------------------------------------------------------------------------------

t('tokens: a jukebox that forgot its guests (new database) hands the phone a new token; the host logs in again', { timeout: 60000 }, async () => {
  let srv = await L.startServer({ music });
  const port = srv.port;
  const contexts = [];
  try {
    const { context: c1, page: a } = await L.openPage(browser, srv.url + '/');
    const { context: c2, page: host } = await L.openPage(browser, srv.url + '/host');
    contexts.push(c1, c2);
    await L.hostLogin(host);
    await L.live(a);
    const before = await a.evaluate(() => localStorage.getItem('jukebox.guest.token'));
    assert.match(before, /^[0-9a-f]{64}$/);
    await srv.stop();
    srv = await L.startServer({ music, listen: `127.0.0.1:${port}` }); // a fresh database
    await L.live(a, 20000);
    const after = await a.evaluate(() => localStorage.getItem('jukebox.guest.token'));
    assert.match(after, /^[0-9a-f]{64}$/);
    assert.notEqual(after, before, 'a new guest token');
    await a.getByRole('button', { name: 'Like', exact: true }).click();
    await L.until('the like counted', async () => (await L.state(srv.url)).now_playing.likes === 1);
    // The host's token is gone too: the page asks for the PIN instead of retrying forever.
    await host.getByRole('textbox', { name: 'PIN', exact: true }).waitFor({ timeout: 20000 });
    await L.hostLogin(host);
    await host.getByRole('button', { name: 'Skip', exact: true }).waitFor();
  } catch (e) {
    e.message += `\n--- jukebox log ---\n${srv.log().slice(-3000)}`;
    throw e;
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
    await srv.stop();
  }
});

// --- 8 -----------------------------------------------------------------------------------------

t('host logins: the host page warns of wrong PINs, lists the host logins and logs out one or all', { timeout: 60000 }, async () => {
  await withServer({}, async (srv, open) => {
    const { page: a } = await open('/host');
    const { page: b } = await open('/host');
    await L.hostLogin(a);
    await L.hostLogin(b);
    // Someone guesses.
    for (const pin of ['11111111', '22222222', '33333333']) {
      const r = await fetch(srv.url + '/api/host/login', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ pin }),
      });
      assert.equal(r.status, 401);
    }
    await a.reload();
    await L.live(a);
    await a.getByText('3 wrong PINs in the last minute', { exact: false }).waitFor();
    const list = a.getByRole('list', { name: 'Host logins' });
    await L.until('two host logins listed', async () => (await list.getByRole('listitem').count()) === 2);
    await list.getByRole('listitem').filter({ hasText: 'This phone' }).waitFor();
    // Log out the other phone: it is asked for the PIN at once.
    await list.getByRole('listitem').filter({ hasNotText: 'This phone' }).getByRole('button', { name: 'Log out' }).click();
    await b.getByRole('textbox', { name: 'PIN', exact: true }).waitFor({ timeout: 10000 });
    await L.until('one host login left', async () => (await list.getByRole('listitem').count()) === 1, 20000);
    // Log out everywhere: this phone too.
    await a.getByRole('button', { name: 'Log out everywhere' }).click();
    await a.getByRole('textbox', { name: 'PIN', exact: true }).waitFor({ timeout: 10000 });
    assert.deepEqual(a.dialogs, ['confirm: Log out every host, this phone included?']);
    for (const p of [a, b]) assert.deepEqual(p.errors, []);
  });
});

// --- revision 2: ids ---------------------------------------------------------------------------

/** Keeps every toast the page shows (they go away after a few seconds). */
async function recordToasts(page) {
  await page.evaluate(() => {
    window.__toasts = [];
    new MutationObserver((changes) => {
      for (const c of changes) for (const n of c.addedNodes) if (n.classList && n.classList.contains('toast')) window.__toasts.push(n.textContent);
    }).observe(document.body, { childList: true, subtree: true });
  });
}
const toasts = (page) => page.evaluate(() => window.__toasts);
async function expectToast(page, want) {
  const hit = (s) => (typeof want === 'string' ? s === want : want.test(s));
  await L.until(`a toast ${want} on ${page.url()}`, async () => (await toasts(page)).some(hit));
}

t('ids: two guests with one name each get their own toasts and see the other as the other', { timeout: 90000 }, async () => {
  await withServer({ args: ['--skip-min-votes', '3'] }, async (srv, open) => {
    const { page: a } = await open('/');
    const { page: b } = await open('/');
    await Promise.all([L.live(a), L.live(b)]);
    for (const p of [a, b]) await recordToasts(p);
    for (const p of [a, b]) {
      await setName(p, 'Mia');
      await expectToast(p, 'Your name is Mia');
    }
    const [x, y] = await L.requestable(srv.url, 2);

    // Each Mia's request is hers: the other Mia hears of it, under the shared name.
    await request(a, x);
    await expectToast(a, `Your song is next: ${x}`);
    await expectToast(b, `Mia requested ${x}`);
    await expectText(queueItem(a, x), /Your request/);
    await expectText(queueItem(b, x), /Requested by Mia/);
    await request(b, y);
    await expectToast(a, `Mia requested ${y}`);
    await expectText(queueItem(b, y), /Your request/);
    await expectText(queueItem(a, y), /Requested by Mia/);

    // B's like and skip vote reach A as the other Mia's.
    await b.getByRole('button', { name: 'Like', exact: true }).click();
    await expectToast(a, 'Mia liked this song');
    await b.getByRole('button', { name: 'Vote to skip', exact: true }).click();
    await expectToast(a, 'Mia voted to skip (1 of 3)');

    // A's song plays: it is A's on A's phone only; B's song is next, and only B is told.
    const host = await L.post(srv.url, '/api/host/login', { pin: L.PIN });
    await L.post(srv.url, '/api/host/skip', {}, host.token);
    await expectTitle([a, b], x);
    await expectText(a.locator('#np-by'), /Your request/);
    await expectText(b.locator('#np-by'), /Requested by Mia/);
    await expectToast(b, `Your song is next: ${y}`);
    // B likes A's song: A hears it once, as a like of her song.
    await b.getByRole('button', { name: 'Like', exact: true }).click();
    await expectToast(a, 'Mia liked your song');

    const [ta, tb] = [await toasts(a), await toasts(b)];
    const none = (list, re, who) => assert.ok(!list.some((s) => re.test(s)), `${who} toasted ${re}: ${JSON.stringify(list)}`);
    // Nobody hears of their own actions as if the other Mia had done them...
    none(ta, new RegExp(`requested ${x}`), 'A');
    none(tb, new RegExp(`requested ${y}`), 'B');
    none(tb, /liked|voted to skip/, 'B');
    // ...nor gets the other's personal events.
    none(ta, new RegExp(`Your song is next: ${y}`), 'A');
    none(tb, new RegExp(`Your song is next: ${x}`), 'B');
    assert.deepEqual(ta.filter((s) => /liked/.test(s)), ['Mia liked this song', 'Mia liked your song']);
    noErrors(a, b);
  });
});

// --- rooms -------------------------------------------------------------------------------------

t('rooms: the host page lists the Snapcast rooms, sets their volume and mute, and says when snapserver is gone', { timeout: 90000 }, async () => {
  const dir = L.tmpdir('snap');
  const snap = await L.startSnapserver(dir);
  const clients = [];
  try {
    await withServer({ args: ['--snapcast-rpc', `127.0.0.1:${snap.controlPort}`] }, async (srv, open) => {
      const { page: host } = await open('/host');
      await L.hostLogin(host);
      const card = host.getByRole('region', { name: 'Rooms' });
      await card.waitFor({ timeout: 10000 });
      await expectText(host.locator('#rooms-note'), /No rooms yet/);
      clients.push(L.startSnapclient(snap, 'kitchen'));
      const rooms = host.getByRole('list', { name: 'Rooms' });
      const kitchen = rooms.getByRole('listitem').filter({ hasText: 'kitchen' });
      await expectText(kitchen, /connected · volume 100/, 15000);

      // The slider sets the room's volume in snapserver; the row shows what snapserver holds.
      await kitchen.getByRole('slider', { name: 'Volume of kitchen' }).fill('40');
      await L.until('snapserver holds volume 40', async () => (await L.snapVolume(snap.controlPort, 'kitchen'))?.percent === 40);
      await expectText(kitchen, /volume 40/);
      await kitchen.getByRole('button', { name: 'Mute kitchen' }).click();
      await L.until('snapserver mutes it', async () => (await L.snapVolume(snap.controlPort, 'kitchen'))?.muted === true);
      await expectText(kitchen, /muted/);
      await kitchen.getByRole('button', { name: 'Unmute kitchen' }).click();
      await L.until('snapserver unmutes it', async () => (await L.snapVolume(snap.controlPort, 'kitchen'))?.muted === false);

      // Set elsewhere (Snapweb): the page follows.
      await L.snapRpc(snap.controlPort, 'Client.SetVolume', { id: 'kitchen', volume: { muted: false, percent: 65 } });
      await expectText(kitchen, /volume 65/);

      // The room leaves; then snapserver goes: the panel says so and the party plays on.
      await clients.pop().stop();
      await expectText(kitchen, /not connected/, 15000);
      await snap.stop();
      await expectText(host.locator('#rooms-note'), /snapserver unreachable at 127\.0\.0\.1:\d+ .*retrying/, 15000);
      assert.equal(await kitchen.getByRole('slider').isDisabled(), true);
      assert.ok((await L.state(srv.url)).now_playing, 'the party plays on');
      // Back: the panel is live again.
      await snap.start();
      // (A snapserver killed before it saved forgets the room that had left.)
      await expectText(host.locator('#rooms-note'), /^No rooms yet/, 20000);
      noErrors(host);
    });
  } finally {
    for (const c of clients) await c.stop();
    await snap.stop();
  }
});

// --- garden party --------------------------------------------------------------------------------

t('garden: with a Wi-Fi the TV shows "1. Join the Wi-Fi" and "2. Open the jukebox" side by side; without, one QR code', { timeout: 90000 }, async () => {
  const SSID = '<b>x</b> Garden';
  /** The TV's join box: what it shows, and where its QR codes are. */
  const joinBox = async (tv) => tv.evaluate(() => {
    const img = (id) => {
      const e = document.getElementById(id);
      const r = e.getBoundingClientRect();
      return { shown: e.offsetParent !== null && r.width > 0, loaded: e.complete && e.naturalWidth > 0, x: r.x, y: r.y, w: r.width };
    };
    return {
      wifi: img('wifi-qr'),
      join: img('qr'),
      headings: [...document.querySelectorAll('#join h2')].filter((h) => h.offsetParent !== null).map((h) => h.textContent),
      ssid: document.getElementById('wifi-ssid').textContent,
      url: document.getElementById('join-url').textContent,
      injected: document.querySelectorAll('#join b, #join script').length,
    };
  });
  await withServer({ args: ['--wifi-ssid', SSID, '--wifi-password', 'garden-party-1'] }, async (srv, open) => {
    const { page: tv } = await open('/tv', L.TV);
    await L.pairTv(srv.url, tv);
    await L.until('the Wi-Fi step on the TV', async () => (await joinBox(tv)).ssid === SSID);
    await L.until('both QR codes drawn', async () => {
      const j = await joinBox(tv);
      return j.wifi.loaded && j.join.loaded;
    });
    const j = await joinBox(tv);
    assert.deepEqual(j.headings, ['1. Join the Wi-Fi', '2. Open the jukebox']);
    assert.equal(j.ssid, SSID, 'the SSID as text');
    assert.equal(j.injected, 0, 'no markup from the SSID');
    assert.ok(j.wifi.shown && j.join.shown, JSON.stringify(j));
    // Side by side: the Wi-Fi first, on the left, at the same height, neither overlapping.
    assert.ok(j.wifi.x + j.wifi.w <= j.join.x, JSON.stringify(j));
    assert.ok(Math.abs(j.wifi.y - j.join.y) < 2, JSON.stringify(j));
    // Without mDNS (these tests run with --no-mdns) the way in is the address, not a .local name.
    assert.equal(j.url, new URL(srv.url).host);
    noErrors(tv);
  });
  await withServer({}, async (srv, open) => {
    const { page: tv } = await open('/tv', L.TV);
    await L.pairTv(srv.url, tv);
    await L.until('the join address on the TV', async () => (await joinBox(tv)).url === new URL(srv.url).host);
    await L.until('the QR code drawn', async () => (await joinBox(tv)).join.loaded);
    const j = await joinBox(tv);
    assert.deepEqual(j.headings, ['Join from your phone']);
    assert.equal(j.wifi.shown, false, JSON.stringify(j));
    assert.ok(j.join.shown, JSON.stringify(j));
    noErrors(tv);
  });
});

t('dedication: a guest requests a song "for Anna"; the queue, the toast and the TV show it as text', { timeout: 90000 }, async () => {
  const FOR = '<b>Anna</b> & Lou';
  await withServer({ args: ['--no-repeat-minutes', '0', '--artist-spacing', '0'] }, async (srv, open) => {
    const { a, b, tv, host } = await room(srv, open);
    await setName(a, 'Sam');
    await L.until('the name reached the jukebox', async () => (await a.locator('.toast').allTextContents()).some((s) => s.includes('Your name is')));
    const [wanted] = await L.requestable(srv.url, 1);
    await a.getByRole('textbox', { name: /For someone/ }).fill(FOR);
    await request(a, wanted);
    await expectText(a.locator('.toast'), `Requested “${wanted}” for ${FOR}`);
    // The field is emptied once the request is in: the next one is for nobody.
    assert.equal(await a.getByRole('textbox', { name: /For someone/ }).inputValue(), '');
    await expectText(queueItem(b, wanted).locator('.by'), `Requested by Sam for ${FOR}`);
    await expectText(b.locator('.toast'), `Sam requested ${wanted} for ${FOR}`);
    await expectText(queueItem(host, wanted), `for ${FOR}`);

    // It plays: the TV reads "for Anna, from Sam", and so does its toast.
    await host.getByRole('button', { name: 'Skip', exact: true }).click();
    await expectTitle([a, tv], wanted);
    await expectText(tv.locator('#np-for'), `for ${FOR}, from Sam`);
    await expectText(tv.locator('.toast'), `${wanted} for ${FOR}, from Sam`);
    await expectText(b.locator('#np-by'), `Requested by Sam · for ${FOR}`);
    for (const p of [a, b, tv, host]) {
      assert.equal(await p.locator('#np-for b, .toast b, .queue b, .by b').count(), 0, `no markup from a dedication on ${p.url()}`);
    }
    // Too long: refused in plain words, and nothing is queued.
    const [other] = await L.requestable(srv.url, 1);
    await a.getByRole('textbox', { name: /For someone/ }).evaluate((el) => el.removeAttribute('maxlength'));
    await a.getByRole('textbox', { name: /For someone/ }).fill('x'.repeat(41));
    const row = await request(a, other);
    await expectText(row.locator('.why'), 'Dedication: at most 40 characters.');
    noErrors(a, b, tv, host);
  });
});

t('history: recently played lists the plays newest first with likes; a Request is offered only when the rules allow it', { timeout: 90000 }, async () => {
  await withServer({ args: ['--no-repeat-minutes', '30', '--artist-spacing', '0'] }, async (srv, open) => {
    const { a, b, tv, host } = await room(srv, open);
    const played = [];
    for (let i = 0; i < 3; i++) {
      const np = (await L.state(srv.url)).now_playing;
      played.unshift(np.track.title);
      await expectTitle([b], np.track.title);
      if (i === 1) {
        await b.getByRole('button', { name: 'Like', exact: true }).click();
        await expectText(b.locator('#likes'), /^1 like$/);
      }
      await host.getByRole('button', { name: 'Skip', exact: true }).click();
      await L.until('the next play', async () => (await L.state(srv.url)).now_playing.play_id !== np.play_id);
    }
    const now = (await L.state(srv.url)).now_playing.track.title;
    const list = a.getByRole('list', { name: 'Recently played' });
    // Newest first: what plays, then the three before it.
    await L.until('four plays listed', async () => (await list.getByRole('listitem').count()) === 4);
    const titles = await list.locator('.t').allTextContents();
    assert.deepEqual(titles, [now, ...played]);
    const item = (title) => list.getByRole('listitem').filter({ hasText: title }).first();
    await expectText(item(played[1]).locator('.s'), /1 like · skipped/);
    await expectText(item(now).locator('.s'), /playing now/);
    // Inside the no-repeat window: disabled, with the reason; the one playing likewise.
    await expectDisabled(item(played[0]).getByRole('button', { name: 'Request', exact: true }), true, 'a request of a song just played');
    await expectText(item(played[0]).locator('.why'), /It can be requested again in 30 minutes/);
    await expectText(item(now).locator('.why'), /playing right now/);
    // The TV shows the last three before what plays.
    const recent = tv.getByRole('list', { name: 'Recently played' });
    await L.until('three on the TV', async () => (await recent.getByRole('listitem').count()) === 3);
    assert.deepEqual(await recent.locator('.t').allTextContents(), played);

    // Without a no-repeat window the same song may be requested again from the list.
    await host.getByRole('spinbutton', { name: 'No repeat (minutes)' }).fill('0');
    await host.getByRole('button', { name: 'Save rules' }).click();
    await expectDisabled(item(played[0]).getByRole('button', { name: 'Request', exact: true }), false, 'a request again');
    await item(played[0]).getByRole('button', { name: 'Request', exact: true }).click();
    await expectText(a.locator('.toast'), `Requested “${played[0]}”`);
    await queueItem(b, played[0]).waitFor();
    noErrors(a, b, tv, host);
  });
});

t('content rules: the host blocks an artist and sets a pool; the search marks refused songs and the host page says when nothing may play', { timeout: 90000 }, async () => {
  await withServer({ args: ['--no-repeat-minutes', '0', '--artist-spacing', '0'] }, async (srv, open) => {
    const { page: a } = await open('/');
    const { page: host } = await open('/host');
    await L.hostLogin(host);
    await L.live(a);
    let np = (await L.state(srv.url)).now_playing;
    if (np.track.artist === 'ABBA') {
      await host.getByRole('button', { name: 'Skip', exact: true }).click();
      await L.until('another song', async () => (await L.state(srv.url)).now_playing.track.artist !== 'ABBA');
    }
    await host.getByRole('textbox', { name: /Blocked artists/ }).fill('abba\nNobody');
    await host.getByRole('button', { name: 'Save', exact: true }).click();
    await expectText(host.locator('#content-note'), 'Saved.');
    await search(a, 'dancing');
    const row = resultItem(a, 'Dancing Queen').first();
    await expectText(row.locator('.why'), /does not allow songs by this artist/);
    await expectDisabled(row.getByRole('button', { name: 'Request', exact: true }), true, 'a request of a blocked artist');
    // Other songs stay requestable.
    await search(a, 'heroes');
    await expectDisabled(resultItem(a, 'Heroes').first().getByRole('button', { name: 'Request', exact: true }), false, 'a request of another artist');

    // A pool nothing is in: the auto-DJ stops, and the host page says why.
    await host.getByRole('textbox', { name: /Only from folder/ }).fill('No such folder');
    await host.getByRole('button', { name: 'Save', exact: true }).click();
    np = (await L.state(srv.url)).now_playing;
    await host.getByRole('button', { name: 'Skip', exact: true }).click();
    await expectText(host.locator('#autodj-blocked'), /nothing to pick/);
    await L.until('nothing plays', async () => (await L.state(srv.url)).now_playing === null);
    await host.getByRole('textbox', { name: /Only from folder/ }).fill('');
    await host.getByRole('button', { name: 'Save', exact: true }).click();
    await L.until('the music is back', async () => (await L.state(srv.url)).now_playing !== null);
    assert.equal(await host.locator('#autodj-blocked').isHidden(), true);
    noErrors(a, host);
  });
});
