// The LightShark-mini dashboard: live rates from /api/stream, top
// connections from /api/live, health from /api/health, and the history from
// /api/series and /api/flows. Raw numbers go in data-value attributes, the
// formatted text (with units and local times) in the elements' text.

import * as fmt from './format.js';
import { LiveChart, StackChart, seriesClass } from './charts.js';

const $ = (sel) => document.querySelector(sel);
const TOKEN_KEY = 'lightshark-token';
const LIVE_POLL_MS = 2000;
const HEALTH_POLL_MS = 2000;
const LIVE_LIMIT = 100;
const PAGE_SIZE = 50;

// ---------------------------------------------------------------- errors

/** ApiError is a failed API request: status 0 when the server was not reached. */
class ApiError extends Error {
  constructor(status, message, parameter) {
    super(message);
    this.status = status;
    this.parameter = parameter;
  }
}

const banner = {
  messages: new Map(), // what failed, by source
  set(key, text) {
    this.messages.set(key, text);
    this.render();
  },
  clear(key) {
    if (this.messages.delete(key)) this.render();
  },
  render() {
    const el = $('#error-banner');
    $('#error-text').textContent = [...new Set(this.messages.values())].join('\n');
    el.hidden = this.messages.size === 0;
  },
};

// ---------------------------------------------------------------- status

const status = {
  down: false, // the API server cannot be reached
  auth: false, // a token is needed
  health: null, // the latest /api/health
  stream: false, // the WebSocket is delivering
  render() {
    const el = $('#conn-status');
    let state;
    let text;
    const h = this.health;
    if (this.down) {
      state = 'down';
      text = 'API server unreachable';
    } else if (this.auth) {
      state = 'auth';
      text = 'API token needed';
    } else if (!h) {
      state = 'down';
      text = 'connecting…';
    } else if (h.status !== 'ok') {
      state = 'degraded';
      text = h.reasons?.length ? h.reasons.join('; ') : 'degraded';
    } else {
      state = 'ok';
      const n = h.capturers_connected ?? 0;
      // Health is ok with none connected when the capturers gone finished
      // their source: an import that read its whole file.
      const imported = n === 0 && (h.capturers ?? []).some((c) => c.finished);
      text = imported ? 'ok · import finished' : `ok · ${n} capturer${n === 1 ? '' : 's'} connected`;
    }
    if (!this.down && !this.auth && h && stream.failed) text += ' · live stream reconnecting';
    if (el.dataset.state !== state) el.dataset.state = state;
    if (el.textContent !== text) el.textContent = text;
    el.title = state === 'auth' ? 'Enter the API token' : text;
  },
};

// ---------------------------------------------------------------- API client

let token = sessionStorage.getItem(TOKEN_KEY) ?? '';

/**
 * api fetches path (relative to the page) as JSON with the token. A network
 * failure marks the server down; a 401 asks for the token. It throws an
 * ApiError for any failure, with the API's error message.
 */
async function api(path, { signal, raw = false } = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let res;
  try {
    res = await fetch(path, { headers, signal, cache: 'no-store' });
  } catch (err) {
    if (signal?.aborted) throw err;
    setDown(true);
    throw new ApiError(0, 'API server unreachable');
  }
  setDown(false);
  if (res.status === 401) {
    needToken(token !== '');
    throw new ApiError(401, 'API token needed');
  }
  if (!res.ok) {
    let msg = res.statusText || `HTTP ${res.status}`;
    let param;
    try {
      const body = await res.json();
      msg = body.error ?? msg;
      param = body.parameter;
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(res.status, msg, param);
  }
  return raw ? res : res.json();
}

/** report shows a failed request in the banner (network and token failures have their own signs). */
function report(key, what, err) {
  if (err.name === 'AbortError') return;
  if (!(err instanceof ApiError)) {
    banner.set(key, `${what} failed: ${err.message}`);
    console.debug(err);
    return;
  }
  if (err.status === 401 || err.status === 0) return;
  banner.set(key, `${what} failed (${err.status}): ${err.message}`);
}

function setDown(down) {
  if (status.down === down) return;
  status.down = down;
  if (down) banner.set('network', 'Cannot reach the API server: data shown may be stale.');
  else banner.clear('network');
  status.render();
  if (!down && !hist.loaded && !status.auth) hist.apply(); // it failed while the server was away
}

// ---------------------------------------------------------------- token

const dialog = $('#token-dialog');

function needToken(refused) {
  if (refused) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
  }
  status.auth = true;
  status.render();
  stream.stop();
  clearTiles();
  details.close();
  $('#token-error').textContent = refused ? 'The token was refused.' : '';
  if (!dialog.open) dialog.showModal();
}

