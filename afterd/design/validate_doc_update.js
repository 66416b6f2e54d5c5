function (newDoc, oldDoc, userCtx, secObj) {
  // The task rules of afterd/task.py and afterd/repeat.py, run by CouchDB on every write
  // so nothing a worker cannot use is ever stored. tests/doc_cases.py runs one table
  // through both; change them together. Plain ES5 on purpose: it must run on Apache
  // CouchDB 3's SpiderMonkey and on pouchdb-server's node alike (no Intl, no arrows).
  // A refusal is {forbidden: "<field>: <what is wrong>"}, which CouchDB answers with 403.

  var STATUSES = ["waiting", "scheduled", "running", "done", "error",
                  "reschedule", "cancel", "canceled", "pause", "paused", "resume", "run",
                  "err"];  // "err": older documents, last (left out of the message)
  var MIN_YEAR = 1970, MAX_YEAR = 2999;
  var DATE = /^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$/;
  var DATE_HELP = 'use ISO 8601 like "2026-12-01", "2026-12-01T03:00:00Z" or "2026-12-01T04:00:00.250+01:00"';
  var JOB_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
  var UNITS = {years: "years", y: "years", months: "months", M: "months",
               weeks: "weeks", w: "weeks", days: "days", d: "days",
               hours: "hours", h: "hours", minutes: "minutes", m: "minutes",
               seconds: "seconds", s: "seconds", milliseconds: "milliseconds", ms: "milliseconds"};
  var OTHER_KEYS = {until: true, count: true, tz: true, rrule: true};
  var MAX_MONTHS = 12000, MAX_SUBMONTH_MS = 1000 * 366 * 86400 * 1000;
  // Time zones and rules are checked here by shape only: this sandbox has no tz database
  // and no RFC 5545 parser. The Python model checks them fully (zoneinfo, dateutil) and
  // marks a task it cannot use as "error" with the reason.
  var TZ_SHAPE = /^[A-Za-z][A-Za-z0-9_+\-]*(\/[A-Za-z0-9_+\-]+)*$/;
  var RRULE_PART = "(FREQ|INTERVAL|COUNT|UNTIL|BYSECOND|BYMINUTE|BYHOUR|BYDAY|BYMONTHDAY|" +
                   "BYYEARDAY|BYWEEKNO|BYMONTH|BYSETPOS|WKST)=[A-Za-z0-9,+\\-]+";
  var RRULE_SHAPE = new RegExp("^(RRULE:)?" + RRULE_PART + "(;" + RRULE_PART + ")*$");
  var RRULE_HELP = 'an RFC 5545 rule on one line, like "FREQ=DAILY;BYHOUR=3"';
  // Policies (afterd/policy.py, afterd/chains.py) and durations (afterd/repeat.py).
  var DURATION_UNITS = {ms: "milliseconds", y: "years", M: "months", w: "weeks", d: "days",
                        h: "hours", m: "minutes", s: "seconds"};
  var DURATION_HELP = "digits followed by y M w d h m s ms (M months, m minutes), e.g. 1M7d, 1h30m, 90s";
  var MAX_DURATION_DIGITS = 15;
  var RETRY_ENDINGS = ["error", "timeout", "interrupted"];
  var RETRY_KEYS = ["attempts", "delay", "backoff", "max_delay", "on"];
  var CATCHUP_MODES = ["one", "all", "none"], OVERLAP_MODES = ["wait", "skip", "replace"];
  var TEMPLATE_KEYS = ["job", "worker", "date", "timeout"];
  var MAX_ATTEMPTS = 100, MAX_BACKOFF = 100, MAX_HISTORY_LIMIT = 1000;

  function refuse(field, problem) {
    throw({forbidden: field + ": " + problem});
  }
  function show(value) {
    return value === undefined ? "undefined" : JSON.stringify(value);
  }
  function isArray(value) {
    return Object.prototype.toString.call(value) === "[object Array]";
  }
  function isObject(value) {
    return value !== null && typeof value === "object" && !isArray(value);
  }
  function isNumber(value) {
    return typeof value === "number" && isFinite(value);
  }
  function isInteger(value) {
    return isNumber(value) && Math.floor(value) === value;
  }
  function given(value) {
    return value !== undefined && value !== null;
  }

  function checkDate(field, value) {
    if (typeof value !== "string") {
      refuse(field, "must be a string, " + DATE_HELP);
    }
    var m = DATE.exec(value);
    if (!m) {
      refuse(field, show(value) + " is not a date: " + DATE_HELP);
    }
    var year = +m[1], month = +m[2], day = +m[3];
    if (year < MIN_YEAR || year > MAX_YEAR) {
      refuse(field, show(value) + ": the year must be between " + MIN_YEAR + " and " + MAX_YEAR);
    }
    if (m[8] && m[8] !== "Z" && (+m[8].substr(1, 2) > 23 || +m[8].substr(4, 2) > 59)) {
      refuse(field, show(value) + ": the offset " + m[8] + " is not a valid UTC offset");
    }
    var leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
    var monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if (month < 1 || month > 12 || day < 1 || day > monthDays[month - 1] ||
        +(m[4] || 0) > 23 || +(m[5] || 0) > 59 || +(m[6] || 0) > 59) {
      refuse(field, show(value) + " is not a real date or time of day");
    }
  }

  // prefix: "" for the task itself, "on_error." for a template inside it.
  function checkWorker(worker, prefix) {
    if (!given(worker)) {
      refuse(prefix + "worker", "missing: name the worker that should run this task");
    }
    if (typeof worker !== "string" || /^[ \t\r\n]*$/.test(worker)) {
      refuse(prefix + "worker", "must be a non-empty string naming a worker");
    }
    if (/^[ \t\r\n]|[ \t\r\n]$/.test(worker)) {
      refuse(prefix + "worker", show(worker) + " has leading or trailing spaces");
    }
  }

  function checkJob(job, prefix) {
    if (!given(job)) {
      refuse(prefix + "job", 'missing: give {"name": "<job module>", "arguments": [...]}');
    }
    if (!isObject(job)) {
      refuse(prefix + "job", 'must be an object like {"name": "<job module>", "arguments": [...]}');
    }
    if (typeof job.name !== "string" || !JOB_NAME.test(job.name)) {
      refuse(prefix + "job.name", show(job.name) + " is not a job name: letters, digits and _ only, " +
                                  "not starting with a digit");
    }
    if (job.arguments !== undefined && !isArray(job.arguments) && !isObject(job.arguments)) {
      refuse(prefix + "job.arguments", "must be a JSON list or object");
    }
  }

  function unknownKey(value, known) {
    var key, unknown = [];
    for (key in value) {
      if (value.hasOwnProperty(key) && known.indexOf(key) < 0) {
        unknown.push(key);
      }
    }
    return unknown.length ? unknown.sort()[0] : null;
  }

  // A policy duration: seconds (0 or more) or "1h30m"; months and years refused, as in
  // repeat.duration_s. The milliseconds are summed in the same order as offset_ms.
  function checkDuration(field, value) {
    if (isNumber(value)) {
      if (value < 0) {
        refuse(field, show(value) + ' is negative: give seconds (0 or more) or a duration like "30s"');
      }
      if (value * 1000 > MAX_SUBMONTH_MS) {
        refuse(field, show(value) + " is too large (at most 1000 years)");
      }
      return;
    }
    if (typeof value !== "string") {
      refuse(field, show(value) + " is not a duration: give seconds or " + DURATION_HELP);
    }
    if (!/^([0-9]+(ms|y|M|w|d|h|m|s))+$/.test(value)) {
      refuse(field, show(value) + " is not a duration: " + DURATION_HELP);
    }
    var token = /([0-9]+)(ms|y|M|w|d|h|m|s)/g, m, units = {};
    while ((m = token.exec(value)) !== null) {
      var unit = DURATION_UNITS[m[2]];
      if (units.hasOwnProperty(unit)) {
        refuse(field, show(value) + ": " + m[2] + " given twice");
      }
      if (m[1].length > MAX_DURATION_DIGITS) {
        refuse(field, show(value) + " is too large");
      }
      units[unit] = +m[1];
    }
    if (units.years || units.months) {
      refuse(field, show(value) + ": months and years have no fixed length here; use days (30d)");
    }
    function g(unit) { return units.hasOwnProperty(unit) ? units[unit] : 0; }
    var ms = ((((g("weeks") * 7 + g("days")) * 24 + g("hours")) * 60 +
              g("minutes")) * 60 + g("seconds")) * 1000 + g("milliseconds");
    if (ms > MAX_SUBMONTH_MS) {
      refuse(field, show(value) + " is too large (at most 1000 years)");
    }
  }

  function checkRetry(retry) {
    if (!isObject(retry)) {
      if (!isInteger(retry) || retry < 0) {
        refuse("retry", show(retry) + " is not a whole number of retries (0 or more) " +
                        'or an object like {"attempts": 3, "delay": "30s", "backoff": 2}');
      }
      if (retry + 1 > MAX_ATTEMPTS) {
        refuse("retry", show(retry) + ": at most " + (MAX_ATTEMPTS - 1) + " retries");
      }
      return;
    }
    var unknown = unknownKey(retry, RETRY_KEYS);
    if (unknown !== null) {
      refuse("retry", "unknown key " + show(unknown) + "; use " + RETRY_KEYS.join(", "));
    }
    if (!given(retry.attempts)) {
      refuse("retry.attempts", "missing: how many runs in all, the first included (e.g. 3)");
    }
    if (!isInteger(retry.attempts) || retry.attempts < 1 || retry.attempts > MAX_ATTEMPTS) {
      refuse("retry.attempts", show(retry.attempts) + " is not a whole number from 1 to " + MAX_ATTEMPTS);
    }
    if (given(retry.delay)) {
      checkDuration("retry.delay", retry.delay);
    }
    if (given(retry.backoff) && (!isNumber(retry.backoff) || retry.backoff < 1 || retry.backoff > MAX_BACKOFF)) {
      refuse("retry.backoff", show(retry.backoff) + " is not a factor from 1 to " + MAX_BACKOFF +
                              " (2 doubles each delay)");
    }
    if (given(retry.max_delay)) {
      checkDuration("retry.max_delay", retry.max_delay);
    }
    if (given(retry.on)) {
      var ok = isArray(retry.on) && retry.on.length > 0;
      for (var i = 0; ok && i < retry.on.length; i++) {
        ok = RETRY_ENDINGS.indexOf(retry.on[i]) >= 0;
      }
      if (!ok) {
        refuse("retry.on", show(retry.on) + " is not a list of endings to retry, from " +
                           RETRY_ENDINGS.join(", "));
      }
    }
  }

  function checkChoice(field, value, choices) {
    if (given(value) && choices.indexOf(value) < 0) {
      refuse(field, show(value) + " is not one of " + choices.join(", "));
    }
  }

  function checkTemplate(field, template) {
    if (!isObject(template)) {
      refuse(field, 'must be a task template like {"job": {"name": "notify_url", ' +
                    '"arguments": {"url": "..."}}}');
    }
    var unknown = unknownKey(template, TEMPLATE_KEYS);
    if (unknown !== null) {
      refuse(field, "unknown key " + show(unknown) + "; a template has " + TEMPLATE_KEYS.join(", "));
    }
    checkJob(template.job, field + ".");
    if (given(template.worker)) {
      checkWorker(template.worker, field + ".");
    }
    if (given(template.date)) {
      checkDate(field + ".date", template.date);
    }
    if (given(template.timeout) && (!isNumber(template.timeout) || template.timeout <= 0)) {
      refuse(field + ".timeout", show(template.timeout) + " is not a positive number of seconds");
    }
  }

  function checkPolicies(doc) {
    if (doc.retry !== undefined) {   // null is refused: the field always meant a number
      checkRetry(doc.retry);
    }
    checkChoice("catchup", doc.catchup, CATCHUP_MODES);
    if (given(doc.catchup_window)) {
      checkDuration("catchup_window", doc.catchup_window);
    }
    checkChoice("overlap", doc.overlap, OVERLAP_MODES);
    if (given(doc.jitter)) {
      checkDuration("jitter", doc.jitter);
    }
    if (given(doc.history_limit) &&
        (!isInteger(doc.history_limit) || doc.history_limit < 0 || doc.history_limit > MAX_HISTORY_LIMIT)) {
      refuse("history_limit", show(doc.history_limit) + " is not a whole number of runs from 0 to " +
                              MAX_HISTORY_LIMIT);
    }
    if (given(doc.on_done)) {
      checkTemplate("on_done", doc.on_done);
    }
    if (given(doc.on_error)) {
      checkTemplate("on_error", doc.on_error);
    }
  }

  function checkRepeat(rep) {
    function bad(problem) { refuse("repeat", problem); }
    if (!isObject(rep)) {
      bad('must be an object like {"days": 1} or {"rrule": "FREQ=DAILY"}');
    }
    var key, unknown = [];
    for (key in rep) {
      if (rep.hasOwnProperty(key) && !UNITS.hasOwnProperty(key) && !OTHER_KEYS.hasOwnProperty(key)) {
        unknown.push(key);
      }
    }
    if (unknown.length) {
      bad("unknown key " + show(unknown.sort()[0]) + "; use years/y, months/M, weeks/w, days/d, " +
          "hours/h, minutes/m, seconds/s, milliseconds/ms, until, count, tz or rrule");
    }
    var units = {}, hasOffset = false;
    for (key in rep) {
      if (!rep.hasOwnProperty(key) || !UNITS.hasOwnProperty(key)) {
        continue;
      }
      var unit = UNITS[key], amount = rep[key];
      if (units.hasOwnProperty(unit)) {
        bad(unit + " is given twice (long and short key)");
      }
      if (!isNumber(amount)) {
        bad(key + " must be a number, not " + show(amount));
      }
      if ((unit === "years" || unit === "months") && !isInteger(amount)) {
        bad(key + " must be a whole number, not " + show(amount));
      }
      if (amount < 0) {
        bad(key + " is negative: a repeat must move time forward");
      }
      units[unit] = amount;
      hasOffset = true;
    }
    function g(unit) { return units.hasOwnProperty(unit) ? units[unit] : 0; }
    if (hasOffset) {
      var months = g("years") * 12 + g("months");
      // Same order of operations as repeat.offset_ms, so both round alike.
      var submonthMs = ((((g("weeks") * 7 + g("days")) * 24 + g("hours")) * 60 +
                        g("minutes")) * 60 + g("seconds")) * 1000 + g("milliseconds");
      if (months === 0 && submonthMs < 1) {
        bad("the offset is zero (it must be at least 1 millisecond): a repeat must move time forward");
      }
      if (months > MAX_MONTHS || submonthMs > MAX_SUBMONTH_MS) {
        bad("the offset is too large (at most 1000 years)");
      }
    }
    if (given(rep.tz) && (typeof rep.tz !== "string" || !TZ_SHAPE.test(rep.tz))) {
      bad("tz " + show(rep.tz) + ' is not an IANA time zone name like "Europe/Lisbon"');
    }
    if (given(rep.rrule)) {
      if (hasOffset) {
        bad("give either offset keys or an rrule, not both");
      }
      if (typeof rep.rrule !== "string" || !RRULE_SHAPE.test(rep.rrule)) {
        bad("rrule " + show(rep.rrule) + " is not " + RRULE_HELP);
      }
      if (!/(^|[:;])FREQ=/.test(rep.rrule)) {
        bad("rrule " + show(rep.rrule) + " has no FREQ");
      }
    } else if (!hasOffset) {
      bad('give an offset like {"days": 1} or an rrule');
    }
    if (given(rep.until)) {
      try {
        checkDate("until", rep.until);
      } catch (e) {
        bad(e.forbidden);
      }
    }
    if (given(rep.count) && (!isInteger(rep.count) || rep.count < 1)) {
      bad("count must be a whole number of runs, 1 or more, not " + show(rep.count));
    }
  }

  // Who may write at all (design §8b), deletions included: server and database admins,
  // the acting role "after" (workers and console users who act), and members named one by
  // one. A member let in by another role only (the console's read-only "after_reader")
  // reads and cannot write. A database without members is open to all, as before.
  function mayWrite(user, sec) {
    var roles = (user && user.roles) || [], i;
    function listed(group) {
      var names = (group && group.names) || [], groupRoles = (group && group.roles) || [];
      if (user && user.name && names.indexOf(user.name) >= 0) {
        return true;
      }
      for (i = 0; i < roles.length; i++) {
        if (groupRoles.indexOf(roles[i]) >= 0) {
          return true;
        }
      }
      return false;
    }
    if (roles.indexOf("_admin") >= 0 || roles.indexOf("after") >= 0) {
      return true;
    }
    sec = sec || {};
    var members = sec.members || {};
    if (!((members.names || []).length || (members.roles || []).length)) {
      return true;
    }
    return listed(sec.admins) || (user && user.name && (members.names || []).indexOf(user.name) >= 0);
  }
  if (!mayWrite(userCtx, secObj)) {
    throw({forbidden: "read-only: " + (userCtx && userCtx.name ? "user " + show(userCtx.name) : "this user") +
                      ' lacks the role "after" needed to change tasks'});
  }

  // Deletions are always allowed: deleting a task is how a user disarms it.
  if (newDoc._deleted) {
    return;
  }
  var id = String(newDoc._id || "");
  if (id.indexOf("_design/") === 0) {
    return;
  }
  // The workers' own records (heartbeats...) are not tasks.
  if (id.indexOf("after:") === 0) {
    if (typeof newDoc.type !== "string") {
      refuse("type", 'a worker record ("after:" id) needs a string type');
    }
    return;
  }
  // A worker's verdict on a document that got in around this function (written before
  // it was installed): the task is final and unusable, and the worker must be able to
  // say so on the document itself, bad fields and all.
  if (newDoc.status === "error" && isObject(newDoc.error) && newDoc.error.type === "InvalidTask") {
    return;
  }

  checkWorker(newDoc.worker, "");
  if (newDoc.date === undefined) {
    refuse("date", "missing: " + DATE_HELP);
  }
  checkDate("date", newDoc.date);
  if (newDoc.status === undefined) {
    refuse("status", 'missing: a new task starts as "waiting"');
  }
  if (STATUSES.indexOf(newDoc.status) < 0) {
    refuse("status", show(newDoc.status) + " is not a status; use one of " +
                     STATUSES.slice(0, -1).join(", "));
  }
  checkJob(newDoc.job, "");
  if (given(newDoc.repeat)) {
    checkRepeat(newDoc.repeat);
  }
  if (given(newDoc.timeout) && (!isNumber(newDoc.timeout) || newDoc.timeout <= 0)) {
    refuse("timeout", show(newDoc.timeout) + " is not a positive number of seconds");
  }
  checkPolicies(newDoc);
  // Worker-written fields (owner, attempts, started_at, finished_at, runs, last_run,
  // result, error, queued_ms, running, history, parent) are accepted as they come; only these two would
  // break a worker if they were wrong.
  if (given(newDoc.anchor)) {
    checkDate("anchor", newDoc.anchor);
  }
  if (given(newDoc.occurrence) && (!isInteger(newDoc.occurrence) || newDoc.occurrence < 0)) {
    refuse("occurrence", show(newDoc.occurrence) + " is not an index (0 or more)");
  }
}
