// kvstore live viewer. Served by kvsync at "/": location.host is the syncer's HTTP address.
//
// It keeps one WebSocket to the syncer (/ws: hello, stamp, applied, link) and one to every node
// (/ws: hello, local, synced), and reads each node's live items page by page (GET /items). Node
// HTTP addresses come from the syncer and are kept here, so node columns stay live while the
// syncer is away. Every socket reconnects by itself with a backoff (250 ms doubling to 5 s).
//
// Catch-up rule (docs: viewer spec): on every (re)connect to a node, if its hello's seq or
// applied_stamp differ from the last ones seen from it (or there is no snapshot yet), refetch
// its first page of /items, buffering notifications meanwhile, then apply only those newer than
// that page: local ones with seq > page.seq, synced ones with stamp > page.applied_stamp.
//
// A node with at most FULL_MAX items is read whole (a page or two) and compared item by item
// with the others: rows in flight and missing are marked. A larger one is never held whole: its
// column is a virtual list of `count` rows of fixed height, only the visible rows are in the
// DOM, and pages of PAGE_ROWS items are fetched as they scroll into view (by position, or after
// the previous page's last id) and kept in a bounded cache; notifications update the rows and
// mark the cached pages they shift as stale, refetched when seen. Nodes that large are compared
// by the syncer's digests. The search box asks every node for matches (/items?q=), a page at a
// time, each request looking at a bounded number of items, and shows them in the same list.
//
// All text from the wire goes into the page through textContent or setAttribute only.
'use strict';

