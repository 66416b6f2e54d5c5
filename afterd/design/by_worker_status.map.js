function (doc) {
  // Tasks by [worker, status] (reduce: _count): group=true counts per worker and status,
  // group_level=1 per worker.
  if (String(doc._id).indexOf("after:") === 0 || typeof doc.status !== "string" ||
      typeof doc.worker !== "string") {
    return;
  }
  emit([doc.worker, doc.status === "err" ? "error" : doc.status], null);
}
