#!/usr/bin/env node
// Real-browser test of the kvsync live viewer (src/sync/viewer/), in Debian's chromium driven by
// playwright-core.
//
//   node viewer.test.mjs --bin <build dir with kvnode, kvsync, kvcli> [--artifacts DIR]
//                        [--timeout SECONDS] [--chromium PATH]
//
// It starts two nodes (a, b) and a syncer in a temp dir, opens the page the syncer serves, and
// checks that it shows, without reload: agreement; a new item arriving in the feed and in both
// columns; disagreement with the item in flight while the syncer is stopped; and agreement again
// once a new syncer is started on the same HTTP port and data dir; a divergence planted in node
// b's data (test/tools/kvplant) shown red and repaired, with a screenshot (<artifacts>/viewer.png).
// Then a large store: node c filled with a million items (test/tools/kvbulk) behind a syncer of
// its own; the page must show its first rows, page to the middle and the end, follow a new item
// and find items by id and title with a bounded DOM and heap. It prints first paint, time to
// the first rows, heap and DOM figures (printed, not asserted: this is a busy 2-core machine),
// and a screenshot (<artifacts>/viewer-large.png). Every wait has a deadline; a global timeout
// kills everything this script started (by PID) and exits non-zero.

import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

// ------------------------------------------------------------------ arguments

function parseArgs(argv) {
  const o = { bin: null, artifacts: path.join(here, 'artifacts'), timeout: 300, chromium: '/usr/bin/chromium' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--bin') o.bin = path.resolve(val());
    else if (a === '--artifacts') o.artifacts = path.resolve(val());
    else if (a === '--timeout') o.timeout = Number(val());
    else if (a === '--chromium') o.chromium = val();
    else if (a === '-h' || a === '--help') usage();
    else usage(`unknown argument: ${a}`);
  }
  if (!o.bin) usage('--bin is required');
  if (!(o.timeout > 0)) usage('--timeout must be a positive number of seconds');
  return o;
}

function usage(err) {
  if (err) console.error(`viewer.test.mjs: ${err}`);
  console.error('usage: node viewer.test.mjs --bin BUILD_DIR [--artifacts DIR] [--timeout SECONDS] [--chromium PATH]');
  process.exit(err ? 2 : 0);
}

const opts = parseArgs(process.argv.slice(2));
for (const b of ['kvnode', 'kvsync', 'kvcli', 'test/kvplant', 'test/kvbulk']) {
  const p = path.join(opts.bin, b);
  try {
    fs.accessSync(p, fs.constants.X_OK);
  } catch {
    usage(`${p} is missing or not executable`);
  }
}

// ------------------------------------------------------------------ progress

const t0 = Date.now();
let stepNo = 0;
let finished = false;   // set once the test passed or began failing: nothing new may start after
function elapsed() { return `${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s`; }
function alive() { if (finished) throw new Error('aborted'); }
function step(text) { alive(); console.log(`[${elapsed()}] ${++stepNo}. ${text}`); }
function info(text) { if (!finished) console.log(`[${elapsed()}]    ${text}`); }

// ------------------------------------------------------------------ processes

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kv-viewer-test-'));
const children = new Set();

