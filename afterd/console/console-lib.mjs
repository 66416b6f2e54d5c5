// after's console, the part with no page state: building DOM from text, dates (UTC on the
// page, local on hover), repeat in words, and the dates and durations a person types.
// Pure functions apart from el() and the ticking clock, so node runs its tests
// (tests/browser/test_console_lib.py).

export const FINAL = new Set(["done", "error", "err", "canceled"]);
export const STATUSES = ["waiting", "scheduled", "running", "done", "error", "reschedule", "cancel",
                  "canceled", "pause", "paused", "resume", "run"];
// A symbol beside each status, so the page reads without colour.
export const STATUS_MARK = {waiting: "○", scheduled: "◷", running: "▶", done: "✓", error: "✗", err: "✗",
                     reschedule: "↻", cancel: "⊘", canceled: "⊘", pause: "‖", paused: "‖",
                     resume: "↻", run: "▶"};
// (Not ⏸: Debian's fonts for Chromium have no glyph for it, and it showed as an empty box.)
export const FAR = "\ufff0";   // sorts after any id character we expect
// ---- DOM helpers: text only --------------------------------------------------------

export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function json(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch (e) {
    return String(value);
  }
}

export function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

// A date the validation accepts -> Date (UTC when it has no offset), or null.
export const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|[+-]\d{2}:\d{2})?)?$/;
export function parseDate(value) {
  const m = DATE_RE.exec(String(value || "").trim());
  if (!m) return null;
  let ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0),
                    m[7] ? +(m[7] + "00").slice(0, 3) : 0);
  if (m[8] && m[8] !== "Z") {
    ms -= (m[8][0] === "-" ? -1 : 1) * (+m[8].slice(1, 3) * 60 + +m[8].slice(4, 6)) * 60000;
  }
  return new Date(ms);
}

