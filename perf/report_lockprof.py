"""perf/report_lockprof.py: the lock observers' section of the report.

What the lock-order checker and the contention profiler cost
(bench/lockprof_bench.cpp): hwsync::mutex with the observers off, on, and
without the hooks at all (its lock word, mutex_word), uncontended; a
contended workload with the profiler off and on; and that workload's profile
(the "lockprof_profile" context entry: lock_profile_snapshot::json()) as a
table ranked by total wait. perf/report.py loads this module and calls
register(report) with itself; every number comes from the JSON.
"""

import json
import os

WORD = "mutex_word"
OFF = "hwsync_mutex_off"
ORDER = "hwsync_mutex_order"
NESTED = "hwsync_mutex_order_nested"
PROFILE = "hwsync_mutex_profile"
BOTH = "hwsync_mutex_both"
RW_WORD = "rw_word_shared"
SHARED_OFF = "hwsync_shared_mutex_shared_off"

# The targets on uncontended cycles per lock+unlock:
# (subject, reference, limit, what).
LIMITS = [
    (ORDER, OFF, 3.0, "checker on ≤ 3× the plain acquisition (nothing else held)"),
    (NESTED, OFF, 3.0, "checker on ≤ 3× the plain acquisition (one lock held: an edge each)"),
    (OFF, WORD, 1.10, "observers off: within 10% of the lock word without hooks"),
    (SHARED_OFF, RW_WORD, 1.10, "observers off, shared mode: within 10% of the rw word"),
]

R = None  # perf/report.py, set by register()


def key_rows(p, add):
    add("uncontended", "cycles/op", "cycles_per_op", "lower")


def targets(p, hw):
    rows = []
    for subject, ref, limit, what in LIMITS:
        a = p.value("uncontended", subject, "cycles_per_op")
        b = p.value("uncontended", ref, "cycles_per_op")
        r = R.ratio(a, b)
        measured = ("missing" if r is None else
                    f"{R.fmt_num(a)} against {R.fmt_num(b)} cycles: {R.fmt_ratio(r)}")
        rows.append((what, measured, R.target_status(None if r is None else r <= limit)))
    return rows


def uncontended_table(p):
    order = [WORD, OFF, ORDER, NESTED, PROFILE, BOTH, RW_WORD, SHARED_OFF]
    word = p.value("uncontended", WORD, "cycles_per_op")
    off = p.value("uncontended", OFF, "cycles_per_op")
    rows = []
    for c in order:
        r = p.find("uncontended", c)
        if r is None:
            continue
        v = r.get("cycles_per_op")
        rows.append([R.lock_name(c), R.missing_or(r, R.fmt_num(v)),
                     R.missing_or(r, R.fmt_num(r.get("cycles_per_op_p99"))),
                     R.fmt_ratio(R.ratio(v, word)) if c not in (RW_WORD, SHARED_OFF) else "",
                     R.fmt_ratio(R.ratio(v, off)) if c not in (RW_WORD, SHARED_OFF) else
                     R.fmt_ratio(R.ratio(v, p.value("uncontended", RW_WORD, "cycles_per_op")))])
    return ("### What an uncontended acquisition costs with the observers off and on\n\n"
            "One thread, lock+unlock in batches of 256; cycle_clock cycles per pair, median "
            "batch (timer cost removed); lower is better. The lock word without hooks is "
            "hwsync::mutex as release builds had it before the observers; the shared rows "
            "compare shared_mutex<>::lock_shared with its word's (last column).\n\n" +
            R.md_table(["configuration", "cycles/op", "p99 batch", "vs lock word",
                        "vs observers off"], rows))


def contended_table(p):
    off = p.find("contended", OFF, threads=4)
    on = p.find("contended", PROFILE, threads=4)
    rows = []
    for r, c in ((off, OFF), (on, PROFILE)):
        if r is None:
            continue
        rows.append([R.lock_name(c), R.missing_or(r, R.fmt_num(r.get("cycles_per_op"))),
                     R.missing_or(r, R.fmt_num(r.get("items_per_second")) + "/s")])
    ratio = R.ratio(None if on is None else on.get("items_per_second"),
                    None if off is None else off.get("items_per_second"))
    return ("### A contended workload, profiler off and on\n\n"
            "4 threads on 3 locks (a hot one 3/4 of the acquisitions, a warm one 1/8, each "
            "thread's own 1/8), a one-increment critical section: the worst case for the "
            "profiler, whose hooks run inside the critical section of a lock that is always "
            "wanted. Wall cycles per acquisition of the team (lower is better) and "
            f"throughput; profiled / unprofiled throughput: {R.fmt_ratio(ratio)}.\n\n" +
            R.md_table(["configuration", "cycles/acquisition", "acquisitions"], rows))


def profile_table(p):
    sources = {r.source for r in p.results}
    profile = None
    for src in sorted(sources):
        try:
            with open(os.path.join(p.out_dir, src)) as f:
                ctx = json.load(f).get("context", {})
        except (OSError, ValueError):
            continue
        if "lockprof_profile" in ctx:
            try:
                profile = json.loads(ctx["lockprof_profile"])
            except ValueError as e:
                return f"### The contended workload's profile\n\nUnreadable profile: {e}"
            break
    if profile is None:
        return "### The contended workload's profile\n\nNo lockprof_profile in the context."
    tps = profile.get("ticks_per_second") or 1.0

    def us(t):
        return R.fmt_num(t * 1e6 / tps)

    rows = []
    for i, e in enumerate(profile.get("locks", []), 1):
        w, h = e["wait"], e["hold"]
        rows.append([str(i), e["name"] or e["lock"], str(e["sampled_acquisitions"]),
                     str(e["contended"]), us(w["total"]), us(w["p50"]), us(w["p99"]),
                     us(w["p999"]), us(w["max"]), us(h["p50"]), us(h["p99"]), us(h["max"])])
    return ("### The contended workload's profile (hwsync::lock_profile)\n\n"
            f"One acquisition in {profile.get('sample_period')} sampled; ranked by total wait; "
            "times in µs (percentiles are log-linear bucket bounds, within 12.5% and never "
            "below); contended: sampled acquisitions that waited ≥ 1 µs. This is the text "
            "report's content, from lock_profile_snapshot::json().\n\n" +
            R.md_table(["rank", "lock", "sampled", "contended", "wait total", "wait p50",
                        "wait p99", "wait p99.9", "wait max", "hold p50", "hold p99",
                        "hold max"], rows))


def register(report):
    global R
    R = report
    report.LOCK_NAMES.update({
        WORD: "lock word, no hooks (detail::mutex_word)",
        OFF: "hwsync::mutex, observers off",
        ORDER: "hwsync::mutex, lock-order checker on",
        NESTED: "hwsync::mutex, checker on, one lock held",
        PROFILE: "hwsync::mutex, profiler on (1 in 16)",
        BOTH: "hwsync::mutex, checker (one held) and profiler",
        RW_WORD: "rw word lock_shared, no hooks",
        SHARED_OFF: "shared_mutex<>::lock_shared, observers off",
    })
    report.BASELINES["lockprof"] = OFF
    report.SUBJECTS["lockprof"] = [ORDER]
    report.KEY_ROWS["lockprof"] = key_rows
    report.TARGETS["lockprof"] = targets
    report.SECTIONS["lockprof"] = {
        "uncontended": uncontended_table,
        "contended": lambda p: contended_table(p) + "\n\n" + profile_table(p)}
    report.PLOTS["lockprof"] = lambda p, out_dir: []
