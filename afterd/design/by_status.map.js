function (doc) {
  // Tasks counted by status (reduce: _count). "err" from older documents counts as "error".
  if (String(doc._id).indexOf("after:") === 0 || typeof doc.status !== "string") {
    return;
  }
  emit(doc.status === "err" ? "error" : doc.status, null);
}
