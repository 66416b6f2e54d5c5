function (doc) {
  // Failed tasks by [job, when it ended (UTC)]; reduce _count with group_level=1 counts
  // failures per job, a key range lists one job's latest.
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
  if (String(doc._id).indexOf("after:") === 0) {
    return;
  }
  var job = doc.job && typeof doc.job.name === "string" ? doc.job.name : "";
  var when = null;
  if (doc.status === "error" || doc.status === "err") {
    when = doc.finished_at || doc.date;
  } else if (doc.last_run && doc.last_run.status === "error") {
    when = doc.last_run.finished_at;
  }
  var at = when ? utc(when) : null;
  if (at) {
    emit([job, at], null);
  }
}
