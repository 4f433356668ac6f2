// Charts drawn by hand on canvas: the live rates (lines) and the traffic
// history (stacked bars). Both are sized to their CSS box times
// devicePixelRatio, so they stay crisp on HiDPI screens, and redraw when the
// box or the color scheme changes.

import { axisTime } from './format.js';

const FONT = '11px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

let palette = null;
const schemeQuery = matchMedia('(prefers-color-scheme: dark)');
const charts = new Set();
schemeQuery.addEventListener('change', () => {
  palette = null;
  for (const c of charts) c.redraw();
});

/** color returns the value of the CSS custom property --name. */
export function color(name) {
  palette ??= getComputedStyle(document.documentElement);
  return palette.getPropertyValue(`--${name}`).trim() || '#888';
}

/** seriesColor is the color of the i-th series (0-based) of a stacked chart. */
export const seriesColor = (i, key) => color(key === 'other' ? 'c9' : `c${(i % 8) + 1}`);

/** seriesClass is the legend swatch class matching seriesColor. */
export const seriesClass = (i, key) => (key === 'other' ? 'sw9' : `sw${(i % 8) + 1}`);

/**
 * niceStep returns a round tick step near raw: 1, 2 or 5 times a power of
 * ten, or with base 1024 the same within each binary unit (KiB, MiB …).
 */
export function niceStep(raw, base = 10) {
  if (!(raw > 0)) return 1;
  let unit = 1;
  if (base === 1024) {
    while (raw >= 1024 * unit) unit *= 1024;
    raw /= unit;
  }
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  const m = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  // 1000 KiB reads better as 1 MiB.
  return base === 1024 && m * p >= 1000 ? 1024 * unit : m * p * unit;
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
  172800, 604800].map((s) => s * 1000);

/** timeTicks returns tick times (Unix ms) between t0 and t1, at most maxTicks, on local round times. */
function timeTicks(t0, t1, maxTicks) {
  const span = Math.max(t1 - t0, 1);
  const step = TIME_STEPS.find((s) => span / s <= maxTicks) ?? Math.ceil(span / maxTicks / 86400e3) * 86400e3;
  const off = new Date(t0).getTimezoneOffset() * 60e3;
  const ticks = [];
  for (let t = Math.ceil((t0 - off) / step) * step + off; t <= t1; t += step) ticks.push(t);
  return { ticks, step };
}

/** Chart is a canvas that redraws itself at its CSS size. Subclasses implement paint(ctx, w, h). */
class Chart {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.pending = false;
    new ResizeObserver(() => this.redraw()).observe(canvas);
    charts.add(this);
  }

  /** redraw schedules a repaint on the next animation frame (repeated calls paint once). */
  redraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      const { canvas, ctx } = this;
      const dpr = window.devicePixelRatio || 1;
      const w = canvas.clientWidth;
      const h = canvas.clientHeight;
      if (w === 0 || h === 0) return;
      const pw = Math.round(w * dpr);
      const ph = Math.round(h * dpr);
      if (canvas.width !== pw || canvas.height !== ph) {
        canvas.width = pw;
        canvas.height = ph;
      }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      ctx.font = FONT;
      this.paint(ctx, w, h);
    });
  }

  /** yTicks returns round tick values for [0, max] on an axis h pixels tall; the last is the axis top. */
  yTicks(max, h, base) {
    const step = niceStep(max / Math.max(2, Math.floor(h / 40)), base);
    const top = Math.max(step, Math.ceil(max / step) * step);
    const ticks = [];
    for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
    return ticks;
  }

  /** gutter returns the width the labels of these tick lists need, left of the plot. */
  gutter(ctx, ...axes) {
    let w = 0;
    for (const [ticks, fmt] of axes) for (const v of ticks) w = Math.max(w, ctx.measureText(fmt(v)).width);
    return Math.ceil(w) + 10;
  }

  /** yAxis draws horizontal grid lines and labels at ticks in the box; returns the axis top. */
  yAxis(ctx, box, ticks, fmt) {
    const top = ticks[ticks.length - 1];
    ctx.strokeStyle = color('grid');
    ctx.fillStyle = color('muted');
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const v of ticks) {
      const y = Math.round(box.y + box.h - (v / top) * box.h) + 0.5;
      ctx.beginPath();
      ctx.moveTo(box.x, y);
      ctx.lineTo(box.x + box.w, y);
      ctx.stroke();
      ctx.fillText(fmt(v), box.x - 6, y);
    }
    return top;
  }

  /** xAxis draws time labels under the box for [t0, t1]. */
  xAxis(ctx, box, t0, t1) {
    const { ticks, step } = timeTicks(t0, t1, Math.max(2, Math.floor(box.w / 90)));
    ctx.fillStyle = color('muted');
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const right = this.canvas.clientWidth;
    for (const t of ticks) {
      const x = box.x + ((t - t0) / (t1 - t0)) * box.w;
      const label = axisTime(t, step);
      const half = ctx.measureText(label).width / 2;
      if (x - half >= 0 && x + half <= right) ctx.fillText(label, x, box.y + box.h + 5);
    }
  }

  message(ctx, w, h, text) {
    ctx.fillStyle = color('muted');
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.font = `13px ${FONT.split(' ').slice(1).join(' ')}`;
    ctx.fillText(text, w / 2, h / 2);
    ctx.font = FONT;
  }
}

