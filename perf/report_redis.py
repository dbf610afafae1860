"""perf/report_redis.py: the redis:// lock service's section of the report.

bench/redis_bench.cpp: hwsync::net::distributed_lock on redis:// against
hiredis's blocking client sending the same scripts (one connection, one
thread: latency of a lock+unlock pair), and 16 threads pipelining on one
connection, and one thread keeping 16 acquisitions in flight through the
coroutine API (async_lock/async_unlock), against redis-benchmark's
pipelined SET NX (-c 1 -P 16) on the same server. The pipelined target
holds the better of the two hwsync ways against the ceiling, counted in
lock ops (an acquire or a release is one; see pipelined()). The server
floors (redis/floor/*) send each lock design's commands from one lean
hiredis client, 16 lock ops in flight, and say how close any client of
that design could come. perf/report.py loads this module and calls
register(report) with itself; every number comes from the JSON.
"""

HW = "hwsync_redis"
HW_ASYNC = "hwsync_redis_async"
HIREDIS = "hiredis_blocking"
CEILING = "redis_benchmark_set_nx"
EVALSHA = "redis_benchmark_evalsha"
# redis/floor/<id>: one lean client, 16 lock ops in flight, per design.
FLOOR_SET_NX = "set_nx"
FLOOR_DESIGN_IN_USE = "pair_scripts"
FLOORS = [
    (FLOOR_SET_NX, "SET key v NX, random keys (the peer's command, this client)", "no"),
    ("evalsha_return_1", "EVALSHA of `return 1` (the cost of calling a script)", "no"),
    ("pair_set_nx_del", "SET NX PX / plain DEL (the bound of any SET NX lock; "
     "the DEL is not owner-checked)", "no: release not by the owner only, no token"),
    (FLOOR_DESIGN_IN_USE, "EVALSHA acquire (GET, SET PX, INCR) / EVALSHA release "
     "(GET, DEL, PUBLISH): the design in use", "yes"),
    ("pair_lean_scripts", "EVALSHA acquire cut to SET NX PX + INCR (GET, PEXPIRE only "
     "when the SET fails) / EVALSHA release",
     "yes"),
    ("pair_multi_script", "MULTI, SET NX PX GET, INCR, PTTL, EXEC / EVALSHA release",
     "yes (tokens get gaps: a busy attempt INCRs too; Redis >= 7.0)"),
]
ROUND_TRIP_LIMIT = 1.0  # issue 8: single-operation p50 <= 1.0x hiredis
PIPELINED_LIMIT = 0.7   # issue 8: pipelined >= 0.7x the redis-benchmark ceiling

R = None  # perf/report.py, set by register()


def key_rows(p, add):
    add("round_trip", "p50 ns", "p50_ns", "lower")
    add("round_trip", "p99 ns", "p99_ns", "lower")


def targets(p, hw):
    a = p.value("round_trip", HW, "p50_ns")
    b = p.value("round_trip", HIREDIS, "p50_ns")
    r1 = R.ratio(a, b)
    best, c = best_pipelined(p)
    d = ops(p, "pipelined", CEILING)
    r2 = R.ratio(c, d)
    in_use = R.ratio(ops(p, "floor", FLOOR_DESIGN_IN_USE), d)
    best_floor_id, best_floor = best_design_floor(p)
    bound = ("" if in_use is None else
             f"; server floors, any client: the design in use {R.fmt_ratio(in_use)}, "
             f"the best that keeps the guarantees ({best_floor_id}) "
             f"{R.fmt_ratio(R.ratio(best_floor, d))}")
    return [
        (f"lock+unlock p50 ≤ {ROUND_TRIP_LIMIT}× hiredis (same scripts, one connection)",
         "missing" if r1 is None else
         f"{R.fmt_num(a)} against {R.fmt_num(b)} ns: {R.fmt_ratio(r1)}",
         R.target_status(None if r1 is None else r1 <= ROUND_TRIP_LIMIT)),
        (f"pipelined lock ops/s (acquire or release: 1 each) ≥ {PIPELINED_LIMIT}× "
         "redis-benchmark -c 1 -P 16 SET NX commands/s (the better hwsync way)",
         "missing" if r2 is None else
         f"{R.lock_name(best)}: {R.fmt_num(c)} against {R.fmt_num(d)}/s: "
         f"{R.fmt_ratio(r2)}{bound}",
         R.target_status(None if r2 is None else r2 >= PIPELINED_LIMIT)),
    ]


