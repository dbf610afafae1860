#!/usr/bin/python3
"""perf/report.py: turn the benchmark JSON in a directory into report.md and plots.

Usage: /usr/bin/python3 perf/report.py OUT_DIR [--command "perf/run --quick"]

Reads every Google Benchmark JSON file in OUT_DIR (written by the bench
binaries with --benchmark_out), and writes OUT_DIR/report.md and
OUT_DIR/<primitive>_*.png. Benchmark names follow bench/harness.hpp:
"<primitive>/<scenario>/<lock id>/<key>:<value>/...".

Every number in the report comes from the JSON. With repetitions the median
is used (GB's "median" aggregate, or the median of the repetitions when the
aggregates were not written). A benchmark that is missing or that failed is
named as such, never filled in. Ratios compare two locks from the same file,
that is, from the same run on the same machine.
"""

import argparse
import datetime
import glob
import importlib.util
import json
import os
import platform
import statistics
import sys

# Display names and baselines. An id missing here is shown as it is.
LOCK_NAMES = {
    "hwsync_mutex": "hwsync::mutex",
    "std_mutex": "std::mutex",
    "pthread_default": "pthread_mutex (default)",
    "pthread_adaptive": "pthread_mutex (ADAPTIVE_NP)",
    "tbb_spin_mutex": "tbb::spin_mutex",
    "tbb_queuing_mutex": "tbb::queuing_mutex",
    "tbb_mutex": "tbb::mutex",
    "ttas_spinlock": "TTAS spinlock",
    "hwsync_condition_variable": "hwsync::condition_variable",
    "std_condition_variable": "std::condition_variable",
}
# The std type each primitive is compared with.
BASELINES = {"mutex": "std_mutex", "condvar": "std_condition_variable"}
# The hwsync ids a primitive's report is about, where not every hwsync_* id
# in its benchmarks is (a peer may be another hwsync type).
SUBJECTS = {}
# Name segments GB appends that are not parameters of the scenario.
GB_SUFFIXES = ("iterations", "min_time", "repeats", "min_warmup_time")


def lock_name(lock_id):
    return LOCK_NAMES.get(lock_id, lock_id)


# ---------------------------------------------------------------------------
# Loading


class Result:
    """One benchmark (one run name), its median over repetitions."""

    def __init__(self, run_name, rows):
        self.run_name = run_name
        parts = run_name.split("/")
        self.primitive = parts[0]
        self.scenario = parts[1] if len(parts) > 1 else ""
        self.lock = parts[2] if len(parts) > 2 else ""
        self.params = {}
        for p in parts[3:]:
            if ":" in p:
                k, v = p.split(":", 1)
                if k not in GB_SUFFIXES:
                    try:
                        self.params[k] = int(v)
                    except ValueError:
                        self.params[k] = v
        self.error = None
        errors = [r for r in rows if r.get("error_occurred")]
        if errors:
            self.error = errors[0].get("error_message", "error")
        ok = [r for r in rows if not r.get("error_occurred")]
        median = [r for r in ok if r.get("run_type") == "aggregate" and
                  r.get("aggregate_name") == "median"]
        cvs = [r for r in ok if r.get("run_type") == "aggregate" and
               r.get("aggregate_name") == "cv"]
        iters = [r for r in ok if r.get("run_type", "iteration") == "iteration"]
        self.repetitions = len(iters) if iters else (median[0].get("repetitions", 1) if median else 0)
        self.values = {}
        self.cv = {}
        if median:
            self.values = {k: v for k, v in median[0].items() if isinstance(v, (int, float))}
        elif iters:
            keys = set().union(*(r.keys() for r in iters))
            for k in keys:
                vals = [r[k] for r in iters if isinstance(r.get(k), (int, float))
                        and not isinstance(r.get(k), bool)]
                if vals:
                    self.values[k] = statistics.median(vals)
        if cvs:
            self.cv = {k: v for k, v in cvs[0].items() if isinstance(v, (int, float))}
        elif len(iters) > 1:
            for k in self.values:
                vals = [r[k] for r in iters if isinstance(r.get(k), (int, float))]
                m = statistics.mean(vals) if vals else 0
                if len(vals) > 1 and m:
                    self.cv[k] = statistics.stdev(vals) / m

    def get(self, key):
        if self.error is not None:
            return None
        return self.values.get(key)


def load(out_dir):
    """Returns ({file: context}, [Result]) for every GB JSON file in out_dir."""
    contexts = {}
    results = []
    for path in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            print(f"report.py: skipping {path}: {e}", file=sys.stderr)
            continue
        if not isinstance(data, dict) or "benchmarks" not in data:
            continue
        contexts[os.path.basename(path)] = data.get("context", {})
        by_name = {}
        for row in data["benchmarks"]:
            by_name.setdefault(row.get("run_name", row["name"]), []).append(row)
        for name, rows in by_name.items():
            r = Result(name, rows)
            r.source = os.path.basename(path)
            results.append(r)
    return contexts, results


# ---------------------------------------------------------------------------
# Formatting


def fmt_num(v, digits=3):
    """A number with SI suffix and `digits` significant digits."""
    if v is None:
        return "n/a"
    a = abs(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.{digits}g}{suffix}"
    if a == 0:
        return "0"
    if a < 0.01:
        return f"{v:.2g}"
    return f"{v:.{digits}g}"


def fmt_ratio(r):
    """Two decimals, or two significant digits below 0.1 (so 0.004 is not "0.00×")."""
    if r is None:
        return "n/a"
    return f"{r:.2g}×" if abs(r) < 0.1 else f"{r:.2f}×"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Machine section


def cpu_model_from_proc():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def run_dates(contexts):
    """When the binaries started: one date, or the first and the last of several."""
    dates = sorted(c["date"] for c in contexts.values() if c.get("date"))
    if not dates:
        return "unknown"
    if len(dates) == 1:
        return dates[0]
    return f"{dates[0]} to {dates[-1]} ({len(dates)} binaries, each started at its own time)"


# Functions (contexts) -> [(name, value)] that add rows to the machine table,
# for facts a primitive's benchmark records in its context (HTM capabilities).
MACHINE_ROWS = []


