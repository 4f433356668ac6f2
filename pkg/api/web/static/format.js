// Formatting of numbers, sizes, times and flow fields for display.
// The raw values stay in data-value attributes; these are for the eye.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** bytes formats a byte count with binary units: "512 B", "1.5 KiB", "23.4 MiB". */
export function bytes(n) {
  if (!Number.isFinite(n)) return '–';
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
  if (i === 0) return `${Math.round(n)} B`;
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${(Math.sign(n) * v).toFixed(digits)} ${UNITS[i]}`;
}

/** axisBytes formats a round byte count for an axis: "2 KiB", "1.5 MiB" (no trailing zeros). */
export const axisBytes = (n) => bytes(n).replace(/\.0+ /, ' ').replace(/(\.\d*[1-9])0+ /, '$1 ');

/** rate formats bytes per second: "1.20 MiB/s". */
export const rate = (n) => `${bytes(n)}/s`;

/** count formats a count with grouping: "12,345". */
export function count(n) {
  if (!Number.isFinite(n)) return '–';
  return Math.round(n).toLocaleString();
}

/** short formats a count compactly for axes and tiles: "950", "12.3k", "4.5M". */
export function short(n) {
  if (!Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a < 1000) return a < 10 && a % 1 ? n.toFixed(1) : String(Math.round(n));
  for (const [d, s] of [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']]) {
    if (a >= d) {
      const v = n / d;
      return `${Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)}${s}`;
    }
  }
  return String(n);
}

/** pps formats packets per second: "12.5/s". */
export function pps(n) {
  if (!Number.isFinite(n)) return '–';
  return `${n < 10 && n % 1 ? n.toFixed(1) : short(n)}/s`;
}

/** duration formats seconds: "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min", "3 d 4 h". */
export function duration(s) {
  if (!Number.isFinite(s)) return '–';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  const sec = Math.floor(s % 60);
  if (m < 60) return sec ? `${m} min ${String(sec).padStart(2, '0')} s` : `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${String(m % 60).padStart(2, '0')} min` : `${h} h`;
  return h % 24 ? `${Math.floor(h / 24)} d ${h % 24} h` : `${Math.floor(h / 24)} d`;
}

const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const msFmt = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3,
});
const fullFmt = new Intl.DateTimeFormat(undefined, {
  weekday: 'short', year: 'numeric', month: 'short', day: 'numeric',
  hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3, timeZoneName: 'short',
});
const hmFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

/** dateTime formats Unix ms as a local date and time. */
export const dateTime = (ms) => (Number.isFinite(ms) ? dateTimeFmt.format(ms) : '–');

/** fullTime formats Unix ms as the full local date and time, to the ms, with the time zone. */
export const fullTime = (ms) => (Number.isFinite(ms) ? fullFmt.format(ms) : '–');

/** isoDate formats Unix ms as the local date, "2014-03-18". */
function isoDate(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/**
 * shortTime formats Unix ms compactly, in local time: the time of day to
 * the ms ("19:06:08.123", or 12 h as the locale says) within 24 h of now,
 * else the date and time ("2014-03-18 19:06:08").
 */
export function shortTime(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return '–';
  if (Math.abs(now - ms) < 86400e3) return msFmt.format(ms);
  return `${isoDate(ms)} ${timeFmt.format(ms)}`;
}

/** axisTime formats Unix ms for a time axis whose ticks are stepMs apart. */
export function axisTime(ms, stepMs) {
  if (stepMs >= 86400e3) return dayFmt.format(ms);
  if (stepMs >= 60e3) {
    const d = new Date(ms);
    return d.getHours() === 0 && d.getMinutes() === 0 ? dayFmt.format(ms) : hmFmt.format(ms);
  }
  return timeFmt.format(ms);
}

/** endpoint joins an address and a port, IPv6 in brackets. */
export function endpoint(ip, port) {
  if (!ip) return '';
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return port ? `${host}:${port}` : host;
}

// Zeek conn_state codes in words (Zeek's conn.log documentation).
const STATES = {
  S0: ['attempt', 'connection attempt seen, no reply', 'warn'],
  S1: ['established', 'established, not terminated', 'ok'],
  SF: ['closed normally', 'normal establishment and termination', 'ok'],
  REJ: ['refused', 'connection attempt rejected', 'bad'],
  S2: ['closing', 'established, originator closed, no reply from the responder', ''],
  S3: ['closing', 'established, responder closed, no reply from the originator', ''],
  RSTO: ['reset', 'established, the originator aborted (sent a RST)', 'bad'],
  RSTR: ['reset', 'responder sent a RST', 'bad'],
  RSTOS0: ['reset', 'originator sent a SYN then a RST, no SYN-ACK from the responder', 'bad'],
  RSTRH: ['reset', 'responder sent a SYN-ACK then a RST, no SYN from the originator', 'bad'],
  SH: ['half-open', 'originator sent a SYN then a FIN, no SYN-ACK from the responder', 'warn'],
  SHR: ['half-open', 'responder sent a SYN-ACK then a FIN, no SYN from the originator', 'warn'],
  OTH: ['midstream', 'no SYN seen, just midstream traffic', ''],
};

/** STATE_CODES are the Zeek conn_state codes the API filters on. */
export const STATE_CODES = Object.keys(STATES);

/**
 * state returns [words, description, tone] for a Zeek conn_state code of a
 * flow of protocol proto: OTH means midstream TCP, but for ICMP and other
 * protocols without connections it is the only state there is.
 */
export function state(code, proto) {
  if (code === 'OTH' && proto && proto !== 'tcp') {
    return ['other', `no connection state for ${proto.toUpperCase()} (Zeek OTH)`, ''];
  }
  return STATES[code] ?? [code ? code.toLowerCase() : '–', code ?? '', ''];
}

const DIRECTIONS = { inbound: '↓ in', outbound: '↑ out', internal: '↔ internal', unknown: '? unknown' };

/** direction returns the display text of a flow direction. */
export const direction = (d) => DIRECTIONS[d] ?? (d || '–');
