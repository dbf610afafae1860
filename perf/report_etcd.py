"""perf/report_etcd.py: the etcd:// lock service's section of the report.

bench/etcd_bench.cpp: hwsync::net::distributed_lock on etcd:// (hwsync's own
gRPC client on the io_uring ring) against the same etcd calls made through
the official gRPC C++ library's synchronous stubs, on an etcd the bench
starts itself: an uncontended lock+unlock pair, a hand-off to a waiter
parked on a watch, and the round trips a hand-off is made of (one write
txn, one linearizable read, one watch notification). perf/report.py loads
this module and calls register(report) with itself; every number comes from
the JSON.
"""

HW = "hwsync_etcd"
GRPC = "grpcpp_sync"
LOCK_UNLOCK_LIMIT = 1.0  # issue 9: uncontended lock+unlock p50 <= 1.0x grpc++
HAND_OFF_LIMIT = 1.5     # issue 9: hand-off p50 <= 1.5x one txn round trip

R = None  # perf/report.py, set by register()


def key_rows(p, add):
    add("lock_unlock", "p50 ns", "p50_ns", "lower")
    add("lock_unlock", "p99 ns", "p99_ns", "lower")
    add("hand_off", "p50 ns", "p50_ns", "lower")
    add("hand_off", "p99 ns", "p99_ns", "lower")
    add("txn_round_trip", "p50 ns", "p50_ns", "lower")


def targets(p, hw):
    a = p.value("lock_unlock", HW, "p50_ns")
    b = p.value("lock_unlock", GRPC, "p50_ns")
    r1 = R.ratio(a, b)
    c = p.value("hand_off", HW, "p50_ns")
    d = p.value("txn_round_trip", HW, "p50_ns")
    r2 = R.ratio(c, d)
    return [
        (f"uncontended lock+unlock p50 ≤ {LOCK_UNLOCK_LIMIT}× grpc++ (the same calls)",
         "missing" if r1 is None else
         f"{R.fmt_num(a)} against {R.fmt_num(b)} ns: {R.fmt_ratio(r1)}",
         R.target_status(None if r1 is None else r1 <= LOCK_UNLOCK_LIMIT)),
        (f"hand-off p50 ≤ {HAND_OFF_LIMIT}× one txn round trip (watch-driven)",
         "missing" if r2 is None else
         f"{R.fmt_num(c)} against {R.fmt_num(d)} ns: {R.fmt_ratio(r2)}",
         R.target_status(None if r2 is None else r2 <= HAND_OFF_LIMIT)),
    ]


def latency_table(p, scenario, base_lock, base_label, extra=()):
    """One row per client of `scenario`: percentiles, then p50 against
    `base_lock`'s p50 in the same scenario, then the `extra` counters."""
    base = p.value(scenario, base_lock, "p50_ns")
    rows = []
    for lock in (HW, GRPC):
        r = p.find(scenario, lock)
        if r is None:
            continue
        g = r.get
        rows.append([R.lock_name(lock)] +
                    [R.missing_or(r, R.fmt_num(g(k))) for k in
                     ("p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns")] +
                    [R.missing_or(r, R.fmt_ratio(R.ratio(g("p50_ns"), base)))] +
                    [R.missing_or(r, R.fmt_num(g(k))) for k, _ in extra])
    header = (["client", "p50", "p90", "p99", "p99.9", "max", f"p50 vs {base_label}"] +
              [label for _, label in extra])
    return R.md_table(header, rows) if rows else "missing"


def lock_unlock(p):
    return ("### Uncontended lock + unlock (one thread, one connection)\n\n"
            "Latency of one pair, etcd's concurrency.Mutex algorithm on a session (a lease "
            "granted once per lock object and kept alive by a keeper every ttl/3): Txn "
            "(put our key under the session's lease if absent, read the oldest key of the "
            "name); Txn (delete our key if its create_revision is our token) — two Raft "
            "writes. grpc++ sends the same requests, built from the same messages, through "
            "its synchronous stubs, on a session of its own. Nanoseconds, lower is "
            "better.\n\n" +
            latency_table(p, "lock_unlock", GRPC, "grpc++"))


