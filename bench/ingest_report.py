#!/usr/bin/env python3
"""Print the table of bench/ingest.sh from the files it left in its temp dir.

Usage: ingest_report.py WORK_DIR CONNECTIONS DURATION_S
       ingest_report.py --rounds REPORT...   (the median of several rounds' printed reports)

Reads, for each server that ran (bare, hookscope): NAME.wrk.txt (the WRKRESULT line of
ingest.lua), NAME.oha.json (oha --output-format json), NAME.mem (VmHWM/VmRSS lines) and, for
hookscope, the delivery counts taken after the warm-up (count0), the wrk run (count1), the oha
run (count2) and the graceful stop (count3), each taken after one API read (hookscope.read0..2:
the seconds it took; a read sees everything acknowledged, so what a burst left waiting in the
delivery log goes into SQLite first), the event counts (events0..2) when known, and
hookscope.catchup (inbox backlog after the load, seconds and CPU seconds to index it) and
hookscope.indexed (events and deliveries once it is indexed).
Exit status: 0 all good; 1 stored deliveries do not match the 2xx answers; 3 a target missed.
"""
import json
import os
import sys
from statistics import median

RATIO_TARGET = 0.50
P99_TARGET_MS = 10.0


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def wrk_result(path):
    line = next(l for l in read(path).splitlines() if l.startswith("WRKRESULT "))
    r = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    ok = r["requests"] - r["status"]  # wrk counts status >= 400 as errors; no 1xx/3xx here
    secs = r["duration_us"] / 1e6
    return {
        "rps": ok / secs,
        "p50": r["p50_us"] / 1000,
        "p99": r["p99_us"] / 1000,
        "ok": int(ok),
        "other": int(r["status"]),
        "errors": int(r["connect"] + r["read"] + r["write"] + r["timeout"]),
    }


def oha_result(path):
    j = json.loads(read(path))
    codes = j.get("statusCodeDistribution", {})
    ok = sum(n for code, n in codes.items() if str(code).startswith("2"))
    other = sum(n for code, n in codes.items() if not str(code).startswith("2"))
    errors = sum(j.get("errorDistribution", {}).values())
    total_s = j["summary"]["total"]
    lat = j["latencyPercentiles"]
    return {
        "rps": ok / total_s,
        "p50": (lat["p50"] or 0) * 1000,
        "p99": (lat["p99"] or 0) * 1000,
        "ok": ok,
        "other": other,
        "errors": errors,
    }


def mem_mib(path, key):
    if not os.path.exists(path):
        return None
    for line in read(path).splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return None


