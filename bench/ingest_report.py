#!/usr/bin/env python3
"""Figures and verdicts of bench/ingest.sh, from the files it leaves in its temp dir.

Usage: ingest_report.py rate WRK_TXT              2xx requests/s of one wrk run (whole number)
       ingest_report.py step STEP_DIR PERCENT     judge one sustained step; writes verdict.json
       ingest_report.py round ROUND_DIR CONNECTIONS DURATION BIG_BYTES
       ingest_report.py summary TOP_DIR           every round, the medians and the floors

A round's directory holds bare/ and hookscope/ (warmup.txt, wrk.txt: the WRKRESULT line of
ingest.lua; oha.json: oha --output-format json; mem: VmHWM/VmRSS lines; for Hookscope
count.warmup, count.wrk, count.oha: deliveries stored after each run, count.stopped: after the
graceful stop, mem.burst: VmHWM after the burst, backlog and drain: what indexing trailed by when
the burst stopped and the seconds until nothing was pending), sustain/stepK/ (rate: "RATE
SECONDS", oha.json, probe.json of ingest_probe.py, drain, count, count.stopped, mem) and big/
(wrk.txt, count, count.stopped, mem).
Exit status: step: 0 held, 2 not held, 1 stored deliveries != 2xx answers; round: 0, or 1 on
such a mismatch; summary: 0 every floor met, 3 one missed.
"""
import json
import os
import sys
from statistics import median

BURST_RATIO_FLOOR = 0.30
BURST_P99_MS = 10.0
SUSTAINED_RATIO_FLOOR = 0.15
LISTED_P99_MS = 1000.0
SENT_FLOOR = 0.95  # of the schedule oha must manage to send, or the load was not open loop
ACK_P99_MS = 1000.0  # oha's latency-corrected p99: from when a request was due to its answer
TREND_SHARE = 0.10  # of a second's worth: the most `pending` may rise from first to last third
MEM_BURST_MIB = 100
MEM_BIG_MIB = 300


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_int(path):
    return int(read(path).strip()) if os.path.exists(path) else None