export function utcText(d) {
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
         `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

export function isoUTC(d) {
  const ms = d.getUTCMilliseconds();
  return d.toISOString().replace(ms ? /Z$/ : /\.\d{3}Z$/, "Z");
}

// <time> in UTC, local time on hover.
export function when(value) {
  const d = parseDate(value);
  if (!d) return el("span", {class: "muted", text: value === undefined || value === null ? "—" : String(value)});
  return el("time", {datetime: d.toISOString(), title: "local: " + d.toLocaleString()}, utcText(d));
}

// "1 live process", "2 live processes".
export function plural(n, one, many) {
  return n === 1 ? one : many;
}

export function duration(ms) {
  const neg = ms < 0;
  let s = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const text = d ? `${d}d ${h}h ${m}m` : h ? `${h}h ${m}m ${s}s` : m ? `${m}m ${s}s` : `${s}s`;
  return neg ? "-" + text : text;
}

// Ticking elements: a countdown to a date, or the time elapsed since one.
export function countdown(value) {
  const d = parseDate(value);
  return el("span", {class: "tick", dataset: d ? {until: d.toISOString()} : {}}, d ? tickText("until", d) : "—");
}
export function elapsed(value) {
  const d = parseDate(value);
  return el("span", {class: "tick", dataset: d ? {since: d.toISOString()} : {}}, d ? tickText("since", d) : "—");
}
export function tickText(kind, d) {
  const delta = d.getTime() - Date.now();
  if (kind === "since") return duration(-delta);
  return delta >= 0 ? "in " + duration(delta) : "due " + duration(-delta) + " ago";
}
export function startTicking() {
  setInterval(() => {
    for (const node of document.querySelectorAll(".tick")) {
      if (node.dataset.until) node.textContent = tickText("until", new Date(node.dataset.until));
      else if (node.dataset.since) node.textContent = tickText("since", new Date(node.dataset.since));
    }
  }, 1000);
}

export function statusBadge(status) {
  const s = String(status);
  return el("span", {class: "status st-" + s.replace(/[^a-z]/g, "")}, (STATUS_MARK[s] || "•") + " " + s);
}

export function jobName(doc) {
  return doc && doc.job && typeof doc.job.name === "string" ? doc.job.name : "?";
}

export function taskLink(id) {
  return el("a", {href: "#task/" + encodeURIComponent(id), class: "id", dataset: {focus: "task:" + id}}, id);
}

// ---- repeat in words -----------------------------------------------------------------

export const UNIT_WORDS = [["years", "y", "year"], ["months", "M", "month"], ["weeks", "w", "week"],
                    ["days", "d", "day"], ["hours", "h", "hour"], ["minutes", "m", "minute"],
                    ["seconds", "s", "second"], ["milliseconds", "ms", "millisecond"]];
export function repeatWords(repeat, doc) {
  if (!repeat || typeof repeat !== "object") return "once";
  const parts = [];
  for (const [long, short, word] of UNIT_WORDS) {
    const n = repeat[long] !== undefined ? repeat[long] : repeat[short];
    if (typeof n === "number" && n > 0) parts.push(n === 1 && !parts.length ? word : `${n} ${word}${n === 1 ? "" : "s"}`);
  }
  let text = parts.length ? "every " + parts.join(" and ") : "";
  if (repeat.rrule) text = "by the rule " + repeat.rrule;
  const cron = cronWords(repeat.cron, repeat.tz);
  if (cron) text = cron + ` (cron ${repeat.cron.trim()})`;
  else if (repeat.cron) text = "by cron " + repeat.cron;
  if (!text) text = "repeating";
  if (repeat.tz && !cron) text += ` (${repeat.tz} time)`;
  if (repeat.until) text += ", until " + (parseDate(repeat.until) ? utcText(parseDate(repeat.until)) : repeat.until);
  if (repeat.count) text += `, ${repeat.count} runs in all`;
  if (doc && !FINAL.has(doc.status) && parseDate(doc.date)) {
    // A cron task no worker has claimed yet keeps the user's date: it first runs at the
    // first match from there (the claim writes that match into `date`).
    const unclaimed = repeat.cron && (doc.status === "waiting" || doc.status === "reschedule");
    text += (unclaimed ? ", from " : ", next ") + utcText(parseDate(doc.date)).replace(/:00 UTC$/, " UTC");
  }
  return text;
}

export class HttpError extends Error {
  constructor(status, error, reason) {
    super(reason || error || ("HTTP " + status));
    this.status = status;
    this.error = error;
    this.reason = reason || error || ("HTTP " + status);
  }
}

export function query(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined) continue;
    const encoded = ["key", "startkey", "endkey", "keys"].includes(key) || typeof value !== "string"
      ? JSON.stringify(value) : value;
    parts.push(encodeURIComponent(key) + "=" + encodeURIComponent(encoded));
  }
  return parts.length ? "?" + parts.join("&") : "";
}

// ---- dates and durations typed by a person -----------------------------------------------------------

export const DURATION_TOKEN = /(\d+)\s*(ms|y|M|w|d|h|m|s)/g;
export const WORD_UNITS = {ms: "ms", millisecond: "ms", milliseconds: "ms", s: "s", sec: "s", secs: "s", second: "s", seconds: "s",
                    m: "m", min: "m", mins: "m", minute: "m", minutes: "m", h: "h", hour: "h", hours: "h",
                    d: "d", day: "d", days: "d", w: "w", week: "w", weeks: "w", M: "M", month: "M", months: "M",
                    y: "y", year: "y", years: "y"};
export const UNIT_KEYS = {ms: "milliseconds", y: "years", M: "months", w: "weeks", d: "days", h: "hours", m: "minutes", s: "seconds"};

// "1M7d", "1h30m", "10 minutes", "2 hours 5 minutes" -> {months: 1, days: 7}
export function parseDuration(text) {
  let t = String(text).trim();
  t = t.replace(/(\d+)\s*([A-Za-z]+)/g, (m, n, unit) => {
    const u = WORD_UNITS[unit] || WORD_UNITS[unit.toLowerCase()];
    if (u === undefined || (unit.length > 2 && unit !== unit.toLowerCase())) throw new Error(`"${unit}" is not a unit`);
    return n + (unit.length <= 2 ? unit : u);
  }).replace(/\s+|,|and/g, "");
  const out = {};
  let used = "";
  for (const m of t.matchAll(DURATION_TOKEN)) {
    const key = UNIT_KEYS[m[2]];
    out[key] = (out[key] || 0) + +m[1];
    used += m[0];
  }
  if (!used || used !== t) throw new Error(`"${text}" is not a duration: digits and units, like 10m, 1h30m, 1M7d, "10 minutes"`);
  return out;
}

export function addOffset(date, offset) {
  const d = new Date(date.getTime());
  if (offset.years || offset.months) d.setUTCMonth(d.getUTCMonth() + 12 * (offset.years || 0) + (offset.months || 0));
  const ms = ((((offset.weeks || 0) * 7 + (offset.days || 0)) * 24 + (offset.hours || 0)) * 60 +
              (offset.minutes || 0)) * 60000 + (offset.seconds || 0) * 1000 + (offset.milliseconds || 0);
  return new Date(d.getTime() + ms);
}

// Wall-clock time in an IANA zone -> UTC, with the browser's own tz database.
export function zonedToUtc(fields, tz) {
  const fmt = new Intl.DateTimeFormat("en-US", {timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"});
  const wanted = Date.UTC(...fields);
  let guess = wanted;
  for (let i = 0; i < 3; i++) {
    const parts = Object.fromEntries(fmt.formatToParts(new Date(guess)).map((p) => [p.type, p.value]));
    const shown = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
    guess += wanted - shown;
  }
  return new Date(guess);
}

// "now", "in 10 minutes", "2026-12-01 03:00" (UTC, or wall-clock in tz), ISO with offset -> ISO UTC.
export function parseWhen(text, tz) {
  const t = String(text || "").trim();
  if (!t || t === "now") return isoUTC(new Date());
  const rel = /^in\s+(.+)$/i.exec(t);
  if (rel) return isoUTC(addOffset(new Date(), parseDuration(rel[1])));
  const m = DATE_RE.exec(t);
  if (!m) throw new Error(`"${t}" is not a date: use "2026-12-01 03:00", "2026-12-01T03:00:00+01:00", "now" or "in 10 minutes"`);
  if (!m[8] && tz) {
    try {
      return isoUTC(zonedToUtc([+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0)], tz));
    } catch (e) {
      throw new Error(`"${tz}" is not a time zone this browser knows`);
    }
  }
  return isoUTC(parseDate(t));
}


// ---- why, and when next: the task page's explanation --------------------------------------------
// A port of afterd/explain.py (what `after explain ID` prints): the same sentences from the same
// document, heartbeats, design document and jobs. tests/explain_cases.json holds the two equal
// (tests/test_explain.py runs the Python, tests/browser/test_console_lib.py this).

export function span(seconds) {
  let s = Math.floor(Math.max(0, seconds));
  const days = Math.floor(s / 86400); s -= days * 86400;
  const hours = Math.floor(s / 3600); s -= hours * 3600;
  const minutes = Math.floor(s / 60); s -= minutes * 60;
  if (days) return `${days} day${days !== 1 ? "s" : ""}` + (hours ? ` ${hours} h` : "");
  if (hours) return `${hours} h` + (minutes ? ` ${minutes} min` : "");
  if (minutes) return `${minutes} min` + (s ? ` ${s} s` : "");
  return `${s} s`;
}

function xAt(value) {
  const d = parseDate(value);
  return d ? utcText(d) : String(value);
}
function xRelative(value, now) {
  const d = parseDate(value);
  if (!d) return "?";
  const delta = (d.getTime() - now.getTime()) / 1000;
  return delta >= 0 ? `in ${span(delta)}` : `${span(-delta)} ago`;
}
const HEARTBEAT_PREFIX = "after:process:";
function xProcess(beat) {
  return String(beat._id || "").slice(HEARTBEAT_PREFIX.length);
}
// claims.lease_expired with no skew margin.
export function leaseHolds(beat, now) {
  if (!beat || beat.stopped) return false;
  const expires = parseDate(beat.expires_at);
  return !!expires && now.getTime() <= expires.getTime();
}
function goneWords(beat, now) {
  if (beat.stopped) return `stopped ${xRelative(beat.expires_at || beat.beat_at, now)}`;
  return `stopped renewing its lease ${xRelative(beat.beat_at, now)}`;
}
function byBeat(a, b) {
  return String(a.beat_at || "").localeCompare(String(b.beat_at || "")) || String(a._id || "").localeCompare(String(b._id || ""));
}
function noLiveProcess(worker, beats, now) {
  if (!beats.length) {
    return `no process of worker \`${worker}\` has a heartbeat in this database: none runs, or none has run yet (after start ${worker})`;
  }
  const last = beats.slice().sort(byBeat).at(-1);
  return `no live process of worker \`${worker}\` (the last one, on ${last.host === undefined ? "?" : last.host}, ${goneWords(last, now)})`;
}
// claims.may_have_started without a journal: could the dead owner have begun the run due at `date`?
function mayHaveStarted(date, beat) {
  if (!beat) return true;
  if (beat.stopped) return false;
  const expires = parseDate(beat.expires_at);
  return !expires || date.getTime() <= expires.getTime();
}
const ASKED = {pause: "pause it", resume: "resume it", run: "run it now, once", cancel: "cancel it", reschedule: "move it to "};
const KNOWN = new Set(STATUSES.concat(["err"]));

