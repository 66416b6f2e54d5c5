// after's console: plain modern JavaScript, no library, nothing fetched from elsewhere.
// It talks to CouchDB's HTTP API on the same origin only (views, _all_docs, _changes,
// documents, /_session). Every value a user or a job wrote is put on the page with
// textContent, never as HTML. Who may change what is CouchDB's decision (_security and
// validate_doc_update): the page only mirrors it and shows CouchDB's reasons.
import {
  FAR, FINAL, HttpError, STATUSES, countdown, duration, el,
  elapsed, isoUTC, jobName, json, parseDate, parseDuration, parseWhen, plural,
  query, repeatWords, startTicking, statusBadge, taskLink, when,
} from "./console-lib.mjs";
import {explain, sentence} from "./console-lib.mjs";   // the task page's "Why, and when next"

(() => {
  // /<db>/_design/after/console.html, whether served by CouchDB or by `after console`.
  const DB = decodeURIComponent(location.pathname.split("/")[1] || "tasks");
  const DB_PATH = "/" + encodeURIComponent(DB);
  const DESIGN = DB_PATH + "/_design/after";
  const PAGE_SIZE = 50;
  const ACTING_ROLE = "after";

  const $ = (id) => document.getElementById(id);
  let session = null;      // CouchDB's userCtx
  let canAct = false;
  let started = false;
  startTicking();

  // ---- HTTP ------------------------------------------------------------------------------

  async function api(method, path, body, {signal, quiet401} = {}) {
    const headers = {"Accept": "application/json"};
    const init = {method, headers, credentials: "same-origin", cache: "no-store", signal};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";   // without it pouchdb-server stores {}
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    let data = null;
    const text = await resp.text();
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (!resp.ok) {
      const err = new HttpError(resp.status, data && data.error, data && data.reason);
      if (resp.status === 401 && !quiet401) sessionEnded();
      throw err;
    }
    return data;
  }

  const view = (name, params) => api("GET", `${DESIGN}/_view/${name}${query(params)}`);
  const docPath = (id) => DB_PATH + "/" + encodeURIComponent(id);
  const getDoc = (id) => api("GET", docPath(id));

  // ---- session ---------------------------------------------------------------------------

  async function checkSession() {
    let info;
    try {
      info = await api("GET", "/_session", undefined, {quiet401: true});
    } catch (e) {
      showLogin(e.status === 401 ? "" : "CouchDB did not answer: " + e.message);
      return;
    }
    const user = info && info.userCtx;
    // A server without admins (pouchdb-server's default, `make run`) makes everyone admin.
    const adminParty = user && !user.name && (user.roles || []).includes("_admin");
    if (!user || (!user.name && !adminParty)) {
      showLogin("");
      return;
    }
    signedIn(user);
  }

  function showLogin(message) {
    session = null;
    $("login").hidden = false;
    $("main").hidden = true;
    $("nav").hidden = true;
    $("who").hidden = true;
    $("banner").hidden = true;
    $("login-error").textContent = message || "";
    $("login-name").focus();
  }

  function sessionEnded() {
    if (session) showLogin("Your session ended: log in again.");
  }

  function signedIn(user) {
    session = user;
    const roles = user.roles || [];
    canAct = roles.includes("_admin") || roles.includes(ACTING_ROLE);
    $("login").hidden = true;
    $("main").hidden = false;
    $("nav").hidden = false;
    $("who").hidden = false;
    $("db").textContent = "· " + DB;
    $("user").textContent = (user.name || "anyone (a server without admins)") + (canAct ? "" : " (read-only)");
    const banner = $("banner");
    banner.hidden = canAct;
    banner.textContent = canAct ? "" :
      `Read-only: you are signed in as ${user.name} without the role "${ACTING_ROLE}". ` +
      "You see everything; CouchDB refuses changes, so the buttons that change tasks are off.";
    if (!started) {
      started = true;
      follow();
    }
    render();
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("login-name").value, password = $("login-password").value;
    $("login-error").textContent = "";
    try {
      await api("POST", "/_session", {name, password}, {quiet401: true});
      $("login-password").value = "";
      await checkSession();
    } catch (e) {
      $("login-error").textContent = e.status === 401 ? "Name or password is wrong." : "Could not log in: " + (e.reason || e.message);
    }
  });

  $("logout").addEventListener("click", async () => {
    try {
      await api("DELETE", "/_session", undefined, {quiet401: true});
    } finally {
      showLogin("You are logged out.");
    }
  });

  // ---- live: follow _changes, refresh the view ---------------------------------------------

  let refreshTimer = null, refreshing = false, refreshAgain = false, lastRefresh = 0;
  function scheduleRefresh() {
    if (refreshTimer) return;
    const wait = Math.max(0, 1000 - (Date.now() - lastRefresh));   // at most once a second
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      if (refreshing) {
        refreshAgain = true;
        return;
      }
      refreshing = true;
      lastRefresh = Date.now();
      try {
        await render(true);
      } finally {
        refreshing = false;
        if (refreshAgain) {
          refreshAgain = false;
          scheduleRefresh();
        }
      }
    }, wait);
  }

  function setLive(text, ok) {
    const node = $("live");
    node.textContent = text;
    node.className = "live " + (ok ? "on" : "off");
  }

  async function follow() {
    let since = null, backoff = 1000;
    for (;;) {
      if (!session) {
        await sleep(1000);
        continue;
      }
      const abort = new AbortController();
      // pouchdb-server ignores timeout=; the page keeps its own deadline on every request.
      const deadline = setTimeout(() => abort.abort(), 65000);
      try {
        if (since === null) {
          since = (await api("GET", DB_PATH, undefined, {signal: abort.signal})).update_seq;
          setLive("● live", true);
        }
        const feed = await api("GET", `${DB_PATH}/_changes${query({feed: "longpoll", since: String(since),
                                                                   timeout: 55000, limit: 500})}`,
                               undefined, {signal: abort.signal});
        since = feed.last_seq;   // opaque: stored and sent back, never compared
        backoff = 1000;
        setLive("● live", true);
        if (feed.results && feed.results.length) scheduleRefresh();
      } catch (e) {
        if (e.name === "AbortError") continue;
        setLive("○ reconnecting", false);
        await sleep(backoff * (0.5 + Math.random()));
        backoff = Math.min(backoff * 2, 30000);
      } finally {
        clearTimeout(deadline);
      }
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---- routing -------------------------------------------------------------------------------

  function route() {
    const hash = location.hash.replace(/^#/, "");
    const [path, search] = hash.split("?");
    const params = new URLSearchParams(search || "");
    if (path.startsWith("task/")) return {name: "task", id: decodeURIComponent(path.slice(5)), params};
    return {name: VIEWS[path] ? path : "summary", params};
  }

  let renderSeq = 0;
  let focusAfterRender = null;   // an element id to focus once the next view is on the page
  async function render(live = false) {
    if (!session) return;
    const r = route();
    if (live && r.name === "add") return;   // never wipe a form being filled
    const seq = ++renderSeq;
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.dataset.view === (r.name === "task" ? "tasks" : r.name)) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const main = $("main");
    const kept = live ? keepInputs(main) : null;
    let content;
    try {
      content = await VIEWS[r.name](r);
    } catch (e) {
      if (e.status === 401) return;
      content = el("div", {}, el("h2", {text: "Something went wrong"}),
                   el("p", {class: "error", role: "alert"}, e.status ? `CouchDB answered ${e.status}: ${e.reason}` : String(e)));
    }
    if (seq !== renderSeq) return;   // a newer render won
    main.replaceChildren(content);
    if (kept) restoreInputs(main, kept);
    else if (focusAfterRender && $(focusAfterRender)) {
      $(focusAfterRender).focus();
      focusAfterRender = null;
    } else {
      const h = main.querySelector("h2");
      if (h) {
        h.tabIndex = -1;
        h.focus({preventScroll: true});
      }
    }
  }

  // A live refresh rebuilds the view: keep what the user typed and where the focus was.
  function keepInputs(root) {
    const values = {};
    for (const input of root.querySelectorAll("input[id], select[id], textarea[id]")) {
      if (input.dataset.dirty) values[input.id] = input.value;
    }
    const active = document.activeElement;
    const focus = active && root.contains(active) ? (active.id ? "#" + active.id : active.dataset.focus) : null;
    return {values, focus};
  }
  function restoreInputs(root, kept) {
    for (const [id, value] of Object.entries(kept.values)) {
      const input = root.querySelector("#" + CSS.escape(id));
      if (input) {
        input.value = value;
        input.dataset.dirty = "1";
      }
    }
    if (kept.focus) {
      const target = kept.focus.startsWith("#") ? root.querySelector(kept.focus.replace(/^#(.*)$/, (m, id) => "#" + CSS.escape(id)))
        : root.querySelector(`[data-focus="${CSS.escape(kept.focus)}"]`);
      if (target) target.focus({preventScroll: true});
    }
  }
  document.addEventListener("input", (e) => {
    if (e.target.dataset) e.target.dataset.dirty = "1";
  });

  window.addEventListener("hashchange", () => render());

  document.addEventListener("keydown", (e) => {
    if (!session || e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    const views = ["summary", "tasks", "upcoming", "running", "failures", "workers", "add"];
    if (e.key >= "1" && e.key <= "7") {
      location.hash = "#" + views[+e.key - 1];
      e.preventDefault();
    } else if (e.key === "/") {
      e.preventDefault();
      if (route().name !== "tasks") {
        focusAfterRender = "f-q";
        location.hash = "#tasks";
      } else if ($("f-q")) {
        $("f-q").focus();
      }
    } else if (e.key === "?") {
      alertBox("Keys: 1 summary, 2 tasks, 3 upcoming, 4 running, 5 failures, 6 workers, 7 add a task, " +
               "/ search by id. Tab moves between links and buttons; Enter opens or presses.");
    }
  });

  function alertBox(text) {
    const banner = $("banner");
    banner.hidden = false;
    banner.textContent = text;
  }

  // ---- building blocks ------------------------------------------------------------------------

  function section(title, ...children) {
    return el("section", {class: "card"}, el("h3", {text: title}), ...children);
  }

  function table(headers, rows, caption) {
    return el("div", {class: "table-wrap"},
      el("table", {},
        caption ? el("caption", {class: "sr-only", text: caption}) : null,
        el("thead", {}, el("tr", {}, headers.map((h) => el("th", {scope: "col", text: h})))),
        el("tbody", {}, rows.length ? rows.map((cells) =>
          el("tr", {}, cells.map((c, i) => el("td", {dataset: {label: headers[i]}}, c))))
          : el("tr", {}, el("td", {colspan: headers.length, class: "muted", text: "nothing here"})))));
  }

  function taskRow(doc) {
    return [when(doc.date), statusBadge(doc.status), doc.worker, jobName(doc), taskLink(doc._id),
            doc.repeat ? repeatWords(doc.repeat) : "once", doc.runs || 0];
  }
  const TASK_HEADERS = ["Date (UTC)", "Status", "Worker", "Job", "Id", "Repeat", "Runs"];

  function isTask(doc) {
    return doc && !String(doc._id).startsWith("after:") && !String(doc._id).startsWith("_design/");
  }

  // Pages of a view by key: the next page starts at the last key seen, skipping the rows with
  // that key already shown (CouchDB's advice; pouchdb-server ignores startkey_docid).
  async function pagedView(name, range, cursor, descending) {
    const params = {include_docs: true, limit: PAGE_SIZE + 1, descending};
    if (name !== "console_by_date" && name !== "console_due") params.reduce = false;
    params.startkey = cursor ? cursor.key : range.start;
    if (cursor) params.skip = cursor.skip;
    params.endkey = range.end;
    const data = await view(name, params);
    const rows = data.rows.slice(0, PAGE_SIZE);
    let next = null;
    if (data.rows.length > PAGE_SIZE && rows.length) {
      const lastKey = JSON.stringify(rows[rows.length - 1].key);
      let same = rows.filter((r) => JSON.stringify(r.key) === lastKey).length;
      if (cursor && JSON.stringify(cursor.key) === lastKey) same += cursor.skip;
      next = {key: rows[rows.length - 1].key, skip: same};
    }
    return {rows, next};
  }

  function pager(r, next, base) {
    const pageNo = +(r.params.get("page") || 1);
    const nav = el("nav", {class: "pager", "aria-label": "Pages", dataset: {page: pageNo}});
    const stack = (r.params.get("stack") || "");
    if (pageNo > 1) {
      const p = new URLSearchParams(r.params);
      const items = stack.split("~").filter(Boolean);
      items.pop();
      p.set("page", pageNo - 1);
      if (items.length) p.set("stack", items.join("~")); else p.delete("stack");
      nav.append(el("a", {href: "#" + base + "?" + p, rel: "prev", dataset: {focus: "prev"}}, "← previous"));
    }
    nav.append(el("span", {class: "muted"}, ` page ${pageNo} `));
    if (next) {
      const p = new URLSearchParams(r.params);
      p.set("page", pageNo + 1);
      p.set("stack", (stack ? stack + "~" : "") + btoa(unescape(encodeURIComponent(JSON.stringify(next)))));
      nav.append(el("a", {href: "#" + base + "?" + p, rel: "next", dataset: {focus: "next"}}, "next →"));
    }
    return nav;
  }
  function cursorOf(r) {
    const items = (r.params.get("stack") || "").split("~").filter(Boolean);
    if (!items.length) return null;
    try {
      return JSON.parse(decodeURIComponent(escape(atob(items[items.length - 1]))));
    } catch (e) {
      return null;
    }
  }

  // ---- views -------------------------------------------------------------------------------------

  const VIEWS = {};

  VIEWS.summary = async () => {
    const now = new Date();
    const dayAgo = new Date(now.getTime() - 86400000);
    const firstHour = new Date(now.getTime() - 23 * 3600000).toISOString().slice(0, 13);
    const [counts, failures, hours, due, beats] = await Promise.all([
      view("by_status", {group: true}),
      view("console_failures", {startkey: dayAgo.toISOString()}),
      view("console_runs_by_hour", {group: true, startkey: firstHour}),
      view("console_due", {limit: 8, include_docs: true}),
      heartbeats(),
    ]);
    const byStatus = counts.rows.map((row) => [statusBadge(row.key),
      el("a", {href: "#tasks?status=" + encodeURIComponent(row.key), dataset: {focus: "count:" + row.key}}, row.value)]);
    const total = counts.rows.reduce((sum, row) => sum + row.value, 0);
    const failed24 = failures.rows.length ? failures.rows[0].value : 0;
    const perHour = new Map(hours.rows.map((row) => [row.key, row.value]));
    const hourRows = [];
    let max = 1;
    for (let i = 23; i >= 0; i--) {
      const hour = new Date(now.getTime() - i * 3600000).toISOString().slice(0, 13);
      max = Math.max(max, perHour.get(hour) || 0);
      hourRows.push(hour);
    }
    const bars = el("ol", {class: "bars", "aria-label": "runs per hour, last 24 hours"},
      hourRows.map((hour) => {
        const n = perHour.get(hour) || 0;
        const bar = el("span", {class: "bar"});
        bar.style.height = (100 * n / max) + "%";   // CSSOM, which a style-src CSP allows
        return el("li", {title: `${hour.replace("T", " ")}:00 UTC: ${n} runs`},
                  el("span", {class: "n"}, n || ""), el("span", {class: "bar-track"}, bar),
                  el("span", {class: "hour"}, hour.slice(11) + "h"));
      }));
    const live = beats.filter(alive);
    return el("div", {},
      el("h2", {text: "Summary"}),
      el("div", {class: "cards"},
        section("Tasks by status", el("p", {class: "big"}, total, el("span", {class: "muted"}, " " + plural(total, "task", "tasks"))),
                table(["Status", "Count"], byStatus, "tasks by status")),
        section("Failures, last 24 h", el("p", {class: "big"},
          el("a", {href: "#failures", dataset: {focus: "failures24"}}, failed24), el("span", {class: "muted"}, " " + plural(failed24, "failed run", "failed runs")))),
        section("Workers", el("p", {class: "big"},
          el("a", {href: "#workers", dataset: {focus: "workers"}}, live.length),
          el("span", {class: "muted"}, " " + plural(live.length, "live process", "live processes")))),
      ),
      section("Runs per hour (UTC), last 24 h", bars),
      section("Next due", table(["Date (UTC)", "In", "Status", "Worker", "Job", "Id"],
        due.rows.filter((row) => row.doc).map((row) => [when(row.doc.date), countdown(row.doc.date),
          statusBadge(row.doc.status), row.doc.worker, jobName(row.doc), taskLink(row.id)]), "next due tasks")));
  };

  VIEWS.tasks = async (r) => {
    const worker = r.params.get("worker") || "", status = r.params.get("status") || "";
    const job = r.params.get("job") || "", q = r.params.get("q") || "";
    const descending = r.params.get("order") === "desc";
    const [names, jobs] = await Promise.all([workerNames(), jobNames()]);
    const form = el("form", {class: "filters", role: "search", onsubmit: (e) => {
      e.preventDefault();
      const p = new URLSearchParams();
      for (const [key, id] of [["worker", "f-worker"], ["status", "f-status"], ["job", "f-job"], ["q", "f-q"], ["order", "f-order"]]) {
        const v = $(id).value.trim();
        if (v) p.set(key, v);
      }
      location.hash = "#tasks" + (String(p) ? "?" + p : "");
    }},
      field("Worker", el("input", {id: "f-worker", list: "dl-workers", value: worker, autocomplete: "off"})),
      datalist("dl-workers", names),
      field("Status", el("select", {id: "f-status"}, el("option", {value: ""}, "any"),
        STATUSES.map((s) => el("option", {value: s, selected: s === status}, s)))),
      field("Job", el("input", {id: "f-job", list: "dl-jobs", value: job, autocomplete: "off"})),
      datalist("dl-jobs", jobs),
      field("Id starts with", el("input", {id: "f-q", value: q, type: "search", autocomplete: "off"})),
      field("Order", el("select", {id: "f-order"}, el("option", {value: "asc", selected: !descending}, "oldest date first"),
        el("option", {value: "desc", selected: descending}, "newest date first"))),
      el("button", {type: "submit", id: "f-apply"}, "Show"));

    let rows, next = null;
    if (q) {
      const data = await api("GET", `${DB_PATH}/_all_docs${query({startkey: q, endkey: q + FAR, limit: PAGE_SIZE, include_docs: true})}`);
      rows = data.rows.map((row) => row.doc).filter(isTask);
    } else {
      const tag = (worker ? "w" : "") + (status ? "s" : "") + (job ? "j" : "") || "all";
      const values = [worker, status, job].filter(Boolean);
      const lo = [tag, ...values], hi = [tag, ...values, {}];
      const page = await pagedView("console_by_date", descending ? {start: hi, end: lo} : {start: lo, end: hi},
                                   cursorOf(r), descending);
      rows = page.rows.map((row) => row.doc).filter(Boolean);
      next = page.next;
    }
    return el("div", {},
      el("h2", {text: "Tasks"}), form,
      table(TASK_HEADERS, rows.map(taskRow), "tasks"),
      q ? el("p", {class: "muted"}, `ids starting with “${q}”, first ${PAGE_SIZE}`) : pager(r, next, "tasks"));
  };

  VIEWS.upcoming = async (r) => {
    const now = new Date();
    const end = new Date(now.getTime() + 86400000);
    const [page, overdue] = await Promise.all([
      pagedView("console_due", {start: now.toISOString(), end: end.toISOString()}, cursorOf(r), false),
      view("console_due", {endkey: now.toISOString(), limit: 20, include_docs: true, descending: false}),
    ]);
    const row = (doc) => [when(doc.date), countdown(doc.date), statusBadge(doc.status), doc.worker, jobName(doc),
                          taskLink(doc._id), doc.repeat ? repeatWords(doc.repeat) : "once"];
    const headers = ["Date (UTC)", "Countdown", "Status", "Worker", "Job", "Id", "Repeat"];
    return el("div", {},
      el("h2", {text: "Upcoming: the next 24 hours"}),
      table(headers, page.rows.filter((x) => x.doc).map((x) => row(x.doc)), "upcoming tasks"),
      pager(r, page.next, "upcoming"),
      overdue.rows.length ? section("Overdue: the date passed, no worker has run it yet",
        table(headers, overdue.rows.filter((x) => x.doc).map((x) => row(x.doc)), "overdue tasks")) : null);
  };

  VIEWS.running = async (r) => {
    const page = await pagedView("by_status", {start: "running", end: "running"}, cursorOf(r), false);
    const rows = page.rows.filter((x) => x.doc).map((x) => {
      const doc = x.doc;
      const started = (doc.running && doc.running.started_at) || doc.started_at || doc.date;
      return [taskLink(doc._id), doc.worker, jobName(doc), when(started), elapsed(started),
              doc.owner && doc.owner.process ? doc.owner.process : "—",
              actionButton("Cancel", doc._id, "cancel", "cancel-" + doc._id)];
    });
    return el("div", {},
      el("h2", {text: "Running now"}),
      actionStatus(),
      table(["Id", "Worker", "Job", "Started (UTC)", "Elapsed", "Process", "Action"], rows, "running tasks"),
      pager(r, page.next, "running"));
  };

  VIEWS.failures = async () => {
    const [byJob, recent] = await Promise.all([
      view("console_failures_by_job", {group_level: 1}),
      view("console_failures", {descending: true, limit: 20, reduce: false, include_docs: true}),
    ]);
    const jobs = byJob.rows.map((row) => ({job: row.key[0], n: row.value})).sort((a, b) => b.n - a.n).slice(0, 30);
    const latest = await Promise.all(jobs.map((j) => view("console_failures_by_job",
      {startkey: [j.job, {}], endkey: [j.job], descending: true, limit: 5, reduce: false, include_docs: true})));
    const groups = jobs.map((j, i) => el("section", {class: "card"},
      el("h3", {}, el("span", {class: "job"}, j.job || "(no job)"), el("span", {class: "muted"}, ` — ${j.n} failed`)),
      table(["Ended (UTC)", "Id", "Reason"], latest[i].rows.filter((x) => x.doc).map((x) =>
        [when(x.key[1]), taskLink(x.id), errorMessage(x.doc)]), "failures of " + j.job)));
    return el("div", {},
      el("h2", {text: "Failures"}),
      section("Latest failed runs", table(["Ended (UTC)", "Job", "Id", "Reason"],
        recent.rows.filter((x) => x.doc).map((x) => [when(x.key), jobName(x.doc), taskLink(x.id), errorMessage(x.doc)]),
        "latest failures")),
      el("h3", {text: "By job"}),
      groups.length ? groups : el("p", {class: "muted", text: "No failures."}));
  };

  function errorOf(doc) {
    if (doc.error && typeof doc.error === "object") return doc.error;
    if (doc.last_run && doc.last_run.error && typeof doc.last_run.error === "object") return doc.last_run.error;
    return null;
  }
  function errorMessage(doc) {
    const e = errorOf(doc);
    if (!e) return "—";
    return (e.type ? e.type + ": " : "") + (e.message === undefined ? "" : String(e.message));
  }

  async function heartbeats() {
    const data = await api("GET", `${DB_PATH}/_all_docs${query({startkey: "after:process:", endkey: "after:process:" + FAR,
                                                                include_docs: true, limit: 500})}`);
    return data.rows.map((row) => row.doc).filter((doc) => doc && doc.type === "process");
  }
  function alive(beat) {
    const expires = parseDate(beat.expires_at);
    return !beat.stopped && expires && expires.getTime() > Date.now();
  }

  VIEWS.workers = async () => {
    const [beats, held, perWorker] = await Promise.all([
      heartbeats(),
      view("console_by_owner", {group: true, limit: 5000}),
      view("by_worker_status", {group: true, limit: 5000}),
    ]);
    const holds = new Map();
    for (const row of held.rows) {
      const [process, status] = row.key;
      if (!holds.has(process)) holds.set(process, []);
      holds.get(process).push(`${row.value} ${status}`);
    }
    beats.sort((a, b) => String(a.worker).localeCompare(String(b.worker)) || String(a._id).localeCompare(String(b._id)));
    const rows = beats.map((beat) => {
      const process = beat._id.slice("after:process:".length);
      const state = beat.stopped ? "stopped" : alive(beat) ? "live" : "lease ended";
      return [el("span", {class: "worker"}, beat.worker), el("span", {class: "state st-" + state.replace(/ /g, "")},
              (state === "live" ? "● " : "○ ") + state),
              beat.host, beat.pid, when(beat.beat_at), elapsed(beat.beat_at), when(beat.expires_at),
              // A STATUS line, when a worker's heartbeat carries one; else what it holds, counted here.
              typeof beat.status_line === "string" ? beat.status_line : (holds.get(process) || []).join(", ") || "no tasks held",
              el("code", {}, process)];
    });
    const active = new Map();
    for (const row of perWorker.rows) {
      const [worker, status] = row.key;
      if (!FINAL.has(status)) active.set(worker, (active.get(worker) || 0) + row.value);
    }
    const liveNames = new Set(beats.filter(alive).map((b) => b.worker));
    const orphans = [...active.entries()].filter(([name]) => !liveNames.has(name));
    return el("div", {},
      el("h2", {text: "Workers"}),
      table(["Worker", "State", "Host", "PID", "Last seen (UTC)", "Ago", "Lease until (UTC)", "Status / tasks held", "Process"],
            rows, "worker processes"),
      section("Worker names with tasks but no live process",
        orphans.length ? table(["Worker", "Active tasks"], orphans.map(([name, n]) =>
          [el("a", {href: "#tasks?worker=" + encodeURIComponent(name)}, name), n]), "workers without a process")
          : el("p", {class: "muted", text: "None: every worker with active tasks has a live process."})));
  };

  async function workerNames() {
    const data = await view("by_worker_status", {group_level: 1, limit: 1000});
    return data.rows.map((row) => row.key[0]);
  }
  // Jobs in use by tasks, and those a worker's heartbeat lists (when it carries `jobs`).
  async function jobNames() {
    const [data, beats] = await Promise.all([view("console_jobs", {group_level: 1, limit: 1000}), heartbeats()]);
    const names = new Set(data.rows.map((row) => row.key[0]));
    for (const beat of beats) {
      if (Array.isArray(beat.jobs)) beat.jobs.forEach((job) => typeof job === "string" && names.add(job));
    }
    return [...names].sort();
  }

  function field(label, input, hint) {
    const id = input.id;
    return el("div", {class: "field"}, el("label", {for: id, text: label}), input,
              hint ? el("small", {class: "muted", id: id + "-hint"}, hint) : null,
              el("span", {class: "field-error", id: id + "-error", role: "alert"}));
  }
  function datalist(id, values) {
    return el("datalist", {id}, values.map((v) => el("option", {value: v})));
  }

  // ---- a task --------------------------------------------------------------------------------------

  VIEWS.task = async (r) => {
    let doc;
    try {
      doc = await getDoc(r.id);
    } catch (e) {
      if (e.status === 404) return el("div", {}, el("h2", {text: "Task " + r.id}),
        el("p", {class: "error", role: "alert", text: "No such task (deleted, or never existed)."}),
        el("p", {}, el("a", {href: "#tasks"}, "← all tasks")));
      throw e;
    }
    const status = doc.status === "err" ? "error" : doc.status;
    const dl = el("dl", {class: "fields"});
    const add = (label, value) => dl.append(el("dt", {text: label}), el("dd", {}, value));
    add("Id", el("code", {}, doc._id));
    add("Status", statusBadge(status));
    add("Worker", doc.worker === undefined ? "—" : String(doc.worker));
    add("Job", jobName(doc));
    add("Arguments", el("pre", {class: "json"}, json(doc.job && doc.job.arguments !== undefined ? doc.job.arguments : [])));
    add("Date", el("span", {}, when(doc.date), " ", dateNote(doc, status)));
    add("Repeat", doc.repeat ? repeatWords(doc.repeat, doc) : "once");
    if (doc.timeout !== undefined) add("Timeout", doc.timeout + " s");
    if (doc.retry !== undefined) add("Retry", el("pre", {class: "json"}, json(doc.retry)));
    add("Runs", String(doc.runs || 0));
    if (doc.started_at) add("Started", when(doc.started_at));
    if (doc.finished_at) add("Finished", when(doc.finished_at));
    if (doc.started_at && doc.finished_at) add("Duration", durationOf(doc.started_at, doc.finished_at));
    if (doc.queued_ms !== undefined) add("Queued", `${doc.queued_ms} ms`);
    if (doc.owner) add("Owner", el("code", {}, doc.owner.process || json(doc.owner)));
    if (doc.result !== undefined) add("Result", el("pre", {class: "json"}, json(doc.result)));
    const err = doc.error && typeof doc.error === "object" ? doc.error : null;
    if (err) add("Error", errorBlock(err));

    const runs = (Array.isArray(doc.history) ? doc.history.slice().reverse() : doc.last_run ? [doc.last_run] : [])
      .map((run) => (run && typeof run === "object" ? run : {status: String(run)}));
    const outputs = await Promise.all(runs.map((run) => outputOf(doc._id, run)));
    const history = table(["Occurrence (UTC)", "Outcome", "Started", "Duration", "Result or error", "Output"],
      runs.map((run, i) => [occurrenceCell(run), statusBadge(run.status || "?"), when(run.started_at || run.start),
        durationOf(run.started_at || run.start, run.finished_at || run.end, run.duration),
        run.error ? errorBlock(run.error) : el("pre", {class: "json"}, json(run.result === undefined ? null : run.result)),
        outputs[i]]),
      "run history");

    return el("div", {},
      el("p", {}, el("a", {href: "#tasks"}, "← all tasks")),
      el("h2", {}, "Task ", el("code", {}, doc._id)),
      actionsFor(doc, status),
      await explainPanel(doc),
      section("Fields", dl),
      section(Array.isArray(doc.history) ? "Run history" : "Last run", history),
      el("details", {}, el("summary", {text: "The whole document (JSON)"}), el("pre", {class: "json"}, json(doc))));
  };

  // Next to a task's date: a countdown while a worker will run it then; a paused task waits
  // for a resume, a final one for nothing.
  function dateNote(doc, status) {
    if (FINAL.has(status)) return "";
    if (status === "paused" || status === "pause") return el("span", {class: "muted"}, "(paused: it waits for a resume)");
    return countdown(doc.date);
  }

  // A run now is due when it was asked for, outside the chain of occurrences.
  function occurrenceCell(run) {
    const date = when(run.occurrence || run.date);
    return run.run_now ? el("span", {}, date, " ", el("span", {class: "muted"}, "(run now)")) : date;
  }

  // A run's output is an attachment of its task, named by the history entry's output_ref
  // (afterd/outputs.py): "output/<n>", n never reused, so what was read once is kept.
  const outputCache = new Map();
  async function outputOf(id, run) {
    if (typeof run.output === "string") return el("pre", {class: "output"}, run.output);   // an inline tail
    const ref = run.output_ref;
    if (typeof ref !== "string" || !ref) return "—";
    const key = JSON.stringify([id, ref]);
    if (!outputCache.has(key)) {
      const resp = await fetch(docPath(id) + "/" + encodeURIComponent(ref),
                               {credentials: "same-origin", headers: {"Accept": "text/plain, */*"}});
      if (resp.status === 404) return el("span", {class: "muted"}, "gone (the run left the history)");
      if (!resp.ok) return el("span", {class: "error"}, `could not read ${ref}: HTTP ${resp.status}`);
      outputCache.set(key, await resp.text());
    }
    return el("pre", {class: "output"}, outputCache.get(key));
  }

  // ---- why, and when next: what `after explain ID` says, built by console-lib.mjs's explain() -----

  async function explainPanel(doc) {
    let beats = [], design = null;
    try {
      [beats, design] = await Promise.all([heartbeats(),
        api("GET", DESIGN).catch((e) => (e.status === 404 ? null : Promise.reject(e)))]);
    } catch (e) {
      return section("Why, and when next", el("p", {class: "muted", text: "Cannot tell: " + e.message}));
    }
    // The page sees no jobs folder (null): what the heartbeats report of the jobs is said.
    const lines = explain(doc, beats, design, null, new Date());
    return el("section", {class: "card explain", id: "explain", "aria-label": "why, and when next"},
      el("h3", {text: "Why, and when next"}),
      el("ul", {}, lines.map((line) => el("li", {text: sentence(line)}))));
  }

  function durationOf(start, end, given) {
    if (typeof given === "number") return given + " s";
    const a = parseDate(start), b = parseDate(end);
    if (!a || !b) return "—";
    const ms = b - a;
    return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 0) + " s";
  }

  function errorBlock(err) {
    if (typeof err !== "object" || err === null) return el("span", {class: "error"}, String(err));
    return el("div", {class: "error-block"},
      el("p", {class: "error"}, "✗ ", err.type ? el("strong", {}, String(err.type) + ": ") : null,
         err.message === undefined ? "" : String(err.message)),
      err.traceback ? el("details", {}, el("summary", {text: "traceback"}), el("pre", {class: "traceback"}, String(err.traceback))) : null);
  }

  function actionsFor(doc, status) {
    const id = doc._id;
    const box = el("section", {class: "card actions", "aria-label": "actions"}, el("h3", {text: "Actions"}));
    const buttons = el("div", {class: "buttons"});
    if (!FINAL.has(status) && status !== "cancel") buttons.append(actionButton("Cancel", id, "cancel", "act-cancel"));
    if (!FINAL.has(status) && status !== "running") buttons.append(actionButton("Run now", id, "run", "act-run"));
    if (["waiting", "scheduled", "reschedule"].includes(status)) buttons.append(actionButton("Pause", id, "pause", "act-pause"));
    if (status === "paused" || status === "pause") buttons.append(actionButton("Resume", id, "resume", "act-resume"));
    const del = actionButton("Delete", id, "delete", "act-delete");
    buttons.append(del);
    box.append(buttons);
    if (!FINAL.has(status)) {
      const d = parseDate(doc.date);
      const input = el("input", {id: "resched-date", value: d ? isoUTC(d) : "", "aria-describedby": "resched-date-hint",
                                 disabled: !canAct, size: 26});
      box.append(el("form", {class: "inline", onsubmit: (e) => {
        e.preventDefault();
        act(id, "reschedule", input.value);
      }}, field("New date", input, 'UTC unless it has an offset: "2026-12-01 03:00", "in 10 minutes"'),
         el("button", {type: "submit", id: "act-reschedule", disabled: !canAct,
                       title: canAct ? null : "read-only: you lack the role " + ACTING_ROLE}, "Reschedule")));
    }
    box.append(actionStatus());
    return box;
  }

  // The last action's outcome survives the live refresh its own write causes.
  let lastSaid = null;
  function actionStatus() {
    const node = el("p", {id: "action-status", class: "action-status", role: "status", "aria-live": "polite"});
    if (lastSaid && Date.now() - lastSaid.at < 15000 && lastSaid.hash === location.hash) {
      node.textContent = lastSaid.text;
      node.className = "action-status " + (lastSaid.bad ? "error" : "ok");
    }
    return node;
  }

  function actionButton(label, id, action, htmlId) {
    return el("button", {type: "button", id: htmlId, class: action === "delete" ? "danger" : null,
                         dataset: {focus: htmlId},
                         disabled: !canAct, title: canAct ? null : "read-only: you lack the role " + ACTING_ROLE,
                         onclick: (e) => {
                           if (action === "delete" && e.currentTarget.dataset.armed !== "1") {
                             e.currentTarget.dataset.armed = "1";
                             e.currentTarget.textContent = "Really delete?";
                             return;
                           }
                           act(id, action);
                         }}, label);
  }

  function say(text, bad) {
    lastSaid = {text, bad, at: Date.now(), hash: location.hash};
    const node = $("action-status");
    if (!node) return;
    node.textContent = text;
    node.className = "action-status " + (bad ? "error" : "ok");
  }

  // One document write per action; a 409 re-reads the task and tries again, a few times,
  // then says so. A refusal (403) shows CouchDB's reason.
  async function act(id, action, value) {
    say("…");
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        let doc;
        try {
          doc = await getDoc(id);
        } catch (e) {
          if (e.status === 404) throw new Error("the task is gone (deleted meanwhile)");
          throw e;
        }
        let result;
        try {
          result = await applyAction(doc, action, value);
        } catch (e) {
          if (e.status === 409) continue;
          throw e;
        }
        say(result);
        if (action === "delete") location.hash = "#tasks";
        else scheduleRefresh();
        return;
      }
      say(`Not done: task ${id} kept changing (409 conflict five times); look at it and try again.`, true);
    } catch (e) {
      say(e.status === 403 ? "Refused by CouchDB: " + e.reason
          : e.status ? `CouchDB answered ${e.status}: ${e.reason}` : "Not done: " + e.message, true);
    }
  }

  async function applyAction(doc, action, value) {
    const status = doc.status === "err" ? "error" : doc.status;
    const path = docPath(doc._id);
    if (action === "delete") {
      await api("DELETE", path + query({rev: doc._rev}));
      return `Deleted task ${doc._id}.`;
    }
    if (action === "reschedule") {
      const date = parseWhen(value, "");
      if (FINAL.has(status)) throw new Error(`the task is ${status} (final): add a new task instead`);
      // A task no worker has taken yet stays "waiting"; a taken one tells its worker to re-arm.
      const next = status === "waiting" ? "waiting" : "reschedule";
      await api("PUT", path, {...doc, date, status: next});
      return `Moved to ${date} (${next}).`;
    }
    if (FINAL.has(status)) throw new Error(`the task is already ${status} (final)`);
    if (action === "cancel" && status === "cancel") return "Already waiting for its worker to cancel it.";
    await api("PUT", path, {...doc, status: action});
    const words = {cancel: "Marked cancel: its worker will stop it.", run: "Marked run: its worker runs it now.",
                   pause: "Marked pause: its worker will hold it.", resume: "Marked resume: its worker will re-arm it."};
    return words[action] || `Marked ${action}.`;
  }

  // ---- add a task --------------------------------------------------------------------------------

  const FORM_FIELDS = {worker: "a-worker", job: "a-job", "job.name": "a-job", "job.arguments": "a-args",
                       date: "a-date", repeat: "a-repeat", tz: "a-tz", timeout: "a-timeout", _id: "a-id", id: "a-id"};

  VIEWS.add = async () => {
    const [names, jobs] = await Promise.all([workerNames(), jobNames()]);
    const form = el("form", {id: "add-form", class: "add", novalidate: true, onsubmit: submitTask},
      el("fieldset", {disabled: !canAct},
        el("legend", {text: canAct ? "A new task" : "A new task (read-only: you cannot add tasks)"}),
        field("Worker", el("input", {id: "a-worker", list: "dl-workers", required: true, autocomplete: "off"}),
              "the worker name that runs it"),
        datalist("dl-workers", names),
        field("Job", el("input", {id: "a-job", list: "dl-jobs", required: true, autocomplete: "off"}),
              "a job module in the worker's jobs folder"),
        datalist("dl-jobs", jobs),
        field("Arguments (JSON)", el("textarea", {id: "a-args", rows: 3, spellcheck: "false"}, "[]"),
              'a JSON list or object, e.g. ["1234"] or {"invoice": 7}'),
        field("When", el("input", {id: "a-date", value: "in 10 minutes", autocomplete: "off"}),
              '"now", "in 10 minutes", "2026-12-01 03:00" (UTC, or wall-clock in the time zone below), or ISO 8601 with an offset'),
        field("Repeat", el("input", {id: "a-repeat", autocomplete: "off"}),
              'optional: every 1M7d, 1h30m, 1d … or an RFC 5545 rule "FREQ=DAILY;BYHOUR=3"'),
        field("Time zone", el("input", {id: "a-tz", autocomplete: "off", placeholder: "UTC"}),
              "optional IANA name (Europe/Lisbon): for the date above and the repeat"),
        field("Timeout (seconds)", el("input", {id: "a-timeout", inputmode: "decimal", autocomplete: "off"}), "optional"),
        field("Id", el("input", {id: "a-id", autocomplete: "off"}), "optional: CouchDB picks one otherwise"),
        el("button", {type: "submit", id: "a-submit"}, "Add task")),
      el("p", {id: "add-status", class: "action-status", role: "status", "aria-live": "polite"}));
    return el("div", {}, el("h2", {text: "Add a task"}), form);
  };

  async function submitTask(event) {
    event.preventDefault();
    for (const node of document.querySelectorAll(".field-error")) node.textContent = "";
    const status = $("add-status");
    status.textContent = "";
    status.className = "action-status";
    const value = (id) => $(id).value.trim();
    const fail = (id, message) => {
      $(id + "-error").textContent = message;
      $(id).focus();
      status.textContent = "Not added: " + message;
      status.className = "action-status error";
    };
    const tz = value("a-tz");
    const doc = {worker: value("a-worker"), status: "waiting", job: {name: value("a-job")}};
    try {
      doc.job.arguments = JSON.parse(value("a-args") || "[]");
    } catch (e) {
      return fail("a-args", "arguments: not JSON (" + e.message + ")");
    }
    try {
      doc.date = parseWhen(value("a-date"), tz);
    } catch (e) {
      return fail("a-date", "date: " + e.message);
    }
    const rep = value("a-repeat");
    if (rep) {
      try {
        doc.repeat = rep.startsWith("{") ? JSON.parse(rep)
          : /^(RRULE:)?FREQ=/i.test(rep) ? {rrule: rep} : parseDuration(rep.replace(/^every\s+/i, ""));
      } catch (e) {
        return fail("a-repeat", "repeat: " + e.message);
      }
      if (tz) doc.repeat.tz = tz;
    }
    if (value("a-timeout")) doc.timeout = Number(value("a-timeout"));
    // Empty fields go to CouchDB as they are: its validate_doc_update says what is wrong.
    try {
      let id;
      if (value("a-id")) {
        id = value("a-id");
        await api("PUT", docPath(id), doc);
      } else {
        id = (await api("POST", DB_PATH, doc)).id;
      }
      status.replaceChildren("✓ Added ", taskLink(id), ", due ", when(doc.date), ".");
      status.className = "action-status ok";
    } catch (e) {
      if (e.status === 403) {
        const reason = e.reason || "refused";
        const fieldName = reason.split(":")[0].trim();
        const id = FORM_FIELDS[fieldName] || FORM_FIELDS[fieldName.split(".")[0]];
        if (id) return fail(id, reason);
        status.textContent = "Refused by CouchDB: " + reason;
        status.className = "action-status error";
      } else if (e.status === 409) {
        fail("a-id", `a document with id "${value("a-id")}" already exists`);
      } else {
        status.textContent = e.status ? `CouchDB answered ${e.status}: ${e.reason}` : "Not added: " + e.message;
        status.className = "action-status error";
      }
    }
  }

  checkSession();
})();