class Proc {
  constructor(label, bin, args) {
    alive();
    this.label = label;
    this.lines = [];
    this.waiters = [];
    this.logPath = path.join(tmp, `${label}.log`);
    this.log = fs.createWriteStream(this.logPath, { flags: 'a' });
    this.log.write(`$ ${bin} ${args.join(' ')}\n`);
    this.child = spawn(path.join(opts.bin, bin), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.pid = this.child.pid;
    this.exited = false;
    this.exitCode = null;
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exited = true;
        this.exitCode = code ?? signal;
        children.delete(this);
        this.log.write(`[exited: ${code ?? signal}]\n`);
        for (const w of this.waiters) w.reject(new Error(`${label} exited (${code ?? signal}) before printing ${w.re}; see ${this.logPath}`));
        this.waiters = [];
        resolve();
      });
    });
    this.child.on('error', (err) => this.log.write(`[spawn error: ${err.message}]\n`));
    children.add(this);
    let buf = '';
    this.child.stdout.on('data', (d) => {
      this.log.write(d);
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => {
          const m = w.re.exec(line);
          if (m) w.resolve(m);
          return !m;
        });
      }
    });
    this.child.stderr.on('data', (d) => this.log.write(d));
  }

  /** Resolves with the match of the first stdout line matching re, within ms. */
  waitForLine(re, ms) {
    for (const line of this.lines) {
      const m = re.exec(line);
      if (m) return Promise.resolve(m);
    }
    if (this.exited) return Promise.reject(new Error(`${this.label} has exited; see ${this.logPath}`));
    return new Promise((resolve, reject) => {
      const w = { re, resolve, reject };
      this.waiters.push(w);
      setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${this.label} did not print ${re} within ${ms} ms; see ${this.logPath}`));
      }, ms).unref();
    });
  }

  /** SIGTERM by PID, then SIGKILL after graceMs; resolves once it has exited. */
  async stop(graceMs = 5000) {
    if (this.exited) return;
    try { process.kill(this.pid, 'SIGTERM'); } catch { /* already gone */ }
    const timer = setTimeout(() => {
      if (!this.exited) {
        this.log.write('[did not exit after SIGTERM: SIGKILL]\n');
        try { process.kill(this.pid, 'SIGKILL'); } catch { /* already gone */ }
      }
    }, graceMs);
    await this.exitPromise;
    clearTimeout(timer);
  }

  tail(n = 15) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-n).map((l) => `      ${l}`).join('\n');
    } catch {
      return '';
    }
  }
}

function kvcli(args, ms = 10000) {
  alive();
  return new Promise((resolve) => {
    execFile(path.join(opts.bin, 'kvcli'), args, { timeout: ms }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? err.signal ?? 1) : 0, stdout, stderr });
    });
  });
}

// ------------------------------------------------------------------ cleanup and timeout

let browser = null;
let page = null;
const procs = [];

async function cleanup() {
  if (browser) {
    const b = browser;
    browser = null;
    await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000).unref())]);
  }
  await Promise.all([...children].map((p) => p.stop(3000)));
}

async function fail(err) {
  if (finished) return;
  finished = true;
  console.error(`\nFAILED: ${err && err.stack ? err.stack : err}`);
  if (page) {
    try {
      const banner = await page.locator('#agreement').innerText({ timeout: 2000 });
      console.error(`  banner: ${banner.replace(/\s+/g, ' ')}`);
      fs.mkdirSync(opts.artifacts, { recursive: true });
      const shot = path.join(opts.artifacts, 'viewer-failure.png');
      await page.screenshot({ path: shot, timeout: 5000 });
      console.error(`  screenshot: ${shot}`);
    } catch { /* best effort */ }
  }
  for (const p of procs) console.error(`  ${p.label} (pid ${p.pid}${p.exited ? `, exited ${p.exitCode}` : ''}), log ${p.logPath}:\n${p.tail()}`);
  await cleanup();
  console.error(`  logs kept in ${tmp}`);
  process.exit(1);
}

const globalTimer = setTimeout(() => {
  fail(new Error(`global timeout: the test did not finish within ${opts.timeout} s`));
}, opts.timeout * 1000);

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => fail(new Error(`interrupted by ${sig}`)));
process.on('unhandledRejection', (err) => fail(err));

// ------------------------------------------------------------------ page helpers

const q = (s) => JSON.stringify(String(s));   // a quoted CSS attribute value
const col = (node) => `#nodes [data-node=${q(node)}]`;
const row = (node, id) => `${col(node)} .items [data-id=${q(id)}]`;

async function waitFor(what, fn, arg, ms = 15000) {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 });
  } catch (err) {
    throw new Error(`waiting for ${what}: ${err.message.split('\n')[0]}`);
  }
  info(`ok: ${what}`);
}

function bannerIs(state, ms) {
  return waitFor(`banner data-state="${state}"`,
    (s) => document.querySelector('#agreement')?.getAttribute('data-state') === s, state, ms);
}