function policySeconds(value) {
  if (typeof value === "number") return value;
  try {
    const o = parseDuration(String(value));
    if (o.years || o.months) return null;
    return addOffset(new Date(0), o).getTime() / 1000;
  } catch (e) {
    return null;
  }
}
// outcome.missed_fields, for what the sentences need: would arming it now skip missed occurrences, and why.
function skipWhy(doc, now, graceS) {
  if (!doc.repeat || typeof doc.repeat !== "object" || doc.run_now !== undefined) return null;
  const due = parseDate(doc.date);
  if (!due || due.getTime() > now.getTime() - graceS * 1000) return null;
  if (doc.catchup === "none") return "catchup none";
  const window = doc.catchup_window === undefined ? null : policySeconds(doc.catchup_window);
  if (window !== null && due.getTime() < now.getTime() - window * 1000) return "older than catchup_window";
  return null;
}

function finalSentence(doc, status) {
  const when = doc.finished_at ? ` at ${xAt(doc.finished_at)}` : "";
  if (status === "done") {
    const runs = doc.runs;
    const ran = Number.isInteger(runs) && runs ? `it ran ${runs} time${runs !== 1 ? "s" : ""} and ` : "";
    return `done${when}: ${ran}will not run again`;
  }
  if (status === "canceled") return `canceled${when} by a user: it will not run again`;
  const err = doc.error && typeof doc.error === "object" ? doc.error : {};
  if (err.type === "InvalidTask") return `refused${when}: ${err.message}`;
  const what = err.type ? `${err.type}: ${err.message}` : (err.message === undefined ? "no reason recorded" : String(err.message));
  return `failed${when}: ${what}; it will not run again`;
}