async function submitToken(e) {
  e.preventDefault();
  const given = $('#token-input').value.trim();
  const err = $('#token-error');
  if (!given) {
    err.textContent = 'Enter the token.';
    return;
  }
  $('#token-submit').disabled = true;
  try {
    const res = await fetch('api/stats', { headers: { Authorization: `Bearer ${given}` }, cache: 'no-store' });
    if (res.status === 401) {
      err.textContent = 'The token was refused.';
      return;
    }
    token = given;
    sessionStorage.setItem(TOKEN_KEY, token);
    status.auth = false;
    err.textContent = '';
    dialog.close();
    status.render();
    startAuthed();
  } catch {
    err.textContent = 'Cannot reach the API server.';
  } finally {
    $('#token-submit').disabled = false;
  }
}

// ---------------------------------------------------------------- tiles

function setTile(id, value, text) {
  const el = $(`#tile-${id}`);
  const v = value == null ? '' : String(value);
  if (el.dataset.value !== v) el.dataset.value = v;
  const span = el.querySelector('.value');
  if (span.textContent !== text) span.textContent = text;
}

/** clearTiles shows "–" in every tile: no numbers without the token. */
function clearTiles() {
  for (const el of document.querySelectorAll('.tile')) {
    el.removeAttribute('data-alert');
    setTile(el.id.slice(5), null, '–');
  }
}

function showTotals(m) {
  setTile('total-packets', m.total_packets, fmt.count(m.total_packets));
  setTile('total-bytes', m.total_bytes, fmt.bytes(m.total_bytes));
  setTile('active', m.active_connections, fmt.count(m.active_connections));
}

function showRates(m) {
  setTile('pps', m.packets_per_second, fmt.pps(m.packets_per_second));
  setTile('bps', m.bytes_per_second, fmt.rate(m.bytes_per_second));
  for (const dir of ['in', 'out']) {
    const v = m[`bytes_${dir}_per_second`];
    const el = $(`#tile-bps-${dir}`);
    el.hidden = v == null;
    setTile(`bps-${dir}`, v, v == null ? '–' : fmt.rate(v));
  }
}

// ---------------------------------------------------------------- health

async function pollHealth() {
  try {
    const h = await api('api/health');
    status.health = h;
    banner.clear('health');
    if (h.auth_required && !token && !status.auth) needToken(false);
    // Like the other tiles, these wait for the token (and for numbers).
    const c = h.capture;
    if (!status.auth && c) {
      setTile('drops', c.kernel_drops, fmt.count(c.kernel_drops));
      setTile('evictions', c.evictions, fmt.count(c.evictions));
      $('#tile-drops').toggleAttribute('data-alert', (h.kernel_drops_recent ?? 0) > 0);
      $('#tile-drops').title = `${fmt.count(h.kernel_drops_recent ?? 0)} in the last minute`;
      $('#tile-evictions').toggleAttribute('data-alert', (c.evictions ?? 0) > 0);
    }
  } catch (err) {
    report('health', 'Health check', err);
  }
  status.render();
}

// ---------------------------------------------------------------- live stream

const liveChart = new LiveChart($('#live-chart'), { fmtBytes: (v) => `${fmt.axisBytes(v)}/s`, fmtPackets: fmt.pps });