def percentile(xs, p):
    """Nearest-rank percentile of xs (None when empty)."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, -(-len(xs) * p // 100) - 1))]


def wrk_result(path):
    line = next(l for l in read(path).splitlines() if l.startswith("WRKRESULT "))
    r = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    ok = r["requests"] - r["status"]  # wrk counts status >= 400 as errors; no 1xx/3xx here
    return {
        "rps": ok / (r["duration_us"] / 1e6),
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
    lat = j["latencyPercentiles"]
    return {
        "rps": ok / j["summary"]["total"],
        "p50": (lat["p50"] or 0) * 1000,
        "p99": (lat["p99"] or 0) * 1000,
        "ok": ok,
        "other": sum(n for code, n in codes.items() if not str(code).startswith("2")),
        "errors": sum(j.get("errorDistribution", {}).values()),
    }


def mem_mib(path, key="VmHWM"):
    if not os.path.exists(path):
        return None
    for line in read(path).splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return None


def fmt(x, spec=",.0f", none="-"):
    return none if x is None else format(x, spec)


# ---------------------------------------------------------------------------------------------
# One sustained step
# ---------------------------------------------------------------------------------------------
def judge_step(d, pct):
    """The figures of one step and the reasons it did not hold (none when it held)."""
    rate, seconds = (int(x) for x in read(os.path.join(d, "rate")).split())
    oha = oha_result(os.path.join(d, "oha.json"))
    probe = json.loads(read(os.path.join(d, "probe.json")))
    drain = read(os.path.join(d, "drain")).strip()
    sent = oha["ok"] + oha["other"] + oha["errors"]
    listed = [p["listed_ms"] for p in probe["probes"] if p["listed_ms"] is not None]
    unlisted = sum(1 for p in probe["probes"] if p["listed_ms"] is None)
    pending = [s["pending"] for s in probe["samples"]]
    db_backlog = [s["db_backlog"] for s in probe["samples"] if s["db_backlog"] is not None]
    third = max(1, len(pending) // 3)
    trend = (sum(pending[-third:]) - sum(pending[:third])) / third if pending else None
    v = {
        "percent": pct, "rate": rate, "seconds": seconds, "sent_share": sent / (rate * seconds),
        "ok": oha["ok"], "non_2xx": oha["other"], "errors": oha["errors"],
        "oha_p99_ms": oha["p99"], "probes": len(probe["probes"]), "probes_2xx": probe["probes_2xx"],
        "probe_errors": probe["errors"], "unlisted": unlisted,
        "listed_p50_ms": percentile(listed, 50), "listed_p99_ms": percentile(listed, 99),
        "pending_max": max(pending) if pending else None, "pending_trend": trend,
        "db_backlog_max": max(db_backlog) if db_backlog else None, "samples": len(pending),
        "drain": drain, "stored": read_int(os.path.join(d, "count")),
        "stored_stopped": read_int(os.path.join(d, "count.stopped")),
        "mem_mib": mem_mib(os.path.join(d, "mem")),
    }
    why = []
    if v["non_2xx"] or v["errors"] or v["probe_errors"]:
        why.append(f"{v['non_2xx']} non-2xx, {v['errors']} errors, "
                   f"{len(v['probe_errors'])} probe errors")
    if v["sent_share"] < SENT_FLOOR:
        why.append(f"oha sent only {v['sent_share']:.0%} of the schedule (answers too slow)")
    elif v["oha_p99_ms"] > ACK_P99_MS:
        why.append(f"answers fell behind the schedule: p99 {v['oha_p99_ms']:,.0f} ms from due "
                   f"to answered")
    if len(pending) < 3 or v["probes"] < 5:
        why.append(f"too few samples ({len(pending)}) or probes ({v['probes']})")
    elif v["pending_max"] >= rate:
        why.append(f"pending reached {v['pending_max']:,}, over a second's worth")
    elif trend > TREND_SHARE * rate:
        why.append(f"pending grew by {trend:,.0f} from the first to the last third")
    if drain == "never":
        why.append("pending was not 0 within the drain limit")
    if unlisted or (v["listed_p99_ms"] or 0) > LISTED_P99_MS:
        why.append(f"probe p99 {fmt(v['listed_p99_ms'])} ms, {unlisted} not listed within 5 s")
    return v, why


def step_counts_ok(v):
    """Every 2xx (oha's and the probe's) is a stored delivery; a request that failed on the
    client's side may be stored unseen."""
    answered = v["ok"] + v["probes_2xx"]
    slack = v["errors"] + len(v["probe_errors"])
    ok = (v["stored"] is not None and answered <= v["stored"] <= answered + slack
          and (v["stored_stopped"] or 0) >= v["stored"])
    return ok, answered, slack


def describe_step(v):
    """Two lines on one step: its figures and verdict, then the stored-deliveries check."""
    return [
        f"{v['rate']:,}/s ({v['percent']}% of Hookscope's burst) for {v['seconds']} s: sent "
        f"{v['sent_share']:.1%} of the schedule, ack p99 {v['oha_p99_ms']:.1f} ms from due; pending max "
        f"{fmt(v['pending_max'])} (SQLite backlog max {fmt(v['db_backlog_max'])}), trend "
        f"{fmt(v['pending_trend'], '+,.0f')}, 0 after {v['drain']} s; ack to listed p50 "
        f"{fmt(v['listed_p50_ms'], '.0f')} ms, p99 {fmt(v['listed_p99_ms'], '.0f')} ms over "
        f"{v['probes']} probes: {'HELD' if v['held'] else 'NOT HELD: ' + '; '.join(v['why'])}",
        f"  stored deliveries {fmt(v['stored'])} for {v['answered']:,} 2xx answers (oha's and "
        f"the probe's; up to +{v['slack']} unanswered), {fmt(v['stored_stopped'])} after the "
        f"graceful stop: {'OK' if v['counts_ok'] else 'MISMATCH'}",
    ] + [f"  probe: {e}" for e in v["probe_errors"][:5]]


