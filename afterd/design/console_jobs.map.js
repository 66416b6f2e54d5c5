function (doc) {
  // Job names in use, by [job, worker] (reduce _count): what the console's form offers.
  if (String(doc._id).indexOf("after:") === 0 || !doc.job || typeof doc.job.name !== "string") {
    return;
  }
  emit([doc.job.name, typeof doc.worker === "string" ? doc.worker : ""], null);
}
