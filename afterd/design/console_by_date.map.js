function (doc) {
  // The console's task list, sorted by date (UTC) under every filter it offers: one row per
  // combination of worker (w), status (s) and job (j), so any filter is one key range, paged.
  function utc(value) {
    // Any date the validation accepts, as "YYYY-MM-DDTHH:MM:SS.mmmZ", so keys sort by time.
    var m = /^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$/.exec(String(value));
    if (!m) {
      return null;
    }
    var ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0),
                      m[7] ? +((m[7] + "00").substr(0, 3)) : 0);
    if (m[8] && m[8] !== "Z") {
      ms -= (m[8].charAt(0) === "-" ? -1 : 1) * (+m[8].substr(1, 2) * 60 + +m[8].substr(4, 2)) * 60000;
    }
    return new Date(ms).toISOString();
  }
  if (String(doc._id).indexOf("after:") === 0 || typeof doc.status !== "string" ||
      typeof doc.worker !== "string") {
    return;
  }
  var date = utc(doc.date) || "";
  var status = doc.status === "err" ? "error" : doc.status;
  var job = doc.job && typeof doc.job.name === "string" ? doc.job.name : "";
  emit(["all", date], null);
  emit(["w", doc.worker, date], null);
  emit(["s", status, date], null);
  emit(["j", job, date], null);
  emit(["ws", doc.worker, status, date], null);
  emit(["wj", doc.worker, job, date], null);
  emit(["sj", status, job, date], null);
  emit(["wsj", doc.worker, status, job, date], null);
}
