// kvstore live viewer. Served by kvsync at "/": location.host is the syncer's HTTP address.
//
// It keeps one WebSocket to the syncer (/ws: hello, stamp, applied, link) and one to every node
// (/ws: hello, local, synced), plus a snapshot of each node's live items (GET /items). Node HTTP
// addresses come from the syncer and are kept here, so node columns stay live while the syncer
// is away. Every socket reconnects by itself with a backoff (250 ms doubling to 5 s).
//
// Catch-up rule (docs: viewer spec): on every (re)connect to a node, if its hello's seq or
// applied_stamp differ from the last ones seen from it (or there is no snapshot yet), refetch
// /items, buffering notifications meanwhile, then apply only those newer than the snapshot:
// local ones with seq > snapshot.seq, synced ones with stamp > snapshot.applied_stamp.
//
// All text from the wire goes into the page through textContent or setAttribute only.
'use strict';

(() => {
  const FEED_MAX = 200;
  const BACKOFF_MIN_MS = 250;
  const BACKOFF_MAX_MS = 5000;
  const STAMP_CHANGES_SHOWN = 4;

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
      items: new Map(),       // id -> {id, title, completed, version}
      seq: null,              // last local seq seen (snapshot or notification)
      appliedStamp: null,     // last applied stamp seen (snapshot or notification)
      truncated: false,
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
    v.items = new Map();
    v.seq = null;
    v.appliedStamp = null;
    v.truncated = false;
    v.baseline = null;
    v.pending = null;
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
    fetch(withSecret(`${httpScheme}//${v.http}/items`), { cache: 'no-store' })
      .then((r) => {
        if (!r.ok) throw new Error(`GET /items: HTTP ${r.status}`);
        return r.json();
      })
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

  function applySnapshot(v, snap) {
    const items = new Map();
    for (const raw of Array.isArray(snap && snap.items) ? snap.items : []) {
      const it = normItem(raw);
      if (it.id && !it.deleted) items.set(it.id, it);
    }
    const name = str(snap && snap.node);
    if (name) v.name = name;
    v.items = items;
    v.rev++;
    v.seq = num(snap && snap.seq);
    v.appliedStamp = num(snap && snap.applied_stamp);
    v.truncated = !!(snap && snap.truncated);
    v.baseline = { seq: v.seq ?? 0, stamp: v.appliedStamp ?? 0 };
    v.hasSnapshot = true;
    const pending = v.pending || [];
    v.pending = null;
    let applied = 0;
    for (const m of pending) if (applyNotification(v, m)) applied++;
    v.status = 'live';
    v.backoff = BACKOFF_MIN_MS;
    feedMeta(nodeLabel(v), `viewer fetched node ${nodeLabel(v)}'s items: ${items.size} at seq ${v.baseline.seq}, stamp ${v.baseline.stamp}` +
      (pending.length ? `; ${applied} of ${pending.length} buffered notifications were newer` : '') +
      (v.truncated ? ' (truncated)' : ''));
    schedule();
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
    if (m.op === 'delete' || it.deleted) v.items.delete(it.id);
    else v.items.set(it.id, it);
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
    const truncated = views.filter((v) => v.truncated);
    if (truncated.length) {
      // Too many items to compare here: the syncer's digest comparisons decide. Every node
      // compared equal with the log at the syncer's latest stamp holds the same items.
      const stamp = syncer.stamp;
      const checked = views.filter((v) => v.check && v.check.agrees && v.check.stamp === stamp);
      const names = views.map(nodeLabel).join(', ');
      if (stamp !== null && checked.length === views.length) {
        const n = Math.max(...views.map((v) => v.items.size));
        return { ...none, state: 'agree', title: `Nodes agree — digests match at stamp ${stamp}`,
          detail: `identical on ${names} (more than ${n} items each: compared by digest)` };
      }
      return { ...none, state: 'unknown', title: 'Agreement unknown',
        detail: `more items than one snapshot holds on ${truncated.map(nodeLabel).join(', ')}; ` +
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
    const list = el('ol', 'items');
    root.append(head, list);
    return { root, name, pill, addr, seq, applied, count, note, list, rows: new Map(), empty: null,
      renderedRev: -1, renderedAgreementRev: -1, renderedHasSnapshot: null, renderedStatus: null };
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
      renderColumn(v, views);
    }
  }

  function renderColumn(v, views) {
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
    d.count.textContent = v.hasSnapshot ? String(v.items.size) + (v.truncated ? '+' : '') : '–';

    const notes = [];
    if (syncer.status === 'live' && v.syncerLink !== null) {
      notes.push(`syncer link ${v.syncerLink ? 'up' : 'down'}` +
        (v.syncerApplied !== null ? `, applied up to ${v.syncerApplied}` : ''));
    }
    if (v.truncated) notes.push('snapshot truncated at 10000 items');
    if (v.status === 'down' && v.hasSnapshot) notes.push('showing the last known items');
    d.note.textContent = notes.join(' · ');
    d.note.classList.toggle('warn', (syncer.status === 'live' && v.syncerLink === false) || v.truncated);

    // Rows: this node's items, plus a placeholder for each in-flight id it lacks.
    if (d.renderedRev === v.rev && d.renderedAgreementRev === agreementRev && d.renderedHasSnapshot === v.hasSnapshot &&
        d.renderedStatus === v.status) return;
    d.renderedRev = v.rev;
    d.renderedAgreementRev = agreementRev;
    d.renderedHasSnapshot = v.hasSnapshot;
    d.renderedStatus = v.status;
    const ids = [...v.items.keys()];
    const missing = [];
    if (agreement.state === 'disagree') {
      for (const id of agreement.inflight) if (!v.items.has(id)) missing.push(id);
    }
    const all = ids.concat(missing).sort(compareIds);
    const keep = new Set();
    let cursor = d.list.firstChild;
    if (d.empty && all.length) { d.empty.remove(); d.empty = null; cursor = d.list.firstChild; }
    for (const id of all) {
      const it = v.items.get(id);
      const key = it ? `i:${id}` : `m:${id}`;
      keep.add(key);
      let row = d.rows.get(key);
      if (!row) {
        row = it ? buildItemRow() : buildMissingRow(id);
        d.rows.set(key, row);
      }
      if (it) updateItemRow(row, it, agreement.inflight.has(id));
      if (row.li !== cursor) d.list.insertBefore(row.li, cursor);
      else cursor = cursor.nextSibling;
    }
    for (const [key, row] of d.rows) {
      if (!keep.has(key)) { row.li.remove(); d.rows.delete(key); }
    }
    if (!all.length) {
      if (!d.empty) { d.empty = el('li', 'items-empty'); d.list.appendChild(d.empty); }
      d.empty.textContent = v.hasSnapshot ? 'no items' : (v.status === 'live' ? 'loading…' : 'no snapshot yet');
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

  function buildMissingRow(id) {
    const li = el('li', 'item missing');
    li.setAttribute('data-missing-id', id);
    li.title = 'in flight: present on another node, not (yet) on this one';
    li.append(el('span', 'id', id), el('span', 'mark', '·'), el('span', 'title', 'not on this node'), el('span', 'ver', ''));
    return { li };
  }

  function updateItemRow(row, it, inflight) {
    const s = it.sig;
    if (row.sig !== s) {
      row.sig = s;
      row.li.setAttribute('data-id', it.id);
      row.li.setAttribute('data-version', it.version === null ? '' : String(it.version));
      row.li.classList.toggle('done', it.completed);
      row.id.textContent = it.id;
      row.mark.textContent = it.completed ? '✓' : '○';
      row.mark.title = it.completed ? 'completed' : 'not completed';
      row.title.textContent = it.title;
      row.ver.textContent = it.version === null ? 'v?' : `v${it.version}`;
    }
    if (row.inflight !== inflight) {
      row.inflight = inflight;
      row.li.classList.toggle('inflight', inflight);
      row.li.title = inflight ? 'in flight: not identical on every node' : '';
    }
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