function statusSentences(doc, status, worker, beats, live, owner, ownerBeat, now) {
  const date = doc.date;
  const out = [];
  const ownerAlive = !!owner && leaseHolds(ownerBeat, now);
  let actor, where = null, recover = false;
  if (ownerAlive) {
    actor = ownerBeat;
    where = `on process ${owner}, alive (lease renewed ${xRelative(ownerBeat.beat_at, now)})`;
  } else {
    actor = live.length ? live[0] : null;
    if (owner) {
      // claims.takeover
      const due = parseDate(date) || now;
      if (status === "running") recover = true;
      else if (status === "scheduled") recover = due.getTime() <= now.getTime() && mayHaveStarted(due, ownerBeat);
    }
  }
  if (status === "paused") {
    const since = doc.paused_at;
    out.push(since ? `paused since ${xAt(since)} (${xRelative(since, now)}) by a user: no process arms it until it is resumed (after resume ID)`
                   : "paused by a user: no process arms it until it is resumed (after resume ID)");
  } else if (status === "running") {
    const started = (doc.running && typeof doc.running === "object" && doc.running.started_at) || doc.started_at;
    out.push(`running since ${xAt(started)} (${xRelative(started, now)})` + (where ? `, ${where}` : ""));
  } else if (ASKED[status] !== undefined) {
    const wish = ASKED[status] + (status === "reschedule" ? xAt(date) : "");
    out.push(`a user asked to ${wish}; ` + (actor ? `process ${xProcess(actor)} does so as it reads it` : "no process has done so yet"));
  } else if (status === "scheduled" || status === "waiting") {
    const due = parseDate(date);
    if (due && due.getTime() > now.getTime()) {
      out.push(`${where || actor ? "runs next" : "due"} at ${xAt(date)} (${xRelative(date, now)})` + (where ? `, ${where}` : ""));
    } else {
      out.push(`was due at ${xAt(date)} (${xRelative(date, now)})` + (where ? `, ${where}` : ""));
    }
    if (status === "waiting") {
      out.push(`waiting for a process of worker \`${worker}\` to take it` + (actor ? `: ${xProcess(actor)} is alive` : ""));
    }
  }
  if (owner && !ownerAlive) {
    out.push(ownerBeat ? `its process ${owner} (on ${ownerBeat.host === undefined ? "?" : ownerBeat.host}) ${goneWords(ownerBeat, now)}`
                       : `its process ${owner} has no heartbeat any more`);
  }
  if (!live.length) out.push(noLiveProcess(worker, beats, now));
  else if (owner && !ownerAlive) out.push(`process ${xProcess(actor)} of worker \`${worker}\` is alive: it takes the task over`);
  if (recover) {
    out.push("its run may have begun before its process went away: the process that takes it over ends " +
             "that run as error (Interrupted), or runs it again if its retry allows");
  } else if (["scheduled", "waiting", "resume"].includes(status)) {
    const why = skipWhy(doc, now, status === "resume" ? 0 : 1);
    const due = parseDate(date);
    if (why) {
      out.push(`its date passed ${span((now.getTime() - due.getTime()) / 1000)} ago with no run: ${why}, so ` +
               "the process that arms it skips the missed occurrences and waits for the next");
    } else if (due && due.getTime() <= now.getTime() && (actor || status === "waiting")) {
      out.push("it runs as soon as a process of its worker arms it");
    }
  }
  return out;
}