def hand_off(p):
    return ("### Hand-off to a waiter parked on a watch\n\n"
            "From the holder's unlock() call to the waiter's lock() returning; the waiter "
            "is another thread with its own connection, and each sample starts only once "
            "the waiter reports that etcd confirmed its watch (not by polling etcd's "
            "/metrics, which slowed etcd under the measured unlock: see the phases below), "
            "so every hand-off is the watch path. "
            "The path: the holder's release Txn (a Raft write), the DELETE event to the "
            "waiter, the waiter's one read-only Txn (the newest key older than its own, and "
            "its own key: one linearizable read). The target's unit is the write txn below. "
            "Nanoseconds, lower is better.\n\n" +
            latency_table(p, "hand_off", HW, "hwsync",
                          [("unlock_p50_ns", "holder's unlock() p50"),
                           ("etcd_wal_fsync_mean_us", "etcd WAL fsync mean µs"),
                           ("etcd_gc_cycles_per_op", "etcd GC cycles / hand-off")]))


PHASES = (("delete_call_p50_ns", "holder's delete txn call"),
          ("event_p50_ns", "delete sent → waiter's watch event"),
          ("read_call_p50_ns", "waiter's post-wake read call"),
          ("p50_ns", "delete sent → read answered"),
          ("etcd_wal_fsync_mean_us", "etcd WAL fsync mean µs"),
          ("etcd_wal_fsyncs_per_op", "etcd WAL fsyncs / hand-off"),
          ("etcd_gc_cycles_per_op", "etcd GC cycles / hand-off"))


def hand_off_phases(p):
    rows = []
    for poll, how in ((1, "polling /metrics until the watch shows"), (0, "the waiter's word")):
        r = p.find("hand_off_phases", HW, poll_metrics=poll)
        if r is None:
            continue
        rows.append([how] + [R.missing_or(r, R.fmt_num(r.get(k))) for k, _ in PHASES])
    return ("### The hand-off taken apart\n\n"
            "The backend's calls made through net::etcd::client directly, each step "
            "timestamped on the client side (p50, nanoseconds unless named): the holder's "
            "delete txn, the waiter's DELETE event, the waiter's post-wake read-only txn; "
            "etcd's side of the batch from its /metrics before and after. The holder deletes "
            "once the waiter's watch is confirmed — learnt either by polling etcd's /metrics "
            "(as the hand-off above did first) or from the waiter itself.\n\n" +
            (R.md_table(["waiter parked, learnt by"] + [label for _, label in PHASES], rows)
             if rows else "missing"))


# The round-trip scenarios use the clients directly, not the lock.
CLIENT_NAMES = {HW: "hwsync net::etcd::client", GRPC: "grpc++ synchronous stub"}


def parts(p):
    rows = []
    for scenario, what in (("txn_round_trip", "one write txn (guarded put)"),
                           ("range_round_trip", "one linearizable Range"),
                           ("watch_notify", "put call → its event at a parked watcher")):
        for lock in (HW, GRPC):
            r = p.find(scenario, lock)
            if r is None:
                continue
            rows.append([what, CLIENT_NAMES[lock],
                         R.missing_or(r, R.fmt_num(r.get("p50_ns"))),
                         R.missing_or(r, R.fmt_num(r.get("p99_ns")))])
    return ("### The round trips a hand-off is made of\n\n"
            "One client, one connection each; the watch notification is the time from a put's "
            "call to its event at a watcher parked on another thread and connection. "
            "Nanoseconds, lower is better.\n\n" +
            R.md_table(["round trip", "client", "p50", "p99"], rows))


def register(report):
    global R
    R = report
    report.LOCK_NAMES.update({
        HW: "hwsync::net::distributed_lock (etcd://)",
        GRPC: "grpc++ synchronous stubs, same calls",
    })
    report.BASELINES["etcd"] = GRPC
    report.SUBJECTS["etcd"] = [HW]
    report.KEY_ROWS["etcd"] = key_rows
    report.TARGETS["etcd"] = targets
    # One table for the three round-trip scenarios, under the first of them.
    report.SECTIONS["etcd"] = {"lock_unlock": lock_unlock, "hand_off": hand_off,
                               "hand_off_phases": hand_off_phases,
                               "txn_round_trip": parts, "range_round_trip": lambda p: "",
                               "watch_notify": lambda p: ""}
    report.PLOTS["etcd"] = lambda p, out_dir: []
