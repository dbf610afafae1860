"""perf/report_redis.py: the redis:// lock service's section of the report.

bench/redis_bench.cpp: hwsync::net::distributed_lock on redis:// against
hiredis's blocking client sending the same scripts (one connection, one
thread: latency of a lock+unlock pair), and 16 threads pipelining on one
connection against redis-benchmark's pipelined SET NX (-c 1 -P 16) on the
same server. perf/report.py loads this module and calls register(report)
with itself; every number comes from the JSON.
"""

HW = "hwsync_redis"
HIREDIS = "hiredis_blocking"
CEILING = "redis_benchmark_set_nx"
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
    c = p.value("pipelined", HW, "commands_per_second")
    d = p.value("pipelined", CEILING, "commands_per_second")
    r2 = R.ratio(c, d)
    return [
        (f"lock+unlock p50 ≤ {ROUND_TRIP_LIMIT}× hiredis (same scripts, one connection)",
         "missing" if r1 is None else
         f"{R.fmt_num(a)} against {R.fmt_num(b)} ns: {R.fmt_ratio(r1)}",
         R.target_status(None if r1 is None else r1 <= ROUND_TRIP_LIMIT)),
        (f"pipelined commands/s ≥ {PIPELINED_LIMIT}× redis-benchmark -c 1 -P 16 SET NX",
         "missing" if r2 is None else
         f"{R.fmt_num(c)} against {R.fmt_num(d)}/s: {R.fmt_ratio(r2)}",
         R.target_status(None if r2 is None else r2 >= PIPELINED_LIMIT)),
    ]


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
    rows = []
    for lock in (HW, CEILING):
        r = p.find("pipelined", lock)
        v = None if r is None else r.get("commands_per_second")
        rows.append([R.lock_name(lock), R.missing_or(r, R.fmt_num(v)),
                     R.missing_or(r, R.fmt_ratio(R.ratio(v, base)))])
    return ("### Pipelined commands on one connection\n\n"
            "hwsync: 16 threads, each locking and unlocking its own name through one "
            "lock_service (one connection; 2 commands per pair, each a Lua script). "
            "redis-benchmark: one connection, 16 commands in flight, SET key v NX on random "
            "keys (no script): the ceiling of one pipelined connection to this server. "
            "Commands per second, higher is better.\n\n" +
            R.md_table(["client", "commands/s", "vs redis-benchmark"], rows))


def register(report):
    global R
    R = report
    report.LOCK_NAMES.update({
        HW: "hwsync::net::distributed_lock (redis://)",
        HIREDIS: "hiredis blocking client, same scripts",
        CEILING: "redis-benchmark -c 1 -P 16 SET NX",
    })
    report.BASELINES["redis"] = HIREDIS
    report.SUBJECTS["redis"] = [HW]
    report.KEY_ROWS["redis"] = key_rows
    report.TARGETS["redis"] = targets
    report.SECTIONS["redis"] = {"round_trip": round_trip, "pipelined": pipelined}
    report.PLOTS["redis"] = lambda p, out_dir: []
