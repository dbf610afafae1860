"""perf/report_redis.py: the redis:// lock service's section of the report.

bench/redis_bench.cpp: hwsync::net::distributed_lock on redis:// against
hiredis's blocking client sending the same scripts (one connection, one
thread: latency of a lock+unlock pair), and 16 threads pipelining on one
connection, and one thread keeping 16 acquisitions in flight through the
coroutine API (async_lock/async_unlock), against redis-benchmark's
pipelined SET NX (-c 1 -P 16) on the same server. The pipelined target
holds the better of the two hwsync ways against the ceiling. perf/report.py loads this module and calls register(report)
with itself; every number comes from the JSON.
"""

HW = "hwsync_redis"
HW_ASYNC = "hwsync_redis_async"
HIREDIS = "hiredis_blocking"
CEILING = "redis_benchmark_set_nx"
EVALSHA = "redis_benchmark_evalsha"
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
    d = p.value("pipelined", CEILING, "commands_per_second")
    r2 = R.ratio(c, d)
    return [
        (f"lock+unlock p50 ≤ {ROUND_TRIP_LIMIT}× hiredis (same scripts, one connection)",
         "missing" if r1 is None else
         f"{R.fmt_num(a)} against {R.fmt_num(b)} ns: {R.fmt_ratio(r1)}",
         R.target_status(None if r1 is None else r1 <= ROUND_TRIP_LIMIT)),
        (f"pipelined commands/s ≥ {PIPELINED_LIMIT}× redis-benchmark -c 1 -P 16 SET NX "
         "(the better hwsync way)",
         "missing" if r2 is None else
         f"{R.lock_name(best)}: {R.fmt_num(c)} against {R.fmt_num(d)}/s: {R.fmt_ratio(r2)}",
         R.target_status(None if r2 is None else r2 >= PIPELINED_LIMIT)),
    ]


def best_pipelined(p):
    """(id, commands/s) of the faster hwsync way to pipeline; (None, None)
    when neither ran."""
    best = (None, None)
    for lock in (HW, HW_ASYNC):
        v = p.value("pipelined", lock, "commands_per_second")
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
    base = p.value("pipelined", CEILING, "commands_per_second")
    script_base = p.value("pipelined", EVALSHA, "commands_per_second")
    best, _ = best_pipelined(p)
    rows = []
    for lock in (HW, HW_ASYNC, CEILING, EVALSHA):
        r = p.find("pipelined", lock)
        v = None if r is None else r.get("commands_per_second")
        rows.append([R.lock_name(lock), R.missing_or(r, R.fmt_num(v)),
                     R.missing_or(r, R.fmt_ratio(R.ratio(v, base))),
                     R.missing_or(r, R.fmt_ratio(R.ratio(v, script_base))),
                     "yes" if lock == best else ""])
    return ("### Pipelined commands on one connection\n\n"
            "hwsync, blocking: 16 threads, each locking and unlocking its own name through "
            "one lock_service (one connection; 2 commands per pair, each a Lua script). "
            "hwsync, coroutines: the same 16 names and pairs from one thread, 16 coroutines "
            "each awaiting async_lock()/async_unlock() (the replies are read and the "
            "coroutines resumed on the ring's loop thread). The target holds the faster "
            "of the two (\"held to the target\"). "
            "redis-benchmark: one connection, 16 commands in flight, SET key v NX on random "
            "keys (no script): the ceiling of one pipelined connection to this server (the "
            "target's). redis-benchmark EVALSHA: the same client sending the acquire script "
            "on random keys: one pipelined connection when the server runs Lua per command. "
            "Commands per second, higher is better.\n\n" +
            R.md_table(["client", "commands/s", "vs redis-benchmark SET NX",
                        "vs redis-benchmark EVALSHA", "held to the target"], rows))


def register(report):
    global R
    R = report
    report.LOCK_NAMES.update({
        HW: "hwsync::net::distributed_lock (redis://)",
        HW_ASYNC: "hwsync::net::distributed_lock (redis://), coroutines on one thread",
        HIREDIS: "hiredis blocking client, same scripts",
        CEILING: "redis-benchmark -c 1 -P 16 SET NX",
        EVALSHA: "redis-benchmark -c 1 -P 16 EVALSHA (the acquire script)",
    })
    report.BASELINES["redis"] = HIREDIS
    report.SUBJECTS["redis"] = [HW, HW_ASYNC]
    report.KEY_ROWS["redis"] = key_rows
    report.TARGETS["redis"] = targets
    report.SECTIONS["redis"] = {"round_trip": round_trip, "pipelined": pipelined}
    report.PLOTS["redis"] = lambda p, out_dir: []
