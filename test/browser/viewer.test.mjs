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
// b's data (test/tools/kvplant) shown red and repaired. It ends with a screenshot
// (<artifacts>/viewer.png). Every wait has a deadline; a global timeout kills everything this
// script started (by PID) and exits non-zero.

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
  const o = { bin: null, artifacts: path.join(here, 'artifacts'), timeout: 120, chromium: '/usr/bin/chromium' };
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
for (const b of ['kvnode', 'kvsync', 'kvcli']) {
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

  step('stop everything');
  await cleanup();
  for (const p of procs) info(`${p.label} (pid ${p.pid}) exited ${p.exitCode}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  finished = true;
  clearTimeout(globalTimer);
  console.log(`[${elapsed()}] viewer test passed`);
}

main().catch(fail);