/** stream keeps a WebSocket to /api/stream open, reconnecting with backoff. */
const stream = {
  ws: null,
  timer: 0,
  backoff: 1000,
  starting: false,
  failed: false, // the last attempt failed, or the stream dropped

  async start() {
    if (this.ws || this.starting || status.auth) return;
    clearTimeout(this.timer);
    this.starting = true;
    try {
      // Probe first: a WebSocket that fails says nothing about why (and
      // logs to the console), while a fetch tells down from 401.
      const st = await api('api/stats');
      showTotals(st);
      showRates(st);
    } catch (err) {
      this.starting = false;
      report('stream', 'Live stats', err);
      if (err.status !== 401) this.retry();
      return;
    }
    this.starting = false;
    if (status.auth || this.ws) return;
    banner.clear('stream');
    const url = new URL('api/stream', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (token) url.searchParams.set('access_token', token);
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onmessage = (e) => {
      if (ws !== this.ws) return;
      this.backoff = 1000;
      if (!status.stream || this.failed) {
        status.stream = true;
        this.failed = false;
        status.render();
      }
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      if (m.type === 'stats') onStats(m);
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      status.stream = false;
      status.render();
      this.retry();
    };
  },

  retry() {
    clearTimeout(this.timer);
    this.failed = true;
    if (status.auth) return;
    const delay = this.backoff * (1 + Math.random() * 0.3);
    this.backoff = Math.min(this.backoff * 2, 30000);
    this.timer = setTimeout(() => this.start(), delay);
  },

  stop() {
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    status.stream = false;
    ws?.close();
  },
};

function onStats(m) {
  showTotals(m);
  showRates(m);
  liveChart.push({
    t: m.timestamp ?? Date.now(),
    bps: m.bytes_per_second ?? 0,
    pps: m.packets_per_second ?? 0,
    bpsIn: m.bytes_in_per_second,
    bpsOut: m.bytes_out_per_second,
    ppsIn: m.packets_in_per_second,
    ppsOut: m.packets_out_per_second,
  });
  const legend = $('#live-legend');
  const hasDir = m.bytes_in_per_second != null;
  if (legend.dataset.dir !== String(hasDir)) {
    legend.dataset.dir = String(hasDir);
    legend.replaceChildren(...[['total', 'total'], ...(hasDir ? [['in', 'in'], ['out', 'out']] : [])]
      .map(([cls, label]) => swatch(`sw-${cls}`, label)));
  }
}

function swatch(cls, label, extra = '') {
  const span = document.createElement('span');
  const i = document.createElement('i');
  i.className = cls;
  span.append(i, label);
  if (extra) span.append(` ${extra}`);
  return span;
}

// ---------------------------------------------------------------- flow tables

/**
 * timeParts splits an RFC 3339 time into the Unix ms of its whole second
 * and the fraction of a second, so that nanoseconds (the API's precision,
 * finer than Date.parse's) survive.
 */
function timeParts(s) {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$/.exec(s ?? '');
  if (!m) return { whole: Date.parse(s), frac: 0 };
  return { whole: Date.parse(m[1] + m[3]), frac: m[2] ? Number(`0.${m[2]}`) : 0 };
}

/** parseTime turns an RFC 3339 time into Unix ms (with a fraction below the ms). */
function parseTime(s) {
  const t = timeParts(s);
  return t.whole + t.frac * 1000;
}

/** seconds returns b - a in seconds, to the nanosecond. */
function seconds(a, b) {
  const ta = timeParts(a);
  const tb = timeParts(b);
  return Math.round(((tb.whole - ta.whole) / 1000 + tb.frac - ta.frac) * 1e9) / 1e9;
}

const peerOf = (f) => (f.direction === 'inbound' ? f.src_ip : f.dst_ip);
const packetsOf = (f) => (f.packets_sent ?? 0) + (f.packets_received ?? 0);
const bytesOf = (f) => (f.bytes_sent ?? 0) + (f.bytes_received ?? 0);

// Each cell: [data-value, text, title?, tone?].
const CELLS = {
  proto: (f) => [f.proto, (f.proto ?? '').toUpperCase()],
  src: (f) => { const s = fmt.endpoint(f.src_ip, f.src_port); return [s, s]; },
  dst: (f) => { const s = fmt.endpoint(f.dst_ip, f.dst_port); return [s, s]; },
  peer: (f) => { const p = peerOf(f) ?? ''; return [p, p]; },
  port: (f) => [f.dst_port ?? 0, f.dst_port ? String(f.dst_port) : '–'],
  state: (f) => {
    const [words, title, tone] = fmt.state(f.state, f.proto);
    return [f.state ?? '', words, f.state ? `${f.state}: ${title}` : '', tone];
  },
  direction: (f) => [f.direction ?? '', fmt.direction(f.direction)],
  bytes_sent: (f) => [f.bytes_sent, fmt.bytes(f.bytes_sent)],
  bytes_received: (f) => [f.bytes_received, fmt.bytes(f.bytes_received)],
  packets: (f) => [packetsOf(f), fmt.count(packetsOf(f))],
  bytes: (f) => [bytesOf(f), fmt.bytes(bytesOf(f))],
  duration: (f) => {
    const d = Math.max(0, seconds(f.first_seen, f.last_seen));
    return Number.isFinite(d) ? [d, fmt.duration(d)] : ['', '–'];
  },
  first_seen: (f) => { const t = parseTime(f.first_seen); return [t, fmt.shortTime(t), fmt.fullTime(t)]; },
  last_seen: (f) => { const t = parseTime(f.last_seen); return [t, fmt.shortTime(t), fmt.fullTime(t)]; },
};

// ---------------------------------------------------------------- flow details

/**
 * details is the flow dialog: a row's flow from /api/flows/{id}, or the
 * live record the row shows when the store does not have it yet.
 */
const details = {
  dialog: $('#flow-dialog'),
  gen: 0,
  url: '', // the download's object URL

  async open(id, shown) {
    const gen = ++this.gen;
    const d = this.dialog;
    d.dataset.flowId = id;
    d.dataset.state = 'loading';
    $('#flow-id').textContent = id;
    $('#flow-error').hidden = true;
    $('#flow-download').removeAttribute('href');
    if (!d.open) d.showModal();
    let f;
    let live = false;
    try {
      f = await api(`api/flows/${encodeURIComponent(id)}`);
    } catch (err) {
      if (gen !== this.gen) return;
      if (shown && (err.status === 404 || err.status === 503)) {
        f = shown;
        live = true;
      } else {
        d.dataset.state = 'error';
        const e = $('#flow-error');
        e.textContent = `Flow details failed${err.status ? ` (${err.status})` : ''}: ${err.message}`;
        e.hidden = false;
        return;
      }
    }
    if (gen !== this.gen || !d.open) return;
    this.show(f, live);
    d.dataset.state = live ? 'live' : 'ok';
  },

  show(f, live) {
    const set = (key, value, text = value, title = '') => {
      const el = $(`#flow-${key}`);
      el.dataset.value = value == null ? '' : String(value);
      el.textContent = text == null || text === '' ? '–' : String(text);
      el.title = title;
    };
    $('#flow-summary').textContent = `${(f.proto ?? '').toUpperCase()} ${fmt.endpoint(f.src_ip, f.src_port)} → `
      + `${fmt.endpoint(f.dst_ip, f.dst_port)}${live ? ' · live record (not stored yet)' : ''}`;
    set('community-id', f.community_id);
    const [words, desc] = fmt.state(f.state, f.proto);
    set('state', f.state ?? '', f.state ? `${words} (${f.state})` : '–', desc);
    set('history', f.history ?? '', f.history, 'Zeek history: upper case from the originator (source)');
    set('tcp-flags', f.tcp_flags ?? '', f.tcp_flags);
    set('end-reason', f.end_reason ?? '', f.end_reason || (live ? 'active' : ''));
    set('direction', f.direction ?? '', fmt.direction(f.direction));
    const first = parseTime(f.first_seen);
    const last = parseTime(f.last_seen);
    set('first-seen', first, fmt.fullTime(first));
    set('last-seen', last, fmt.fullTime(last));
    set('duration', CELLS.duration(f)[0], CELLS.duration(f)[1]);
    set('vlan', f.vlan ?? '', f.vlan);
    $('#flow-vlan-row').hidden = !f.vlan;
    set('packets-sent', f.packets_sent ?? 0, fmt.count(f.packets_sent ?? 0));
    set('packets-received', f.packets_received ?? 0, fmt.count(f.packets_received ?? 0));
    set('bytes-sent', f.bytes_sent ?? 0, fmt.bytes(f.bytes_sent ?? 0));
    set('bytes-received', f.bytes_received ?? 0, fmt.bytes(f.bytes_received ?? 0));
    $('#flow-copy').textContent = 'Copy';
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = URL.createObjectURL(new Blob([`${JSON.stringify(f, null, 2)}\n`], { type: 'application/json' }));
    const a = $('#flow-download');
    a.href = this.url;
    a.download = `flow-${f.id}.json`;
  },

  async copy() {
    const el = $('#flow-community-id');
    const btn = $('#flow-copy');
    try {
      await navigator.clipboard.writeText(el.dataset.value);
      btn.textContent = 'Copied';
    } catch {
      // No clipboard (an insecure origin, or permission refused): select it for a manual copy.
      getSelection().selectAllChildren(el);
      btn.textContent = 'Selected';
    }
  },

  close() {
    this.gen++;
    if (this.dialog.open) this.dialog.close();
  },
};

/**
 * FlowTable renders flows as rows keyed by flow id, updating rows and cells
 * in place (a cell's text and attributes are written only when they change)
 * and moving rows only when their position changes.
 */
class FlowTable {
  constructor(table, cols, empty) {
    this.tbody = table.tBodies[0];
    this.cols = cols;
    this.empty = empty;
    this.rows = new Map(); // id → tr
    this.order = []; // ids, as shown
    this.flows = new Map(); // id → the flow record shown
    const open = (tr) => tr?.dataset.flowId && details.open(tr.dataset.flowId, this.flows.get(tr.dataset.flowId));
    this.tbody.addEventListener('click', (e) => open(e.target.closest('tr')));
    this.tbody.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target.matches('tr')) {
        e.preventDefault();
        open(e.target);
      }
    });
  }

  render(flows) {
    const seen = new Set();
    flows.forEach((f, i) => {
      seen.add(f.id);
      let tr = this.rows.get(f.id);
      if (!tr) {
        tr = document.createElement('tr');
        tr.dataset.flowId = f.id;
        tr.tabIndex = 0;
        tr.title = 'Details';
        for (const c of this.cols) {
          const td = document.createElement('td');
          td.dataset.col = c;
          tr.append(td);
        }
        this.rows.set(f.id, tr);
      }
      this.cols.forEach((c, ci) => {
        const [value, text, title, tone] = CELLS[c](f);
        const td = tr.cells[ci];
        const v = value == null ? '' : String(value);
        if (td.dataset.value !== v) td.dataset.value = v;
        if (td.textContent !== text) {
          // An IPv6 endpoint may break before its port.
          const i = text.lastIndexOf(']:');
          if ((c === 'src' || c === 'dst') && i > 0) td.replaceChildren(text.slice(0, i + 1), document.createElement('wbr'), text.slice(i + 1));
          else td.textContent = text;
        }
        if (title !== undefined && td.title !== title) td.title = title;
        if (tone !== undefined && (td.dataset.tone ?? '') !== tone) td.dataset.tone = tone;
      });
      if (this.tbody.rows[i] !== tr) this.tbody.insertBefore(tr, this.tbody.rows[i] ?? null);
    });
    for (const [id, tr] of this.rows) {
      if (!seen.has(id)) {
        tr.remove();
        this.rows.delete(id);
      }
    }
    this.order = flows.map((f) => f.id);
    this.flows = new Map(flows.map((f) => [f.id, f]));
    this.empty.hidden = flows.length > 0;
  }
}

