// Screenshots of the guest, host and TV views at phone size (390×844) and TV size (1920×1080),
// with a realistic party going on, written to docs/screenshots/.
//
//   node tests/web/screenshots.mjs        (JUKEBOX_BIN, JUKEBOX_WEB_DIR as for run.mjs)
import fs from 'node:fs';
import path from 'node:path';
import * as L from './lib.mjs';

const OUT = path.join(L.ROOT, 'docs', 'screenshots');
fs.mkdirSync(OUT, { recursive: true });

const srv = await L.startServer({ music: L.showMusic() });
const browser = await L.launch();
const contexts = [];
async function open(p, opts = L.PHONE) {
  const r = await L.openPage(browser, srv.url + p, opts);
  contexts.push(r.context);
  return r.page;
}
const item = (page, listName, title) => page.getByRole('list', { name: listName }).getByRole('listitem').filter({ hasText: title }).first();
async function request(page, title) {
  await page.getByRole('searchbox', { name: 'Search' }).fill(title);
  await item(page, 'Search results', title).getByRole('button', { name: 'Request', exact: true }).click();
  await item(page, 'Queue', title).waitFor();
}
async function guest(name) {
  const page = await open('/');
  await L.live(page);
  await page.getByRole('textbox', { name: /Your name/ }).fill(name);
  await page.getByRole('button', { name: 'Save name' }).click();
  await L.until(`${name} named`, () => page.evaluate((n) => window.jukebox.state.me && window.jukebox.state.me.name === n, name));
  return page;
}
async function clean(page, full) {
  await page.evaluate((full) => {
    document.querySelectorAll('.toast').forEach((t) => t.remove());
    if (document.activeElement) document.activeElement.blur();
    // A sticky header would be drawn mid-page in a full-page picture.
    if (full) document.querySelector('.top').style.position = 'static';
  }, full);
  await L.sleep(300);
}

try {
  const host = await open('/host');
  await L.hostLogin(host);
  const mia = await guest('Mia');
  const sam = await guest('Sam');
  const lou = await guest('Lou');
  const tv = await open('/tv', L.TV);
  await L.pairTv(srv.url, tv, host);

  // Mia's request (with cover art) goes first and plays.
  const playing = (await L.state(srv.url)).now_playing.track.title;
  const want = playing === 'Heroes' ? 'Le Freak' : 'Heroes';
  await request(mia, want);
  await item(host, 'Queue', want).waitFor();
  await host.getByRole('button', { name: 'Skip', exact: true }).click();
  await L.until(`${want} playing`, async () => (await L.state(srv.url)).now_playing.track.title === want);

  const rest = L.TRACKS.map((t) => t[1]).filter((t) => !t.startsWith('<') && t !== want && t !== playing);
  await request(sam, rest[0]);
  await request(lou, rest[1]);
  await request(mia, rest[2]);
  await request(sam, rest[3]);
  await item(mia, 'Queue', rest[1]).getByRole('button', { name: 'Up-vote', exact: true }).click();
  await item(sam, 'Queue', rest[1]).getByRole('button', { name: 'Up-vote', exact: true }).click();
  await sam.getByRole('button', { name: 'Like', exact: true }).click();
  await lou.getByRole('button', { name: 'Like', exact: true }).click();
  await host.getByRole('button', { name: 'Skip', exact: true }).waitFor();
  await lou.getByRole('button', { name: 'Vote to skip', exact: true }).click();
  await L.until('state settled', async () => (await L.state(srv.url)).now_playing.likes === 2);
  // A bit into the song, so the progress bar shows.
  await host.evaluate(() => window.jukebox.command('seek', { position_ms: 83000 }));
  await L.sleep(1500);

  const shots = [];
  const shoot = async (page, name, full = false) => {
    await clean(page, full);
    const file = path.join(OUT, name);
    await page.screenshot({ path: file, fullPage: full });
    shots.push(name);
  };
  await shoot(mia, 'guest-phone.png');
  await shoot(mia, 'guest-phone-full.png', true);
  await shoot(host, 'host-phone.png');
  await shoot(host, 'host-phone-full.png', true);
  await shoot(tv, 'tv-tv.png');
  // A guest searching, with a refusal in plain words (the song is playing right now).
  await mia.evaluate(() => scrollTo(0, 0));
  await mia.getByRole('searchbox', { name: 'Search' }).fill(want.slice(0, 2));
  await item(mia, 'Search results', want).getByRole('button', { name: 'Request', exact: true }).click();
  await item(mia, 'Search results', want).locator('.why').filter({ hasText: /./ }).waitFor();
  await clean(mia, false);
  await mia.locator('#q').scrollIntoViewIfNeeded();
  await mia.screenshot({ path: path.join(OUT, 'guest-phone-search.png') });
  shots.push('guest-phone-search.png');

  // The same views at the other size.
  for (const [page, p, name, opts] of [
    [null, '/', 'guest-tv.png', L.TV],
    [null, '/host', 'host-tv.png', L.TV],
    [null, '/tv', 'tv-phone.png', L.PHONE],
  ]) {
    const ctx = await browser.newContext(opts);
    contexts.push(ctx);
    if (p === '/host') {
      const token = await host.evaluate(() => localStorage.getItem('jukebox.host.token'));
      await ctx.addInitScript((t) => localStorage.setItem('jukebox.host.token', t), token);
    }
    if (p === '/tv') {
      // The paired TV's screen token, so this one shows the party too.
      const token = await tv.evaluate(() => localStorage.getItem('jukebox.tv.screen'));
      await ctx.addInitScript((t) => localStorage.setItem('jukebox.tv.screen', t), token);
    }
    const pg = await ctx.newPage();
    await pg.goto(srv.url + p);
    await L.live(pg);
    await L.sleep(800);
    await shoot(pg, name);
  }
  console.log(`wrote ${shots.length} screenshots to ${path.relative(L.ROOT, OUT)}/: ${shots.join(', ')}`);
} finally {
  for (const c of contexts) await c.close().catch(() => {});
  await browser.close();
  await srv.stop();
}
