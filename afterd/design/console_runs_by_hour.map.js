function (doc) {
  // Runs by the UTC hour they ended ("2026-12-01T03"), reduce _count: runs per hour.
  // From history when a task keeps one, else its latest run.
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
  var i, at;
  if (Object.prototype.toString.call(doc.history) === "[object Array]" && doc.history.length) {
    for (i = 0; i < doc.history.length; i++) {
      at = doc.history[i] ? utc(doc.history[i].finished_at || doc.history[i].end) : null;
      if (at) {
        emit(at.substr(0, 13), null);
      }
    }
    return;
  }
  at = doc.finished_at ? utc(doc.finished_at) : null;
  if (at) {
    emit(at.substr(0, 13), null);
  }
}
