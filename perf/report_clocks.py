"""perf/report_clocks.py: the clocks section of the report.

The cost of reading each clock (bench/clocks_bench.cpp): hwsync's
cycle_clock, lamport_clock, hybrid_logical_clock and interval_clock beside
clock_gettime(CLOCK_REALTIME / CLOCK_MONOTONIC) and std::chrono's
steady_clock and system_clock, and the HLC and Lamport clocks shared by 1 to
8 threads, and the vector_clock operations. perf/report.py loads this module and calls register(report) with
itself; every number comes from the JSON.
"""

import os

CYCLE = "hwsync_cycle_clock"
HLC = "hwsync_hybrid_logical_clock"
LAMPORT = "hwsync_lamport_clock"
INTERVAL = "hwsync_interval_clock"
SOURCE = "hwsync_physical_source"
REALTIME = "clock_gettime_realtime"
MONOTONIC = "clock_gettime_monotonic"
STEADY = "std_steady_clock"
SYSTEM = "std_system_clock"
ADJTIME = "ntp_adjtime"

# The targets: (subject, peer, limit) on cycles per call.
LIMITS = {CYCLE: (MONOTONIC, 0.5), HLC: (REALTIME, 1.5)}

R = None  # perf/report.py, set by register()


def key_rows(p, add):
    add("now", "cycles/call", "cycles_per_op", "lower")
    add("now", "ns/call", "ns_per_op", "lower")


def targets(p, hw):
    if hw not in LIMITS:
        return []
    peer, limit = LIMITS[hw]
    r = R.ratio(p.value("now", hw, "cycles_per_op"), p.value("now", peer, "cycles_per_op"))
    cvs = [x.cv["cycles_per_op"] for x in (p.find("now", hw), p.find("now", peer))
           if x is not None and x.cv.get("cycles_per_op") is not None]
    noisy = f" (noisy: cv up to {100 * max(cvs):.0f}%)" if cvs and max(cvs) > 0.2 else ""
    what = "uncontended, one thread" if hw == HLC else "one thread"
    return [(f"{R.lock_name(hw)}::now ≤ {limit}× {R.lock_name(peer)} (cycles per call, {what})",
             ("missing" if r is None else R.fmt_ratio(r)) + noisy,
             R.target_status(None if r is None else r <= limit))]


def now_table(p):
    order = [CYCLE, MONOTONIC, REALTIME, STEADY, SYSTEM, SOURCE, LAMPORT, HLC, INTERVAL, ADJTIME]
    ids = [c for c in order if p.find("now", c) is not None]
    ids += [r.lock for r in p.results if r.scenario == "now" and r.lock not in ids]
    mono = p.value("now", MONOTONIC, "cycles_per_op")
    real = p.value("now", REALTIME, "cycles_per_op")
    rows = []
    for c in ids:
        r = p.find("now", c)
        g = (lambda k: None if r is None else r.get(k))
        rows.append([R.lock_name(c), R.missing_or(r, R.fmt_num(g("cycles_per_op"))),
                     R.missing_or(r, R.fmt_num(g("ns_per_op"))),
                     R.missing_or(r, R.fmt_ratio(R.ratio(g("cycles_per_op"), mono))),
                     R.missing_or(r, R.fmt_ratio(R.ratio(g("cycles_per_op"), real))),
                     R.missing_or(r, R.fmt_num(g("cycles_per_op_p99")))])
    picture = ""
    if os.path.exists(os.path.join(p.out_dir, f"{p.name}_now.png")):
        picture = f"\n\n![cost of now()]({p.name}_now.png)"
    return ("### The cost of one reading (one thread)\n\n"
            "cycle_clock cycles per call, median batch of 256 calls (timer cost removed), "
            "and the same in ns; lower is better; ratios to clock_gettime(CLOCK_MONOTONIC) and "
            "to clock_gettime(CLOCK_REALTIME) from the same run. lamport_clock is tick(); "
            "hybrid_logical_clock and interval_clock read the system clock through "
            "hwsync's physical_source (its own row: clock_gettime behind a virtual call); "
            "ntp_adjtime is the system call interval_clock makes once per refresh "
            "(every 10 ms by default).\n\n" +
            R.md_table(["clock", "cycles/call", "ns/call", "vs MONOTONIC", "vs REALTIME",
                        "p99 batch cycles/call"], rows) + picture)


