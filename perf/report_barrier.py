"""perf/report_barrier.py: the latch and barrier sections of perf/report.py.

Reads the "barrier/episode/..." and "latch/episode/..." results of
bench/barrier_bench.cpp: per implementation and party count, wall cycles per
episode (cycles_per_op), thread 0's per-episode latency percentiles
(p50/p90/p99/p999 in cycles and ns), voluntary context switches and CPU per
episode. Registers tables, the issue's targets (as ratios from the same run,
with met / not met) and plots with report.py through register(report).
"""

import os

BARRIER_NAMES = {
    "hwsync_barrier": "hwsync::barrier (its choice)",
    "hwsync_barrier_central": "hwsync::barrier (central)",
    "hwsync_barrier_tree": "hwsync::barrier (combining tree)",
    "std_barrier": "std::barrier",
    "pthread_barrier": "pthread_barrier_t",
    "hwsync_latch": "hwsync::latch",
    "std_latch": "std::latch",
}


def register(report):
    R = report

    def parties(p):
        return p.param_values("episode", "parties")

    def key_rows(p, add):
        for n in parties(p):
            add("episode", "cycles/episode", "cycles_per_op", "lower", parties=n)
            add("episode", "p99 cycles", "p99_cycles", "lower", parties=n)

    def status(ok):
        return "unknown (not measured)" if ok is None else ("**met**" if ok else "**NOT met**")

    def barrier_targets(p, hw):
        out = []

        def target(text, n, peer, limit):
            r = R.ratio(p.value("episode", hw, "cycles_per_op", parties=n),
                        p.value("episode", peer, "cycles_per_op", parties=n))
            out.append((text, "missing" if r is None else R.fmt_ratio(r),
                        status(None if r is None else r <= limit)))

        target("Episode at 2 parties ≤ 0.8× std::barrier (cycles/episode)", 2, "std_barrier", 0.8)
        for n in (16, 32):
            target(f"Episode at {n} parties ≤ 1.0× std::barrier (cycles/episode)", n,
                   "std_barrier", 1.0)
            target(f"Episode at {n} parties ≤ 0.5× pthread_barrier_t (cycles/episode)", n,
                   "pthread_barrier", 0.5)
        return out

    def episode_table(p, title, what):
        ns = parties(p)
        rows = []
        for impl in p.locks:
            row = [R.lock_name(impl)]
            for n in ns:
                r = p.find("episode", impl, parties=n)
                base = p.value("episode", p.baseline, "cycles_per_op", parties=n)
                row.append(R.missing_or(r, R.cell(r.get("cycles_per_op") if r else None, base)))
            rows.append(row)
        detail = []
        for impl in p.locks:
            row = [R.lock_name(impl)]
            for n in ns:
                r = p.find("episode", impl, parties=n)
                g = (lambda k: None if r is None else r.get(k))
                row.append(R.missing_or(r, f"{R.fmt_num(g('p50_ns'))} / {R.fmt_num(g('p99_ns'))}"
                                           f" / {R.fmt_num(g('p999_ns'))}"))
            detail.append(row)
        cost = []
        for impl in p.locks:
            row = [R.lock_name(impl)]
            for n in ns:
                r = p.find("episode", impl, parties=n)
                g = (lambda k: None if r is None else r.get(k))
                row.append(R.missing_or(r, f"{R.fmt_num(g('vcsw_per_op'))} / "
                                           f"{R.fmt_num(g('cpu_us_per_op'))}"))
            cost.append(row)
        header = ["implementation"] + [f"{n} parties" for n in ns]
        out = [f"### {title}", "",
               f"{what} An episode is one phase: cycle_clock cycles of wall time per episode "
               "(the whole run divided by the episodes), lower is better, and in parentheses the "
               f"ratio to {R.lock_name(p.baseline)} with the same parties. The machine's cores "
               "are outnumbered above 2 parties on a 2-core machine.", "",
               R.md_table(header, rows), "",
               "Same runs: thread 0's latency from one return to the next, p50 / p99 / p99.9 "
               "in ns.", "", R.md_table(header, detail), "",
               "Same runs: voluntary context switches (threads that parked) / CPU µs of the "
               "whole process, per episode.", "", R.md_table(header, cost)]
        if os.path.exists(os.path.join(p.out_dir, f"{p.name}_episode.png")):
            out += ["", f"![episode cost against parties]({p.name}_episode.png)"]
        return "\n".join(out)

    def barrier_section(p):
        return episode_table(p, "Barrier episodes, 2 to 32 parties",
                             "n threads call arrive_and_wait() back to back on one barrier "
                             "(pthread_barrier_wait for glibc).")

    def threshold_section(p):
        ns = p.param_values("threshold", "parties")
        rows = []
        for n in ns:
            c = p.find("threshold", "hwsync_barrier_central", parties=n)
            t = p.find("threshold", "hwsync_barrier_tree", parties=n)
            vc = None if c is None else c.get("cycles_per_op")
            vt = None if t is None else t.get("cycles_per_op")
            rows.append([str(n), R.missing_or(c, R.fmt_num(vc)), R.missing_or(t, R.fmt_num(vt)),
                         R.fmt_ratio(R.ratio(vt, vc))])
        return ("### Central or combining tree\n\n"
                "Both algorithms forced, the same episode loop, 8 to 128 parties: cycles per "
                "episode and the tree's cost over central's (below 1.00× the tree pays). "
                "barrier_core::tree_threshold is chosen from this table: the tree is picked "
                "when min(parties, online CPUs) reaches it.\n\n" +
                R.md_table(["parties", "central cycles/episode", "tree cycles/episode",
                            "tree ÷ central"], rows))

    def latch_section(p):
        return episode_table(p, "Latch episodes, 2 to 32 parties",
                             "n threads call arrive_and_wait() on a fresh latch each episode "
                             "(three latches in turn, thread 0 rebuilding the one two "
                             "episodes back).")

    def episode_plots(p, out_dir):
        ns = parties(p)
        if not ns:
            return []
        plt = R.pyplot()
        if plt is None:
            return []
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), dpi=100)
        panels = (("cycles_per_op", "cycles per episode", False),
                  ("p99_cycles", "p99 cycles (thread 0)", False),
                  ("cycles_per_op", f"÷ {R.lock_name(p.baseline)}", True))
        for ax, (key, label, rel) in zip(axes, panels):
            for impl in p.locks:
                xs, ys = [], []
                for n in ns:
                    v = p.value("episode", impl, key, parties=n)
                    if rel:
                        v = R.ratio(v, p.value("episode", p.baseline, key, parties=n))
                    if v is not None and v > 0:
                        xs.append(n)
                        ys.append(v)
                if xs:
                    hw = impl.startswith("hwsync_")
                    ax.plot(xs, ys, marker="o", label=R.lock_name(impl),
                            linewidth=2.6 if hw else 1.3, zorder=3 if hw else 2,
                            linestyle="-" if hw or impl == p.baseline else "--")
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns)
            ax.set_xticklabels([str(n) for n in ns])
            ax.set_yscale("log")
            ax.set_xlabel("parties (threads)")
            ax.set_ylabel(label)
            if rel:
                ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=5,
                   bbox_to_anchor=(0.5, 1.0))
        fig.suptitle(f"{p.name}: one episode (lower is better)", y=0.9)
        fig.tight_layout(rect=(0, 0, 1, 0.86))
        path = os.path.join(out_dir, f"{p.name}_episode.png")
        fig.savefig(path)
        plt.close(fig)
        return [path]

    R.LOCK_NAMES.update(BARRIER_NAMES)
    R.BASELINES["barrier"] = "std_barrier"
    R.BASELINES["latch"] = "std_latch"
    # The barrier's own choice is the subject; the forced algorithms are shown
    # beside it in the tables.
    R.SUBJECTS["barrier"] = ["hwsync_barrier"]
    R.KEY_ROWS["barrier"] = key_rows
    R.KEY_ROWS["latch"] = key_rows
    R.TARGETS["barrier"] = barrier_targets
    R.SECTIONS["barrier"] = {"episode": barrier_section, "threshold": threshold_section}
    R.SECTIONS["latch"] = {"episode": latch_section}
    R.PLOTS["barrier"] = episode_plots
    R.PLOTS["latch"] = episode_plots
