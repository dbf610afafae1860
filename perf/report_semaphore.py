"""perf/report_semaphore.py: the semaphore section of the report.

hwsync::counting_semaphore and hwsync::fair_counting_semaphore beside
std::counting_semaphore (the baseline) and glibc's POSIX sem_t, from
bench/semaphore_bench.cpp. perf/report.py loads this module and calls
register(report) with itself; every number comes from the JSON.
"""

import os

HW = "hwsync_counting_semaphore"
FAIR = "hwsync_fair_counting_semaphore"
STD = "std_counting_semaphore"
POSIX = "posix_sem_t"

R = None  # perf/report.py, set by register()


def key_rows(p, add):
    for n in p.param_values("uncontended", "permits"):
        add("uncontended", "cycles/(acquire+release)", "cycles_per_op", "lower", permits=n)
    add("pingpong", "p50 ns", "p50_ns", "lower")
    add("pingpong", "p99 ns", "p99_ns", "lower")
    add("pingpong", "hand-overs/s", "items_per_second", "higher")
    for t in p.param_values("pool", "threads"):
        add("pool", "acquisitions/s", "items_per_second", "higher", threads=t)
        add("pool", "slowest/fastest", "fairness", "higher", threads=t)


def targets(p, hw):
    """The issue's target (uncontended <= 1.0x std) and, for the fair one, its price."""
    out = []
    for n in p.param_values("uncontended", "permits"):
        r = R.ratio(p.value("uncontended", hw, "cycles_per_op", permits=n),
                    p.value("uncontended", p.baseline, "cycles_per_op", permits=n))
        what = ("each release raises the count from 0" if n == 1 else
                f"{n} permits, the count never reaches 0")
        out.append((f"Uncontended acquire+release ≤ 1.0× {R.lock_name(p.baseline)} "
                    f"(cycles; permits:{n}: {what})",
                    "missing" if r is None else R.fmt_ratio(r),
                    R.target_status(None if r is None else r <= 1.0)))
    if hw == FAIR:
        for t in p.param_values("pool", "threads"):
            tf = p.value("pool", FAIR, "items_per_second", threads=t)
            tu = p.value("pool", HW, "items_per_second", threads=t)
            ff = p.value("pool", FAIR, "fairness", threads=t)
            fu = p.value("pool", HW, "fairness", threads=t)
            r = R.ratio(tf, tu)
            shown = "missing" if r is None else (
                f"throughput {R.fmt_ratio(r)} of the unfair one's; slowest/fastest thread "
                f"{R.fmt_num(ff)} (unfair: {R.fmt_num(fu)})")
            out.append((f"Cost of fairness, pool of 4 permits, {t} threads (reported, no target)",
                        shown, "—"))
    return out


def uncontended(p):
    counts = p.param_values("uncontended", "permits")
    rows = []
    for lock in p.locks:
        row = [R.lock_name(lock)]
        for n in counts:
            r = p.find("uncontended", lock, permits=n)
            base = p.value("uncontended", p.baseline, "cycles_per_op", permits=n)
            row.append(R.missing_or(r, R.cell(None if r is None else r.get("cycles_per_op"), base)))
        rows.append(row)
    return ("### Uncontended (one thread)\n\n"
            "cycle_clock cycles per acquire+release pair, median batch of 256 (timer cost "
            "removed); lower is better; in parentheses the ratio to "
            f"{R.lock_name(p.baseline)}. permits:1 is a binary semaphore used as a lock, so "
            "every release raises the count from 0 (libstdc++ then makes a futex wake system "
            "call whether or not anyone waits); with permits:8 the count never reaches 0.\n\n" +
            R.md_table(["semaphore"] + [f"permits:{n}" for n in counts], rows))


def pingpong(p):
    rows = []
    base = p.value("pingpong", p.baseline, "items_per_second")
    for lock in p.locks:
        r = p.find("pingpong", lock)
        g = (lambda k: None if r is None else r.get(k))
        rows.append([R.lock_name(lock),
                     R.missing_or(r, R.fmt_num(g("p50_ns"))),
                     R.missing_or(r, R.fmt_num(g("p99_ns"))),
                     R.missing_or(r, R.fmt_num(g("p999_ns"))),
                     R.missing_or(r, R.cell(g("items_per_second"), base, "/s")),
                     R.missing_or(r, R.fmt_num(g("vcsw_per_kop"))),
                     R.missing_or(r, R.fmt_num(g("cpu_ns_per_op")))])
    picture = ""
    if os.path.exists(os.path.join(p.out_dir, f"{p.name}_pingpong.png")):
        picture = f"\n\n![ping-pong latency]({p.name}_pingpong.png)"
    return ("### Ping-pong (2 threads, two semaphores)\n\n"
            "One thread releases `a` and acquires `b`, the other acquires `a` and releases "
            "`b`. Latency is cycle_clock from just before release() to just after the other "
            "thread's acquire() returns; hand-overs per second (ratio to "
            f"{R.lock_name(p.baseline)}); voluntary context switches (parks) per 1000 "
            "hand-overs; process CPU per hand-over.\n\n" +
            R.md_table(["semaphore", "p50 ns", "p99 ns", "p99.9 ns", "hand-overs/s",
                        "parks/1k", "CPU ns/hand-over"], rows) + picture)


