"""What the loop holds of one task: its latest document, packed, and where its run stands."""

import json
import zlib

# Entry documents are deflated with a preset dictionary of the fields a task has: a
# typical pending task's 280 bytes of JSON become 90 (docs/benchmarks.md), for about
# 7 us per write and 2 us per read. Raw deflate, small window and memory: the state
# zlib sets up per call is most of the cost.
PACK_ZDICT = (b'"last_run":{"date":"20","status":"done","started_at":"20","finished_at":"20",'
              b'"queued_ms":0.0,"result":null},"runs":1,"repeat":{"days":1},"timeout":60,"retry":0,'
              b'"attempts":0,"error":null,"result":null,"started_at":"20","finished_at":"20",'
              b'"queued_ms":0,{"worker":"","date":"20","status":"scheduled","job":{"name":"",'
              b'"arguments":{}},"owner":{"process":"","host":"","pid":},"anchor":"20",'
              b'"occurrence":0,"_rev":"')
PACK_WBITS = -12


class Entry:
    """What the loop knows of one task it owns or is about to own.

    A task that waits is held packed: compact JSON, deflated (PACK_ZDICT). A worker holds
    every pending task (a million is a target), and a parsed document costs about 2,900
    bytes where its JSON costs about 300 and its deflated JSON about 90
    (docs/benchmarks.md). A task the loop is busy with (claimed, due soon, running,
    finishing) is held parsed ("hot"): its document is read about fifteen times per run,
    and decoding each read was the worker's largest cost. `cool()` packs it; the loop
    cools a task when it arms it far ahead and when it hands its document to the writer.
    Each read of `doc` is a fresh (shallow) copy: callers may change its fields, never
    the objects inside them.
    """
    __slots__ = ("id", "_hot", "_packed", "phase", "run_id", "writing", "latest", "outcome", "cancel",
                 "confirm_first", "spec", "taking_from", "fenced_by")

    def __init__(self, doc: dict):
        self.id = doc.get("_id")       # the same str object as the key in Worker.entries
        self.doc = doc                 # latest version we know (with _rev)
        self.phase = "new"             # new | armed | held (status paused) | paused (our lease lapsed)
                                       # | fencing (cluster) | fenced | starting | running | finishing
        self.run_id: str | None = None
        self.writing = False           # a write of this doc is in flight
        self.latest: dict | None = None    # a newer version seen while writing: decide on it after
        self.outcome: dict | None = None   # outcome fields waiting to be written
        self.cancel = False            # the user asked to cancel the current run
        self.confirm_first = False     # write `running` and see it succeed before starting
        self.spec = None               # the RunSpec of the current run
        self.taking_from: str | None = None  # the dead process whose run we are settling
        self.fenced_by: str | None = None  # the process holding the fence of the run we wanted

    @property
    def doc(self) -> dict:
        if self._hot is not None:
            return dict(self._hot)
        inflate = zlib.decompressobj(PACK_WBITS, zdict=PACK_ZDICT)
        return {"_id": self.id, **json.loads(inflate.decompress(self._packed) + inflate.flush())}

    @doc.setter
    def doc(self, value: dict):
        self._hot, self._packed = dict(value), None

    @property
    def rev(self) -> str | None:
        """The revision held (a waiting task's is packed with it: a str of its own would
        cost a pending task about 80 bytes)."""
        if self._hot is not None:
            return self._hot.get("_rev")
        return self.doc.get("_rev")

    def cool(self):
        """Hold the document packed until it is needed again."""
        if self._hot is None:
            return
        # Without _id: self.id has it, and ids are a tenth of a small document.
        body = {k: v for k, v in self._hot.items() if k != "_id"}
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        deflate = zlib.compressobj(1, zlib.DEFLATED, PACK_WBITS, 1, zlib.Z_DEFAULT_STRATEGY, PACK_ZDICT)
        self._packed, self._hot = deflate.compress(text) + deflate.flush(), None
