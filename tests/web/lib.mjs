// Helpers for the browser tests: start and stop the real jukebox, launch Chromium, make test
// music, and phone-shaped browser contexts. Every wait is bounded.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.resolve(ROOT, process.env.JUKEBOX_BIN || 'target/debug/jukebox');
// Serve web/ from disk instead of the copy built into the binary (for working on the app).
export const WEB_DIR = process.env.JUKEBOX_WEB_DIR ? path.resolve(ROOT, process.env.JUKEBOX_WEB_DIR) : null;
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const PIN = '24681357';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tmpdir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `jukebox-web-${tag}-`));
}

/** Rejects after `ms` with `what` in the message, unless `p` settles first. */
export function within(ms, what, p) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms))),
  ]);
}

// Servers still running when this process ends (a crash, Ctrl-C) are killed with it.
const running = new Set();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    for (const p of running) p.kill('SIGKILL');
    process.exit(130);
  });
}

/**
 * Starts the jukebox. opts: {dir, music | demo, listen, pin, args: [...], embedded: serve the
 * binary's own copy of web/ even when JUKEBOX_WEB_DIR is set}.
 * Resolves with {url, port, proc, log(), stop()} once it logs `listening on http://…`.
 */
export async function startServer(opts = {}) {
  const dir = opts.dir || tmpdir('srv');
  const args = [
    '--db', path.join(dir, 'jukebox.db'),
    '--listen', opts.listen || '127.0.0.1:0',
    '--output', 'null',
    '--no-mdns',
    '--no-mpd',
    '--host-pin', opts.pin || PIN,
    '--guest-rate', '1000',
  ];
  if (opts.music) args.push('--music', opts.music);
  else args.push('--demo');
  if (WEB_DIR && !opts.embedded) args.push('--web-dir', WEB_DIR);
  args.push(...(opts.args || []));
  // The jukebox reads JUKEBOX_* variables too: it gets only the flags given here.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('JUKEBOX_')));
  const proc = spawn(BIN, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...env, JUKEBOX_LOG: 'info' } });
  running.add(proc);
  let log = '';
  const exited = new Promise((res) => proc.once('exit', (code, sig) => {
    running.delete(proc);
    res({ code, sig });
  }));
  const url = await within(opts.startTimeout || 60000, 'jukebox to log "listening on"', new Promise((resolve, reject) => {
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on (http:\/\/[0-9.:]+)/.exec(log);
      if (m) resolve(m[1]);
    });
    exited.then(({ code, sig }) => reject(new Error(`jukebox exited (${code ?? sig}) before listening:\n${log}`)));
  })).catch((e) => {
    proc.kill('SIGKILL');
    throw new Error(`${e.message}\n--- jukebox log ---\n${log}`);
  });
  const port = +new URL(url).port;
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const done = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
    if (!done) {
      proc.kill('SIGKILL');
      await Promise.race([exited, sleep(2000)]);
    }
  };
  return { url, port, dir, proc, stop, log: () => log };
}

// --- music -------------------------------------------------------------------------------------

export const TRACKS = [
  // [file, title, artist, album, seconds, freq, art]
  ['01-heroes.mp3', 'Heroes', 'David Bowie', 'Heroes', 600, 220, true],
  ['02-dancing-queen.mp3', 'Dancing Queen', 'ABBA', 'Arrival', 600, 262, false],
  ['03-le-freak.mp3', 'Le Freak', 'Chic', "C'est Chic", 600, 294, true],
  ['04-go-your-own-way.mp3', 'Go Your Own Way', 'Fleetwood Mac', 'Rumours', 600, 330, false],
  ['05-september.mp3', 'September', 'Earth, Wind & Fire', 'The Best of', 600, 349, false],
  ['06-hey-ya.mp3', 'Hey Ya!', 'OutKast', 'Speakerboxxx', 600, 392, false],
  ['07-take-on-me.mp3', 'Take On Me', 'a-ha', 'Hunting High and Low', 600, 440, false],
  ['08-xss.mp3', '<img src=x onerror=alert(1)>', '<b>x</b>', '<script>alert(2)</script>', 600, 494, false],
];

function ffmpeg(args) {
  execFileSync('ffmpeg', ['-v', 'error', '-y', ...args], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 60000 });
}