def pool(p):
    threads = p.param_values("pool", "threads")
    out = ["### A pool of 4 permits",
           "",
           "`threads` threads loop acquire, about 1 µs of work, release, about 1 µs of work. "
           "Above 2 threads they outnumber this machine's cores, and the semaphore decides who "
           "runs. Acquisitions per second of the whole team (ratio to "
           f"{R.lock_name(p.baseline)}); higher is better.", ""]

    def table(key, fmt):
        rows = []
        for lock in p.locks:
            row = [R.lock_name(lock)]
            for t in threads:
                r = p.find("pool", lock, threads=t)
                row.append(R.missing_or(r, fmt(None if r is None else r.get(key), t)))
            rows.append(row)
        return R.md_table(["semaphore"] + [f"{t} thr" for t in threads], rows)

    out.append(table("items_per_second", lambda v, t: R.cell(
        v, p.value("pool", p.baseline, "items_per_second", threads=t), "/s")))
    out += ["", "Slowest thread's acquisitions over the fastest's (1.0: equal shares; near 0: "
                "a thread starved for the run); higher is better.", "",
            table("fairness", lambda v, t: R.fmt_num(v)),
            "", "Parks (voluntary context switches) per 1000 acquisitions, and process CPU "
                "ns per acquisition:", "",
            table("vcsw_per_kacq", lambda v, t: R.fmt_num(v)), "",
            table("cpu_ns_per_acq", lambda v, t: R.fmt_num(v))]
    rows = []
    for t in threads:
        r = R.ratio(p.value("pool", FAIR, "items_per_second", threads=t),
                    p.value("pool", HW, "items_per_second", threads=t))
        rows.append([str(t), R.fmt_ratio(r),
                     R.fmt_num(p.value("pool", FAIR, "fairness", threads=t)),
                     R.fmt_num(p.value("pool", HW, "fairness", threads=t))])
    out += ["", "The cost of fairness: hwsync::fair_counting_semaphore's throughput over "
                "hwsync::counting_semaphore's, and both fairness ratios.", "",
            R.md_table(["threads", "fair / unfair throughput", "fair: slowest/fastest",
                        "unfair: slowest/fastest"], rows)]
    if os.path.exists(os.path.join(p.out_dir, f"{p.name}_pool.png")):
        out += ["", f"![pool throughput and fairness]({p.name}_pool.png)"]
    return "\n".join(out)


def plots(p, out_dir):
    plt = R.pyplot()
    if plt is None:
        return []
    written = []

    def style(lock):
        hw = lock.startswith("hwsync_")
        return dict(marker="o", linewidth=2.6 if hw else 1.3, zorder=3 if hw else 2,
                    linestyle="-" if hw or lock == p.baseline else "--")

    threads = p.param_values("pool", "threads")
    if threads:
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), dpi=100)
        for ax, (key, label) in zip(axes, (("items_per_second", "acquisitions/s (team)"),
                                           ("fairness", "slowest / fastest thread"))):
            for lock in p.locks:
                xs, ys = [], []
                for t in threads:
                    v = p.value("pool", lock, key, threads=t)
                    if v is not None and v > 0:
                        xs.append(t)
                        ys.append(v)
                if xs:
                    ax.plot(xs, ys, label=R.lock_name(lock), **style(lock))
            ax.set_xscale("log", base=2)
            ax.set_xticks(threads)
            ax.set_xticklabels([str(t) for t in threads])
            ax.set_yscale("log")
            ax.set_xlabel("threads sharing 4 permits")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_title("pool throughput")
        axes[1].set_title("pool fairness")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=4,
                   bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout(rect=(0, 0, 1, 0.88))
        path = os.path.join(out_dir, f"{p.name}_pool.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    have = [l for l in p.locks if p.value("pingpong", l, "p50_ns") is not None]
    if have:
        fig, ax = plt.subplots(figsize=(9, 4.2), dpi=100)
        width = 0.38
        xs = range(len(have))
        everything = []
        for k, (key, label) in enumerate((("p50_ns", "p50"), ("p99_ns", "p99"))):
            vals = [(p.value("pingpong", l, key) or 0) / 1e3 for l in have]
            everything += [v for v in vals if v > 0]
            ax.bar([x + (k - 0.5) * width for x in xs], vals, width, label=label)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([R.lock_name(l) for l in have], fontsize=8)
        # Linear unless the bars span orders of magnitude (libstdc++'s
        # semaphore can take milliseconds), where a linear axis hides the rest.
        if everything and max(everything) > 20 * min(everything):
            ax.set_yscale("log")
        ax.set_ylabel("release → acquire returns (µs)")
        ax.set_title("semaphore ping-pong latency")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{p.name}_pingpong.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def register(report):
    global R
    R = report
    report.LOCK_NAMES.update({
        HW: "hwsync::counting_semaphore",
        FAIR: "hwsync::fair_counting_semaphore",
        STD: "std::counting_semaphore",
        POSIX: "POSIX sem_t (glibc)",
    })
    report.BASELINES["semaphore"] = STD
    report.SUBJECTS["semaphore"] = [HW, FAIR]
    report.KEY_ROWS["semaphore"] = key_rows
    report.TARGETS["semaphore"] = targets
    report.SECTIONS["semaphore"] = {"uncontended": uncontended, "pingpong": pingpong,
                                    "pool": pool}
    report.PLOTS["semaphore"] = plots
