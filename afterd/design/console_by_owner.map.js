function (doc) {
  // Tasks held by a worker process, by [process, status] (reduce _count): the console's
  // "tasks held" per heartbeat. Final tasks are no longer held.
  var FINAL = {done: true, error: true, err: true, canceled: true};
  if (String(doc._id).indexOf("after:") === 0 || typeof doc.status !== "string" ||
      FINAL.hasOwnProperty(doc.status) || !doc.owner || typeof doc.owner.process !== "string") {
    return;
  }
  emit([doc.owner.process, doc.status], null);
}
