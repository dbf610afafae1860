"""perf/report_htm.py: the htm section of the report.

htm::elided<hwsync::mutex> beside the plain hwsync::mutex it wraps (the
baseline) and tbb::speculative_spin_mutex, from bench/htm_bench.cpp; and the
detected HTM capabilities in the machine table. perf/report.py loads this
module and calls register(report) with itself; every number comes from the
JSON.
"""

import os

ELIDED = "hwsync_elided_mutex"
PLAIN = "hwsync_mutex"
TBB = "tbb_speculative_spin_mutex"
SCOPED = "hwsync_elided_mutex_scoped"  # contended_paired only
LIMIT = 1.05  # the target on machines without RTM: elided <= 1.05x plain

R = None  # perf/report.py, set by register()


def machine_rows(contexts):
    ctx = R.context_with(contexts, "htm_capabilities")
    if not ctx:
        return []
    return [("HTM (hwsync::htm::capabilities)", ctx.get("htm_capabilities", "not recorded")),
            ("HTM backend in the htm benchmark", ctx.get("htm_backend", "not recorded")),
            ("tbb::speculative_spin_mutex is", ctx.get("htm_tbb_speculative_spin_mutex",
                                                       "not recorded"))]


def key_rows(p, add):
    add("uncontended", "cycles/op", "cycles_per_op", "lower")
    for t in p.param_values("contended", "threads"):
        add("contended", "cycles/op (team)", "cycles_per_op", "lower", threads=t)
        add("contended", "operations/s", "items_per_second", "higher", threads=t)
    for t in p.param_values("read_mostly_table", "threads"):
        add("read_mostly_table", "operations/s", "items_per_second", "higher", threads=t)


def noise(p, scenario, key, **params):
    cvs = [r.cv[key] for r in (p.find(scenario, l, **params) for l in (ELIDED, PLAIN))
           if r is not None and r.cv.get(key) is not None]
    worst = max(cvs) if cvs else None
    return f" (noisy: cv up to {100 * worst:.0f}%)" if worst is not None and worst > 0.2 else ""


def targets(p, hw):
    ctx = R.primitive_context(p)
    rtm = ctx.get("htm_rtm_usable") == "true"
    backend = ctx.get("htm_backend", "not recorded")
    out = []
    if rtm:
        out.append((f"elided ≤ {LIMIT}× plain applies where RTM is not usable; this machine has "
                    "usable RTM", f"backend {backend}", "—"))
    else:
        r = R.ratio(p.value("uncontended", hw, "cycles_per_op"),
                    p.value("uncontended", PLAIN, "cycles_per_op"))
        out.append((f"No RTM: uncontended elided ≤ {LIMIT}× plain hwsync::mutex (cycles/op; "
                    f"backend {backend})",
                    ("missing" if r is None else R.fmt_ratio(r)) +
                    noise(p, "uncontended", "cycles_per_op"),
                    R.target_status(None if r is None else r <= LIMIT)))
        for t in p.param_values("contended", "threads"):
            separate = R.ratio(p.value("contended", hw, "cycles_per_op", threads=t),
                               p.value("contended", PLAIN, "cycles_per_op", threads=t))
            paired = p.find("contended_paired", hw, threads=t)
            r = None if paired is None else paired.get("paired_ratio")
            if r is None:  # an older JSON: the separately run scenarios
                r = separate
                measured = ("missing" if r is None else R.fmt_ratio(r)) + \
                    noise(p, "contended", "cycles_per_op", threads=t)
            else:
                measured = (f"{R.fmt_ratio(r)}, median of {paired.get('pairs') or 0:.0f} "
                            f"back-to-back pairs ({R.fmt_ratio(paired.get('paired_ratio_min'))}"
                            f"–{R.fmt_ratio(paired.get('paired_ratio_max'))}); the separately "
                            "run scenarios: " +
                            ("missing" if separate is None else R.fmt_ratio(separate)))
            scoped = p.find("contended_paired", SCOPED, threads=t)
            rs = None if scoped is None else scoped.get("paired_ratio")
            if rs is None:
                out.append((f"No RTM: {t} threads contended, elided ≤ {LIMIT}× plain (wall "
                            "cycles per acquisition)", measured,
                            R.target_status(None if r is None else r <= LIMIT)))
            else:
                out.append((f"No RTM: {t} threads contended, elided held through "
                            f"elided::scoped_lock ≤ {LIMIT}× plain (wall cycles per "
                            "acquisition)",
                            f"{R.fmt_ratio(rs)}, median of {scoped.get('pairs') or 0:.0f} "
                            f"back-to-back pairs ({R.fmt_ratio(scoped.get('paired_ratio_min'))}"
                            f"–{R.fmt_ratio(scoped.get('paired_ratio_max'))})",
                            R.target_status(rs <= LIMIT)))
                out.append((f"{t} threads contended, elided through lock()/unlock() "
                            "(std::lock_guard; a branch on a load before the release: "
                            "reported)", measured, "—"))
    for t in p.param_values("read_mostly_table", "threads"):
        r = R.ratio(p.value("read_mostly_table", hw, "items_per_second", threads=t),
                    p.value("read_mostly_table", PLAIN, "items_per_second", threads=t))
        out.append((f"Read-mostly table, {t} threads: elided/plain throughput (reported, no "
                    "target; a speed-up needs RTM)" if not rtm else
                    f"Read-mostly table, {t} threads: the speed-up RTM gives (elided/plain "
                    "throughput; reported)",
                    "missing" if r is None else R.fmt_ratio(r), "—"))
    return out