def threads_table(p):
    threads = p.param_values("now_threads", "threads")
    ids = []
    for r in p.results:
        if r.scenario == "now_threads" and r.lock not in ids:
            ids.append(r.lock)
    ids.sort(key=lambda c: (0 if c == HLC else 1 if c == LAMPORT else 2, c))

    def table(key, fmt):
        rows = []
        for c in ids:
            row = [R.lock_name(c)]
            for t in threads:
                r = p.find("now_threads", c, threads=t)
                row.append(R.missing_or(r, fmt(None if r is None else r.get(key))))
            rows.append(row)
        return R.md_table(["clock"] + [f"{t} thr" for t in threads], rows)

    return "\n".join([
        "### One clock shared by 1 to 8 threads",
        "",
        "Every thread reads the same clock object for a fixed wall time. The HLC and the "
        "Lamport clock are one atomic word that every call updates, so their calls contend "
        "for one cache line; clock_gettime(CLOCK_REALTIME) shares nothing and shows what "
        "perfect scaling looks like on this machine's cores. Calls per second of the team "
        "(higher is better):", "",
        table("items_per_second", lambda v: R.fmt_num(v) + "/s" if v is not None else "n/a"),
        "", "Process CPU ns per call (lower is better; beyond the core count, threads wait "
            "for a CPU, not for the clock):", "",
        table("cpu_ns_per_op", R.fmt_num)])


def vector_table(p):
    nodes = p.param_values("vector_clock", "nodes")
    ops = [o for o in ("increment", "merge", "compare", "encode", "decode")
           if any(r.scenario == "vector_clock" and r.lock == o for r in p.results)]
    rows = []
    for o in ops:
        row = [f"`{o}`"]
        for n in nodes:
            r = p.find("vector_clock", o, nodes=n)
            row.append(R.missing_or(r, f"{R.fmt_num(r.get('ns_per_op'))} ns / "
                                       f"{R.fmt_num(r.get('cycles_per_op'))} cycles"
                                    if r is not None else ""))
        rows.append(row)
    sizes = [f"{n} nodes: {R.fmt_num(p.value('vector_clock', 'encode', 'encoded_bytes', nodes=n))} "
             "bytes" for n in nodes]
    return ("### vector_clock operations (one thread)\n\n"
            "Median batch of 256 operations on clocks of N slots (merge: of a concurrent "
            "clock with the same nodes, in place; compare: with a later clock, so every slot "
            "is looked at; encode/decode: the canonical bytes, "
            + ", ".join(sizes) + "). Lower is better.\n\n" +
            R.md_table(["operation"] + [f"{n} nodes" for n in nodes], rows))


def machine_rows(contexts):
    for ctx in contexts.values():
        if "clocks_ntp_synchronized" in ctx:
            synced = ctx["clocks_ntp_synchronized"] == "true"
            return [("Kernel NTP state (adjtimex)",
                     f"{'synchronized' if synced else 'unsynchronized (STA_UNSYNC / TIME_ERROR)'}, "
                     f"maxerror {ctx.get('clocks_ntp_maxerror_us', '?')} µs")]
    return []


def plots(p, out_dir):
    plt = R.pyplot()
    if plt is None:
        return []
    have = [r.lock for r in p.results if r.scenario == "now" and r.get("ns_per_op") is not None]
    if not have:
        return []
    have.sort(key=lambda c: p.value("now", c, "ns_per_op"))
    fig, ax = plt.subplots(figsize=(9, 4.6), dpi=100)
    vals = [p.value("now", c, "ns_per_op") for c in have]
    colors = ["tab:blue" if c.startswith("hwsync_") else "tab:gray" for c in have]
    ax.barh(range(len(have)), vals, color=colors)
    ax.set_yticks(range(len(have)))
    ax.set_yticklabels([R.lock_name(c) for c in have], fontsize=8)
    if max(vals) > 20 * min(v for v in vals if v > 0):
        ax.set_xscale("log")
    ax.set_xlabel("ns per call (median batch)")
    ax.set_title("clocks: the cost of one reading (hwsync in blue)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out_dir, f"{p.name}_now.png")
    fig.savefig(path)
    plt.close(fig)
    return [path]


def register(report):
    global R
    R = report
    report.LOCK_NAMES.update({
        CYCLE: "hwsync::cycle_clock",
        HLC: "hwsync::hybrid_logical_clock",
        LAMPORT: "hwsync::lamport_clock",
        INTERVAL: "hwsync::interval_clock",
        SOURCE: "hwsync::system_realtime().now_ns()",
        REALTIME: "clock_gettime(CLOCK_REALTIME)",
        MONOTONIC: "clock_gettime(CLOCK_MONOTONIC)",
        STEADY: "std::chrono::steady_clock",
        SYSTEM: "std::chrono::system_clock",
        ADJTIME: "ntp_adjtime (system call)",
    })
    report.BASELINES["clocks"] = MONOTONIC
    report.SUBJECTS["clocks"] = [CYCLE, HLC]
    report.KEY_ROWS["clocks"] = key_rows
    report.TARGETS["clocks"] = targets
    report.SECTIONS["clocks"] = {"now": now_table, "now_threads": threads_table,
                                 "vector_clock": vector_table}
    report.PLOTS["clocks"] = plots
    report.MACHINE_ROWS.append(machine_rows)
