"""perf/report_net.py: the file:// lock service's section of the report.

bench/net_bench.cpp: one thread locking and unlocking one lock name through
hwsync::net::distributed_lock on file:// (flock plus the fencing-token
counter), against flock(2) and an OFD fcntl lock on one file, on tmpfs
(/dev/shm, where $XDG_RUNTIME_DIR lives) and on the disk ($TMPDIR or /tmp).
perf/report.py loads this module and calls register(report) with itself;
every number comes from the JSON.
"""

HW = "hwsync_file"
FLOCK = "flock"
OFD = "ofd"
SCENARIO = "file_lock_unlock"
FILE_SYSTEMS = ("tmpfs", "disk")
LIMIT = 1.5  # issue 8: file:// lock+unlock <= 1.5x flock(2) on one file

R = None  # perf/report.py, set by register()


def key_rows(p, add):
    for fs in FILE_SYSTEMS:
        add(SCENARIO, "cycles/op", "cycles_per_op", "lower", fs=fs)


def targets(p, hw):
    rows = []
    for fs in FILE_SYSTEMS:
        a = p.value(SCENARIO, HW, "cycles_per_op", fs=fs)
        b = p.value(SCENARIO, FLOCK, "cycles_per_op", fs=fs)
        r = R.ratio(a, b)
        measured = ("missing" if r is None else
                    f"{R.fmt_num(a)} against {R.fmt_num(b)} cycles: {R.fmt_ratio(r)}")
        rows.append((f"file:// lock+unlock ≤ {LIMIT}× flock(2), {fs}", measured,
                     R.target_status(None if r is None else r <= LIMIT)))
    return rows


def table(p):
    rows = []
    for fs in FILE_SYSTEMS:
        base = p.value(SCENARIO, FLOCK, "cycles_per_op", fs=fs)
        for lock in (HW, FLOCK, OFD):
            r = p.find(SCENARIO, lock, fs=fs)
            if r is None:
                continue
            v = r.get("cycles_per_op")
            ns = None if v is None else ticks_to_ns_from(p, v)
            rows.append([fs, R.lock_name(lock), R.missing_or(r, R.fmt_num(v)),
                         "n/a" if ns is None else R.fmt_num(ns),
                         R.missing_or(r, R.fmt_num(r.get("cycles_per_op_p99"))),
                         R.fmt_ratio(R.ratio(v, base))])
    return ("### file:// lock+unlock against the kernel's file locks\n\n"
            "One thread, lock+unlock of one name in batches of 16; cycle_clock cycles per pair, "
            "median batch (timer cost removed), and the same in ns; lower is better. "
            "hwsync_file is a flock(2) pair plus the fencing-token counter in a shared mapping of "
            "the lock file, and on a file system with a disk an fdatasync per acquisition (the "
            "counter must not go back after a crash); tmpfs has no disk to sync. The ofd row is "
            "fcntl(F_OFD_SETLKW) / F_UNLCK, the other per-description lock Linux offers.\n\n" +
            R.md_table(["fs", "lock", "cycles/op", "ns/op", "p99 batch", "vs flock"], rows))


def ticks_to_ns_from(p, ticks):
    try:
        hz = float(R.primitive_context(p).get("tsc_hz", ""))
    except ValueError:
        return None
    return ticks / hz * 1e9 if hz > 0 else None


def register(report):
    global R
    R = report
    report.LOCK_NAMES.update({
        HW: "hwsync::net::distributed_lock (file://)",
        FLOCK: "flock(2)",
        OFD: "fcntl F_OFD_SETLKW",
    })
    report.BASELINES["net"] = FLOCK
    report.SUBJECTS["net"] = [HW]
    report.KEY_ROWS["net"] = key_rows
    report.TARGETS["net"] = targets
    report.SECTIONS["net"] = {SCENARIO: table}
    report.PLOTS["net"] = lambda p, out_dir: []
