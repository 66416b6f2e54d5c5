function (doc) {
  // A worker's tasks that are not final, keyed by worker, value = status: what a worker
  // loads at start-up (?key="manobi"&include_docs=true) before following the feed.
  var FINAL = {done: true, error: true, err: true, canceled: true};
  if (String(doc._id).indexOf("after:") === 0 || typeof doc.status !== "string" ||
      typeof doc.worker !== "string" || FINAL.hasOwnProperty(doc.status)) {
    return;
  }
  emit(doc.worker, doc.status);
}