def machine_section(contexts, command):
    ctx = next(iter(contexts.values()), {})
    cpu = ctx.get("cpu_model") or cpu_model_from_proc() or "unknown"
    tsc = ctx.get("tsc_hz")
    tsc_txt = f"{float(tsc) / 1e9:.4f} GHz ({tsc} Hz, calibrated by cycle_clock)" if tsc else "not recorded"
    if ctx.get("tsc_invariant") == "false":
        tsc_txt += "; no invariant TSC: cycles are CLOCK_MONOTONIC_RAW nanoseconds"
    kernel = ctx.get("kernel") or platform.release()
    cores = ctx.get("num_cpus", "unknown")
    load = ctx.get("load_avg")
    rows = [
        ("CPU", cpu),
        ("Cores (online CPUs)", cores),
        ("TSC", tsc_txt),
        ("Kernel", kernel),
        ("hwsync version", ctx.get("hwsync_version", "unknown")),
        ("Benchmark run", f"{run_dates(contexts)} on {ctx.get('host_name', 'unknown')}, "
                          f"mode {ctx.get('hwsync_bench_mode', 'unknown')}"),
        ("Load average at start", ", ".join(f"{x:.2f}" for x in load) if load else "not recorded"),
        ("Google Benchmark library", f"{ctx.get('library_build_type', 'unknown')} build" +
         (" (Debian's package; GB's bookkeeping runs outside the timed regions)"
          if ctx.get("library_build_type") == "debug" else "")),
        ("Report written", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
        ("Command", f"`{command}`" if command else "not recorded"),
    ]
    for extra in MACHINE_ROWS:
        rows += extra(contexts)
    out = ["## Machine", "", md_table(["", ""], rows)]
    try:
        busy = load and float(load[0]) > 0.25 * float(cores)
    except (TypeError, ValueError):
        busy = False
    if busy:
        out += ["", f"**Warning:** the 1-minute load average was {load[0]:.2f} on {cores} CPUs "
                "when the first binary started. It also counts what ran in the minute before "
                "(perf/run's own build included), so it can overstate; but if other processes "
                "were competing for the cores, the multithreaded numbers (and their ratios) "
                "carry that noise. Re-run on an idle machine before trusting a close call."]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Per-primitive sections


class Primitive:
    def __init__(self, name, results):
        self.name = name
        self.results = [r for r in results if r.primitive == name]
        self.baseline = BASELINES.get(name) or next(
            (r.lock for r in self.results if r.lock.startswith("std_")), None)
        seen = []
        for r in self.results:
            # A *_floor scenario measures a reference shape, not a peer lock.
            if r.scenario.endswith("_floor"):
                continue
            if r.lock not in seen:
                seen.append(r.lock)
        # hwsync first, the baseline second, then the known peers in a fixed
        # order (random interleaving shuffles the JSON), then anything else.
        known = list(LOCK_NAMES)
        self.locks = sorted(seen, key=lambda l: (0 if l.startswith("hwsync_") else
                                                 1 if l == self.baseline else 2,
                                                 known.index(l) if l in known else len(known), l))
        self.hwsync = [l for l in SUBJECTS.get(name, self.locks)
                       if l in self.locks and l.startswith("hwsync_")]

    def find(self, scenario, lock, **params):
        for r in self.results:
            if r.scenario == scenario and r.lock == lock and all(
                    r.params.get(k) == v for k, v in params.items()):
                return r
        return None

    def value(self, scenario, lock, key, **params):
        r = self.find(scenario, lock, **params)
        return None if r is None else r.get(key)

    def param_values(self, scenario, key):
        return sorted({r.params[key] for r in self.results
                       if r.scenario == scenario and key in r.params})


def cell(v, base, unit=""):
    """Absolute value and ratio against the baseline."""
    if v is None:
        return "missing"
    r = ratio(v, base)
    return f"{fmt_num(v)}{unit} ({fmt_ratio(r)})" if r is not None else f"{fmt_num(v)}{unit}"


def missing_or(r, text):
    if r is None:
        return "missing"
    if r.error is not None:
        return f"failed: {r.error}"
    return text


def scenario_uncontended(p):
    base = p.value("uncontended", p.baseline, "cycles_per_op")
    rows = []
    for lock in p.locks:
        r = p.find("uncontended", lock)
        cyc = None if r is None else r.get("cycles_per_op")
        ips = None if r is None else r.get("items_per_second")
        mean = None if r is None else r.get("cycles_per_op_mean")
        rows.append([lock_name(lock), missing_or(r, fmt_num(cyc)),
                     missing_or(r, fmt_ratio(ratio(cyc, base))),
                     missing_or(r, fmt_num(mean)),
                     missing_or(r, fmt_num(ips) + "/s")])
    floor = p.value("uncontended_floor", "cas_fetch_sub", "cycles_per_op")
    floor_text = ""
    if floor is not None:
        floor_text = (
            "\n\nFloor of the design: a bare 4-byte word with a CAS to lock and a fetch_sub to "
            "unlock (the shape the foundation issue fixes for hwsync::mutex, with no lock logic "
            f"at all) takes {fmt_num(floor)} cycles/op here, "
            f"{fmt_ratio(ratio(floor, base))} of {lock_name(p.baseline)}.")
    return ("### Uncontended lock + unlock (one thread)\n\n"
            "cycle_clock cycles per lock+unlock pair; lower is better. cycles/op is the median "
            "batch of 256 pairs (timer cost removed), the ratio is taken on it; the mean over the "
            "whole run also carries interrupts and preemptions.\n\n" +
            md_table(["lock", "cycles/op", f"vs {lock_name(p.baseline)}", "mean cycles/op",
                      "ops/s"], rows) + floor_text)


def scenario_contended(p):
    threads = p.param_values("contended_short", "threads")
    if not threads:
        return "### Contended, short critical section\n\nmissing: no contended_short results."
    rows = []
    for lock in p.locks:
        row = [lock_name(lock)]
        for t in threads:
            r = p.find("contended_short", lock, threads=t)
            v = None if r is None else r.get("items_per_second")
            b = p.value("contended_short", p.baseline, "items_per_second", threads=t)
            row.append(missing_or(r, cell(v, b, "/s")))
        rows.append(row)
    fair_rows = []
    for lock in p.locks:
        row = [lock_name(lock)]
        for t in threads:
            r = p.find("contended_short", lock, threads=t)
            row.append(missing_or(r, f"{fmt_num(r.get('cpu_ns_per_acq'))} / "
                                     f"{r.get('fairness'):.2f}" if r and r.get("fairness") is not None
                                  else "n/a"))
        fair_rows.append(row)
    return ("### Contended, short critical section (4 shared cache lines), throughput\n\n"
            f"Acquisitions per second of the whole team, and in parentheses the ratio to "
            f"{lock_name(p.baseline)} at the same thread count; higher is better. The machine "
            "has as many cores as listed above: beyond that the threads are oversubscribed.\n\n" +
            md_table(["lock"] + [f"{t} thr" for t in threads], rows) +
            f"\n\n![throughput against threads]({p.name}_contended_short_throughput.png)\n"
            f"![ratio to {lock_name(p.baseline)} against threads]"
            f"({p.name}_contended_short_ratio.png)\n\n"
            "Same runs: CPU ns per acquisition / fairness (slowest thread's acquisitions over the "
            "fastest's).\n\n" +
            md_table(["lock"] + [f"{t} thr" for t in threads], fair_rows))


def scenario_long_cs(p):
    rows = []
    threads = p.param_values("long_cs", "threads")
    t = threads[0] if threads else None
    base = p.value("long_cs", p.baseline, "cpu_ns_per_acq", threads=t)
    base_tp = p.value("long_cs", p.baseline, "items_per_second", threads=t)
    for lock in p.locks:
        r = p.find("long_cs", lock, threads=t)
        rows.append([lock_name(lock),
                     missing_or(r, cell(r.get("cpu_ns_per_acq") if r else None, base, " ns")),
                     missing_or(r, fmt_num(r.get("cpu_utilization")) if r else ""),
                     missing_or(r, cell(r.get("items_per_second") if r else None, base_tp, "/s")),
                     missing_or(r, f"{r.get('fairness'):.2f}" if r and r.get("fairness") is not None
                                else "n/a"),
                     missing_or(r, fmt_num(r.get("vcsw_per_kacq")) if r else "")])
    return (f"### Long critical section (about 10 µs), {t} threads\n\n"
            "CPU per acquisition is process CPU time (user + system, every thread) divided by "
            "acquisitions; the holder's own 10 µs are in it, so the floor is about 10 µs. Lower "
            f"is better; ratios against {lock_name(p.baseline)}. CPUs busy: average cores in use. "
            "Parks: voluntary context switches (threads blocking) per 1000 acquisitions.\n\n" +
            md_table(["lock", "CPU/acquisition", "CPUs busy", "acquisitions/s", "fairness",
                      "parks/1k acq"], rows))


def scenario_handoff(p):
    holds = p.param_values("handoff", "hold_us")
    out = ["### Hand-off latency (2 threads)",
           "",
           "From just before the holder's unlock() to just after the waiting thread's lock() "
           "returns, from a cycle-accurate histogram. The holder keeps the lock hold_us after the "
           "waiter has entered lock(): at 2 µs a spinning waiter can still be spinning, at 50 µs "
           "a waiter that parks at all has parked. Parks/1k: voluntary context switches per 1000 "
           f"hand-offs (1000: every hand-off wakes a sleeper). Lower is better; ratios against "
           f"{lock_name(p.baseline)}."]
    for h in holds:
        rows = []
        b50 = p.value("handoff", p.baseline, "p50_ns", hold_us=h)
        b99 = p.value("handoff", p.baseline, "p99_ns", hold_us=h)
        b999 = p.value("handoff", p.baseline, "p999_ns", hold_us=h)
        for lock in p.locks:
            r = p.find("handoff", lock, hold_us=h)
            g = (lambda k: None if r is None else r.get(k))
            rows.append([lock_name(lock),
                         missing_or(r, cell(g("p50_ns"), b50, " ns")),
                         missing_or(r, cell(g("p99_ns"), b99, " ns")),
                         missing_or(r, cell(g("p999_ns"), b999, " ns")),
                         missing_or(r, fmt_num(g("p50_cycles"))),
                         missing_or(r, fmt_num(g("samples"))),
                         missing_or(r, fmt_num(g("vcsw_per_kacq")))])
        out += ["", f"hold_us = {h}:", "",
                md_table(["lock", "p50", "p99", "p99.9", "p50 cycles", "samples",
                          "parks/1k"], rows)]
    return "\n".join(out)


def scenario_fairness(p):
    threads = p.param_values("fairness", "threads")
    t = threads[0] if threads else None
    base_tp = p.value("fairness", p.baseline, "items_per_second", threads=t)
    rows = []
    for lock in p.locks:
        r = p.find("fairness", lock, threads=t)
        g = (lambda k: None if r is None else r.get(k))
        rows.append([lock_name(lock),
                     missing_or(r, f"{g('fairness'):.3f}" if g("fairness") is not None else "n/a"),
                     missing_or(r, f"{fmt_num(g('min_acq'))} / {fmt_num(g('max_acq'))}"),
                     missing_or(r, cell(g("items_per_second"), base_tp, "/s")),
                     missing_or(r, fmt_num(g("vcsw_per_kacq")))])
    return (f"### Fairness, {t} threads\n\n"
            "Slowest thread's acquisitions over the fastest's in a fixed wall time (1.0 is "
            "perfectly even; higher is better), with about 1 µs of work inside the critical "
            "section and 1 µs outside it: the lock is the bottleneck, so its policy decides who "
            "runs. Parks/1k: voluntary context switches per 1000 acquisitions.\n\n" +
            md_table(["lock", "fairness", "min / max acquisitions", "acquisitions/s",
                      "parks/1k acq"], rows))


# ---------------------------------------------------------------------------
# Key ratios and targets (hwsync lock against the baseline)


def key_table(p, hw):
    b = p.baseline
    rows = []

    def add(scenario, metric, key, better, **params):
        r_hw = p.find(scenario, hw, **params)
        r_b = p.find(scenario, b, **params)
        v_hw = None if r_hw is None else r_hw.get(key)
        v_b = None if r_b is None else r_b.get(key)
        cv = None if r_hw is None else r_hw.cv.get(key)
        label = scenario + ("" if not params else " " + ", ".join(f"{k}={v}" for k, v in params.items()))
        rows.append([label, metric,
                     missing_or(r_hw, fmt_num(v_hw)),
                     missing_or(r_b, fmt_num(v_b)),
                     fmt_ratio(ratio(v_hw, v_b)), better,
                     "n/a" if cv is None else f"{100 * cv:.0f}%"])

    KEY_ROWS.get(p.name, lambda p, add: None)(p, add)
    return md_table(["scenario", "metric", lock_name(hw), lock_name(b),
                     "ratio", "better", f"{lock_name(hw)} cv"], rows)


def mutex_key_rows(p, add):
    add("uncontended", "cycles/op", "cycles_per_op", "lower")
    for t in p.param_values("contended_short", "threads"):
        add("contended_short", "acquisitions/s", "items_per_second", "higher", threads=t)
    for t in p.param_values("long_cs", "threads"):
        add("long_cs", "CPU ns/acquisition", "cpu_ns_per_acq", "lower", threads=t)
    for h in p.param_values("handoff", "hold_us"):
        add("handoff", "p50 ns", "p50_ns", "lower", hold_us=h)
        add("handoff", "p99 ns", "p99_ns", "lower", hold_us=h)
        add("handoff", "p99.9 ns", "p999_ns", "lower", hold_us=h)
    for t in p.param_values("fairness", "threads"):
        add("fairness", "slowest/fastest", "fairness", "higher", threads=t)


def condvar_key_rows(p, add):
    add("pingpong", "p50 ns", "p50_ns", "lower")
    add("pingpong", "p99 ns", "p99_ns", "lower")
    add("pingpong", "turns/s", "items_per_second", "higher")
    for t in p.param_values("prodcons", "threads"):
        add("prodcons", "items/s", "items_per_second", "higher", threads=t)
        add("prodcons", "CPU ns/item", "cpu_ns_per_item", "lower", threads=t)
    for w in p.param_values("broadcast", "waiters"):
        add("broadcast", "context switches/broadcast", "vcsw_per_broadcast", "lower", waiters=w)
        add("broadcast", "broadcasts/s", "items_per_second", "higher", waiters=w)


KEY_ROWS = {"mutex": mutex_key_rows, "condvar": condvar_key_rows}


def mutex_targets(p, hw):
    """The issue's targets for hwsync::mutex: (target, measured, status)."""
    b = p.baseline
    out = []

    def shown(x):
        return "missing" if x is None else fmt_ratio(x)

    def status(ok):
        return "unknown (not measured)" if ok is None else ("**met**" if ok else "**NOT met**")

    def noise(scenario, key, **params):
        """' (noisy: cv N%)' when either side varied by over 20% across repetitions."""
        cvs = []
        for lock in (hw, b):
            r = p.find(scenario, lock, **params)
            if r is not None and r.cv.get(key) is not None:
                cvs.append(r.cv[key])
        worst = max(cvs) if cvs else None
        return f" (noisy: cv up to {100 * worst:.0f}%)" if worst is not None and worst > 0.2 else ""

    r = ratio(p.value("uncontended", hw, "cycles_per_op"), p.value("uncontended", b, "cycles_per_op"))
    out.append(("Uncontended lock+unlock ≤ 0.6× std::mutex (cycles/op)",
                shown(r) + noise("uncontended", "cycles_per_op"),
                status(None if r is None else r <= 0.6)))

    r2 = ratio(p.value("contended_short", hw, "items_per_second", threads=2),
               p.value("contended_short", b, "items_per_second", threads=2))
    out.append(("2 threads, short critical section: ≥ 1.5× std::mutex throughput",
                shown(r2) + noise("contended_short", "items_per_second", threads=2),
                status(None if r2 is None else r2 >= 1.5)))

    wanted = [1, 2, 4, 8, 16, 32]
    per = {t: ratio(p.value("contended_short", hw, "items_per_second", threads=t),
                    p.value("contended_short", b, "items_per_second", threads=t)) for t in wanted}
    missing = [t for t, v in per.items() if v is None]
    have = {t: v for t, v in per.items() if v is not None}
    if have:
        worst = min(have, key=have.get)
        failing = [t for t, v in have.items() if v < 1.0]
        measured = f"min {fmt_ratio(have[worst])} at {worst} thread{'' if worst == 1 else 's'}"
        measured += noise("contended_short", "items_per_second", threads=worst)
        if failing:
            measured += "; below 1.0× at " + ", ".join(str(t) for t in failing) + " threads"
        if missing:
            measured += "; missing: " + ", ".join(str(t) for t in missing)
        ok = None if missing and not failing else not failing
    else:
        measured, ok = "missing", None
    out.append(("Every thread count 1..32: ≥ 1.0× std::mutex throughput", measured, status(ok)))

    r4 = ratio(p.value("long_cs", hw, "cpu_ns_per_acq", threads=8),
               p.value("long_cs", b, "cpu_ns_per_acq", threads=8))
    out.append(("Long critical section, 8 threads: CPU per acquisition ≤ 1.2× std::mutex",
                shown(r4) + noise("long_cs", "cpu_ns_per_acq", threads=8),
                status(None if r4 is None else r4 <= 1.2)))

    f = p.value("fairness", hw, "fairness", threads=8)
    out.append(("Fairness (slowest/fastest thread) ≥ 0.75 at 8 threads",
                "missing" if f is None else f"{f:.3f}" + noise("fairness", "fairness", threads=8),
                status(None if f is None else f >= 0.75)))
    return out


def condvar_targets(p, hw):
    """The issue's targets for hwsync::condition_variable."""
    b = p.baseline
    out = []

    def status(ok):
        return "missing" if ok is None else ("**met**" if ok else "**NOT met**")

    r = ratio(p.value("pingpong", hw, "p50_ns"), p.value("pingpong", b, "p50_ns"))
    out.append(("Ping-pong p50 latency ≤ 1.0× std::condition_variable",
                "missing" if r is None else fmt_ratio(r), status(None if r is None else r <= 1.0)))
    for w in p.param_values("broadcast", "waiters"):
        r = ratio(p.value("broadcast", hw, "vcsw_per_broadcast", waiters=w),
                  p.value("broadcast", b, "vcsw_per_broadcast", waiters=w))
        out.append((f"Wake-ups (context switches) per notify_all with {w} waiters ≤ 0.5× std's",
                    "missing" if r is None else fmt_ratio(r),
                    status(None if r is None else r <= 0.5)))
    return out


def scenario_pingpong(p):
    rows = []
    for impl in p.locks:
        r = p.find("pingpong", impl)
        rows.append([lock_name(impl)] + [missing_or(r, fmt_num(None if r is None else r.get(k)))
                                          for k in ("p50_ns", "p99_ns", "p999_ns",
                                                    "items_per_second", "vcsw_per_kop")])
    picture = ""
    if os.path.exists(os.path.join(p.out_dir, f"{p.name}_latency_and_broadcast.png")):
        picture = f"\n\n![latency and notify_all]({p.name}_latency_and_broadcast.png)"
    return ("### Ping-pong (2 threads taking turns)\n\n"
            "Latency from just before notify_one() to just after the woken thread's wait() "
            "returns, from a cycle-accurate histogram; turns per second; context switches per "
            "1000 turns (1000: every turn woke a sleeper).\n\n" +
            md_table(["implementation", "p50 ns", "p99 ns", "p99.9 ns", "turns/s",
                      "switches/1k turns"], rows) + picture)


def scenario_prodcons(p):
    rows = []
    for t in p.param_values("prodcons", "threads"):
        for impl in p.locks:
            r = p.find("prodcons", impl, threads=t)
            rows.append([lock_name(impl), str(t)] +
                        [missing_or(r, fmt_num(None if r is None else r.get(k)))
                         for k in ("items_per_second", "cpu_ns_per_item", "vcsw_per_kop")])
    return ("### Producer/consumer (bounded queue of 16, notify_one)\n\n" +
            md_table(["implementation", "threads", "items/s", "CPU ns/item",
                      "switches/1k items"], rows))


def scenario_broadcast(p):
    rows = []
    for w in p.param_values("broadcast", "waiters"):
        for impl in p.locks:
            r = p.find("broadcast", impl, waiters=w)
            vcsw = None if r is None else r.get("vcsw_per_broadcast")
            futile = None if vcsw is None else vcsw - (w + 1)
            rows.append([lock_name(impl), str(w), missing_or(r, fmt_num(vcsw)),
                         missing_or(r, fmt_num(futile)),
                         missing_or(r, fmt_num(None if r is None else r.get("items_per_second"))),
                         missing_or(r, fmt_num(None if r is None else r.get("cpu_us_per_broadcast")))])
    return ("### notify_all\n\n"
            "One thread bumps a generation number and calls notify_all; every waiter wakes, "
            "sees it, and the last one tells the broadcaster. Context switches are voluntary "
            "ones (a thread blocking) per broadcast. Each waiter must block once per round and "
            "the broadcaster once, so waiters + 1 is the floor for any design whose waiters "
            "sleep; the rest (futile) are waiters woken only to block again on the mutex.\n\n" +
            md_table(["implementation", "waiters", "switches/broadcast", "futile",
                      "broadcasts/s", "CPU µs/broadcast"], rows))


TARGETS = {"mutex": mutex_targets, "condvar": condvar_targets}


# ---------------------------------------------------------------------------
# Plots

def pyplot():
    """matplotlib.pyplot with the file-only Agg backend, or None (and a message)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"report.py: no plots ({e}); install python3-matplotlib", file=sys.stderr)
        return None
    return plt


# A primitive's own plot function, in place of plots() (contended_short).
PLOTS = {}


def plots(p, out_dir):
    """Throughput and ratio against threads; returns the files written."""
    threads = p.param_values("contended_short", "threads")
    if not threads:
        return []
    plt = pyplot()
    if plt is None:
        return []
    written = []
    for kind in ("throughput", "ratio"):
        fig, ax = plt.subplots(figsize=(9.5, 5), dpi=110)
        for lock in p.locks:
            xs, ys = [], []
            for t in threads:
                v = p.value("contended_short", lock, "items_per_second", threads=t)
                if kind == "ratio":
                    v = ratio(v, p.value("contended_short", p.baseline, "items_per_second", threads=t))
                if v is not None and v > 0:
                    xs.append(t)
                    ys.append(v)
            if not xs:
                continue
            hw = lock.startswith("hwsync_")
            ax.plot(xs, ys, marker="o", label=lock_name(lock), linewidth=2.6 if hw else 1.3,
                    zorder=3 if hw else 2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(threads)
        ax.set_xticklabels([str(t) for t in threads])
        ax.set_yscale("log")
        ax.set_xlabel("threads")
        if kind == "throughput":
            ax.set_ylabel("acquisitions per second (team)")
            ax.set_title(f"{p.name}: contended, short critical section")
        else:
            ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
            ax.set_ylabel(f"throughput / {lock_name(p.baseline)} throughput")
            ax.set_title(f"{p.name}: throughput relative to {lock_name(p.baseline)}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{p.name}_contended_short_{kind}.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


# ---------------------------------------------------------------------------


# The tables of each primitive, in report order, by scenario name.
SECTIONS = {
    "mutex": {"uncontended": scenario_uncontended, "contended_short": scenario_contended,
              "long_cs": scenario_long_cs, "handoff": scenario_handoff,
              "fairness": scenario_fairness},
    "condvar": {"pingpong": scenario_pingpong, "prodcons": scenario_prodcons,
                "broadcast": scenario_broadcast},
}


# ---------------------------------------------------------------------------
# seqlock: optimistic reads beside reader-writer locks (bench/seqlock_bench.cpp)


def seqlock_impls(p):
    """hwsync::seqlock first, the baseline second, then the other peers as p orders them."""
    first = [l for l in ("hwsync_seqlock", p.baseline) if l in p.locks]
    return first + [l for l in p.locks if l not in first]


def seqlock_key_rows(p, add):
    for b in p.param_values("read_uncontended", "bytes"):
        add("read_uncontended", "cycles/read", "cycles_per_op", "lower", bytes=b)
    for reads in sorted(p.param_values("read_mostly", "reads"), reverse=True):
        for t in p.param_values("read_mostly", "threads"):
            add("read_mostly", "operations/s", "items_per_second", "higher", bytes=32,
                reads=reads, threads=t)


def scenario_seqlock_uncontended(p):
    sizes = p.param_values("read_uncontended", "bytes")
    rows = []
    for lock in seqlock_impls(p):
        row = [lock_name(lock)]
        for b in sizes:
            r = p.find("read_uncontended", lock, bytes=b)
            base = p.value("read_uncontended", p.baseline, "cycles_per_op", bytes=b)
            row.append(missing_or(r, cell(r.get("cycles_per_op") if r else None, base)))
        rows.append(row)
    return ("### One reader, nothing else running\n\n"
            "cycle_clock cycles per read of the whole value (a copy, every word checked), "
            "median batch of 256; lower is better; in parentheses the ratio to "
            f"{lock_name(p.baseline)} for the same size.\n\n" +
            md_table(["implementation"] + [f"{b} bytes" for b in sizes], rows))


def scenario_seqlock_read_mostly(p):
    threads = p.param_values("read_mostly", "threads")
    sizes = p.param_values("read_mostly", "bytes")
    out = ["### Read-mostly, 1 to 8 threads",
           "",
           "Operations (reads + writes) per second of the whole team, and in parentheses the "
           f"ratio to {lock_name(p.baseline)} with the same size and thread count; higher is "
           "better. reads:99 is one write every 100 operations in every thread; reads:100 has "
           "no writer. Beyond the machine's cores the threads are oversubscribed. A reader "
           "that sees a torn value fails the benchmark, so every number here comes from "
           "consistent reads."]
    for reads in sorted(p.param_values("read_mostly", "reads"), reverse=True):
        rows = []
        for lock in seqlock_impls(p):
            for b in sizes:
                row = [lock_name(lock), str(b)]
                for t in threads:
                    r = p.find("read_mostly", lock, bytes=b, reads=reads, threads=t)
                    base = p.value("read_mostly", p.baseline, "items_per_second", bytes=b,
                                   reads=reads, threads=t)
                    row.append(missing_or(r, cell(r.get("items_per_second") if r else None,
                                                  base, "/s")))
                rows.append(row)
        out += ["", f"{reads}% reads:", "",
                md_table(["implementation", "bytes"] + [f"{t} thr" for t in threads], rows)]
    out += ["", "![throughput against threads, 99% reads, 32 bytes]"
                f"({p.name}_read_mostly_throughput.png)"]
    cpu_rows = []
    for lock in seqlock_impls(p):
        row = [lock_name(lock)]
        for t in threads:
            r = p.find("read_mostly", lock, bytes=32, reads=99, threads=t)
            g = (lambda k: None if r is None else r.get(k))
            row.append(missing_or(r, f"{fmt_num(g('cpu_ns_per_op'))} / "
                                     f"{fmt_num(g('vcsw_per_kop'))}"))
        cpu_rows.append(row)
    out += ["", "Same runs, 99% reads, 32 bytes: CPU ns per operation (all threads) / "
                "voluntary context switches (threads that parked) per 1000 operations.", "",
            md_table(["implementation"] + [f"{t} thr" for t in threads], cpu_rows)]
    return "\n".join(out)


def seqlock_plots(p, out_dir):
    """Throughput against threads at 99% reads, 32 bytes; returns the files written."""
    threads = p.param_values("read_mostly", "threads")
    if not threads:
        return []
    plt = pyplot()
    if plt is None:
        return []
    fig, ax = plt.subplots(figsize=(9.5, 5), dpi=110)
    for lock in seqlock_impls(p):
        xs, ys = [], []
        for t in threads:
            v = p.value("read_mostly", lock, "items_per_second", bytes=32, reads=99, threads=t)
            if v is not None and v > 0:
                xs.append(t)
                ys.append(v)
        if xs:
            hw = lock == "hwsync_seqlock"
            ax.plot(xs, ys, marker="o", label=lock_name(lock), linewidth=2.6 if hw else 1.3,
                    zorder=3 if hw else 2)
    ax.set_xscale("log", base=2)
    ax.set_xticks(threads)
    ax.set_xticklabels([str(t) for t in threads])
    ax.set_yscale("log")
    ax.set_xlabel("threads")
    ax.set_ylabel("operations per second (team)")
    ax.set_title(f"{p.name}: 32-byte value, 99% reads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    path = os.path.join(out_dir, f"{p.name}_read_mostly_throughput.png")
    fig.savefig(path)
    plt.close(fig)
    return [path]


LOCK_NAMES.update({"hwsync_seqlock": "hwsync::seqlock", "std_shared_mutex": "std::shared_mutex",
                   "pthread_rwlock": "pthread_rwlock (default)"})
BASELINES["seqlock"] = "std_shared_mutex"
SUBJECTS["seqlock"] = ["hwsync_seqlock"]  # hwsync::mutex is a peer there
KEY_ROWS["seqlock"] = seqlock_key_rows
SECTIONS["seqlock"] = {"read_uncontended": scenario_seqlock_uncontended,
                       "read_mostly": scenario_seqlock_read_mostly}
PLOTS["seqlock"] = seqlock_plots


def condvar_plots(p, out_dir):
    """Ping-pong latency percentiles and context switches per notify_all, as bars."""
    plt = pyplot()
    if plt is None:
        return []
    waiters = p.param_values("broadcast", "waiters")
    panels = [("pingpong", "ping-pong latency (ns, log scale)",
               [("p50", "p50_ns", {}), ("p99", "p99_ns", {}), ("p99.9", "p999_ns", {})], True),
              ("broadcast", "context switches per notify_all",
               [(f"{w} waiters", "vcsw_per_broadcast", {"waiters": w}) for w in waiters], False)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    drawn = False
    for ax, (scenario, title, groups, log) in zip(axes, panels):
        width = 0.8 / max(1, len(p.locks))
        for i, impl in enumerate(p.locks):
            xs, ys = [], []
            for g, (label, key, params) in enumerate(groups):
                v = p.value(scenario, impl, key, **params)
                if v is not None and v > 0:
                    xs.append(g + i * width)
                    ys.append(v)
            if xs:
                ax.bar(xs, ys, width=width, label=lock_name(impl))
                drawn = True
        ax.set_xticks([g + width * (len(p.locks) - 1) / 2 for g in range(len(groups))])
        ax.set_xticklabels([g[0] for g in groups])
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    if not drawn:
        plt.close(fig)
        return []
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{p.name}: hwsync and std")
    fig.tight_layout()
    path = os.path.join(out_dir, f"{p.name}_latency_and_broadcast.png")
    fig.savefig(path)
    plt.close(fig)
    return [path]


PLOTS["condvar"] = condvar_plots


# ---------------------------------------------------------------------------
# shared_mutex: hwsync::shared_mutex's policies beside std::shared_mutex, glibc
# pthread_rwlock (both kinds) and oneTBB's reader-writer locks
# (bench/shared_mutex_bench.cpp)

SM_PF = "hwsync_shared_mutex_pf"


def sm_key_rows(p, add):
    add("uncontended_shared", "cycles/op", "cycles_per_op", "lower")
    add("uncontended_exclusive", "cycles/op", "cycles_per_op", "lower")
    threads = p.param_values("mixed", "threads")
    for pct in sorted(p.param_values("mixed", "read_pct"), reverse=True):
        for t in (2, 8, 32):
            if t in threads:
                add("mixed", "operations/s", "items_per_second", "higher", read_pct=pct, threads=t)
    for n in p.param_values("writer_latency", "readers"):
        add("writer_latency", "writer wait p50 ns", "p50_ns", "lower", readers=n)
        add("writer_latency", "writer wait p99 ns", "p99_ns", "lower", readers=n)


def sm_starved(p, lock, readers):
    """True when the writer got in once, at the end: its one wait is the run's length."""
    r = p.find("writer_latency", lock, readers=readers)
    return r is not None and r.get("samples") is not None and r.get("samples") <= 1


def sm_targets(p, hw):
    """The issue's target: phase_fair writer p99 under a read load <= 0.1x std's."""
    if hw != SM_PF:
        return [("none for this policy (the issue's target is for phase_fair)", "—", "—")]
    b = p.baseline
    readers = p.param_values("writer_latency", "readers")
    parts, oks = [], []
    for n in readers:
        r = ratio(p.value("writer_latency", hw, "p99_ns", readers=n),
                  p.value("writer_latency", b, "p99_ns", readers=n))
        if r is None:
            parts.append(f"{n} readers: missing")
            continue
        note = " (std starved: its wait is the run's length, so the ratio is an upper bound)" \
            if sm_starved(p, b, n) else ""
        parts.append(f"{n} readers: {r:.2g}×{note}")
        oks.append(r <= 0.1)
    if not readers:
        measured, status = "missing", "unknown (not measured)"
    else:
        measured = "; ".join(parts)
        status = ("unknown (not measured)" if not oks else
                  "**met**" if all(oks) and len(oks) == len(readers) else
                  "**NOT met**" if not all(oks) else "unknown (some missing)")
    return [("Writer p99 wait under a read load (writer_latency) ≤ 0.1× std::shared_mutex's, "
             "every reader count", measured, status)]


def sm_uncontended(p):
    rows = []
    bs = p.value("uncontended_shared", p.baseline, "cycles_per_op")
    be = p.value("uncontended_exclusive", p.baseline, "cycles_per_op")
    for lock in p.locks:
        rs = p.find("uncontended_shared", lock)
        re_ = p.find("uncontended_exclusive", lock)
        rows.append([lock_name(lock),
                     missing_or(rs, cell(rs.get("cycles_per_op") if rs else None, bs)),
                     missing_or(re_, cell(re_.get("cycles_per_op") if re_ else None, be))])
    return ("### Uncontended (one thread)\n\n"
            "cycle_clock cycles per lock_shared+unlock_shared and per lock+unlock pair, median "
            "batch of 256 (timer cost removed); lower is better; in parentheses the ratio to "
            f"{lock_name(p.baseline)}.\n\n" +
            md_table(["lock", "shared pair", "exclusive pair"], rows))


def sm_mixed(p):
    threads = p.param_values("mixed", "threads")
    out = ["### Mixed reads and writes, 1 to 32 threads",
           "",
           "Operations (reads + writes) per second of the whole team with nothing outside the "
           "lock, and in parentheses the ratio to "
           f"{lock_name(p.baseline)} at the same mix and thread count; higher is better. A "
           "reader that sees a half-done write, or a lost write, fails the benchmark. Beyond "
           "the machine's cores the threads are oversubscribed: there a lock that hands over to "
           "parked threads (the fair ones) pays a wake-up per hand-over."]
    for pct in sorted(p.param_values("mixed", "read_pct"), reverse=True):
        rows = []
        for lock in p.locks:
            row = [lock_name(lock)]
            for t in threads:
                r = p.find("mixed", lock, read_pct=pct, threads=t)
                base = p.value("mixed", p.baseline, "items_per_second", read_pct=pct, threads=t)
                row.append(missing_or(r, cell(r.get("items_per_second") if r else None,
                                              base, "/s")))
            rows.append(row)
        out += ["", f"{pct}% reads:", "",
                md_table(["lock"] + [f"{t} thr" for t in threads], rows)]
    out += ["", f"![throughput against threads]({p.name}_mixed_throughput.png)",
            f"![ratio to {lock_name(p.baseline)} against threads]({p.name}_mixed_ratio.png)"]
    for pct in (99, 50):
        if pct not in p.param_values("mixed", "read_pct"):
            continue
        rows = []
        for lock in p.locks:
            row = [lock_name(lock)]
            for t in threads:
                r = p.find("mixed", lock, read_pct=pct, threads=t)
                g = (lambda k: None if r is None else r.get(k))
                row.append(missing_or(r, f"{fmt_num(g('cpu_ns_per_op'))} / "
                                         f"{fmt_num(g('vcsw_per_kop'))} / "
                                         f"{g('fairness'):.2f}" if g("fairness") is not None
                                      else "n/a"))
            rows.append(row)
        out += ["", f"Same runs, {pct}% reads: CPU ns per operation (all threads) / voluntary "
                    "context switches (parks) per 1000 operations / fairness (the slowest "
                    "thread's operations over the fastest's).", "",
                md_table(["lock"] + [f"{t} thr" for t in threads], rows)]
    return "\n".join(out)


def sm_latency(p):
    out = ["### Writer wait under a read load",
           "",
           "`readers` threads read continuously (about 1 µs of work under the shared lock, "
           "nothing outside it, so readers overlap) while one writer takes the lock every "
           "200 µs or so. The writer's wait is cycle_clock from just before lock() to just after "
           "it returns; lower is better; in parentheses the ratio to "
           f"{lock_name(p.baseline)}. A writer that only got in when the readers stopped at "
           "the end of the run shows as one sample as long as the run: starvation. Reads/s is "
           "what the readers got done meanwhile (their cost for the writer's fairness)."]
    b = p.baseline
    for n in p.param_values("writer_latency", "readers"):
        rows = []
        base = {k: p.value("writer_latency", b, k, readers=n)
                for k in ("p50_ns", "p99_ns", "reads_per_second")}
        for lock in p.locks:
            r = p.find("writer_latency", lock, readers=n)
            g = (lambda k: None if r is None else r.get(k))
            rows.append([lock_name(lock),
                         missing_or(r, cell(g("p50_ns"), base["p50_ns"], " ns")),
                         missing_or(r, fmt_num(g("p90_ns")) + " ns"),
                         missing_or(r, cell(g("p99_ns"), base["p99_ns"], " ns")),
                         missing_or(r, fmt_num(g("p999_ns")) + " ns"),
                         missing_or(r, fmt_num(g("max_ns")) + " ns"),
                         missing_or(r, fmt_num(g("samples")) +
                                    (" (starved)" if sm_starved(p, lock, n) else "")),
                         missing_or(r, cell(g("reads_per_second"), base["reads_per_second"],
                                            "/s"))])
        out += ["", f"{n} readers:", "",
                md_table(["lock", "p50", "p90", "p99", "p99.9", "max", "samples", "reads/s"],
                         rows)]
    out += ["", f"![writer wait percentiles against readers]({p.name}_writer_latency.png)"]
    return "\n".join(out)


def sm_plots(p, out_dir):
    """Mixed throughput and its ratio to std (one panel per mix), writer wait p50/p99."""
    plt = pyplot()
    if plt is None:
        return []
    written = []
    threads = p.param_values("mixed", "threads")
    pcts = sorted(p.param_values("mixed", "read_pct"), reverse=True)

    def style(lock):
        hw = lock.startswith("hwsync_")
        return dict(marker="o", linewidth=2.6 if hw else 1.2, zorder=3 if hw else 2,
                    linestyle="-" if hw or lock == p.baseline else "--")

    if threads and pcts:
        for kind in ("throughput", "ratio"):
            cols = 2
            rows_n = (len(pcts) + cols - 1) // cols
            fig, axes = plt.subplots(rows_n, cols, figsize=(13, 4.2 * rows_n), dpi=100,
                                     squeeze=False)
            for i, pct in enumerate(pcts):
                ax = axes[i // cols][i % cols]
                for lock in p.locks:
                    xs, ys = [], []
                    for t in threads:
                        v = p.value("mixed", lock, "items_per_second", read_pct=pct, threads=t)
                        if kind == "ratio":
                            v = ratio(v, p.value("mixed", p.baseline, "items_per_second",
                                                 read_pct=pct, threads=t))
                        if v is not None and v > 0:
                            xs.append(t)
                            ys.append(v)
                    if xs:
                        ax.plot(xs, ys, label=lock_name(lock), **style(lock))
                ax.set_xscale("log", base=2)
                ax.set_xticks(threads)
                ax.set_xticklabels([str(t) for t in threads])
                ax.set_yscale("log")
                ax.set_title(f"{pct}% reads")
                ax.set_xlabel("threads")
                ax.set_ylabel("operations/s" if kind == "throughput"
                              else f"÷ {lock_name(p.baseline)}")
                if kind == "ratio":
                    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
                ax.grid(True, which="both", alpha=0.3)
            for j in range(len(pcts), rows_n * cols):
                axes[j // cols][j % cols].axis("off")
            handles, labels = axes[0][0].get_legend_handles_labels()
            fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=5,
                       bbox_to_anchor=(0.5, 1.0))
            fig.suptitle(f"{p.name}: mixed reads and writes" +
                         (" (throughput)" if kind == "throughput" else
                          f" (throughput relative to {lock_name(p.baseline)})"), y=0.93)
            fig.tight_layout(rect=(0, 0, 1, 0.9))
            path = os.path.join(out_dir, f"{p.name}_mixed_{kind}.png")
            fig.savefig(path)
            plt.close(fig)
            written.append(path)

    readers = p.param_values("writer_latency", "readers")
    if readers:
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), dpi=100)
        for ax, (label, key) in zip(axes, (("p50", "p50_ns"), ("p99", "p99_ns"))):
            for lock in p.locks:
                xs, ys = [], []
                for n in readers:
                    v = p.value("writer_latency", lock, key, readers=n)
                    if v is not None and v > 0:
                        xs.append(n)
                        ys.append(v / 1e3)
                if xs:
                    ax.plot(xs, ys, label=lock_name(lock), **style(lock))
            ax.set_xscale("log", base=2)
            ax.set_xticks(readers)
            ax.set_xticklabels([str(n) for n in readers])
            ax.set_yscale("log")
            ax.set_xlabel("reader threads")
            ax.set_ylabel(f"writer wait {label} (µs)")
            ax.set_title(f"writer wait {label} under a read load")
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=5,
                   bbox_to_anchor=(0.5, 1.0))
        fig.tight_layout(rect=(0, 0, 1, 0.86))
        path = os.path.join(out_dir, f"{p.name}_writer_latency.png")
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