async function bannerText() {
  return (await page.locator('#agreement').innerText()).replace(/\s+/g, ' ').trim();
}

async function createOnNode1(nodesArg, title) {
  // A node started without --standalone refuses writes until the syncer's first APPLY reaches
  // it: retry until it accepts one, within a deadline.
  const deadline = Date.now() + 15000;
  let delay = 100;
  for (;;) {
    const r = await kvcli(['--nodes', nodesArg, '--route', '1', '--json', 'create', title]);
    if (r.code === 0) {
      let id = null;
      try {
        const j = JSON.parse(r.stdout.trim().split('\n').pop());
        const it = (j.items || []).find((x) => x.title === title) || (j.items || [])[0] || j.item;
        id = it && it.id;
      } catch { /* fall back to the text form */ }
      if (!id) id = (/ID:(\S+?),/.exec(r.stdout) || [])[1];
      if (!id) throw new Error(`kvcli create printed no item id: ${r.stdout}`);
      return id;
    }
    if (Date.now() > deadline) throw new Error(`kvcli create failed (exit ${r.code}): ${r.stderr || r.stdout}`);
    info(`kvcli create not accepted yet (exit ${r.code}: ${(r.stderr || r.stdout).trim()}); retrying`);
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 1000);
  }
}

// ------------------------------------------------------------------ the large store

const LARGE_ITEMS = Number(process.env.KV_VIEWER_LARGE_ITEMS || 1000000);