/**
 * LiveChart plots the last minutes of stream stats: bytes/s above and
 * packets/s below, the total as a filled area and, when the server reports
 * them, in and out as lines.
 */
export class LiveChart extends Chart {
  constructor(canvas, { windowMs = 300e3, fmtBytes, fmtPackets }) {
    super(canvas);
    this.windowMs = windowMs;
    this.fmtBytes = fmtBytes;
    this.fmtPackets = fmtPackets;
    this.points = [];
    this.received = 0;
  }

  /** push adds a point {t, bps, pps, bpsIn?, bpsOut?, ppsIn?, ppsOut?} (t in Unix ms). */
  push(p) {
    this.points.push(p);
    this.received++;
    const cut = p.t - this.windowMs - 5e3;
    let i = 0;
    while (i < this.points.length && this.points[i].t < cut) i++;
    if (i) this.points.splice(0, i);
    this.canvas.dataset.points = String(this.received);
    this.redraw();
  }

  paint(ctx, w, h) {
    const pts = this.points;
    if (pts.length === 0) {
      this.message(ctx, w, h, 'Waiting for the live stream…');
      return;
    }
    const gap = 24;
    const paneH = (h - 20 - gap - 6) / 2;
    // The time axis grows from one minute to windowMs as points come.
    const t1 = pts[pts.length - 1].t;
    const t0 = t1 - Math.min(this.windowMs, Math.max(60e3, t1 - pts[0].t));
    const top = { x: 0, y: 6, w: 0, h: paneH * 1.15 };
    const bottom = { x: 0, y: top.y + top.h + gap, w: 0, h: h - 20 - top.h - gap - 6 };
    const yb = this.yTicks(this.max('bps'), top.h, 1024);
    const yp = this.yTicks(this.max('pps'), bottom.h, 10);
    top.x = bottom.x = this.gutter(ctx, [yb, this.fmtBytes], [yp, this.fmtPackets]);
    top.w = bottom.w = w - top.x - 8;
    this.pane(ctx, top, t0, t1, 'bps', yb, this.fmtBytes, 'bytes/s');
    this.pane(ctx, bottom, t0, t1, 'pps', yp, this.fmtPackets, 'packets/s');
    this.xAxis(ctx, bottom, t0, t1);
  }

  /** max returns the largest value of field (total, in or out) among the points. */
  max(field) {
    let max = 0;
    for (const p of this.points) max = Math.max(max, p[field] || 0, p[`${field}In`] || 0, p[`${field}Out`] || 0);
    return max;
  }

