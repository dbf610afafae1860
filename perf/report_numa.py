"""perf/report_numa.py: the numa section of the report.

hwsync::numa_mutex beside hwsync::mutex (the baseline: the issue's targets
are ratios to it) and std::mutex, from bench/numa_bench.cpp, plus the NUMA
facts of the machine in the machine table. perf/report.py loads this module
and calls register(report) with itself; every number comes from the JSON.
"""

import os

NUMA = "hwsync_numa_mutex"
PLAIN = "hwsync_mutex"
STD = "std_mutex"
UNCONTENDED_LIMIT = 1.1   # numa_mutex uncontended cycles <= 1.1x hwsync::mutex
CROSS_LIMIT = 0.2         # at least 5x fewer cross-node hand-offs than hwsync::mutex

R = None  # perf/report.py, set by register()


def machine_rows(contexts):
    ctx = R.context_with(contexts, "numa_nodes")
    if not ctx:
        return []
    return [("NUMA nodes (hwloc)", f"{ctx['numa_nodes']} ({ctx.get('numa_topology', '?')})"),
            ("NUMA benchmarks' synthetic topology",
             f"\"{ctx.get('numa_synthetic_topology', '?')}\" (threads on virtual nodes; "
             "nothing is placed or pinned)")]


def key_rows(p, add):
    add("uncontended", "cycles/op", "cycles_per_op", "lower")
    for t in p.param_values("contended", "threads"):
        add("contended", "acquisitions/s", "items_per_second", "higher", threads=t)
    for k in p.param_values("cross_node", "per_node"):
        add("cross_node", "node changes per 10^6 acquisitions", "cross_per_million", "lower",
            nodes=4, per_node=k)
        add("cross_node", "slowest/fastest node", "node_fairness", "higher", nodes=4, per_node=k)
        add("cross_node", "acquisitions/s", "items_per_second", "higher", nodes=4, per_node=k)


def targets(p, hw):
    out = []
    r = R.ratio(p.value("uncontended", hw, "cycles_per_op"),
                p.value("uncontended", PLAIN, "cycles_per_op"))
    out.append((f"Uncontended lock+unlock ≤ {UNCONTENDED_LIMIT}× hwsync::mutex (cycles/op)",
                "missing" if r is None else R.fmt_ratio(r),
                R.target_status(None if r is None else r <= UNCONTENDED_LIMIT)))
    for k in p.param_values("cross_node", "per_node"):
        if k != 4:
            continue
        c_numa = p.value("cross_node", hw, "cross_per_million", nodes=4, per_node=k)
        c_plain = p.value("cross_node", PLAIN, "cross_per_million", nodes=4, per_node=k)
        r = R.ratio(c_numa, c_plain)
        f_numa = p.value("cross_node", hw, "node_fairness", nodes=4, per_node=k)
        f_plain = p.value("cross_node", PLAIN, "node_fairness", nodes=4, per_node=k)
        run = p.value("cross_node", hw, "longest_node_run", nodes=4, per_node=k)
        shown = "missing" if r is None else (
            f"{R.fmt_ratio(r)} ({R.fmt_num(c_numa)} vs {R.fmt_num(c_plain)} per 10^6); "
            f"slowest/fastest node {R.fmt_num(f_numa)} (hwsync::mutex {R.fmt_num(f_plain)}); "
            f"longest one-node run {R.fmt_num(run)}")
        out.append(("Cross-node hand-offs per 10^6 acquisitions, 4 virtual nodes × 4 threads: "
                    f"≤ {CROSS_LIMIT}× hwsync::mutex (at least 5× fewer)", shown,
                    R.target_status(None if r is None else r <= CROSS_LIMIT)))
    ctx = R.primitive_context(p)
    nodes = ctx.get("numa_nodes")
    if nodes is not None and str(nodes) == "1":
        out.append(("Throughput against hwsync::mutex on a real multi-node machine",
                    "not measured: this machine has one NUMA node", "—"))
    else:
        for t in p.param_values("contended", "threads"):
            r = R.ratio(p.value("contended", hw, "items_per_second", threads=t),
                        p.value("contended", PLAIN, "items_per_second", threads=t))
            out.append((f"Throughput, {t} threads, on this machine's {nodes} NUMA nodes "
                        "(reported, no target)", "missing" if r is None else R.fmt_ratio(r), "—"))
    return out