function runTool(bin, args, ms) {
  alive();
  return new Promise((resolve, reject) => {
    const started = Date.now();
    execFile(path.join(opts.bin, bin), args, { timeout: ms, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${bin} ${args.join(' ')}: ${(stderr || err.message).trim()}`));
      else resolve({ stdout, ms: Date.now() - started });
    });
  });
}

async function getJson(url, ms = 5000) {
  const r = await fetch(url, { signal: AbortSignal.timeout(ms) });
  if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
  return r.json();
}

/** Polls fn (async, truthy when done) every 200 ms until it is, within ms. */
async function until(what, fn, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    alive();
    let last;
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() > deadline) throw new Error(`waiting for ${what}: not within ${ms} ms (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function memoryFigures(cdp) {
  await cdp.send('HeapProfiler.collectGarbage');
  const { metrics } = await cdp.send('Performance.getMetrics');
  const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
  const dom = await page.evaluate(() => ({
    elements: document.getElementsByTagName('*').length,
    rows: document.querySelectorAll('#nodes .items li').length,
  }));
  return { heapMB: m.JSHeapUsedSize / 1048576, nodes: m.Nodes, ...dom };
}

function checkBounds(f, when) {
  info(`${when}: JS heap ${f.heapMB.toFixed(1)} MB, DOM nodes ${f.nodes} (${f.elements} elements), ` +
    `${f.rows} item rows in the DOM`);
  if (f.rows > 300) throw new Error(`${when}: ${f.rows} item rows in the DOM (bound: 300)`);
  if (f.elements > 5000) throw new Error(`${when}: ${f.elements} elements in the DOM (bound: 5000)`);
  if (f.heapMB > 100) throw new Error(`${when}: JS heap ${f.heapMB.toFixed(1)} MB (bound: 100 MB)`);
}

async function largeStore(firstContext, pageErrors) {
  const N = LARGE_ITEMS;
  step('large store: stop the small cluster; fill a stopped node c with ' + N + ' items (kvbulk)');
  await Promise.all(procs.map((p) => p.stop(10000)));
  await firstContext.close();
  page = null;
  const dirC = path.join(tmp, 'node-c');
  const bulk = await runTool('test/kvbulk', [dirC, 'c', String(N)], 120000);
  info(`${bulk.stdout.trim()} (${bulk.ms} ms with the process)`);

  step('start kvnode c and a syncer of its own; wait until the syncer has stamped and applied every item');
  const nc = new Proc('kvnode-c', 'kvnode', ['--name', 'c', '--data', dirC, '--port', '0', '--http-port', '0']);
  procs.push(nc);
  const startC = Date.now();
  const mc = await nc.waitForLine(/^kvnode c ready binary=(\S+) http=(\S+)/, 30000);
  info(`node c ready in ${Date.now() - startC} ms: binary=${mc[1]} http=${mc[2]} (pid ${nc.pid})`);
  const syncStart = Date.now();
  const sc = new Proc('kvsync-c', 'kvsync', ['--nodes', mc[1], '--data', path.join(tmp, 'sync-c'), '--http-port', '0',
    '--durability', 'async']);
  procs.push(sc);
  const msc = await sc.waitForLine(/^kvsync ready nodes=(\S+) http=(\S+)/, 30000);
  const status = await until('node c synced (no unsynced change, every stamp applied)', async () => {
    const st = await getJson(`http://${mc[2]}/status`);
    return st.unsynced === 0 && st.applied_stamp > 0 && st.applied_stamp === st.syncer_stamp && st.items === N ? st : null;
  }, 120000);
  const syncMs = Date.now() - syncStart;
  info(`the syncer took node c's ${status.items} items in ${syncMs} ms (stamp ${status.applied_stamp})`);

  step('open the viewer on the large store; first rows, heap and DOM');
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  page = await context.newPage();
  page.on('pageerror', (err) => { pageErrors.push(err.message); console.log(`    [page error] ${err.message}`); });
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const opened = Date.now();
  await page.goto(`http://${msc[2]}/`, { waitUntil: 'load', timeout: 15000 });
  const listSel = `${col('c')} .items`;
  await waitFor('the first rows of node c', (sel) => !!document.querySelector(`${sel} [data-id]`), listSel, 30000);
  const seenMs = Date.now() - opened;
  const marks = await page.evaluate(() => {
    const paint = Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime]));
    const rows = performance.getEntriesByName('kv first rows c')[0];
    return { fp: paint['first-paint'], fcp: paint['first-contentful-paint'], rows: rows ? rows.startTime : null };
  });
  await waitFor(`node c's item count shown as ${N}`,
    ([sel, n]) => document.querySelector(sel)?.querySelector('.stats div:nth-child(3) dd')?.textContent === String(n),
    [col('c'), N]);
  const first = await memoryFigures(cdp);
  checkBounds(first, 'after the first rows');

  step('scroll to the middle, then to the end: the pages there are fetched');
  const scrollTo = (frac) => page.evaluate(([sel, f]) => {
    const l = document.querySelector(sel);
    l.scrollTop = f * (l.scrollHeight - l.clientHeight);
  }, [listSel, frac]);
  let t = Date.now();
  await scrollTo(0.5);
  await waitFor(`rows from the middle of node c (ids near ${N / 2})`,
    ([sel, n]) => {
      const ids = [...document.querySelectorAll(`${sel} [data-id]`)].map((e) => parseInt(e.getAttribute('data-id'), 10));
      return ids.length > 0 && ids.every((x) => Math.abs(x - n / 2) < n / 50);
    }, [listSel, N], 20000);
  const middleMs = Date.now() - t;
  t = Date.now();
  await scrollTo(1);
  const lastId = `${N}c`;
  await waitFor(`the last item ${lastId} shown`, ([sel, id]) => !!document.querySelector(`${sel} [data-id="${id}"]`),
    [listSel, lastId], 20000);
  const endMs = Date.now() - t;

  step('create an item on node c with kvcli: the list follows it, and the digests agree');
  const title = `large store live ${process.pid}`;
  const id = await createOnNode1(mc[1], title);
  await waitFor(`${id} shown at the end of node c's list, count ${N + 1}`,
    ([sel, colSel, i, n]) => !!document.querySelector(`${sel} [data-id="${i}"]`) &&
      document.querySelector(colSel)?.querySelector('.stats div:nth-child(3) dd')?.textContent === String(n),
    [listSel, col('c'), id, N + 1], 20000);
  await bannerIs('agree', 20000);
  info(`banner: ${await bannerText()}`);

  step('search by id and by title');
  const search = async (text, wantId) => {
    const s0 = Date.now();
    await page.fill('#search', text);
    await page.press('#search', 'Enter');
    await waitFor(`search "${text}" shows ${wantId} and nothing else`,
      ([sel, i]) => {
        const rows = [...document.querySelectorAll(`${sel} [data-id]`)];
        return rows.length === 1 && rows[0].getAttribute('data-id') === i;
      }, [listSel, wantId], 30000);
    return Date.now() - s0;
  };
  const byIdMs = await search(`${Math.round(N * 0.777777)}c`, `${Math.round(N * 0.777777)}c`);
  const wanted = Math.round(N * 0.654321);
  const byTitleMs = await search(`BULK ITEM ${wanted}`, `${wanted}c`);
  await page.fill('#search', '');
  await page.press('#search', 'Escape');
  await waitFor('the whole list back after the search', (sel) => document.querySelectorAll(`${sel} [data-id]`).length > 5, listSel);
  const after = await memoryFigures(cdp);
  checkBounds(after, 'after scrolling and searching');
  if (pageErrors.length) throw new Error(`uncaught errors in the page: ${pageErrors.join('; ')}`);

  fs.mkdirSync(opts.artifacts, { recursive: true });
  const shot = path.join(opts.artifacts, 'viewer-large.png');
  await page.screenshot({ path: shot });
  info(`saved ${shot}`);
  const ms = (x) => (x === null || x === undefined ? '?' : `${Math.round(x)} ms`);
  console.log(`[${elapsed()}] large store figures (${N} items, node c): populate ${bulk.ms} ms (kvbulk) + ` +
    `${syncMs} ms (syncer stamping and applying them); first paint ${ms(marks.fp)}, first contentful paint ` +
    `${ms(marks.fcp)}, first rows ${ms(marks.rows)} (seen by the test ${seenMs} ms after opening); ` +
    `JS heap ${first.heapMB.toFixed(1)} MB, DOM nodes ${first.nodes}, item rows ${first.rows} ` +
    `(after scrolling and searching: ${after.heapMB.toFixed(1)} MB, ${after.nodes} nodes, ${after.rows} rows); ` +
    `middle ${middleMs} ms, end ${endMs} ms; search by id ${byIdMs} ms, by title ${byTitleMs} ms`);
}

// ------------------------------------------------------------------ the test

async function main() {
  console.log(`viewer test: binaries from ${opts.bin}, temp dir ${tmp}`);

  step('start kvnode a and b');
  const nodeArgs = (name) => ['--name', name, '--data', path.join(tmp, `node-${name}`), '--port', '0', '--http-port', '0'];
  const na = new Proc('kvnode-a', 'kvnode', nodeArgs('a'));
  const nb = new Proc('kvnode-b', 'kvnode', nodeArgs('b'));
  procs.push(na, nb);
  const readyRe = (name) => new RegExp(`^kvnode ${name} ready binary=(\\S+) http=(\\S+)`);
  const [ma, mb] = await Promise.all([na.waitForLine(readyRe('a'), 15000), nb.waitForLine(readyRe('b'), 15000)]);
  const nodesArg = `${ma[1]},${mb[1]}`;
  info(`node a binary=${ma[1]} http=${ma[2]} (pid ${na.pid}); node b binary=${mb[1]} http=${mb[2]} (pid ${nb.pid})`);

  step('start kvsync');
  const syncData = path.join(tmp, 'sync');
  const syncArgs = (port) => ['--nodes', nodesArg, '--data', syncData, '--http-port', String(port)];
  const syncReadyRe = /^kvsync ready nodes=(\S+) http=(\S+)/;
  let sync = new Proc('kvsync-1', 'kvsync', syncArgs(0));
  procs.push(sync);
  const ms = await sync.waitForLine(syncReadyRe, 15000);
  const syncHttp = ms[2];
  const syncPort = Number(syncHttp.split(':').pop());
  info(`syncer http=${syncHttp} (pid ${sync.pid})`);

  step('launch chromium and open the viewer');
  browser = await chromium.launch({
    executablePath: opts.chromium,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
    timeout: 30000,
  });
  if (finished) { await browser.close(); alive(); }
  info(`chromium ${browser.version()}`);
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (err) => { pageErrors.push(err.message); console.log(`    [page error] ${err.message}`); });
  page.on('console', (msg) => {
    // Failed (re)connections while a process is down are expected; print everything else.
    if (msg.type() === 'error' && /WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource/.test(msg.text())) return;
    if (msg.type() === 'error' || msg.type() === 'warning') console.log(`    [console.${msg.type()}] ${msg.text()}`);
  });
  await page.goto(`http://${syncHttp}/`, { waitUntil: 'load', timeout: 15000 });
  await page.evaluate(() => { window.__viewerTestMarker = 'not reloaded'; });
  await waitFor('a column for each of node a and b', (sel) => sel.every((s) => document.querySelector(s)),
    [col('a'), col('b')]);
  await waitFor('syncer shown as connected', () => document.querySelector('#syncer')?.getAttribute('data-state') === 'live');
  await bannerIs('agree', 20000);
  info(`banner: ${await bannerText()}`);

  step('create an item on node 1 with kvcli; it reaches the feed and both columns');
  const title1 = `viewer test one ${process.pid}-${Date.now()}`;
  const id1 = await createOnNode1(nodesArg, title1);
  info(`kvcli created ${id1} "${title1}" on node a`);
  await waitFor(`feed entry: node a local create ${id1}`,
    (id) => !!document.querySelector(`#feed [data-node="a"][data-op="create"][data-id="${id}"]`), id1);
  await waitFor(`feed entry: node b synced create ${id1}`,
    (id) => !!document.querySelector(`#feed [data-node="b"][data-op="create"][data-id="${id}"]`), id1);
  await waitFor(`feed entry: syncer stamp with ${id1}`,
    (id) => [...document.querySelectorAll('#feed [data-node="syncer"][data-op="stamp"]')]
      .some((e) => (e.getAttribute('data-id') || '').split(' ').includes(id)), id1);
  await waitFor(`${id1} in both columns with its title, not in flight, banner agree`,
    ([ra, rb, title]) => [ra, rb].every((s) => {
      const e = document.querySelector(s);
      return e && !e.classList.contains('inflight') && e.textContent.includes(title);
    }) && document.querySelector('#agreement').getAttribute('data-state') === 'agree',
    [row('a', id1), row('b', id1), title1]);
  info(`banner: ${await bannerText()}`);

  step('stop the syncer (SIGTERM) and wait for it to exit');
  await sync.stop(10000);
  info(`kvsync exited (${sync.exitCode})`);
  await waitFor('syncer shown as disconnected', () => document.querySelector('#syncer')?.getAttribute('data-state') !== 'live');

  step('create another item on node 1 while the syncer is down: nodes disagree');
  const title2 = `viewer test two ${process.pid}-${Date.now()}`;
  const id2 = await createOnNode1(nodesArg, title2);
  info(`kvcli created ${id2} "${title2}" on node a`);
  await waitFor(`feed entry: node a local create ${id2}`,
    (id) => !!document.querySelector(`#feed [data-node="a"][data-op="create"][data-id="${id}"]`), id2);
  await bannerIs('disagree', 15000);
  await waitFor(`${id2} highlighted in flight in node a's column, absent from node b's`,
    ([ra, rb]) => document.querySelector(ra)?.classList.contains('inflight') && !document.querySelector(rb),
    [row('a', id2), row('b', id2)]);
  const text2 = await bannerText();
  info(`banner: ${text2}`);
  if (!/disagree/i.test(text2) || !/in flight/i.test(text2)) throw new Error(`banner text does not say disagree / in flight: ${text2}`);

  step(`restart kvsync on the same HTTP port (${syncPort}) and data dir`);
  sync = new Proc('kvsync-2', 'kvsync', syncArgs(syncPort));
  procs.push(sync);
  const ms2 = await sync.waitForLine(syncReadyRe, 15000);
  if (ms2[2] !== syncHttp) throw new Error(`restarted kvsync listens on ${ms2[2]}, not ${syncHttp}`);
  info(`syncer http=${ms2[2]} (pid ${sync.pid})`);

  step('the page reconnects by itself and shows agreement again');
  await waitFor('syncer shown as connected again', () => document.querySelector('#syncer')?.getAttribute('data-state') === 'live', undefined, 20000);
  await waitFor(`${id1} and ${id2} in both columns, none in flight, banner agree`,
    (sels) => sels.every((s) => {
      const e = document.querySelector(s);
      return e && !e.classList.contains('inflight');
    }) && !document.querySelector('#nodes .inflight') &&
      document.querySelector('#agreement').getAttribute('data-state') === 'agree',
    [row('a', id1), row('b', id1), row('a', id2), row('b', id2)], 20000);
  const marker = await page.evaluate(() => window.__viewerTestMarker);
  if (marker !== 'not reloaded') throw new Error('the page was reloaded');
  info('ok: the page was not reloaded');
  const text3 = await bannerText();
  info(`banner: ${text3}`);
  if (!/agree/i.test(text3) || /disagree/i.test(text3)) throw new Error(`banner text does not say agree: ${text3}`);

  step('plant a divergence: node b stopped, its copy of an item edited behind the syncer, restarted');
  // The repair is quick: record every state the banner takes instead of hoping to see it.
  await page.evaluate(() => {
    const el = document.querySelector('#agreement');
    window.__bannerStates = [];
    new MutationObserver(() => window.__bannerStates.push(el.getAttribute('data-state')))
      .observe(el, { attributes: true, attributeFilter: ['data-state'] });
  });
  await nb.stop(10000);
  const planted = `planted ${process.pid}`;
  await new Promise((resolve, reject) => {
    execFile(path.join(opts.bin, 'test', 'kvplant'), [path.join(tmp, 'node-b'), id1, planted],
      { timeout: 10000 }, (err, _out, stderr) => (err ? reject(new Error(`kvplant: ${stderr || err.message}`)) : resolve()));
  });
  const portOf = (addr) => addr.split(':').pop();
  const nb2 = new Proc('kvnode-b-2', 'kvnode',
    ['--name', 'b', '--data', path.join(tmp, 'node-b'), '--port', portOf(mb[1]), '--http-port', portOf(mb[2])]);
  procs.push(nb2);
  await nb2.waitForLine(readyRe('b'), 15000);
  const says = (text) => [...document.querySelectorAll('#feed .bad')].some((e) => e.textContent.includes(text));
  await waitFor("feed entry (error): node b holds other items than the syncer's log", says,
    "node b at stamp", 20000);
  await waitFor('the banner turned red (diverged)', () => window.__bannerStates.includes('diverged'));
  const seen = await page.evaluate(() => window.__bannerStates.join(' → '));
  info(`banner states: ${seen}`);
  step('the syncer repairs node b: agreement again, with the original title');
  await waitFor(`feed entry: node b holds the log's items again`,
    () => [...document.querySelectorAll('#feed li')].some((e) => e.textContent.includes("holds the log's items again")),
    undefined, 20000);
  await waitFor(`${id1} in node b's column with its title again`,
    ([rb, title]) => document.querySelector(rb)?.textContent.includes(title), [row('b', id1), title1], 20000);
  const red = await bannerText();
  info(`banner: ${red}`);
  if (!/diverged/i.test(red) || !/repaired/i.test(red)) throw new Error(`the banner does not say diverged, repaired: ${red}`);
  step('the red banner stays a while after the repair (15 s), then the nodes agree');
  await bannerIs('agree', 30000);
  info(`banner: ${await bannerText()}`);
  if (pageErrors.length) throw new Error(`uncaught errors in the page: ${pageErrors.join('; ')}`);

  step('screenshot');
  fs.mkdirSync(opts.artifacts, { recursive: true });
  const shot = path.join(opts.artifacts, 'viewer.png');
  await page.screenshot({ path: shot });
  info(`saved ${shot}`);

  await largeStore(context, pageErrors);

  step('stop everything');
  await cleanup();
  for (const p of procs) info(`${p.label} (pid ${p.pid}) exited ${p.exitCode}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  finished = true;
  clearTimeout(globalTimer);
  console.log(`[${elapsed()}] viewer test passed`);
}

main().catch(fail);