LOCK_NAMES.update({
    "hwsync_shared_mutex_pf": "hwsync::shared_mutex<phase_fair>",
    "hwsync_shared_mutex_wp": "hwsync::shared_mutex<writer_preferred>",
    "hwsync_shared_mutex_rp": "hwsync::shared_mutex<reader_preferred>",
    "hwsync_shared_mutex_pf_strict": "hwsync::shared_mutex<strict_phase_fair>",
    # std_shared_mutex and pthread_rwlock are named with seqlock's peers above.
    "pthread_rwlock_prefer_writer": "pthread_rwlock (PREFER_WRITER_NP)",
    "tbb_spin_rw_mutex": "tbb::spin_rw_mutex",
    "tbb_queuing_rw_mutex": "tbb::queuing_rw_mutex",
    "tbb_rw_mutex": "tbb::rw_mutex",
})
BASELINES["shared_mutex"] = "std_shared_mutex"
KEY_ROWS["shared_mutex"] = sm_key_rows
TARGETS["shared_mutex"] = sm_targets
SECTIONS["shared_mutex"] = {"uncontended_shared": sm_uncontended,
                            "uncontended_exclusive": lambda p: "",
                            "mixed": sm_mixed, "writer_latency": sm_latency}
PLOTS["shared_mutex"] = sm_plots