def ops(p, scenario, lock):
    """Lock ops/s (commands_per_second in JSON from before the rename)."""
    v = p.value(scenario, lock, "lock_ops_per_second")
    return p.value(scenario, lock, "commands_per_second") if v is None else v


def best_design_floor(p):
    """(id, lock ops/s) of the fastest floor among the designs that keep the
    issue's guarantees."""
    best = (None, None)
    for lock, _, keeps in FLOORS:
        v = ops(p, "floor", lock)
        if keeps.startswith("yes") and v is not None and (best[1] is None or v > best[1]):
            best = (lock, v)
    return best


def best_pipelined(p):
    """(id, lock ops/s) of the faster hwsync way to pipeline; (None, None)
    when neither ran."""
    best = (None, None)
    for lock in (HW, HW_ASYNC):
        v = ops(p, "pipelined", lock)
        if v is not None and (best[1] is None or v > best[1]):
            best = (lock, v)
    return best


def round_trip(p):
    base = p.value("round_trip", HIREDIS, "p50_ns")
    rows = []
    for lock in (HW, HIREDIS):
        r = p.find("round_trip", lock)
        g = (lambda k: None if r is None else r.get(k))
        rows.append([R.lock_name(lock)] +
                    [R.missing_or(r, R.fmt_num(g(k))) for k in
                     ("p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns")] +
                    [R.missing_or(r, R.fmt_ratio(R.ratio(g("p50_ns"), base)))])
    return ("### Lock + unlock round trips (one thread, one connection)\n\n"
            "Latency of one pair: the acquire script (SET NX PX + INCR of the token "
            "counter) and the release script (compare-and-delete + PUBLISH), two EVALSHA "
            "round trips; hiredis sends the same two commands with the same scripts from "
            "the calling thread. Nanoseconds, lower is better.\n\n" +
            R.md_table(["client", "p50", "p90", "p99", "p99.9", "max", "p50 vs hiredis"], rows))


def pipelined(p):
    base = ops(p, "pipelined", CEILING)
    script_base = ops(p, "pipelined", EVALSHA)
    best, _ = best_pipelined(p)
    rows = []
    for lock in (HW, HW_ASYNC, CEILING, EVALSHA):
        r = p.find("pipelined", lock)
        v = ops(p, "pipelined", lock)
        rows.append([R.lock_name(lock), R.missing_or(r, R.fmt_num(v)),
                     R.missing_or(r, R.fmt_ratio(R.ratio(v, base))),
                     R.missing_or(r, R.fmt_ratio(R.ratio(v, script_base))),
                     R.missing_or(r, R.fmt_num(p.value("pipelined", lock,
                                                       "server_us_per_lock_op"))),
                     "yes" if lock == best else ""])
    return ("### Pipelined lock ops on one connection\n\n"
            "What is counted: a **lock op** is one acquire or one release, so a "
            "lock+unlock pair is 2 (each is one command here: an EVALSHA); "
            "redis-benchmark's figure is commands/s, each one SET NX, i.e. one "
            "acquire that is never released and hands out no token. Lock ops/s against "
            "commands/s is the same ratio as our pairs/s against half the peer's rate "
            "(a SET NX lock needs a release per acquire too), so the comparison does not "
            "halve either side, and it is stricter for us than acquisitions/s would be. "
            "In flight: 16 lock ops for every client (16 threads or 16 coroutines, one op "
            "each; redis-benchmark -P 16: 16 commands).\n\n"
            "hwsync, blocking: 16 threads, each locking and unlocking its own name through "
            "one lock_service (one connection). "
            "hwsync, coroutines: the same 16 names and pairs from one thread, 16 coroutines "
            "each awaiting async_lock()/async_unlock() (the replies are read and the "
            "coroutines resumed on the ring's loop thread). The target holds the faster "
            "of the two (\"held to the target\"). "
            "redis-benchmark: one connection, 16 commands in flight, SET key v NX on random "
            "keys (no script): the target's ceiling. redis-benchmark EVALSHA: the same "
            "client sending the acquire script on random keys. Server µs: the server's "
            "main-thread CPU time (INFO cpu) per lock op. Higher lock ops/s is "
            "better.\n\n" +
            R.md_table(["client", "lock ops/s", "vs redis-benchmark SET NX",
                        "vs redis-benchmark EVALSHA", "server µs / lock op",
                        "held to the target"], rows))