def step(d, pct):
    v, why = judge_step(d, int(pct))
    v["counts_ok"], v["answered"], v["slack"] = step_counts_ok(v)
    v["held"], v["why"] = not why, why
    with open(os.path.join(d, "verdict.json"), "w", encoding="utf-8") as f:
        json.dump(v, f)
    print("\n".join(describe_step(v)))
    if not v["counts_ok"]:
        return 1
    return 0 if v["held"] else 2


# ---------------------------------------------------------------------------------------------
# One round
# ---------------------------------------------------------------------------------------------
def burst_counts(h, conns):
    """Lines checking Hookscope's stored deliveries against the burst's 2xx answers. A wrk run
    cut at its deadline may leave up to one request per connection stored unanswered; oha -w
    waits for those, so there only requests that failed on the client's side may be."""
    c = {k: read_int(os.path.join(h, f"count.{k}")) for k in ("warmup", "wrk", "oha", "stopped")}
    warm = (wrk_result(os.path.join(h, "warmup.txt")) if os.path.exists(os.path.join(h, "warmup.txt"))
            else {"ok": 0})
    wrk, oha = wrk_result(os.path.join(h, "wrk.txt")), oha_result(os.path.join(h, "oha.json"))
    runs = [("warm-up (wrk)", c["warmup"], warm, conns if warm["ok"] else 0),
            ("wrk run", c["wrk"] - c["warmup"], wrk, conns),
            ("oha run", c["oha"] - c["wrk"], oha, oha["errors"])]
    lines, ok = [], True
    for label, stored, r, slack in runs:
        good = r["ok"] <= stored <= r["ok"] + slack
        ok &= good
        lines.append(f"stored deliveries, {label}: {stored:,} for {r['ok']:,} 2xx answers "
                     f"(up to +{slack} unanswered cut-offs): {'OK' if good else 'MISMATCH'}")
    kept = c["stopped"] >= c["oha"]
    ok &= kept
    lines.append(f"stored after the graceful stop: {c['stopped']:,} (before {c['oha']:,}): "
                 f"{'OK' if kept else 'LOST DELIVERIES'}")
    return lines, ok


def big_counts(b, conns):
    r = wrk_result(os.path.join(b, "wrk.txt"))
    stored, stopped = read_int(os.path.join(b, "count")), read_int(os.path.join(b, "count.stopped"))
    ok = r["ok"] <= stored <= r["ok"] + conns and stopped >= stored
    line = (f"stored deliveries, big bodies: {stored:,} for {r['ok']:,} 2xx answers (up to "
            f"+{conns} cut-offs), {stopped:,} after the stop: {'OK' if ok else 'MISMATCH'}")
    return r, line, ok


def print_burst(res, conns, duration):
    print(f"Burst: POST /hooks/..., ~1 KB KeldairHR events, {conns} connections, {duration} s "
          f"per tool, loopback (2 cores shared by the load tool and the server)")
    print(f"{'server':<10} {'tool':<4} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'2xx':>10} {'non-2xx':>8} {'errors':>7}")
    for (n, t), r in res.items():
        print(f"{n:<10} {t:<4} {r['rps']:>11,.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
              f"{r['ok']:>10,} {r['other']:>8,} {r['errors']:>7,}")


def sustained(r):
    """The steps' verdicts, in order, and the highest rate held (None if none held)."""
    d = os.path.join(r, "sustain")
    steps = sorted((s for s in os.listdir(d) if s.startswith("step")), key=lambda s: int(s[4:])) \
        if os.path.isdir(d) else []
    verdicts = [json.loads(read(os.path.join(d, s, "verdict.json"))) for s in steps
                if os.path.exists(os.path.join(d, s, "verdict.json"))]
    return verdicts, max((v for v in verdicts if v["held"]), key=lambda v: v["rate"], default=None)