def target_status(ok):
    """A target's status cell: met, NOT met, or unknown when it was not measured (None)."""
    return "unknown (not measured)" if ok is None else ("**met**" if ok else "**NOT met**")


def context_with(contexts, key):
    """The first benchmark context that recorded `key` (e.g. htm_capabilities), or {}."""
    for ctx in contexts.values():
        if key in ctx:
            return ctx
    return {}


def primitive_context(p):
    """The context of the JSON file p's results came from, or {}."""
    for r in p.results:
        path = os.path.join(getattr(p, "out_dir", ""), getattr(r, "source", ""))
        try:
            with open(path) as f:
                return json.load(f).get("context", {})
        except (OSError, ValueError):
            continue
    return {}


def load_section_modules():
    """Primitives added later keep their tables and plots in perf/report_<name>.py.

    Each such module defines register(report), where report is this module: it
    adds its entries to LOCK_NAMES, BASELINES, KEY_ROWS, TARGETS, SECTIONS and
    PLOTS and uses the helpers here (md_table, cell, fmt_ratio, pyplot, ...).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, "report_*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.register(sys.modules[__name__])


load_section_modules()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--command", default=None, help="the command that produced the results")
    args = ap.parse_args()

    contexts, results = load(args.out_dir)
    if not results:
        print(f"report.py: no Google Benchmark JSON with results in {args.out_dir}", file=sys.stderr)
        return 1

    primitives = []
    for r in results:
        if r.primitive not in primitives:
            primitives.append(r.primitive)

    md = ["# hwsync benchmark report", "",
          "hwsync primitives beside std, glibc and oneTBB, each compared with its std "
          "counterpart from the same run. A ratio is hwsync (or the peer) divided by the std "
          "type; whether higher or lower is better is said with each table. With repetitions "
          "every number is the median of that number over the repetitions, so two columns of "
          "one row may come from different repetitions. Raw results: " +
          ", ".join(f"[{name}]({name})" for name in contexts) + ".", "",
          machine_section(contexts, args.command)]

    pngs = []
    for name in primitives:
        p = Primitive(name, results)
        p.out_dir = args.out_dir
        pngs += PLOTS.get(name, plots)(p, args.out_dir)
        md += ["", f"## {name}", ""]
        if p.baseline is None:
            md.append("No std baseline in this run: ratios cannot be given.")
        for hw in p.hwsync:
            md += [f"### {lock_name(hw)} against {lock_name(p.baseline)}: key ratios", "",
                   "Ratios are hwsync / std; `cv` is the coefficient of variation over "
                   "repetitions (n/a with one repetition).", "", key_table(p, hw), ""]
            if name in TARGETS:
                md += [f"### Targets for {lock_name(hw)}", "",
                       md_table(["target", "measured", "status"], TARGETS[name](p, hw)), ""]
        sections = SECTIONS.get(name, {})
        seen = []
        for r in p.results:
            if r.scenario not in seen:
                seen.append(r.scenario)
        for s in sections:
            if s in seen:
                md += ["", sections[s](p)]
        others = [s for s in seen if s not in sections and not s.endswith("_floor")]
        if others:
            md += ["", "Scenarios without a table in this report: " + ", ".join(others)]
        failed = [r for r in p.results if r.error is not None]
        if failed:
            md += ["", "### Failed benchmarks", ""] + [f"- `{r.run_name}`: {r.error}" for r in failed]

    path = os.path.join(args.out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"wrote {path}" + "".join(f"\nwrote {x}" for x in pngs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