/**
 * A folder of long (10 min), tagged MP3s, made once per machine and reused: long enough that no
 * song ends by itself during a test. Includes a track whose tags are HTML.
 */
export function testMusic() {
  const dir = path.join(os.tmpdir(), 'jukebox-web-music-v1');
  const done = path.join(dir, '.complete');
  if (fs.existsSync(done)) return dir;
  fs.mkdirSync(dir, { recursive: true });
  const cover = path.join(dir, 'cover.png.tmp');
  ffmpeg(['-f', 'lavfi', '-i', 'color=c=0xd0702a:s=160x160', '-f', 'lavfi', '-i', 'color=c=0x2a70d0:s=80x80', '-filter_complex', '[0][1]overlay=40:40', '-frames:v', '1', '-f', 'image2', '-c:v', 'png', cover]);
  for (const [file, title, artist, album, secs, freq, art] of TRACKS) {
    const out = path.join(dir, file);
    const input = ['-f', 'lavfi', '-i', `sine=frequency=${freq}:duration=${secs}`];
    if (art) input.push('-i', cover);
    const map = art ? ['-map', '0:a', '-map', '1:v', '-c:v', 'copy', '-disposition:v', 'attached_pic', '-id3v2_version', '3'] : [];
    ffmpeg([...input, ...map, '-ac', '1', '-ar', '22050', '-b:a', '32k',
      '-metadata', `title=${title}`, '-metadata', `artist=${artist}`, '-metadata', `album=${album}`, out]);
  }
  fs.rmSync(cover);
  fs.writeFileSync(done, 'ok\n');
  return dir;
}

/** The test music without the track whose tags are HTML (for screenshots). */
export function showMusic() {
  const src = testMusic();
  const dir = path.join(os.tmpdir(), 'jukebox-web-music-show-v1');
  fs.mkdirSync(dir, { recursive: true });
  for (const [file, title] of TRACKS) {
    if (title.startsWith('<')) continue;
    const to = path.join(dir, file);
    if (!fs.existsSync(to)) fs.copyFileSync(path.join(src, file), to);
  }
  return dir;
}

// --- browser -------------------------------------------------------------------------------------

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
}

export const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, userAgent: 'Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36' };
export const TV = { viewport: { width: 1920, height: 1080 } };

/** A fresh browser context (its own storage: its own guest) and page, errors collected. */
export async function openPage(browser, url, opts = PHONE) {
  const context = await browser.newContext(opts);
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  page.errors = [];
  page.dialogs = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push('console: ' + m.text());
  });
  page.on('dialog', (d) => {
    page.dialogs.push(d.type() + ': ' + d.message());
    if (d.type() === 'confirm') d.accept();
    else d.dismiss();
  });
  await page.goto(url, { waitUntil: 'domcontentloaded' });
  return { context, page };
}

/** Waits until the page's connection status says Live. */
export async function live(page, timeout = 15000) {
  await page.getByRole('status').filter({ hasText: /^Live$/ }).waitFor({ timeout });
}

export async function hostLogin(page, pin = PIN) {
  await page.getByRole('textbox', { name: 'PIN', exact: true }).fill(pin);
  await page.getByRole('button', { name: 'Log in' }).click();
  await live(page);
}

/** Titles of the test music that the request rules allow now (not playing, not the HTML one). */
export async function requestable(url, n) {
  const st = await state(url);
  const playing = st.now_playing ? st.now_playing.track.artist : null;
  const queued = new Set(st.queue.items.map((e) => e.track.title));
  return TRACKS.filter(([, title, artist]) => artist !== playing && !queued.has(title) && !title.startsWith('<'))
    .slice(0, n)
    .map(([, title]) => title);
}