def uncontended(p):
    base = p.value("uncontended", PLAIN, "cycles_per_op")
    rows = []
    for lock in p.locks:
        r = p.find("uncontended", lock)
        rows.append([R.lock_name(lock),
                     R.missing_or(r, R.cell(None if r is None else r.get("cycles_per_op"), base)),
                     R.missing_or(r, R.fmt_num(None if r is None else r.get("cycles_per_op_p99")))])
    return ("### Uncontended (one thread)\n\n"
            "cycle_clock cycles per lock+unlock pair, median batch of 256 (timer cost removed); "
            "lower is better; in parentheses the ratio to hwsync::mutex.\n\n" +
            R.md_table(["lock", "cycles/op", "p99 batch cycles/op"], rows))


def contended(p):
    threads = p.param_values("contended", "threads")
    rows = []
    for lock in p.locks:
        row = [R.lock_name(lock)]
        for t in threads:
            r = p.find("contended", lock, threads=t)
            base = p.value("contended", PLAIN, "items_per_second", threads=t)
            row.append(R.missing_or(r, R.cell(None if r is None else r.get("items_per_second"),
                                              base, "/s") +
                                    f", fairness {R.fmt_num(None if r is None else r.get('fairness'))}"))
        rows.append(row)
    return ("### Contended, this machine's topology\n\n"
            "Threads loop lock, increment 4 counters on 4 cache lines, unlock, for a fixed wall "
            "time; acquisitions per second of the team (ratio to hwsync::mutex), and the slowest "
            "thread's acquisitions over the fastest's. On a one-node machine numa_mutex runs its "
            "cohort path with a single node: this is its overhead, not its benefit.\n\n" +
            R.md_table(["lock"] + [f"{t} threads" for t in threads], rows))


def cross_node(p):
    out = ["### Cross-node hand-offs on a synthetic 4-node topology", "",
           "Threads are assigned to the virtual nodes of the synthetic topology (threads "
           "per node in the column); nothing is pinned or placed, so this measures the lock's "
           "choice of the next holder, not memory latency. Node changes per 10^6 acquisitions "
           "are counted by the benchmark from the holders' nodes, the same way for every lock "
           "(lower is better: every change would move the lock's and the data's cache lines "
           "across the interconnect on a real machine); longest run is the most consecutive "
           "acquisitions by one node; node fairness is the least-served node's acquisitions "
           "over the most-served's.", ""]
    rows = []
    for k in p.param_values("cross_node", "per_node"):
        base = p.value("cross_node", PLAIN, "cross_per_million", nodes=4, per_node=k)
        for lock in p.locks:
            r = p.find("cross_node", lock, nodes=4, per_node=k)
            g = (lambda key: None if r is None else r.get(key))
            rows.append([R.lock_name(lock), str(k),
                         R.missing_or(r, R.cell(g("cross_per_million"), base)),
                         R.missing_or(r, R.fmt_num(g("longest_node_run"))),
                         R.missing_or(r, R.fmt_num(g("node_fairness"))),
                         R.missing_or(r, R.fmt_num(g("fairness"))),
                         R.missing_or(r, R.fmt_num(g("items_per_second")))])
    out.append(R.md_table(["lock", "threads/node", "node changes per 10^6 (ratio)",
                           "longest one-node run", "node fairness", "thread fairness",
                           "acquisitions/s"], rows))
    lock_rows = []
    for k in p.param_values("cross_node", "per_node"):
        r = p.find("cross_node", NUMA, nodes=4, per_node=k)
        if r is None or r.error is not None:
            continue
        lock_rows.append([str(k), R.fmt_num(r.get("lock_cross_per_million")),
                          R.fmt_num(r.get("lock_local_handoffs_per_million"))])
    if lock_rows:
        out += ["", "numa_mutex's own counters: G handed by a release to a head of another "
                    "node, and passed within a node (cohort hand-offs), per 10^6 acquisitions.",
                "", R.md_table(["threads/node", "cross-node grants per 10^6",
                                "cohort hand-offs per 10^6"], lock_rows)]
    return "\n".join(out)


def register(report):
    global R
    R = report
    report.LOCK_NAMES.update({NUMA: "hwsync::numa_mutex",
                              NUMA + "_count64": "hwsync::numa_mutex(64) (count bound)"})
    report.BASELINES["numa"] = PLAIN
    report.SUBJECTS["numa"] = [NUMA]
    report.KEY_ROWS["numa"] = key_rows
    report.TARGETS["numa"] = targets
    report.SECTIONS["numa"] = {"uncontended": uncontended, "contended": contended,
                               "cross_node": cross_node}
    report.MACHINE_ROWS.append(machine_rows)