(() => {
  const FEED_MAX = 200;
  const BACKOFF_MIN_MS = 250;
  const BACKOFF_MAX_MS = 5000;
  const STAMP_CHANGES_SHOWN = 4;
  const FULL_MAX = 5000;        // a node with at most this many items is held whole
  const PAGE_ROWS = 200;        // rows per page of a large node's list
  const PAGE_CACHE_MAX = 40;    // pages kept per node (least recently used go first)
  const PAGE_FETCHES = 2;       // page requests in flight per node at most
  const STALE_REFETCH_MS = 300; // a visible stale page is refetched at most this often
  const SEARCH_PAGE = 200;      // matches asked for per search request
  const SEARCH_MAX = 10000;     // matches kept per node
  const SEARCH_DEBOUNCE_MS = 250;
  const ROW_H = 28;             // px; keep in step with .item in viewer.css
  // Browsers cap an element's height (about 33 million px in Chromium): beyond this the list's
  // scrollbar is scaled, each pixel of it standing for more than one pixel of rows.
  const MAX_SPACER_PX = 8000000;

  const wsScheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  // The cluster secret, if the URL carries one after '#secret=' (scripts/cluster.sh prints it
  // so). A fragment never goes to a server; we send it only to the cluster's own endpoints.
  const secretMatch = /(?:^#|&)secret=([^&]*)/.exec(location.hash);
  const secretQuery = secretMatch ? `secret=${secretMatch[1]}` : '';
  const withSecret = (url) =>
    secretQuery ? url + (url.includes('?') ? '&' : '?') + secretQuery : url;
  const httpScheme = location.protocol === 'https:' ? 'https:' : 'http:';

  // ---------------------------------------------------------------- state

  const syncer = {
    status: 'connecting',   // connecting | live | down
    stamp: null,
    ws: null,
    gen: 0,
    backoff: BACKOFF_MIN_MS,
    timer: null,
    retryAt: 0,
    everLive: false,
  };

  /** address -> NodeView, in the syncer's order. */
  const nodes = new Map();
  let nodesKnown = false;

  function newNodeView(address) {
    return {
      address,
      name: '',
      http: '',
      syncerLink: null,       // the syncer's view of its link to the node (true/false/null)
      syncerApplied: null,    // the syncer's last 'applied' stamp for the node
      // this page's own connection to the node
      status: 'no-address',   // no-address | connecting | catching-up | live | down
      ws: null,
      gen: 0,
      backoff: BACKOFF_MIN_MS,
      timer: null,
      retryAt: 0,
      lastError: '',
      // the node's state as this page knows it
      hasSnapshot: false,
      full: false,            // items holds every live item (count <= FULL_MAX)
      items: new Map(),       // full: id -> {id, title, completed, version}
      count: null,            // live items on the node (its /items count, then notifications)
      pages: new Map(),       // large: page index -> {items, stale}; least recently used first
      pageOf: new Map(),      // large: id -> page index, for the cached pages
      loading: new Set(),     // large: page indexes being fetched
      dead: new Set(),        // large: ids seen deleted (a delete is notified again when stamped)
      staleAt: 0,             // when a stale page was last refetched
      staleTimer: null,       // the refetch of a stale page that had to wait
      listGen: 0,             // bumped when the list starts over: older page answers are dropped
      search: null,           // {q, results, seen, next, done, scanned, busy, error}
      seq: null,              // last local seq seen (snapshot or notification)
      appliedStamp: null,     // last applied stamp seen (snapshot or notification)
      // the syncer's digest comparisons of this node with its log (docs/sync.md, "Digests")
      check: null,            // {stamp, agrees}: the latest comparison
      diverged: false,        // the syncer found it holding other items than the log
      divergence: '',         // the syncer's sentence about it
      repairedAt: null,       // when it agreed again (the banner stays red a while after)
      baseline: null,         // {seq, stamp}: notifications at or below it are already in the snapshot
      pending: null,          // notifications buffered while /items is being fetched
      rev: 0,                 // bumped on every change of items
      dom: null,
    };
  }

  // ---------------------------------------------------------------- helpers

  function pad(n, w) { return String(n).padStart(w, '0'); }

  function clock(d) {
    return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function str(v) { return typeof v === 'string' ? v : (v === undefined || v === null ? '' : String(v)); }
  function num(v) { return typeof v === 'number' && Number.isFinite(v) ? v : null; }

  // Ids are "<number><node name>" (12a): sort by the number, then the name.
  const ID_RE = /^(\d+)(.*)$/;
  const idKeys = new Map();
  function idKey(id) {
    let k = idKeys.get(id);
    if (k === undefined) {
      const m = ID_RE.exec(id);
      k = m ? [0, Number(m[1]), m[2], id] : [1, 0, id, id];
      if (idKeys.size > 100000) idKeys.clear();
      idKeys.set(id, k);
    }
    return k;
  }
  function compareIds(a, b) {
    const ka = idKey(a), kb = idKey(b);
    for (let i = 0; i < 4; i++) {
      if (ka[i] < kb[i]) return -1;
      if (ka[i] > kb[i]) return 1;
    }
    return 0;
  }

  /** An item as the page keeps it; sig is what "identical on every node" compares. */
  function normItem(it) {
    const n = {
      id: str(it && it.id),
      title: str(it && it.title),
      completed: !!(it && it.completed),
      deleted: !!(it && it.deleted),
      version: num(it && it.version),
      sig: '',
    };
    n.sig = JSON.stringify([n.id, n.title, n.completed, n.version]);
    return n;
  }

  function nodeLabel(v) { return v.name || v.address; }

  function parse(data) {
    if (typeof data !== 'string') return null;
    try {
      const m = JSON.parse(data);
      return m && typeof m === 'object' ? m : null;
    } catch (_) {
      return null;
    }
  }

  function nextBackoff(obj) {
    const d = obj.backoff;
    obj.backoff = Math.min(obj.backoff * 2, BACKOFF_MAX_MS);
    return d;
  }

  // ---------------------------------------------------------------- render scheduling

  // State changes at once; the page is redrawn at most every RENDER_EVERY_MS, so that a burst of
  // thousands of notifications a second costs a few redraws, not one each.
  const RENDER_EVERY_MS = 100;
  let renderQueued = false;
  let lastRender = 0;
  function schedule() {
    if (renderQueued) return;
    renderQueued = true;
    const wait = Math.max(0, lastRender + RENDER_EVERY_MS - performance.now());
    // rAF when visible; the longer timeout keeps rendering going in background tabs too.
    setTimeout(() => requestAnimationFrame(flush), wait);
    setTimeout(flush, wait + 250);
  }
  function flush() {
    if (!renderQueued) return;
    renderQueued = false;
    lastRender = performance.now();
    renderSyncer();
    renderNodes();
    renderAgreement();
    flushFeed();
  }

  // ---------------------------------------------------------------- feed

  const feedEl = document.getElementById('feed');
  let feedQueue = [];

  /** Queue one feed entry; fields: kind, node, op, id, title, version, detail, text, bad. */
  function feed(entry) {
    entry.at = new Date();
    feedQueue.push(entry);
    if (feedQueue.length > 2 * FEED_MAX) feedQueue = feedQueue.slice(-FEED_MAX);
    schedule();
  }

  /** The viewer's own events (its connections, catch-ups), about `subject` (a node or the syncer). */
  function feedMeta(subject, text, bad) {
    feed({ kind: 'meta', node: 'viewer', subject, op: bad ? 'error' : 'info', text, bad: !!bad });
  }

  function buildFeedEntry(e) {
    const li = el('li', `ev kind-${e.kind} fresh${e.bad ? ' bad' : ''}`);
    li.setAttribute('data-node', str(e.node));
    li.setAttribute('data-op', str(e.op));
    if (e.id) li.setAttribute('data-id', str(e.id));
    if (e.subject) li.setAttribute('data-subject', str(e.subject));
    li.appendChild(el('time', null, clock(e.at)));
    li.appendChild(el('span', 'who', str(e.node)));
    const what = el('span', 'what');
    if (e.kind === 'local' || e.kind === 'synced') {
      what.appendChild(el('span', 'op', e.op));
      what.appendChild(el('span', 'id', e.id));
      what.appendChild(el('span', 'title', `"${e.title}"`));
      if (e.completed) what.appendChild(el('span', 'detail', '✓ completed'));
      what.appendChild(el('span', 'ver', e.version === null ? 'v?' : `v${e.version}`));
      what.appendChild(el('span', 'detail', e.detail));
    } else if (e.kind === 'syncer') {
      what.appendChild(el('span', 'op', e.op));
      what.appendChild(document.createTextNode(e.text));
    } else {
      what.textContent = e.text;
    }
    li.appendChild(what);
    return li;
  }

  function flushFeed() {
    if (feedQueue.length === 0) return;
    const batch = feedQueue.length > FEED_MAX ? feedQueue.slice(-FEED_MAX) : feedQueue;
    feedQueue = [];
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.appendChild(buildFeedEntry(batch[i]));
    feedEl.insertBefore(frag, feedEl.firstChild);
    while (feedEl.childElementCount > FEED_MAX) feedEl.removeChild(feedEl.lastElementChild);
  }

  // ---------------------------------------------------------------- syncer connection

  function connectSyncer() {
    clearTimeout(syncer.timer);
    syncer.timer = null;
    const gen = ++syncer.gen;
    syncer.status = 'connecting';
    schedule();
    let ws;
    try {
      ws = new WebSocket(withSecret(`${wsScheme}//${location.host}/ws`));
    } catch (err) {
      syncerDown(gen, String(err));
      return;
    }
    syncer.ws = ws;
    ws.onmessage = (ev) => {
      if (gen !== syncer.gen) return;
      const m = parse(ev.data);
      if (m) onSyncerMessage(m);
    };
    ws.onclose = () => syncerDown(gen);
    ws.onerror = () => { /* a close event follows */ };
  }

  function syncerDown(gen) {
    if (gen !== syncer.gen) return;
    const wasLive = syncer.status === 'live';
    syncer.ws = null;
    syncer.status = 'down';
    const delay = nextBackoff(syncer);
    syncer.retryAt = Date.now() + delay;
    if (wasLive) feedMeta('syncer', 'viewer lost its connection to the syncer; reconnecting', true);
    syncer.timer = setTimeout(connectSyncer, delay);
    schedule();
  }

  function onSyncerMessage(m) {
    switch (m.type) {
      case 'hello': {
        const first = !syncer.everLive;
        syncer.status = 'live';
        syncer.everLive = true;
        syncer.backoff = BACKOFF_MIN_MS;
        syncer.stamp = num(m.stamp);
        if (Array.isArray(m.nodes)) updateNodes(m.nodes, true);
        feedMeta('syncer', `viewer ${first ? 'connected' : 'reconnected'} to the syncer at stamp ${syncer.stamp ?? '?'}`);
        break;
      }
      case 'stamp': {
        const s = num(m.stamp);
        if (s !== null && (syncer.stamp === null || s > syncer.stamp)) syncer.stamp = s;
        const changes = Array.isArray(m.changes) ? m.changes : [];
        const parts = changes.slice(0, STAMP_CHANGES_SHOWN).map((c) => {
          const it = normItem(c && c.item);
          return `${str(c && c.op)} ${it.id}`;
        });
        if (changes.length > STAMP_CHANGES_SHOWN) parts.push(`+${changes.length - STAMP_CHANGES_SHOWN} more`);
        const n = changes.length;
        feed({
          kind: 'syncer', node: 'syncer', op: 'stamp',
          id: changes.map((c) => normItem(c && c.item).id).join(' '),
          text: `stamp ${s ?? '?'}: origin ${str(m.origin)}, ${n} change${n === 1 ? '' : 's'}` +
            (parts.length ? ` (${parts.join(', ')})` : ''),
        });
        break;
      }
      case 'applied': {
        const s = num(m.stamp);
        const name = str(m.node);
        for (const v of nodes.values()) {
          if (v.name === name && s !== null) v.syncerApplied = s;
        }
        // `changed` (how many changes the node took) is optional: shown when the syncer sends it.
        const changed = num(m.changed);
        const extra = changed === null ? '' : ` (${changed === 0 ? 'nothing new' : `${changed} change${changed === 1 ? '' : 's'}`})`;
        if (m.checked === true && s !== null) {
          for (const v of nodes.values()) {
            if (v.name !== name) continue;
            v.check = { stamp: s, agrees: m.agrees === true };
            if (m.agrees === true) divergenceRepaired(v);
          }
        }
        feed({ kind: 'syncer', node: 'syncer', op: 'applied', text: `applied on node ${name} up to ${s ?? '?'}${extra}` });
        break;
      }
      case 'divergence':
      case 'repaired': {
        const name = str(m.node);
        const diverged = m.type === 'divergence';
        for (const v of nodes.values()) {
          if (v.name !== name) continue;
          if (diverged) {
            v.diverged = true;
            v.repairedAt = null;
            v.divergence = str(m.text);
          } else {
            divergenceRepaired(v);
          }
        }
        feedMeta('syncer', str(m.text), diverged);
        break;
      }
      case 'link': {
        updateNodes([m], false);
        const up = !!m.connected;
        const who = str(m.name) || str(m.address);
        feed({
          kind: 'syncer', node: 'syncer', op: up ? 'link-up' : 'link-down',
          text: `link ${up ? 'up' : 'down'}: node ${who} (${str(m.address)}${m.http ? `, http ${str(m.http)}` : ''})`,
        });
        break;
      }
      default:
        break;
    }
    schedule();
  }

  /** Merges node descriptions from the syncer; `full` lists every node (hello, /nodes). */
  function updateNodes(list, full) {
    const seen = new Set();
    for (const raw of list) {
      const address = str(raw && raw.address);
      if (!address) continue;
      seen.add(address);
      let v = nodes.get(address);
      if (!v) {
        v = newNodeView(address);
        nodes.set(address, v);
      }
      const name = str(raw.name);
      const http = str(raw.http);
      if (typeof raw.connected === 'boolean') v.syncerLink = raw.connected;
      if (num(raw.applied_stamp) !== null) v.syncerApplied = raw.applied_stamp;
      if (raw.diverged === true && !v.diverged) {
        v.diverged = true;
        v.repairedAt = null;
      } else if (raw.diverged === false) {
        divergenceRepaired(v);
      }
      if (name && v.name && name !== v.name) {
        // Another node now answers at this address: what we knew is about a different node.
        resetSnapshot(v);
      }
      if (name) v.name = name;
      if (http && http !== v.http) {
        v.http = http;
        connectNode(v);
      }
    }
    if (full) {
      nodesKnown = true;
      for (const [address, v] of nodes) {
        if (!seen.has(address)) {
          dropNode(v);
          nodes.delete(address);
        }
      }
      // Keep the syncer's order.
      const ordered = [];
      for (const raw of list) {
        const v = nodes.get(str(raw && raw.address));
        if (v && !ordered.includes(v)) ordered.push(v);
      }
      nodes.clear();
      for (const v of ordered) nodes.set(v.address, v);
    }
    schedule();
  }

  function fetchNodeList() {
    fetch(`${httpScheme}//${location.host}/nodes`, { cache: 'no-store' })
      .then((r) => (r.ok ? r.json() : null))
      .then((j) => {
        // The WebSocket hello is authoritative once it has arrived.
        if (j && Array.isArray(j.nodes) && syncer.status !== 'live') {
          if (syncer.stamp === null && num(j.stamp) !== null) syncer.stamp = j.stamp;
          updateNodes(j.nodes, !nodesKnown);
        }
      })
      .catch(() => { /* the WebSocket will retry */ });
  }

  // ---------------------------------------------------------------- node connections

  function resetSnapshot(v) {
    v.hasSnapshot = false;
    v.rev++;
    v.full = false;
    v.items = new Map();
    v.count = null;
    clearPages(v);
    v.seq = null;
    v.appliedStamp = null;
    v.baseline = null;
    v.pending = null;
  }

  function clearPages(v) {
    v.pages = new Map();
    v.pageOf = new Map();
    v.loading = new Set();
    v.dead = new Set();
    v.listGen++;
  }

  function dropNode(v) {
    v.gen++;
    clearTimeout(v.timer);
    if (v.ws) { try { v.ws.close(); } catch (_) { /* ignore */ } }
    v.ws = null;
    if (v.dom) v.dom.root.remove();
    v.dom = null;
  }

  function connectNode(v) {
    clearTimeout(v.timer);
    v.timer = null;
    const gen = ++v.gen;
    if (v.ws) {
      const old = v.ws;
      v.ws = null;
      try { old.close(); } catch (_) { /* ignore */ }
    }
    v.pending = null;
    if (!v.http) {
      v.status = 'no-address';
      schedule();
      return;
    }
    v.status = 'connecting';
    schedule();
    let ws;
    try {
      ws = new WebSocket(withSecret(`${wsScheme}//${v.http}/ws`));
    } catch (err) {
      nodeDown(v, gen, String(err));
      return;
    }
    v.ws = ws;
    ws.onmessage = (ev) => {
      if (gen !== v.gen) return;
      const m = parse(ev.data);
      if (m) onNodeMessage(v, gen, m);
    };
    ws.onclose = (ev) => nodeDown(v, gen, ev.reason || '');
    ws.onerror = () => { /* a close event follows */ };
  }

  function nodeDown(v, gen, reason) {
    if (gen !== v.gen) return;
    const was = v.status;
    v.ws = null;
    v.pending = null;
    v.status = 'down';
    v.lastError = reason || '';
    const delay = nextBackoff(v);
    v.retryAt = Date.now() + delay;
    if (was === 'live' || was === 'catching-up') {
      feedMeta(nodeLabel(v), `viewer lost its connection to node ${nodeLabel(v)}${reason ? ` (${reason})` : ''}; reconnecting`, true);
    }
    v.timer = setTimeout(() => { if (gen === v.gen) connectNode(v); }, delay);
    schedule();
  }

  function onNodeMessage(v, gen, m) {
    if (m.type === 'hello') {
      onNodeHello(v, gen, m);
    } else if (m.type === 'local' || m.type === 'synced') {
      feedNotification(v, m);
      if (v.pending) {
        v.pending.push(m);
      } else if (v.status === 'live') {
        applyNotification(v, m);
      }
    }
    schedule();
  }

  function onNodeHello(v, gen, m) {
    const name = str(m.node);
    if (name && v.name && name !== v.name) resetSnapshot(v);
    if (name) v.name = name;
    const seq = num(m.seq);
    const stamp = num(m.applied_stamp);
    const missed = !v.hasSnapshot || seq !== v.seq || stamp !== v.appliedStamp;
    if (!missed) {
      v.baseline = { seq: v.seq, stamp: v.appliedStamp };
      v.status = 'live';
      v.backoff = BACKOFF_MIN_MS;
      feedMeta(nodeLabel(v), `viewer connected to node ${nodeLabel(v)}: nothing missed (seq ${seq}, stamp ${stamp})`);
      return;
    }
    v.status = 'catching-up';
    v.pending = [];
    loadSnapshot(v, gen)
      .then((snap) => {
        if (gen !== v.gen) return;
        applySnapshot(v, snap);
      })
      .catch((err) => {
        if (gen !== v.gen) return;
        feedMeta(nodeLabel(v), `viewer could not fetch node ${nodeLabel(v)}'s items: ${err.message || err}`, true);
        // Start over with a fresh connection (and a fresh hello) after the backoff.
        const old = v.ws;
        if (old) {
          old.onclose = null;
          try { old.close(); } catch (_) { /* ignore */ }
        }
        nodeDown(v, gen, 'snapshot failed');
      });
  }

  /** GET /items on node v with these query parameters; resolves with the parsed page. */
  function getItems(v, params) {
    const qs = Object.entries(params).map(([k, x]) => `${k}=${encodeURIComponent(x)}`).join('&');
    return fetch(withSecret(`${httpScheme}//${v.http}/items?${qs}`), { cache: 'no-store' })
      .then(async (r) => {
        if (!r.ok) {
          // A 400 says what was wrong with the request in a sentence.
          const why = r.status === 400 ? (await r.text().catch(() => '')).trim().slice(0, 200) : '';
          throw new Error(`GET /items: HTTP ${r.status}${why ? ` (${why})` : ''}`);
        }
        return r.json();
      })
      .then((j) => {
        if (!j || typeof j !== 'object' || !Array.isArray(j.items)) throw new Error('GET /items: not a page of items');
        return j;
      });
  }

  /**
   * The first page; then, for a node of at most FULL_MAX items, the rest of them. Resolves with
   * {node, seq, applied_stamp, count, first: items of page 0, all: every item (or null)}.
   */
  async function loadSnapshot(v, gen) {
    const first = await getItems(v, { limit: PAGE_ROWS });
    const snap = { node: first.node, seq: first.seq, applied_stamp: first.applied_stamp,
      count: num(first.count), first: first.items, all: null };
    let next = str(first.next);
    if (next && (snap.count === null || snap.count > FULL_MAX)) return snap;
    const all = first.items.slice();
    // Small: read the rest too. Changes made meanwhile are in the buffered notifications, applied
    // on top (they are all newer than the first page's seq and stamp).
    while (next) {
      if (gen !== v.gen) throw new Error('superseded');
      const page = await getItems(v, { after: next, limit: FULL_MAX });
      all.push(...page.items);
      next = str(page.next);
      if (all.length > 2 * FULL_MAX) return snap;   // it grew meanwhile: page it
    }
    snap.all = all;
    return snap;
  }

  function applySnapshot(v, snap) {
    const name = str(snap && snap.node);
    if (name) v.name = name;
    clearPages(v);
    v.items = new Map();
    v.full = snap.all !== null;
    if (v.full) {
      for (const raw of snap.all) {
        const it = normItem(raw);
        if (it.id && !it.deleted) v.items.set(it.id, it);
      }
      v.count = v.items.size;
    } else {
      v.count = snap.count ?? 0;
      putPage(v, 0, snap.first.map(normItem));
    }
    v.rev++;
    v.seq = num(snap.seq);
    v.appliedStamp = num(snap.applied_stamp);
    v.baseline = { seq: v.seq ?? 0, stamp: v.appliedStamp ?? 0 };
    v.hasSnapshot = true;
    const pending = v.pending || [];
    v.pending = null;
    let applied = 0;
    for (const m of pending) if (applyNotification(v, m)) applied++;
    v.status = 'live';
    v.backoff = BACKOFF_MIN_MS;
    feedMeta(nodeLabel(v), (v.full
      ? `viewer fetched node ${nodeLabel(v)}'s items: ${v.count}`
      : `viewer reads node ${nodeLabel(v)}'s ${v.count} items page by page`) +
      ` at seq ${v.baseline.seq}, stamp ${v.baseline.stamp}` +
      (pending.length ? `; ${applied} of ${pending.length} buffered notifications were newer` : ''));
    if (searchText) startSearch(v);
    schedule();
  }

  // ---------------------------------------------------------------- a large node's pages

  /** Caches page k of a large node (most recently used last; the oldest go beyond the bound). */
  function putPage(v, k, items) {
    dropPage(v, k);
    v.pages.set(k, { items, stale: false });
    for (const it of items) v.pageOf.set(it.id, k);
    while (v.pages.size > PAGE_CACHE_MAX) {
      const oldest = v.pages.keys().next().value;
      dropPage(v, oldest);
    }
  }

  function dropPage(v, k) {
    const p = v.pages.get(k);
    if (!p) return;
    for (const it of p.items) if (v.pageOf.get(it.id) === k) v.pageOf.delete(it.id);
    v.pages.delete(k);
  }

  /** Page k, marked as just used. */
  function usePage(v, k) {
    const p = v.pages.get(k);
    if (p) { v.pages.delete(k); v.pages.set(k, p); }
    return p;
  }

  /** Fetches what the visible rows of a large node lack (and stale pages they show), a few at a time. */
  function fetchVisiblePages(v) {
    if (v.full || !v.hasSnapshot || !v.http || searchText || !v.dom) return;
    const [first, n] = visibleRange(v);
    if (n === 0) return;
    const lo = Math.floor(first / PAGE_ROWS);
    const hi = Math.floor(Math.min(first + n, v.count) / PAGE_ROWS);
    const now = Date.now();
    for (let k = lo; k <= hi && v.loading.size < PAGE_FETCHES; k++) {
      if (v.loading.has(k) || k * PAGE_ROWS >= Math.max(v.count, 1)) continue;
      const p = v.pages.get(k);
      if (p && !p.stale) continue;
      if (p && p.stale && now - v.staleAt < STALE_REFETCH_MS) {
        if (!v.staleTimer) {
          v.staleTimer = setTimeout(() => { v.staleTimer = null; fetchVisiblePages(v); }, STALE_REFETCH_MS);
        }
        continue;
      }
      if (p) v.staleAt = now;
      fetchPage(v, k);
    }
  }

  function fetchPage(v, k) {
    const listGen = v.listGen;
    const prev = v.pages.get(k - 1);
    // After the previous page's last id when that page is fresh and whole: no walk on the node.
    const params = prev && !prev.stale && prev.items.length === PAGE_ROWS
      ? { after: prev.items[PAGE_ROWS - 1].id, limit: PAGE_ROWS }
      : { offset: k * PAGE_ROWS, limit: PAGE_ROWS };
    v.loading.add(k);
    getItems(v, params)
      .then((page) => {
        if (listGen !== v.listGen) return;
        v.loading.delete(k);
        putPage(v, k, page.items.map(normItem));
        const c = num(page.count);
        if (c !== null && c !== v.count) {
          // Our count drifted from the node's (changes whose notifications are still on their
          // way): the node's word wins and the other pages may have shifted.
          v.count = c;
          for (const [j, p] of v.pages) if (j !== k) p.stale = true;
        }
        v.rev++;
        schedule();
        fetchVisiblePages(v);
      })
      .catch((err) => {
        if (listGen !== v.listGen) return;
        v.loading.delete(k);
        feedMeta(nodeLabel(v), `viewer could not fetch a page of node ${nodeLabel(v)}'s items: ${err.message || err}`, true);
        setTimeout(() => { if (listGen === v.listGen) fetchVisiblePages(v); }, 1000);
      });
  }

  /**
   * A large node's notified change to item `it`. The node names it a create only when it held no
   * record of the id, and a delete when it held one, live or (its own delete coming back
   * stamped) already a tombstone: `dead` remembers the deletes seen, so that none counts twice.
   * Page answers carry the node's own count, which corrects any drift left.
   */
  function applyToPages(v, it, op) {
    const k = v.pageOf.get(it.id);
    const page = k === undefined ? null : v.pages.get(k);
    if (op === 'update') {
      // The same id in the same place: no row moves.
      const i = page ? page.items.findIndex((x) => x.id === it.id) : -1;
      if (i >= 0) page.items[i] = it;
      return;
    }
    if (op === 'create') {
      v.count = (v.count ?? 0) + 1;
      v.dead.delete(it.id);
    } else {
      if (v.dead.has(it.id)) return;
      if (v.dead.size > 10000) v.dead.clear();
      v.dead.add(it.id);
      v.count = Math.max(0, (v.count ?? 1) - 1);
      if (page) {
        page.items = page.items.filter((x) => x.id !== it.id);
        v.pageOf.delete(it.id);
      }
    }
    // Every cached page from the one where it is (or goes) on has its rows shifted by one.
    for (const p of v.pages.values()) {
      const last = p.items[p.items.length - 1];
      if (!last || p.items.length < PAGE_ROWS || compareIds(last.id, it.id) >= 0) p.stale = true;
    }
  }

  /** Applies one notification if it is newer than the node's baseline; returns whether it was. */
  function applyNotification(v, m) {
    const b = v.baseline || { seq: 0, stamp: 0 };
    if (m.type === 'local') {
      const seq = num(m.seq);
      if (seq === null || seq <= b.seq) return false;
      if (v.seq === null || seq > v.seq) v.seq = seq;
    } else if (m.type === 'synced') {
      const stamp = num(m.stamp);
      if (stamp === null || stamp <= b.stamp) return false;
      if (v.appliedStamp === null || stamp > v.appliedStamp) v.appliedStamp = stamp;
    } else {
      return false;
    }
    const it = normItem(m.item);
    if (!it.id) return false;
    const gone = m.op === 'delete' || it.deleted;
    if (v.full) {
      if (gone) v.items.delete(it.id);
      else v.items.set(it.id, it);
      v.count = v.items.size;
      if (v.count > FULL_MAX) {
        // It grew past what is held whole: from now on it is paged.
        v.full = false;
        v.items = new Map();
        clearPages(v);
      }
    } else {
      applyToPages(v, it, gone ? 'delete' : str(m.op) === 'create' ? 'create' : 'update');
    }
    if (v.search) applyToSearch(v, it, gone);
    v.rev++;
    return true;
  }

  function feedNotification(v, m) {
    const it = normItem(m.item);
    const op = str(m.op) || (it.deleted ? 'delete' : 'update');
    const detail = m.type === 'synced'
      ? `stamp ${num(m.stamp) ?? '?'} from ${str(m.origin) || '?'}`
      : `local, seq ${num(m.seq) ?? '?'}`;
    feed({
      kind: m.type, node: str(m.node) || nodeLabel(v), op, id: it.id, title: it.title,
      completed: it.completed, version: it.version, detail,
    });
  }

  // ---------------------------------------------------------------- agreement

  // A repair is often over within milliseconds: the banner stays red this long after it, so
  // that a person sees that it happened.
  const DIVERGENCE_SHOWN_MS = 15000;
  function divergenceRepaired(v) {
    if (!v.diverged || v.repairedAt !== null) return;
    v.repairedAt = Date.now();
    setTimeout(schedule, DIVERGENCE_SHOWN_MS + 50);
  }
  function showsDivergence(v) {
    return v.diverged && (v.repairedAt === null || Date.now() - v.repairedAt < DIVERGENCE_SHOWN_MS);
  }

  /** -> {state, title, detail, inflight:Set, missing: Map(address -> Set ids)} */
  function computeAgreement() {
    const views = [...nodes.values()];
    const none = { inflight: new Set() };
    if (!nodesKnown || views.length === 0) {
      return { ...none, state: 'unknown', title: 'Agreement unknown',
        detail: syncer.status === 'live' ? 'the syncer knows no nodes' : 'waiting for the node list from the syncer' };
    }
    // A divergence the syncer found outranks everything: it is never in flight.
    const diverged = views.filter(showsDivergence);
    if (diverged.length) {
      const who = diverged.map((v) => `node ${nodeLabel(v)}`).join(', ');
      const repaired = diverged.every((v) => v.repairedAt !== null);
      return { ...none, state: 'diverged',
        title: repaired
          ? `Nodes diverged — ${who} held other items than the syncer's log; repaired by a full resync ` +
            `at ${diverged.map((v) => clock(new Date(v.repairedAt))).join(', ')}`
          : `Nodes diverged — ${who} ${diverged.length === 1 ? 'holds' : 'hold'} other items than the syncer's log`,
        detail: diverged.map((v) => v.divergence).filter((t) => t).join(' · ') ||
          'the syncer is repairing it with a full resync' };
    }
    const notReady = views.filter((v) => v.status !== 'live' || !v.hasSnapshot);
    if (notReady.length) {
      const what = notReady.map((v) => {
        const s = v.status === 'no-address' ? 'address unknown'
          : v.status === 'catching-up' ? 'catching up'
          : v.status === 'connecting' ? 'connecting' : 'disconnected';
        return `node ${nodeLabel(v)} ${s}`;
      });
      return { ...none, state: 'unknown', title: 'Agreement unknown', detail: what.join(', ') };
    }
    const large = views.filter((v) => !v.full);
    if (large.length) {
      // Too many items to hold here: the syncer's digest comparisons decide. Every node
      // compared equal with the log at the syncer's latest stamp holds the same items.
      const stamp = syncer.stamp;
      const checked = views.filter((v) => v.check && v.check.agrees && v.check.stamp === stamp);
      const names = views.map(nodeLabel).join(', ');
      if (stamp !== null && checked.length === views.length) {
        const n = Math.max(...views.map((v) => v.count ?? 0));
        return { ...none, state: 'agree', title: `Nodes agree — digests match at stamp ${stamp}`,
          detail: `identical on ${names} (${n} items: compared by digest)` };
      }
      return { ...none, state: 'unknown', title: 'Agreement unknown',
        detail: `more than ${FULL_MAX} items on ${large.map(nodeLabel).join(', ')}; ` +
          'their digests are compared once every node has applied the latest stamp' };
    }
    const count = new Map();   // id -> number of nodes holding it
    const first = new Map();   // id -> signature on the first node holding it
    const inflight = new Set();
    for (const v of views) {
      for (const [id, it] of v.items) {
        const s = it.sig;
        const f = first.get(id);
        if (f === undefined) first.set(id, s);
        else if (f !== s) inflight.add(id);
        count.set(id, (count.get(id) || 0) + 1);
      }
    }
    for (const [id, c] of count) if (c !== views.length) inflight.add(id);
    const names = views.map(nodeLabel).join(', ');
    if (inflight.size === 0) {
      const n = views[0].items.size;
      return { inflight, state: 'agree', title: `Nodes agree — ${n} item${n === 1 ? '' : 's'}`,
        detail: `identical on ${names}` };
    }
    const k = inflight.size;
    return { inflight, state: 'disagree', title: `Nodes disagree — ${k} item${k === 1 ? '' : 's'} in flight`,
      detail: `across ${names}` + (syncer.status === 'live' ? '' : ' · the syncer is not connected') };
  }

  let agreement = computeAgreement();
  let agreementRev = 0;   // bumped when the state or the in-flight set changes

  function sameSet(a, b) {
    if (a.size !== b.size) return false;
    for (const x of a) if (!b.has(x)) return false;
    return true;
  }

  // ---------------------------------------------------------------- rendering

  const agreementEl = document.getElementById('agreement');
  const agreementTitle = agreementEl.querySelector('.banner-title');
  const agreementDetail = agreementEl.querySelector('.banner-detail');

  function renderAgreement() {
    // agreement was computed by renderNodes in this same flush
    agreementEl.setAttribute('data-state', agreement.state);
    agreementTitle.textContent = agreement.title;
    agreementDetail.textContent = agreement.detail;
  }

  const syncerEl = document.getElementById('syncer');
  const syncerStateEl = document.getElementById('syncer-state');
  const syncerStampEl = document.getElementById('syncer-stamp');
  document.getElementById('syncer-address').textContent = location.host;

  function renderSyncer() {
    syncerEl.setAttribute('data-state', syncer.status);
    let text;
    if (syncer.status === 'live') text = 'connected';
    else if (syncer.status === 'connecting') text = syncer.everLive ? 'reconnecting…' : 'connecting…';
    else text = `disconnected — retrying in ${Math.max(0, (syncer.retryAt - Date.now()) / 1000).toFixed(1)} s`;
    syncerStateEl.textContent = text;
    syncerStampEl.textContent = syncer.stamp === null ? '–' : String(syncer.stamp);
  }

  const nodesEl = document.getElementById('nodes');
  const nodesEmptyEl = document.getElementById('nodes-empty');

  function buildColumn(v) {
    const root = el('section', 'node');
    const head = el('header', 'node-head');
    const title = el('h2', 'node-title');
    const name = el('span', 'node-name');
    const pill = el('span', 'pill');
    title.append(name, pill);
    const addr = el('div', 'node-addr');
    const stats = el('dl', 'stats');
    const stat = (label) => {
      const d = el('div');
      const dd = el('dd', null, '–');
      d.append(el('dt', null, label), dd);
      stats.appendChild(d);
      return dd;
    };
    const seq = stat('seq');
    const applied = stat('applied stamp');
    const count = stat('items');
    const note = el('div', 'node-note');
    head.append(title, addr, stats, note);
    // The virtual list: a scroller, a spacer as tall as every row (or scaled), and a window of
    // the visible rows moved to where they show.
    const list = el('div', 'items');
    const spacer = el('div', 'items-spacer');
    const win = el('ol', 'items-window');
    const empty = el('p', 'items-empty');
    spacer.appendChild(win);
    list.append(spacer, empty);
    root.append(head, list);
    const d = { root, name, pill, addr, seq, applied, count, note, list, spacer, win, empty, rows: [],
      rendered: '', ids: null, idsKey: '' };
    let queued = false;
    list.addEventListener('scroll', () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        if (v.dom === d) { renderRows(v); fetchVisiblePages(v); fetchSearch(v); }
      });
    }, { passive: true });
    return d;
  }

  const STATUS_TEXT = {
    'no-address': 'address unknown',
    connecting: 'connecting…',
    'catching-up': 'catching up…',
    live: 'connected',
    down: 'disconnected',
  };

  function renderNodes() {
    const prev = agreement;
    agreement = computeAgreement();
    if (prev.state !== agreement.state || !sameSet(prev.inflight, agreement.inflight)) agreementRev++;
    nodesEmptyEl.hidden = nodes.size > 0;
    const views = [...nodes.values()];
    let cursor = nodesEmptyEl.nextSibling;
    for (const v of views) {
      if (!v.dom) v.dom = buildColumn(v);
      const root = v.dom.root;
      if (root !== cursor) nodesEl.insertBefore(root, cursor);
      else cursor = cursor.nextSibling;
      renderColumn(v);
    }
    renderSearchStatus();
  }

  function plural(n, one, many) { return `${n} ${n === 1 ? one : many || `${one}s`}`; }

  function renderColumn(v) {
    const d = v.dom;
    d.root.setAttribute('data-node', v.name);
    d.root.setAttribute('data-address', v.address);
    d.root.setAttribute('data-state', v.status);
    d.root.classList.toggle('is-down', v.status !== 'live');
    d.name.textContent = v.name || '?';
    d.pill.setAttribute('data-state', v.status);
    d.pill.textContent = v.status === 'down'
      ? `disconnected — retry in ${Math.max(0, (v.retryAt - Date.now()) / 1000).toFixed(1)} s`
      : STATUS_TEXT[v.status];
    d.addr.textContent = `binary ${v.address} · http ${v.http || '?'}`;
    d.seq.textContent = v.seq === null ? '–' : String(v.seq);
    d.applied.textContent = v.appliedStamp === null ? '–' : String(v.appliedStamp);
    d.count.textContent = v.hasSnapshot && v.count !== null ? String(v.count) : '–';

    const notes = [];
    if (syncer.status === 'live' && v.syncerLink !== null) {
      notes.push(`syncer link ${v.syncerLink ? 'up' : 'down'}` +
        (v.syncerApplied !== null ? `, applied up to ${v.syncerApplied}` : ''));
    }
    const s = v.search;
    if (s && searchText) {
      const n = s.results.length;
      notes.push(s.error ? `search failed: ${s.error}`
        : `${plural(n, 'match', 'matches')}${n >= SEARCH_MAX ? ' (the first ones)' : ''}` +
          (s.done ? '' : ` so far, ${s.scanned} of ${v.count ?? '?'} items searched`));
    } else if (v.hasSnapshot && !v.full) {
      notes.push(`paged: ${PAGE_ROWS} rows a page, ${v.pages.size} cached`);
    }
    if (v.status === 'down' && v.hasSnapshot) notes.push('showing the last known items');
    d.note.textContent = notes.join(' · ');
    d.note.classList.toggle('warn', (syncer.status === 'live' && v.syncerLink === false) || !!(s && s.error));
    renderRows(v);
    fetchVisiblePages(v);
  }

  /** The full node's rows: its ids and, while nodes disagree, the in-flight ids it lacks, in order. */
  function fullRows(v) {
    const d = v.dom;
    const key = `${v.rev}/${agreementRev}`;
    if (d.idsKey !== key) {
      const missing = [];
      if (agreement.state === 'disagree') {
        for (const id of agreement.inflight) if (!v.items.has(id)) missing.push(id);
      }
      d.ids = [...v.items.keys()].concat(missing).sort(compareIds);
      d.idsKey = key;
    }
    return d.ids;
  }

  /** How many rows the list has now. */
  function rowCount(v) {
    if (!v.hasSnapshot) return 0;
    if (searchText) return v.search ? v.search.results.length : 0;
    if (v.full) return fullRows(v).length;
    return v.count ?? 0;
  }

  /** The list's geometry: [first visible row, rows shown, px the window moves to]. */
  function geometry(v) {
    const d = v.dom;
    const rows = rowCount(v);
    const view = d.list.clientHeight || 0;
    const total = rows * ROW_H;
    const spacerPx = Math.min(total, MAX_SPACER_PX);
    const top = d.list.scrollTop;
    // Scaled: the scrollbar's whole travel covers the rows' whole travel.
    const scale = spacerPx > view && total > spacerPx ? (total - view) / (spacerPx - view) : 1;
    const virtualTop = Math.min(top * scale, Math.max(0, total - view));
    const first = Math.min(Math.floor(virtualTop / ROW_H), Math.max(0, rows - 1));
    const shown = Math.max(0, Math.min(rows - first, Math.ceil(view / ROW_H) + 2));
    return { rows, spacerPx, first, shown, offsetPx: top - (virtualTop - first * ROW_H) };
  }

  function visibleRange(v) {
    if (!v.dom) return [0, 0];
    const g = geometry(v);
    return [g.first, g.shown];
  }

  /** The row at index i: {kind: 'item'|'missing'|'loading', it, id}. */
  function rowAt(v, i) {
    if (searchText) return { kind: 'item', it: v.search.results[i] };
    if (v.full) {
      const id = fullRows(v)[i];
      const it = v.items.get(id);
      return it ? { kind: 'item', it } : { kind: 'missing', id };
    }
    const p = usePage(v, Math.floor(i / PAGE_ROWS));
    const it = p && p.items[i % PAGE_ROWS];
    return it ? { kind: 'item', it } : { kind: 'loading' };
  }

  let firstRowsMarked = new Set();

  function renderRows(v) {
    const d = v.dom;
    const g = geometry(v);
    const key = [g.rows, g.first, g.shown, g.offsetPx, v.rev, agreementRev, searchRev,
      v.search ? v.search.results.length : -1, d.list.clientHeight].join('/');
    if (key === d.rendered) return;
    d.rendered = key;
    d.spacer.style.height = `${g.spacerPx}px`;
    d.win.style.transform = `translateY(${g.offsetPx}px)`;
    while (d.rows.length < g.shown) {
      const row = buildItemRow();
      d.rows.push(row);
      d.win.appendChild(row.li);
    }
    while (d.rows.length > g.shown) d.rows.pop().li.remove();
    let items = 0;
    for (let j = 0; j < g.shown; j++) {
      const r = rowAt(v, g.first + j);
      fillRow(d.rows[j], r, r.kind === 'item' && agreement.inflight.has(r.it.id));
      if (r.kind === 'item') items++;
    }
    if (items && !firstRowsMarked.has(v.address) && !searchText) {
      // For whoever measures the page (the browser test): when this node's rows first showed.
      firstRowsMarked.add(v.address);
      performance.mark(`kv first rows ${nodeLabel(v)}`);
    }
    d.empty.hidden = g.rows > 0;
    if (!g.rows) {
      d.empty.textContent = searchText
        ? (v.search && !v.search.done ? 'searching…' : 'no matches')
        : v.hasSnapshot ? 'no items' : (v.status === 'live' || v.status === 'catching-up' ? 'loading…' : 'no snapshot yet');
    }
  }

  function buildItemRow() {
    const li = el('li', 'item');
    const id = el('span', 'id');
    const mark = el('span', 'mark');
    const title = el('span', 'title');
    const ver = el('span', 'ver');
    li.append(id, mark, title, ver);
    return { li, id, mark, title, ver, sig: '', inflight: null };
  }

  /** Shows row r (an item, an in-flight id this node lacks, or a row whose page is on its way). */
  function fillRow(row, r, inflight) {
    const sig = r.kind === 'item' ? `i${r.it.sig}` : r.kind === 'missing' ? `m${r.id}` : 'l';
    if (row.sig !== sig) {
      row.sig = sig;
      const li = row.li;
      li.className = 'item';
      li.removeAttribute('data-id');
      li.removeAttribute('data-missing-id');
      li.removeAttribute('data-version');
      li.title = '';
      row.inflight = null;
      if (r.kind === 'item') {
        const it = r.it;
        li.setAttribute('data-id', it.id);
        li.setAttribute('data-version', it.version === null ? '' : String(it.version));
        li.classList.toggle('done', it.completed);
        row.id.textContent = it.id;
        row.mark.textContent = it.completed ? '✓' : '○';
        row.mark.title = it.completed ? 'completed' : 'not completed';
        row.title.textContent = it.title;
        row.title.title = it.title;
        row.ver.textContent = it.version === null ? 'v?' : `v${it.version}`;
      } else if (r.kind === 'missing') {
        li.classList.add('missing');
        li.setAttribute('data-missing-id', r.id);
        li.title = 'in flight: present on another node, not (yet) on this one';
        row.id.textContent = r.id;
        row.mark.textContent = '·';
        row.mark.title = '';
        row.title.textContent = 'not on this node';
        row.title.title = '';
        row.ver.textContent = '';
      } else {
        li.classList.add('loading');
        row.id.textContent = '';
        row.mark.textContent = '';
        row.mark.title = '';
        row.title.textContent = 'loading…';
        row.title.title = '';
        row.ver.textContent = '';
      }
    }
    if (r.kind === 'item' && row.inflight !== inflight) {
      row.inflight = inflight;
      row.li.classList.toggle('inflight', inflight);
      row.li.title = inflight ? 'in flight: not identical on every node' : '';
    }
  }

  // ---------------------------------------------------------------- search

  const searchEl = document.getElementById('search');
  const searchStatusEl = document.getElementById('search-status');
  let searchText = '';
  let searchRev = 0;
  let searchTimer = null;

  searchEl.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => setSearch(searchEl.value.trim()), SEARCH_DEBOUNCE_MS);
  });
  searchEl.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') { clearTimeout(searchTimer); setSearch(searchEl.value.trim()); }
    if (ev.key === 'Escape') { searchEl.value = ''; clearTimeout(searchTimer); setSearch(''); }
  });

  function setSearch(text) {
    if (text === searchText) return;
    searchText = text;
    searchRev++;
    for (const v of nodes.values()) {
      v.search = null;
      if (v.dom) v.dom.list.scrollTop = 0;
      if (searchText && v.hasSnapshot) startSearch(v);
    }
    schedule();
  }

  function startSearch(v) {
    v.search = { q: searchText, results: [], seen: new Set(), next: '', done: false, scanned: 0, busy: false,
      error: '' };
    searchRev++;
    fetchSearch(v);
  }

  /** Asks node v for more matches while its list shows fewer than it could and some are left. */
  function fetchSearch(v) {
    const s = v.search;
    if (!s || s.busy || s.done || s.error || s.q !== searchText || !v.http) return;
    if (s.results.length >= SEARCH_MAX) { s.done = true; return; }
    const [first, n] = visibleRange(v);
    if (s.results.length >= first + n + SEARCH_PAGE) return;
    s.busy = true;
    const params = { q: s.q, limit: SEARCH_PAGE };
    if (s.next) params.after = s.next;
    getItems(v, params)
      .then((page) => {
        if (v.search !== s) return;
        s.busy = false;
        for (const raw of page.items) {
          const it = normItem(raw);
          if (!it.id || it.deleted || s.seen.has(it.id)) continue;
          s.seen.add(it.id);
          s.results.push(it);
        }
        s.scanned += num(page.scanned) ?? 0;
        s.next = str(page.next);
        s.done = !s.next;
        const c = num(page.count);
        if (c !== null && !v.full) v.count = c;
        schedule();
        fetchSearch(v);
      })
      .catch((err) => {
        if (v.search !== s) return;
        s.busy = false;
        s.error = err.message || String(err);
        schedule();
      });
  }

  /** A notified change to a match on show: updated in place, or dropped once deleted. */
  function applyToSearch(v, it, gone) {
    const s = v.search;
    if (!s.seen.has(it.id)) return;
    const i = s.results.findIndex((x) => x.id === it.id);
    if (i < 0) return;
    if (gone) { s.results.splice(i, 1); s.seen.delete(it.id); } else s.results[i] = it;
  }

  function renderSearchStatus() {
    if (!searchText) { searchStatusEl.textContent = ''; return; }
    const views = [...nodes.values()].filter((v) => v.search);
    const busy = views.some((v) => !v.search.done && !v.search.error);
    const n = views.reduce((a, v) => a + v.search.results.length, 0);
    searchStatusEl.textContent = `${plural(n, 'match', 'matches')} for “${searchText}”` +
      (busy ? ' so far: searching…' : '');
  }

  // Retry countdowns in the header and the pills.
  setInterval(() => {
    if (syncer.status === 'down' || [...nodes.values()].some((v) => v.status === 'down')) schedule();
  }, 500);

  // ---------------------------------------------------------------- start

  fetchNodeList();
  connectSyncer();
  schedule();
})();