def floors(p):
    base = ops(p, "pipelined", CEILING)
    base_cost = p.value("floor", FLOOR_SET_NX, "server_us_per_lock_op")
    rows = []
    for lock, what, keeps in FLOORS:
        r = p.find("floor", lock)
        v = ops(p, "floor", lock)
        cost = p.value("floor", lock, "server_us_per_lock_op")
        rows.append([f"`{lock}`", what, keeps, R.missing_or(r, R.fmt_num(v)),
                     R.missing_or(r, R.fmt_ratio(R.ratio(v, base))),
                     R.missing_or(r, R.fmt_num(cost)),
                     R.missing_or(r, R.fmt_ratio(R.ratio(base_cost, cost)))])
    return ("### Server floors: what each lock design allows on one connection\n\n"
            "One lean hiredis client (commands formatted once; 16 groups appended, one "
            "write, every reply read, repeat, as redis-benchmark -P 16 does), so only the "
            "commands differ. Pairs: 16 names, a batch of their 16 acquires, then a batch "
            "of their 16 releases (16 lock ops in flight, as in the hwsync scenarios). "
            "Lock ops as above: MULTI ... EXEC is one acquire. \"keeps\": whether the "
            "design keeps issue 8's guarantees (SET NX PX and the token INCR atomic, "
            "release and renewal by the owner only, same-owner retake). The last column "
            "is the server-CPU bound on the ratio: SET NX's server µs per op over the "
            "design's; a server-bound client of the design cannot beat it. Every reply "
            "is checked (a lock not taken, a release that finds another owner is an "
            "error, not a fast result).\n\n" +
            R.md_table(["floor", "commands (acquire / release)", "keeps the guarantees",
                        "lock ops/s", "vs redis-benchmark SET NX", "server µs / lock op",
                        "SET NX µs / this µs"], rows))


def register(report):
    global R
    R = report
    report.LOCK_NAMES.update({
        HW: "hwsync::net::distributed_lock (redis://)",
        HW_ASYNC: "hwsync::net::distributed_lock (redis://), coroutines on one thread",
        HIREDIS: "hiredis blocking client, same scripts",
        CEILING: "redis-benchmark -c 1 -P 16 SET NX",
        **{lock: f"server floor: {lock}" for lock, _, _ in FLOORS},
        EVALSHA: "redis-benchmark -c 1 -P 16 EVALSHA (the acquire script)",
    })
    report.BASELINES["redis"] = HIREDIS
    report.SUBJECTS["redis"] = [HW, HW_ASYNC]
    report.KEY_ROWS["redis"] = key_rows
    report.TARGETS["redis"] = targets
    report.SECTIONS["redis"] = {"round_trip": round_trip, "pipelined": pipelined,
                                "floor": floors}
    report.PLOTS["redis"] = lambda p, out_dir: []


def series_summary(paths):
    """Medians (and ranges) over several runs of the bench, each ratio taken
    within its own run: lock ops/s against redis-benchmark SET NX, and the
    server-CPU bound (floor SET NX µs per op over the scenario's). The
    machine swings between a slow and a fast state, so one run says little;
    docs/distributed-locks.md quotes this over alternating runs."""
    import json
    import statistics
    rows = {}
    for path in paths:
        with open(path) as f:
            runs = json.load(f)["benchmarks"]
        by = {}
        for b in runs:
            if "error_occurred" in b:
                continue
            by[b["name"].split("/iterations")[0].removeprefix("redis/")] = b
        peer = by.get("pipelined/" + CEILING, {}).get("lock_ops_per_second")
        floor_cost = by.get("floor/" + FLOOR_SET_NX, {}).get("server_us_per_lock_op")
        for name, b in by.items():
            v = b.get("lock_ops_per_second")
            cost = b.get("server_us_per_lock_op")
            if v is None:
                continue
            row = rows.setdefault(name, {"ops": [], "vs_peer": [], "cost": [], "bound": []})
            row["ops"].append(v)
            if peer:
                row["vs_peer"].append(v / peer)
            if cost:
                row["cost"].append(cost)
                if floor_cost:
                    row["bound"].append(floor_cost / cost)

    def med(xs, fmt):
        if not xs:
            return "n/a"
        return f"{fmt(statistics.median(xs))} [{fmt(min(xs))}–{fmt(max(xs))}]"

    ratio = (lambda x: f"{x:.2f}")
    print(f"{len(paths)} runs; median [min–max] of each run's own figure\n")
    print("| scenario | lock ops/s | vs redis-benchmark SET NX | server µs / lock op "
          "| SET NX µs / this µs |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {med(r['ops'], lambda x: f'{x / 1e3:.0f}k')} "
              f"| {med(r['vs_peer'], ratio)} | {med(r['cost'], ratio)} "
              f"| {med(r['bound'], ratio)} |")


if __name__ == "__main__":
    import sys
    series_summary(sys.argv[1:])