function lastHistory(doc) {
  const h = Array.isArray(doc.history) ? doc.history : [];
  const last = h.length ? h[h.length - 1] : null;
  return last && typeof last === "object" ? last : null;
}
function skippedSentences(doc) {
  const note = doc.skipped;
  if (!note || typeof note !== "object" || !parseDate(note.at)) return [];
  const last = lastHistory(doc) || {};
  if (parseDate(last.start) && parseDate(last.start) > parseDate(note.at)) return [];
  const first = parseDate(note.first);
  const down = first ? span((parseDate(note.at) - first) / 1000) : "?";
  const what = note.count === 1 ? `the ${xAt(note.first)} occurrence was` : `${note.count} occurrences from ${xAt(note.first)} were`;
  return [`${what} skipped at ${xAt(note.at)}: ${note.why} after ${down} of downtime`];
}
function lastRunSentences(doc) {
  const last = lastHistory(doc);
  if (!last || last.status === undefined || last.status === null || last.status === "done") return [];
  const err = last.error && typeof last.error === "object" ? last.error : {};
  const what = err.type ? `${err.type}: ${err.message}` : (err.message === undefined ? "" : String(err.message));
  return [`its last run (started ${xAt(last.start)}) ended ${last.status}` + (what ? `: ${what}` : "")];
}
function jobSentences(doc, beats, live, jobs) {
  const job = doc.job && typeof doc.job === "object" ? doc.job.name : undefined;
  const out = [];
  const latest = beats.slice().sort(byBeat).slice(-1);
  for (const beat of (live.length ? live : latest)) {
    const metrics = beat.metrics && typeof beat.metrics === "object" ? beat.metrics : {};
    const broken = metrics.jobs_broken && typeof metrics.jobs_broken === "object" ? metrics.jobs_broken : {};
    const failing = Array.isArray(metrics.jobs_failing) ? metrics.jobs_failing : [];
    const host = beat.host === undefined ? "?" : beat.host;
    if (Object.prototype.hasOwnProperty.call(broken, job)) {
      out.push(`job \`${job}\` cannot be loaded on ${host}: ${broken[job]} (reported by its heartbeat)`);
    } else if (failing.includes(job)) {
      out.push(`job \`${job}\` could not be loaded by its latest run on ${host} (reported by its heartbeat)`);
    }
  }
  if (jobs !== null && jobs !== undefined) {
    const state = Object.prototype.hasOwnProperty.call(jobs, job) ? jobs[job] : undefined;
    if (state === undefined) out.push(`there is no job \`${job}\` in this machine's jobs folder`);
    else if (state !== "ok") out.push(`in this machine's jobs folder, job \`${job}\` cannot run: ${state}`);
  }
  return out;
}