def main():
    work, conns, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    p = lambda name: os.path.join(work, name)  # noqa: E731
    names = [n for n in ("bare", "hookscope") if os.path.exists(p(n + ".wrk.txt"))]
    res = {(n, t): f(p(f"{n}.{t}.{ext}"))
           for n in names
           for t, f, ext in (("wrk", wrk_result, "txt"), ("oha", oha_result, "json"))}

    print(f"Ingest: POST /hooks/keldair, ~1 KB KeldairHR events, {conns} connections, "
          f"{duration} s per run, loopback")
    print("(2 cores shared by the load generator and the server; requests/s counts 2xx answers)")
    print()
    print(f"{'server':<10} {'tool':<4} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'2xx':>9} {'non-2xx':>8} {'errors':>7}")
    for (n, t), r in res.items():
        print(f"{n:<10} {t:<4} {r['rps']:>11,.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
              f"{r['ok']:>9,} {r['other']:>8,} {r['errors']:>7,}")
    print("wrk: a fresh event id on every request.")
    lines = p("payloads.ndjson")
    if os.path.exists(lines):
        n = sum(1 for _ in open(lines, "rb"))
        for name in names:
            r = res[(name, "oha")]["ok"] or 1
            distinct = n * (1 - (1 - 1 / n) ** r)  # expected distinct lines in r random draws
            print(f"oha ({name}): random lines of a {n:,}-line file, so about "
                  f"{1 - distinct / r:.0%} of its requests repeat an id sent before in that run.")

    status = 0
    if "bare" in names and "hookscope" in names:
        print()
        for t in ("wrk", "oha"):
            ratio = res[("hookscope", t)]["rps"] / res[("bare", t)]["rps"]
            print(f"hookscope/bare requests/s ({t}): {ratio:.2f}")
    if "hookscope" in names:
        hwm = mem_mib(p("hookscope.mem"), "VmHWM")
        bare_hwm = mem_mib(p("bare.mem"), "VmHWM")
        print(f"hookscope peak RSS (VmHWM): {hwm:.1f} MiB" if hwm is not None
              else "hookscope peak RSS: unknown")
        if bare_hwm is not None:
            print(f"bare peak RSS (VmHWM): {bare_hwm:.1f} MiB")

        # Every 2xx must be a stored delivery. A wrk run cut at its deadline may leave up to one
        # request per connection stored without its answer counted; oha -w waits for those,
        # so there only requests that failed on the client side may be stored unseen.
        print()
        counts = [int(read(p(f"hookscope.count{i}")).strip()) for i in range(4)]
        warm, wrk, oha = (wrk_result(p("hookscope.warmup.txt")), res[("hookscope", "wrk")],
                          res[("hookscope", "oha")])
        runs = [("warm-up (wrk)", counts[0], warm, conns),
                ("wrk run", counts[1] - counts[0], wrk, conns),
                ("oha run", counts[2] - counts[1], oha, oha["errors"])]
        for label, stored, r, slack in runs:
            print(f"stored deliveries, {label}: {stored:,} for {r['ok']:,} 2xx answers "
                  f"({stored - r['ok']:+,}; up to +{slack} may be unanswered cut-offs)")
        answered = sum(r["ok"] for _, _, r, _ in runs)
        slack = sum(s for _, _, _, s in runs)
        ok = answered <= counts[2] <= answered + slack
        print(f"stored deliveries, all runs: {counts[2]:,} for {answered:,} 2xx answers "
              f"(allowed {answered:,}..{answered + slack:,}): {'OK' if ok else 'MISMATCH'}")
        if not ok:
            status = 1
        reads = [read(p(f"hookscope.read{i}")).strip() for i in range(3)
                 if os.path.exists(p(f"hookscope.read{i}"))]
        if len(reads) == 3:
            print(f"first API read after each run (what waited in the delivery log goes into "
                  f"SQLite first): warm-up {reads[0]} s, wrk {reads[1]} s, oha {reads[2]} s")
        events = [read(p(f"hookscope.events{i}")).strip() for i in range(3)
                  if os.path.exists(p(f"hookscope.events{i}"))]
        if len(events) == 3 and all(e.isdigit() for e in events):
            e = [int(x) for x in events]
            fresh = e[1] - e[0] == counts[1] - counts[0] and e[0] == counts[0]
            print(f"new events: warm-up {e[0]:,}, wrk run {e[1] - e[0]:,}, oha run {e[2] - e[1]:,} "
                  f"(wrk: {'one new event per delivery' if fresh else 'SOME IDS REPEATED'})")
        if os.path.exists(p("hookscope.catchup")):
            backlog, secs, cpu = read(p("hookscope.catchup")).split()
            backlog, secs, cpu = int(backlog), float(secs), float(cpu)
            per = f", {cpu / backlog * 1e6:.0f} µs of CPU per delivery" if backlog else ""
            print(f"indexed after the load: {backlog:,} deliveries were acknowledged but not yet "
                  f"in the tables readers query; moving them took {secs:.1f} s and {cpu:.1f} s "
                  f"of the server's CPU{per}")
        if os.path.exists(p("hookscope.indexed")):
            events, deliveries = read(p("hookscope.indexed")).strip().split("|")
            print(f"after indexing: {int(events):,} events for {int(deliveries):,} deliveries")
        kept = counts[3] >= counts[2]
        print(f"stored after graceful stop: {counts[3]:,} (before stop {counts[2]:,}): "
              f"{'OK' if kept else 'LOST DELIVERIES'}")
        if not kept:
            status = 1

    if os.path.exists(p("warnings")):
        print()
        print(read(p("warnings")).rstrip())

    if "bare" in names and "hookscope" in names:
        ratio = res[("hookscope", "wrk")]["rps"] / res[("bare", "wrk")]["rps"]
        p99 = max(res[("hookscope", t)]["p99"] for t in ("wrk", "oha"))
        ok_ratio, ok_p99 = ratio >= RATIO_TARGET, p99 < P99_TARGET_MS
        print()
        print(f"target: hookscope >= {RATIO_TARGET:.0%} of bare requests/s (wrk, fresh ids): "
              f"{ratio:.0%} {'MET' if ok_ratio else 'MISSED'}")
        print(f"target: hookscope p99 < {P99_TARGET_MS:g} ms (worse of wrk and oha): "
              f"{p99:.2f} ms {'MET' if ok_p99 else 'MISSED'}")
        if status == 0 and not (ok_ratio and ok_p99):
            status = 3
    return status


def rounds(reports):
    """The median of several rounds' ratios and p99s, from the reports main() printed."""
    ratios = {"wrk": [], "oha": []}
    p99s = []
    for path in reports:
        for line in read(path).splitlines():
            for t in ratios:
                prefix = f"hookscope/bare requests/s ({t}): "
                if line.startswith(prefix):
                    ratios[t].append(float(line[len(prefix):]))
            prefix = "target: hookscope p99 < "
            if line.startswith(prefix):
                p99s.append(float(line.rsplit(": ", 1)[1].split()[0]))
    if not ratios["wrk"]:
        print("no round has both servers' figures")
        return 1
    for t, xs in ratios.items():
        print(f"hookscope/bare requests/s ({t}) by round: "
              f"{', '.join(f'{x:.2f}' for x in xs)}; median {median(xs):.2f}")
    print(f"hookscope p99 (worse of wrk and oha) by round: "
          f"{', '.join(f'{x:.2f}' for x in p99s)} ms; median {median(p99s):.2f} ms")
    ok_ratio = median(ratios["wrk"]) >= RATIO_TARGET
    ok_p99 = median(p99s) < P99_TARGET_MS
    print(f"target: hookscope >= {RATIO_TARGET:.0%} of bare requests/s (wrk, median): "
          f"{median(ratios['wrk']):.0%} {'MET' if ok_ratio else 'MISSED'}")
    print(f"target: hookscope p99 < {P99_TARGET_MS:g} ms (median): "
          f"{median(p99s):.2f} ms {'MET' if ok_p99 else 'MISSED'}")
    return 0 if ok_ratio and ok_p99 else 3


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rounds":
        sys.exit(rounds(sys.argv[2:]))
    sys.exit(main())