const TABLE_COLS = ['proto', 'src', 'dst', 'peer', 'port', 'state', 'direction', 'bytes_sent', 'bytes_received'];
const connTable = new FlowTable($('#conn-table'), [...TABLE_COLS, 'packets', 'bytes', 'duration'], $('#conn-empty'));
const flowsTable = new FlowTable($('#flows-table'), [...TABLE_COLS, 'packets', 'duration', 'first_seen', 'last_seen'],
  $('#flows-empty'));

// ---------------------------------------------------------------- connections

const conns = {
  sort: 'packets',
  desc: true,
  flows: [],

  async poll() {
    if (status.auth || status.down) return; // pollHealth notices the server's return
    try {
      const live = await api(`api/live?limit=${LIVE_LIMIT}`);
      banner.clear('live');
      this.flows = live.connections.map((c) => c.flow).filter((f) => f?.id);
      this.show();
      if (!status.stream) showTotals(live);
    } catch (err) {
      report('live', 'Live connections', err);
    }
  },

  /** show sorts by the chosen key, keeping the current order among equal values. */
  show() {
    const key = this.sort === 'bytes' ? bytesOf : packetsOf;
    const sign = this.desc ? -1 : 1;
    const pos = new Map(connTable.order.map((id, i) => [id, i]));
    const flows = [...this.flows].sort((a, b) => sign * (key(a) - key(b))
      || (pos.get(a.id) ?? Infinity) - (pos.get(b.id) ?? Infinity)
      || (a.id < b.id ? -1 : 1));
    connTable.render(flows);
    $('#conn-note').textContent = flows.length
      ? `(${flows.length}${flows.length === LIVE_LIMIT ? '+' : ''} active, by ${this.sort})` : '';
  },

  setSort(key) {
    if (key === undefined) {
      // just mark the headers
    } else if (this.sort === key) {
      this.desc = !this.desc;
    } else {
      this.sort = key;
      this.desc = true;
    }
    for (const th of document.querySelectorAll('#conn-table th[data-sort]')) {
      if (th.dataset.sort === this.sort) th.setAttribute('aria-sort', this.desc ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    }
    this.show();
  },
};

// ---------------------------------------------------------------- history

const histChart = new StackChart($('#history-chart'), {
  fmt: fmt.axisBytes,
  onHover: (h) => showTip(h),
});

const hist = {
  gen: 0, // the latest apply; older answers are dropped
  params: null, // the flows query of the latest apply (URLSearchParams, no cursor)
  cursors: [''], // cursor of each page visited
  series: null,
  bounds: null, // {since, until} in Unix ms, of the latest apply

  filters() {
    const p = new URLSearchParams();
    const ip = $('#f-ip').value.trim();
    const port = $('#f-port').value.trim();
    if (ip) p.set(ip.includes('/') ? 'cidr' : 'ip', ip);
    if (port) p.set('port', port);
    if ($('#f-proto').value) p.set('proto', $('#f-proto').value);
    if ($('#f-state').value) p.set('state', $('#f-state').value);
    return p;
  },

  /** fixedRange returns a range other than "all" in Unix ms: {since, until}. */
  fixedRange(range) {
    const now = Date.now();
    const ago = { '5m': 300e3, '1h': 3600e3, '24h': 86400e3 }[range];
    if (ago) return { since: now - ago, until: now };
    const since = new Date($('#range-from').value).getTime();
    const until = new Date($('#range-to').value).getTime();
    if (!Number.isFinite(since) || !Number.isFinite(until)) {
      throw new ApiError(400, 'a custom range needs both From and To', 'since');
    }
    return { since, until };
  },

  /** allRange returns the stored flows' span, from the earliest first_seen to the latest last_seen, or null. */
  async allRange() {
    const [first, last] = await Promise.all([
      api('api/flows?order=first_seen_asc&limit=1'),
      api('api/flows?order=last_seen_desc&limit=1'),
    ]);
    if (!first.flows.length || !last.flows.length) return null;
    return { since: parseTime(first.flows[0].first_seen), until: parseTime(last.flows[0].last_seen) + 1 };
  },

  /**
   * apply runs the form's query: the flows at once (with "all", without a
   * time range), the chart once the range is known. Answers to an earlier
   * apply that come late are dropped.
   */
  async apply() {
    const gen = ++this.gen;
    const range = $('#range').value;
    // Until this query's answer is in, the pager offers nothing: the
    // previous query's pages are not this one's.
    $('#flows-prev').disabled = true;
    $('#flows-next').disabled = true;
    $('#flows-table').setAttribute('aria-busy', 'true');
    banner.clear('history');
    let bounds = null;
    if (range !== 'all') {
      try {
        bounds = this.fixedRange(range);
      } catch (err) {
        report('history', 'History range', err);
        return;
      }
    }
    const p = this.filters();
    if (bounds) {
      p.set('since', String(Math.floor(bounds.since)));
      p.set('until', String(Math.ceil(bounds.until)));
    }
    p.set('order', $('#f-order').value);
    this.params = p;
    this.cursors = [''];
    const dl = new URLSearchParams(p);
    dl.set('format', 'ndjson');
    $('#download-ndjson').href = `api/flows?${dl}`;
    const flows = this.loadFlows(gen);
    if (!bounds) {
      try {
        bounds = await this.allRange();
      } catch (err) {
        if (gen === this.gen) report('history', 'History range', err);
        await flows;
        return;
      }
      if (gen !== this.gen) return;
    }
    this.bounds = bounds;
    await Promise.all([flows, this.loadSeries(gen)]);
  },

  async loadSeries(gen = this.gen) {
    const b = this.bounds;
    if (!b) {
      this.showSeries(null, 'No flows stored yet.');
      return;
    }
    const p = this.filters();
    p.set('since', String(Math.floor(b.since)));
    p.set('until', String(Math.ceil(b.until)));
    p.set('by', $('#group-by').value);
    p.set('metric', 'bytes');
    try {
      const s = await api(`api/series?${p}`);
      if (gen !== this.gen) return;
      banner.clear('series');
      this.showSeries(s);
    } catch (err) {
      if (gen !== this.gen) return;
      if (err.status === 404 && !err.parameter) {
        this.showSeries(null, 'Traffic chart unavailable: this server has no /api/series.');
        return;
      }
      report('series', 'History query', err);
      this.showSeries(null, err.status === 401 ? 'API token needed.' : 'Traffic chart unavailable.');
    }
  },

  showSeries(s, note) {
    const canvas = $('#history-chart');
    const legend = $('#history-legend');
    this.series = s && {
      start: parseTime(s.since),
      stepMs: s.step_seconds * 1000,
      buckets: s.buckets,
      metric: s.metric,
      series: s.series ?? [],
    };
    const series = this.series?.series ?? [];
    const total = series.reduce((a, x) => a + x.total, 0);
    canvas.dataset.total = String(total);
    canvas.dataset.keys = series.map((x) => x.key).join(',');
    canvas.dataset.source = s?.source ?? '';
    histChart.show(this.series, note);
    if (!s) {
      legend.replaceChildren();
      return;
    }
    const items = series.map((x, i) => swatch(seriesClass(i, x.key), x.key, fmt.bytes(x.total)));
    const info = document.createElement('span');
    info.className = 'info';
    info.textContent = `${fmt.bytes(total)} in all · per ${fmt.duration(s.step_seconds)}`
      + `${s.exact === false ? ' · estimated (flows spread over their lifetime)' : ''}`;
    legend.replaceChildren(...items, info);
  },

  async loadFlows(gen = this.gen) {
    const p = new URLSearchParams(this.params);
    p.set('limit', String(PAGE_SIZE));
    const cursor = this.cursors[this.cursors.length - 1];
    if (cursor) p.set('cursor', cursor);
    const page = this.cursors.length;
    $('#flows-prev').disabled = true;
    $('#flows-next').disabled = true;
    try {
      const r = await api(`api/flows?${p}`);
      if (gen !== this.gen) return;
      banner.clear('flows');
      this.loaded = true;
      flowsTable.render(r.flows);
      this.next = r.next_cursor || '';
      $('#flows-table').removeAttribute('aria-busy');
      const el = $('#flows-page');
      el.dataset.value = String(page);
      el.textContent = `Page ${page}`;
      $('#flows-next').disabled = !this.next;
    } catch (err) {
      if (gen !== this.gen) return;
      $('#flows-table').removeAttribute('aria-busy');
      flowsTable.render([]); // the rows shown were another query's
      report('flows', 'History query', err);
    }
    $('#flows-prev').disabled = this.cursors.length <= 1;
  },

  page(delta) {
    if (delta > 0 && this.next) this.cursors.push(this.next);
    else if (delta < 0 && this.cursors.length > 1) this.cursors.pop();
    else return;
    this.loadFlows();
  },
};

function showTip(h) {
  const tip = $('#history-tip');
  const d = hist.series;
  if (!h || !d) {
    tip.hidden = true;
    return;
  }
  const t0 = d.start + h.index * d.stepMs;
  const head = document.createElement('div');
  head.textContent = `${fmt.dateTime(t0)} + ${fmt.duration(d.stepMs / 1000)}`;
  const lines = [head];
  let sum = 0;
  d.series.forEach((s, i) => {
    const v = s.values[h.index];
    sum += v;
    if (v) lines.push(swatch(seriesClass(i, s.key), s.key, fmt.bytes(v)));
  });
  const total = document.createElement('b');
  total.textContent = `total ${fmt.bytes(sum)}`;
  lines.push(total);
  tip.replaceChildren(...lines.map((n) => {
    if (n.tagName === 'DIV') return n;
    const div = document.createElement('div');
    div.append(n);
    return div;
  }));
  tip.hidden = false;
  const w = tip.offsetWidth;
  tip.style.left = `${Math.max(0, Math.min(h.x + 12, h.width - w))}px`;
}

/** toLocalInput formats Unix ms for a datetime-local input. */
function toLocalInput(ms) {
  const d = new Date(ms);
  return new Date(ms - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 19);
}

async function download(e) {
  if (!token) return; // the link works as is
  e.preventDefault();
  const a = e.currentTarget;
  try {
    const res = await api(a.getAttribute('href'), { raw: true });
    const url = URL.createObjectURL(await res.blob());
    const tmp = document.createElement('a');
    tmp.href = url;
    tmp.download = a.download || 'flows.ndjson';
    document.body.append(tmp);
    tmp.click();
    tmp.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60e3);
    banner.clear('download');
  } catch (err) {
    report('download', 'Download', err);
  }
}