// explain(doc, heartbeats, design, jobs, now) -> sentences. design: the design document or null;
// jobs: {job: "ok" or why not} of a jobs folder, or null (the page knows none).
export function explain(doc, heartbeats, design, jobs, now) {
  const worker = String(doc.worker);
  const beats = (heartbeats || []).filter((b) => b && typeof b === "object" && b.type === "process" && b.worker === worker);
  const live = beats.filter((b) => leaseHolds(b, now));
  const owner = doc.owner && typeof doc.owner === "object" ? doc.owner.process : undefined;
  const ownerBeat = owner ? beats.find((b) => xProcess(b) === owner) || null : null;
  const status = doc.status === "err" ? "error" : doc.status;
  if (!KNOWN.has(status)) {
    return [`refused: status: ${JSON.stringify(doc.status)} is not a status: a process of worker \`${worker}\` ends it as error`];
  }
  const out = [];
  if (!design) out.push("this database has no _design/after: nothing validates its tasks, and no worker (nor after init) has prepared it");
  if (FINAL.has(status)) {
    out.push(finalSentence(doc, status));
    if (status === "error") out.push(...jobSentences(doc, beats, live, jobs));   // a job file that cannot be loaded
    return out;
  }
  out.push(...statusSentences(doc, status, worker, beats, live, owner, ownerBeat, now));
  const rep = doc.repeat;
  if (rep && typeof rep === "object" && typeof rep.cron === "string") {   // explain.py: schedule_sentences
    const words = cronWords(rep.cron, rep.tz);
    if (words) out.push(`it repeats ${words} (${rep.cron})`);
  }
  out.push(...skippedSentences(doc));
  out.push(...lastRunSentences(doc));
  out.push(...jobSentences(doc, beats, live, jobs));
  const conflicts = doc._conflicts;
  if (Array.isArray(conflicts) && conflicts.length) {
    out.push(`the document has ${conflicts.length} conflicting revision${conflicts.length !== 1 ? "s" : ""} ` +
             "(copies on a cluster's nodes disagreed, or a write quorum was not reached): the worker resolves them when it reads it");
  }
  return out;
}

// As printed: a capital and a full stop (explain.py: sentence).
export function sentence(text) {
  return text ? text[0].toUpperCase() + text.slice(1) + (text.endsWith(".") ? "" : ".") : text;
}

// ---- a cron repeat in words (afterd/cron.py describe: the same words; tests/cron_words.json
// holds both to one table). null for an expression the validator would have refused.

const CRON_ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                      "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                      "@hourly": "0 * * * *"};
const CRON_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const CRON_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August",
                     "September", "October", "November", "December"];
const CRON_RANGES = [[0, 59], [0, 59], [0, 23], [1, 31], [1, 12], [0, 7]];

function cronNumber(token, unit) {
  const names = unit === "month" ? CRON_MONTHS : unit === "day of week" ? CRON_DAYS : [];
  const at = names.indexOf(token.toUpperCase());
  if (at >= 0) return at + (unit === "month" ? 1 : 0);
  return /^[0-9]{1,6}$/.test(token) ? parseInt(token, 10) : NaN;
}

const CRON_UNITS = ["second", "minute", "hour", "day", "month", "day of week"];

// A field's values, sorted and distinct, or null when it cannot be read.
function cronValues(text, index) {
  const [low, high] = CRON_RANGES[index], seen = new Set();
  for (const item of text.split(",")) {
    const slash = item.indexOf("/"), body = slash < 0 ? item : item.slice(0, slash);
    const step = slash < 0 ? 1 : (/^[0-9]{1,6}$/.test(item.slice(slash + 1)) ? parseInt(item.slice(slash + 1), 10) : 0);
    let first, last;
    if (body === "*") [first, last] = [low, high];
    else {
      const dash = body.indexOf("-");
      first = cronNumber(dash < 0 ? body : body.slice(0, dash), CRON_UNITS[index]);
      last = dash < 0 ? first : cronNumber(body.slice(dash + 1), CRON_UNITS[index]);
      if (dash < 0 && slash >= 0) return null;
    }
    if (!(step >= 1) || !(first >= low) || !(last <= high) || !(first <= last)) return null;
    for (let v = first; v <= last; v += step) seen.add(v);
  }
  return [...seen].sort((a, b) => a - b);
}

function ordinalWords(n) {
  const suffix = n % 100 >= 11 && n % 100 <= 13 ? "th" : ({1: "st", 2: "nd", 3: "rd"}[n % 10] || "th");
  return n + suffix;
}

function joinWords(items) {
  return items.length === 1 ? items[0] : items.slice(0, -1).join(", ") + " and " + items[items.length - 1];
}