def table(p, scenario, key, unit, better, title, text, **params):
    base = p.value(scenario, PLAIN, key, **params)
    rows = []
    for lock in (l for l in p.locks if l != SCOPED):
        r = p.find(scenario, lock, **params)
        rows.append([R.lock_name(lock),
                     R.missing_or(r, R.cell(None if r is None else r.get(key), base, unit))])
    return (f"### {title}\n\n{text} {better} is better; in parentheses the ratio to "
            f"{R.lock_name(PLAIN)}.\n\n" + R.md_table(["lock", key.replace("_", " ")], rows))


def uncontended(p):
    return table(p, "uncontended", "cycles_per_op", "", "Lower",
                 "Uncontended lock + unlock (one thread)",
                 "cycle_clock cycles per lock+unlock pair, median batch of 256 (timer cost "
                 "removed). Without usable RTM elided<> runs its backend-off path: the plain "
                 "lock plus, in lock(), one load of the backend and a branch and, in "
                 "unlock(), two loads from the lock's own line and a branch.")


def contended(p):
    out = []
    for t in p.param_values("contended", "threads"):
        out.append(table(p, "contended", "cycles_per_op", "", "Lower",
                         f"Contended, {t} threads, short critical section",
                         "Wall cycles per acquisition of the whole team (4 counters on 4 lines "
                         "incremented under the lock, nothing outside it).", threads=t))
    return "\n\n".join(out)


def read_mostly(p):
    out = []
    for t in p.param_values("read_mostly_table", "threads"):
        out.append(table(p, "read_mostly_table", "items_per_second", "/s", "Higher",
                         f"Read-mostly hash table, {t} threads",
                         "Operations per second on a 1024-slot table behind one lock, 95% "
                         "lookups and 5% updates. With RTM, lookups of different slots would "
                         "commit in parallel; without it this measures the lock alone.",
                         threads=t))
    return "\n\n".join(out)


def plots(p, out_dir):
    """Ratios to plain hwsync::mutex, one bar group per scenario."""
    plt = R.pyplot()
    if plt is None:
        return []
    groups = [("uncontended", "cycles_per_op", {}, "uncontended\n(cycles/op)")]
    groups += [("contended", "cycles_per_op", {"threads": t}, f"contended, {t} thr\n(cycles/op)")
               for t in p.param_values("contended", "threads")]
    groups += [("read_mostly_table", "items_per_second", {"threads": t},
                f"read-mostly table, {t} thr\n(ops/s)")
               for t in p.param_values("read_mostly_table", "threads")]
    locks = [l for l in (ELIDED, PLAIN, TBB) if l in p.locks]
    if not locks:
        return []
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    width = 0.8 / len(locks)
    for i, lock in enumerate(locks):
        xs, ys = [], []
        for g, (scenario, key, params, _) in enumerate(groups):
            v = R.ratio(p.value(scenario, lock, key, **params),
                        p.value(scenario, PLAIN, key, **params))
            if v is not None:
                xs.append(g + (i - (len(locks) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width, label=R.lock_name(lock))
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.axhline(LIMIT, color="red", linestyle=":", linewidth=1, label=f"{LIMIT}× (no-RTM target)")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g[3] for g in groups], fontsize=8)
    ax.set_ylabel(f"÷ {R.lock_name(PLAIN)}")
    ax.set_title("htm: elided<hwsync::mutex> and tbb::speculative_spin_mutex relative to "
                 "hwsync::mutex", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out_dir, "htm_ratios.png")
    fig.savefig(path)
    plt.close(fig)
    return [path]


def register(report):
    global R
    R = report
    report.LOCK_NAMES.update({
        ELIDED: "htm::elided<hwsync::mutex>",
        TBB: "tbb::speculative_spin_mutex",
    })
    report.BASELINES["htm"] = PLAIN
    report.SUBJECTS["htm"] = [ELIDED]
    report.KEY_ROWS["htm"] = key_rows
    report.TARGETS["htm"] = targets
    report.SECTIONS["htm"] = {"uncontended": uncontended, "contended": contended,
                              "read_mostly_table": read_mostly}
    report.PLOTS["htm"] = plots
    report.MACHINE_ROWS.append(machine_rows)