  pane(ctx, box, t0, t1, field, ticks, fmt, title) {
    const pts = this.points;
    const fin = `${field}In`;
    const fout = `${field}Out`;
    const hasDir = pts.some((p) => p[fin] != null);
    const top = this.yAxis(ctx, box, ticks, fmt);
    const X = (t) => box.x + ((t - t0) / (t1 - t0)) * box.w;
    const Y = (v) => box.y + box.h - ((v || 0) / top) * box.h;

    ctx.save();
    ctx.beginPath();
    ctx.rect(box.x, box.y - 1, box.w + 1, box.h + 2);
    ctx.clip();
    const total = color(field === 'bps' ? 'total' : 'pkts');
    ctx.beginPath();
    ctx.moveTo(X(pts[0].t), Y(0));
    for (const p of pts) ctx.lineTo(X(p.t), Y(p[field]));
    ctx.lineTo(X(pts[pts.length - 1].t), Y(0));
    ctx.closePath();
    ctx.globalAlpha = 0.18;
    ctx.fillStyle = total;
    ctx.fill();
    ctx.globalAlpha = 1;
    this.line(ctx, pts, field, X, Y, total, 1.5);
    if (hasDir) {
      this.line(ctx, pts, fin, X, Y, color('in'), 1.5);
      this.line(ctx, pts, fout, X, Y, color('out'), 1.5);
    }
    ctx.restore();

    ctx.fillStyle = color('muted');
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    ctx.fillText(title, box.x + 4, box.y + 2);
  }

  line(ctx, pts, field, X, Y, stroke, width) {
    ctx.beginPath();
    let started = false;
    for (const p of pts) {
      if (p[field] == null) { started = false; continue; }
      if (started) ctx.lineTo(X(p.t), Y(p[field]));
      else ctx.moveTo(X(p.t), Y(p[field]));
      started = true;
    }
    ctx.strokeStyle = stroke;
    ctx.lineWidth = width;
    ctx.lineJoin = 'round';
    ctx.stroke();
  }
}

/**
 * StackChart draws /api/series as stacked bars: one bar per bucket, one
 * colored segment per series, the largest series at the bottom.
 */
export class StackChart extends Chart {
  constructor(canvas, { fmt, onHover }) {
    super(canvas);
    this.fmt = fmt;
    this.onHover = onHover;
    this.data = null;
    this.note = 'Loading…';
    this.geom = null;
    canvas.addEventListener('mousemove', (e) => this.hover(e));
    canvas.addEventListener('mouseleave', () => this.onHover?.(null));
  }

  /** show sets the series ({start, stepMs, buckets, series}) or, with data null, a message. */
  show(data, note = '') {
    this.data = data;
    this.note = note;
    this.redraw();
  }

  paint(ctx, w, h) {
    this.geom = null;
    const d = this.data;
    if (!d || d.buckets === 0 || d.series.length === 0) {
      this.message(ctx, w, h, this.note || 'No traffic in this range.');
      return;
    }
    const box = { x: 0, y: 8, w: 0, h: h - 28 };
    const sums = new Array(d.buckets).fill(0);
    for (const s of d.series) s.values.forEach((v, i) => { sums[i] += v; });
    const max = Math.max(...sums, 0);
    const ticks = this.yTicks(max, box.h, d.metric === 'packets' ? 10 : 1024);
    box.x = this.gutter(ctx, [ticks, this.fmt]);
    box.w = w - box.x - 8;
    const top = this.yAxis(ctx, box, ticks, this.fmt);
    const t0 = d.start;
    const t1 = d.start + d.buckets * d.stepMs;
    const bw = box.w / d.buckets;
    const pad = bw > 4 ? Math.min(2, bw * 0.15) : 0;
    const base = new Array(d.buckets).fill(0);
    d.series.forEach((s, si) => {
      ctx.fillStyle = seriesColor(si, s.key);
      s.values.forEach((v, i) => {
        if (!v) return;
        const y0 = box.y + box.h - (base[i] / top) * box.h;
        base[i] += v;
        const y1 = box.y + box.h - (base[i] / top) * box.h;
        ctx.fillRect(box.x + i * bw + pad / 2, y1, Math.max(bw - pad, 0.75), Math.max(y0 - y1, 0.75));
      });
    });
    this.xAxis(ctx, box, t0, t1);
    if (max === 0) this.message(ctx, w, h, 'No traffic in this range.');
    this.geom = { box, bw };
  }

  hover(e) {
    const g = this.geom;
    const d = this.data;
    if (!g || !d || !this.onHover) return;
    const r = this.canvas.getBoundingClientRect();
    const x = e.clientX - r.left;
    const i = Math.floor((x - g.box.x) / g.bw);
    if (i < 0 || i >= d.buckets) {
      this.onHover(null);
      return;
    }
    this.onHover({ index: i, x, width: r.width });
  }
}