function fieldWords(text, unit, name = String) {
  const items = [];
  for (const item of text.split(",")) {
    const slash = item.indexOf("/"), body = slash < 0 ? item : item.slice(0, slash);
    const n = slash < 0 ? 1 : parseInt(item.slice(slash + 1), 10);
    if (body === "*") {
      items.push(n === 1 ? `every ${unit}` : `every ${ordinalWords(n)} ${unit}`);
      continue;
    }
    const dash = body.indexOf("-");
    if (dash < 0) {
      items.push(name(cronNumber(body, unit)));
      continue;
    }
    const first = cronNumber(body.slice(0, dash), unit), last = cronNumber(body.slice(dash + 1), unit);
    const values = [];
    for (let v = first; v <= last; v += n) values.push(v);
    if (n > 1 && values.length <= 6) items.push(...values.map(name));
    else if (n > 1) items.push(`every ${ordinalWords(n)} ${unit} from ${name(first)} to ${name(last)}`);
    else items.push(`${name(first)} to ${name(last)}`);
  }
  return joinWords(items);
}

const pad2 = (n) => String(n).padStart(2, "0");
const clockWords = (h, m, s) => `${pad2(h)}:${pad2(m)}` + (s ? ":" + pad2(s) : "");

function everyWords(field, unit) {
  if (field === "*") return `every ${unit}`;
  if (field.startsWith("*/") && !field.includes(",")) {
    const n = parseInt(field.slice(2), 10);
    return n === 1 ? `every ${unit}` : `every ${n} ${unit}s`;
  }
  return null;
}

export function cronZoneWords(tz) {
  if (!tz || tz === "UTC" || tz === "Etc/UTC") return "UTC";
  if (tz.startsWith("Etc/")) return tz + " time";
  return tz.split("/").pop().replace(/_/g, " ") + " time";
}

export function cronWords(text, tz) {
  if (typeof text !== "string") return null;
  let stripped = text.replace(/^[ \t]+|[ \t]+$/g, "");
  if (stripped.startsWith("@")) stripped = CRON_ALIASES[stripped.toLowerCase()] || "";
  const parts = stripped ? stripped.split(/[ \t]+/) : [];
  if (parts.length === 5) parts.unshift("0");
  if (parts.length !== 6) return null;
  const sets = parts.map(cronValues);
  if (sets.some((values) => values === null)) return null;
  const [sec, minute, hour, dom, month, dow] = parts, [seconds, minutes, hours] = sets;
  const words = [];
  if (seconds.length === 1 && minutes.length === 1 && hours.length <= 4) {
    words.push("at " + joinWords(hours.map((h) => clockWords(h, minutes[0], seconds[0]))));
  } else {
    const time = [];
    if (seconds.length > 1) {
      time.push(everyWords(sec, "second") || "at seconds " + fieldWords(sec, "second"));
      if (minute !== "*") time.push((minutes.length === 1 ? "of minute " : "of minutes ") + fieldWords(minute, "minute"));
    } else {
      time.push(everyWords(minute, "minute") ||
                (minutes.length === 1 ? "at minute " : "at minutes ") + fieldWords(minute, "minute"));
      if (seconds[0]) time.push(`at second ${seconds[0]}`);
    }
    if (hour === "*") {
      if (!time[0].startsWith("every")) time.push("of every hour");
    } else if (hour.startsWith("*/") && !hour.includes(",")) {
      const n = parseInt(hour.slice(2), 10);
      time.push(n === 1 ? "of every hour" : `of every ${ordinalWords(n)} hour`);
    } else {
      const hourWords = fieldWords(hour, "hour", pad2);
      time.push("during " + (hourWords.startsWith("every") ? "" : hours.length === 1 ? "hour " : "hours ") + hourWords);
    }
    words.push(time.join(" "));
  }
  let onDom = null, onDow = null;
  if (dom !== "*") {
    const domWords = fieldWords(dom, "day", ordinalWords);
    onDom = (domWords.startsWith("every") ? "on " : "on the ") + domWords;
  }
  if (dow !== "*") onDow = "on " + fieldWords(dow, "day of week", (n) => DAY_NAMES[n % 7]);
  const dayOr = !dom.startsWith("*") && !dow.startsWith("*");
  if (onDom && onDow) words.push(dayOr ? `${onDom} or ${onDow}` : `${onDom} if it is ${onDow.slice(3)}`);
  else if (onDom || onDow) words.push(onDom || onDow);
  if (month !== "*") words.push("in " + fieldWords(month, "month", (n) => MONTH_NAMES[n - 1]));
  return words.join(" ") + ", " + cronZoneWords(tz);
}
