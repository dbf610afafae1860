"""hwsync::biased_shared_mutex in the shared_mutex and seqlock sections.

Loaded by perf/report.py, which calls register(report) with itself. The
biased lock runs in bench/shared_mutex_bench.cpp (beside every reader-writer
lock) and in bench/seqlock_bench.cpp (beside the seqlock it competes with for
read-mostly data); this module names it and adds its target.
"""

BIASED = "hwsync_biased_shared_mutex"


def biased_targets(report, p, hw):
    """The issue's target: at 99% reads on 2 threads, >= 2x std::shared_mutex's throughput."""
    mine = p.value("mixed", hw, "items_per_second", read_pct=99, threads=2)
    std = p.value("mixed", p.baseline, "items_per_second", read_pct=99, threads=2)
    r = report.ratio(mine, std)
    if r is None:
        measured, status = "missing", "unknown (not measured)"
    else:
        measured = (f"{report.fmt_num(mine)} against {report.fmt_num(std)} operations/s: "
                    f"{report.fmt_ratio(r)}")
        status = "**met**" if r >= 2.0 else "**NOT met**"
    return [("Throughput at 99% reads, 2 threads (mixed) ≥ 2× std::shared_mutex's", measured,
             status)]


def register(report):
    report.LOCK_NAMES[BIASED] = "hwsync::biased_shared_mutex"
    policies = report.TARGETS["shared_mutex"]

    def targets(p, hw):
        return biased_targets(report, p, hw) if hw == BIASED else policies(p, hw)

    report.TARGETS["shared_mutex"] = targets