// ---------------------------------------------------------------- start

/** loop calls fn, then again ms after it settles, forever. */
function loop(fn, ms) {
  const run = async () => {
    await fn();
    setTimeout(run, ms);
  };
  run();
}

function startAuthed() {
  stream.start();
  conns.poll();
  hist.apply();
}

function init() {
  $('#error-close').addEventListener('click', () => banner.messages.clear() || banner.render());
  $('#conn-status').addEventListener('click', () => {
    if (status.auth && !dialog.open) dialog.showModal();
  });
  $('#token-form').addEventListener('submit', submitToken);
  $('#flow-close').addEventListener('click', () => details.close());
  $('#flow-copy').addEventListener('click', () => details.copy());
  // A click on the backdrop (the dialog box itself is padded by .inner) closes it.
  details.dialog.addEventListener('click', (e) => {
    if (e.target === details.dialog) details.close();
  });
  details.dialog.addEventListener('close', () => {
    details.gen++;
    details.dialog.dataset.state = '';
  });

  for (const th of document.querySelectorAll('#conn-table th[data-sort]')) {
    th.addEventListener('click', () => conns.setSort(th.dataset.sort));
    th.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        conns.setSort(th.dataset.sort);
      }
    });
  }
  conns.setSort();

  const stateSel = $('#f-state');
  for (const code of fmt.STATE_CODES) stateSel.add(new Option(`${code} – ${fmt.state(code)[0]}`, code));

  const form = $('#history-form');
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!status.auth) hist.apply();
  });
  $('#range').addEventListener('change', (e) => {
    const custom = e.target.value === 'custom';
    form.toggleAttribute('data-custom', custom);
    if (custom) {
      const b = hist.bounds ?? { since: Date.now() - 3600e3, until: Date.now() };
      if (!$('#range-from').value) $('#range-from').value = toLocalInput(b.since);
      if (!$('#range-to').value) $('#range-to').value = toLocalInput(b.until);
    } else if (!status.auth) {
      hist.apply();
    }
  });
  $('#group-by').addEventListener('change', () => {
    if (!status.auth && hist.params) hist.loadSeries();
  });
  $('#f-order').addEventListener('change', () => {
    if (!status.auth) hist.apply();
  });
  $('#flows-prev').addEventListener('click', () => hist.page(-1));
  $('#flows-next').addEventListener('click', () => hist.page(1));
  $('#download-ndjson').addEventListener('click', download);

  status.render();
}

async function boot() {
  init();
  await pollHealth();
  if (!status.auth) startAuthed();
  setTimeout(() => loop(pollHealth, HEALTH_POLL_MS), HEALTH_POLL_MS);
  setTimeout(() => loop(() => conns.poll(), LIVE_POLL_MS), LIVE_POLL_MS);
}

boot();