def round_report(r, conns, duration, big_bytes):
    b, h = os.path.join(r, "bare"), os.path.join(r, "hookscope")
    res = {(n, t): f(os.path.join(d, f"{t}.{ext}"))
           for n, d in (("bare", b), ("hookscope", h))
           for t, f, ext in (("wrk", wrk_result, "txt"), ("oha", oha_result, "json"))}
    print_burst(res, conns, duration)
    ratio_wrk = res[("hookscope", "wrk")]["rps"] / res[("bare", "wrk")]["rps"]
    ratio_oha = res[("hookscope", "oha")]["rps"] / res[("bare", "oha")]["rps"]
    print(f"hookscope/bare requests/s: wrk {ratio_wrk:.2f}, oha {ratio_oha:.2f}")
    s = {"bare_rps": res[("bare", "wrk")]["rps"], "hookscope_rps": res[("hookscope", "wrk")]["rps"],
         "ratio_wrk": ratio_wrk, "ratio_oha": ratio_oha, "p99_oha": res[("hookscope", "oha")]["p99"],
         "p99_wrk": res[("hookscope", "wrk")]["p99"],
         "mem_burst": mem_mib(os.path.join(h, "mem.burst")), "counts_ok": True}
    backlog, drain = read_int(os.path.join(h, "backlog")), read(os.path.join(h, "drain")).strip()
    print(f"after the burst: indexing trailed by {backlog:,} deliveries; a reader saw none "
          f"pending after {drain} s")
    lines, ok = burst_counts(h, conns)
    s["counts_ok"] &= ok
    print("\n".join(lines))

    verdicts, held = sustained(r)
    if verdicts:
        print()
        print("Sustained (oha -q, open loop, fresh events; probe every 200 ms):")
        for v in verdicts:
            print("\n".join("  " + line for line in describe_step(v)))
            s["counts_ok"] &= v["counts_ok"]
        s["sustained_rate"] = held["rate"] if held else 0
        s["sustained_ratio"] = s["sustained_rate"] / s["bare_rps"]
        # No step above the rate held was tried: the search ran out of steps while climbing.
        s["sustained_open"] = bool(held) and all(v["rate"] <= held["rate"] for v in verdicts)
        if held:
            s.update(probe_p50=held["listed_p50_ms"], probe_p99=held["listed_p99_ms"],
                     pending_max=held["pending_max"], db_backlog_max=held["db_backlog_max"])
            print(f"  sustained {held['rate']:,}/s = {s['sustained_ratio']:.2f} of bare's burst"
                  f"{' (no higher step failed: the rate may be higher)' if s['sustained_open'] else ''}")
        else:
            print("  no step held")
    if os.path.isdir(os.path.join(r, "big")):
        big, line, ok = big_counts(os.path.join(r, "big"), conns)
        s["counts_ok"] &= ok
        s["mem_big"] = mem_mib(os.path.join(r, "big", "mem"))
        s["big_rps"] = big["rps"]
        print()
        print(f"Big bodies: {big_bytes:,}-byte events, wrk: {big['rps']:,.0f} requests/s, "
              f"p99 {big['p99']:.1f} ms, {big['other']:,} non-2xx, {big['errors']:,} errors")
        print(line)
    print()
    print(f"peak resident memory (VmHWM): 1 KB burst {fmt(s['mem_burst'], '.1f')} MiB, "
          f"big bodies {fmt(s.get('mem_big'), '.1f')} MiB, bare {fmt(mem_mib(os.path.join(b, 'mem')), '.1f')} MiB")
    with open(os.path.join(r, "round.json"), "w", encoding="utf-8") as f:
        json.dump(s, f)
    return 0 if s["counts_ok"] else 1


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
def summary(top):
    rounds = sorted((d for d in os.listdir(top) if d.startswith("round")
                     and os.path.exists(os.path.join(top, d, "round.json"))), key=lambda d: int(d[5:]))
    rs = [json.loads(read(os.path.join(top, d, "round.json"))) for d in rounds]
    if not rs:
        print("no round finished")
        return 1
    cols = [("bare/s", "bare_rps", ",.0f"), ("hook/s", "hookscope_rps", ",.0f"),
            ("ratio", "ratio_wrk", ".2f"), ("oha p99", "p99_oha", ".2f"),
            ("sust/s", "sustained_rate", ",.0f"), ("sust ratio", "sustained_ratio", ".2f"),
            ("probe p99", "probe_p99", ".0f"), ("pending", "pending_max", ",.0f"),
            ("MiB 1KB", "mem_burst", ".1f"), ("MiB 1MiB", "mem_big", ".1f")]
    print(f"{'round':<7}" + "".join(f"{c:>11}" for c, _, _ in cols) + f"{'counts':>8}")
    for d, s in zip(rounds, rs):
        print(f"{d[5:]:<7}" + "".join(f"{fmt(s.get(k), spec):>11}" for _, k, spec in cols)
              + f"{'OK' if s['counts_ok'] else 'BAD':>8}")

    def agg(key, how):
        xs = [s[key] for s in rs if s.get(key) is not None]
        return how(xs) if xs else None

    med = {k: agg(k, median) for _, k, _ in cols}
    med["mem_burst"], med["mem_big"] = agg("mem_burst", max), agg("mem_big", max)
    print(f"{'median':<7}" + "".join(f"{fmt(med[k], spec):>11}" for _, k, spec in cols)
          + "   (memory: the largest round)")
    print("ratio: Hookscope/bare burst requests/s (wrk); oha p99 ms: Hookscope's burst; sust/s:"
          " the rate held; sust ratio: it over bare's burst; probe p99 ms: ack to listed; "
          "pending: the largest `pending` seen while it held")
    if any(s.get("sustained_open") for s in rs):
        print("(in some round no step above the sustained rate failed: it may be higher there)")
    print()
    floors = [
        (f"burst: Hookscope >= {BURST_RATIO_FLOOR:.0%} of bare requests/s (median)",
         med["ratio_wrk"], lambda x: x >= BURST_RATIO_FLOOR, ".2f"),
        (f"burst: p99 acknowledgement < {BURST_P99_MS:g} ms, oha (median)",
         med["p99_oha"], lambda x: x < BURST_P99_MS, ".2f"),
        (f"sustained: >= {SUSTAINED_RATIO_FLOOR:.0%} of bare's burst, listed within 1 s p99 "
         f"(median)", med.get("sustained_ratio"), lambda x: x >= SUSTAINED_RATIO_FLOOR, ".2f"),
        (f"memory: < {MEM_BURST_MIB} MiB over the 1 KB burst (largest)", med["mem_burst"],
         lambda x: x < MEM_BURST_MIB, ".1f"),
        (f"memory: < {MEM_BIG_MIB} MiB over the 1 MiB bodies (largest)", med["mem_big"],
         lambda x: x < MEM_BIG_MIB, ".1f"),
    ]
    missed = False
    for label, x, good, spec in floors:
        verdict = "not measured" if x is None else ("MET" if good(x) else "MISSED")
        missed |= verdict == "MISSED"
        print(f"{label:<72} {fmt(x, spec):>8}  {verdict}")
    counts = all(s["counts_ok"] for s in rs)
    print(f"{'stored deliveries = 2xx answers, every Hookscope run':<72} {'':>8}  "
          f"{'OK' if counts else 'MISMATCH'}")
    return 3 if missed else 0


def main():
    a = sys.argv[1:]
    if len(a) == 2 and a[0] == "rate":
        print(int(wrk_result(a[1])["rps"]))
        return 0
    if len(a) == 3 and a[0] == "step":
        return step(a[1], a[2])
    if len(a) == 5 and a[0] == "round":
        return round_report(a[1], int(a[2]), a[3], int(a[4]))
    if len(a) == 2 and a[0] == "summary":
        return summary(a[1])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