/** POSTs JSON (with a bearer token); returns the JSON answer, or throws on an error status. */
export async function post(url, path, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  const r = await fetch(url + path, { method: 'POST', headers, body: JSON.stringify(body) });
  const v = await r.json().catch(() => null);
  if (!r.ok) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(v)}`);
  return v;
}

/**
 * Pairs a TV page the way a host does: reads the code the TV shows and types it on the host
 * page (or, without one, sends it with a host token over HTTP); waits until the TV is live.
 */
export async function pairTv(url, tv, host = null) {
  const codeEl = tv.locator('#pair-code');
  await until('the TV shows a pairing code', async () => /^\d{3} \d{3}$/.test(((await codeEl.textContent()) || '').trim()), 15000);
  const code = (await codeEl.textContent()).replace(/\D/g, '');
  if (host) {
    await host.getByRole('textbox', { name: 'Pairing code' }).fill(code);
    await host.getByRole('button', { name: 'Pair', exact: true }).click();
    await host.getByRole('list', { name: 'Screens' }).getByRole('listitem').first().waitFor();
  } else {
    const login = await post(url, '/api/host/login', { pin: PIN });
    await post(url, '/api/host/pair_screen', { code }, login.token);
  }
  await live(tv);
}

/** The jukebox's state over HTTP (GET /api/state). */
export async function state(url) {
  const r = await fetch(url + '/api/state');
  if (!r.ok) throw new Error(`GET /api/state: ${r.status}`);
  return r.json();
}

/** Polls fn until it returns truthy; returns its value. */
export async function until(what, fn, timeout = 10000, every = 100) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    await sleep(every);
  }
}

// --- Snapcast (Debian's snapserver and snapclient, on loopback) --------------------------------

/** A free TCP port on 127.0.0.1. */
export async function freePort() {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** One JSON-RPC call on snapserver's control port (5 s at most). */
export async function snapRpc(port, method, params = {}) {
  const net = await import('node:net');
  return within(5000, `snapserver answers ${method}`, new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.setEncoding('utf8');
    s.on('error', reject);
    s.on('connect', () => s.write(JSON.stringify({ id: 1, jsonrpc: '2.0', method, params }) + '\r\n'));
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const v = JSON.parse(line);
        if (v.id === 1) {
          s.destroy();
          resolve(v);
        }
      }
    });
  }));
}

/** Client `id`'s volume as snapserver holds it ({percent, muted}), or null. */
export async function snapVolume(port, id) {
  const st = await snapRpc(port, 'Server.GetStatus');
  for (const g of st.result.server.groups) for (const c of g.clients) if (c.id === id) return c.config.volume;
  return null;
}

/**
 * snapserver with a pipe source in `dir`, its ports on loopback. Resolves with {controlPort,
 * streamPort, fifo, stop(), start()} once its control port answers.
 */
export async function startSnapserver(dir) {
  const [streamPort, controlPort] = [await freePort(), await freePort()];
  const data = path.join(dir, 'snapserver-data');
  fs.mkdirSync(data, { recursive: true });
  const fifo = path.join(dir, 'jukebox.fifo');
  const conf = path.join(dir, 'snapserver.conf');
  fs.writeFileSync(conf, [
    '[server]', `datadir = ${data}`,
    '[http]', 'enabled = false',
    '[tcp]', 'enabled = true', 'bind_to_address = 127.0.0.1', `port = ${controlPort}`,
    '[stream]', 'bind_to_address = 127.0.0.1', `port = ${streamPort}`, 'buffer = 500',
    `source = pipe://${fifo}?name=jukebox&sampleformat=48000:16:2&codec=pcm&mode=create`,
    '[logging]', 'sink = null', '',
  ].join('\n'));
  let proc = null;
  const start = async () => {
    proc = spawn('snapserver', ['-c', conf], { stdio: 'ignore' });
    running.add(proc);
    await until('snapserver answers on its control port', () => snapRpc(controlPort, 'Server.GetRPCVersion').catch(() => null), 10000);
  };
  const stop = async () => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const p = proc;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await within(5000, 'snapserver to exit', gone);
    running.delete(p);
  };
  await start();
  return { controlPort, streamPort, fifo, start, stop };
}

/** A snapclient of `server` named `hostId`, playing into nothing. Resolves with {stop()}. */
export function startSnapclient(server, hostId) {
  const proc = spawn('snapclient', ['-h', '127.0.0.1', '-p', String(server.streamPort), '--hostID', hostId,
    '--player', 'file:filename=null', '--logsink', 'null'], { stdio: 'ignore' });
  running.add(proc);
  return {
    stop: async () => {
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await within(5000, 'snapclient to exit', gone);
      running.delete(proc);
    },
  };
}
