"""The printed table and the plot of bench/fanout.py's results."""

from __future__ import annotations

from pathlib import Path

from loadgen import StepResult

LABELS = {
    "bare": "bare websockets",
    "tutorial": "Channels tutorial",
    "sqlite": "project, SQLite",
    "postgres": "project, PostgreSQL",
    "sqlite-uvicorn": "project, SQLite, uvicorn",
    "postgres-uvicorn": "project, PostgreSQL, uvicorn",
}
PROJECT_KINDS = [kind for kind in LABELS if kind not in ("bare", "tutorial")]





def step_line(label: str, r: StepResult, p99: float) -> str:
    verdict = "ok" if r.ok(p99) else "FAIL"
    extra = f" errors={r.errors} ({r.error_sample[:60]})" if r.errors else ""
    extra += f" closed={r.closed}" if r.closed else ""
    extra += f" acks={r.acks}" if r.acks and r.acks != r.sent else ""
    return (f"  {label:<22} {r.rate:>8.1f} {r.offered:>9,.0f} {r.sent:>7} {r.delivered:>9} {r.lost:>7} {r.dups:>4} "
            f"{r.deliveries_per_s:>9,.0f} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} {r.max_ms:>7.0f} "
            f"{r.server_cpu:>4.0%} {r.loadgen_cpu:>4.0%} {r.other_cpu:>5.0%} {verdict}{extra}")


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The ``q`` quantile of a Prometheus histogram's cumulative ``(le, count)`` buckets,
    interpolated within a bucket as Prometheus' histogram_quantile() does; NaN if empty."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = le, count
    return lower


def server_latency_line(before: dict, after: dict) -> str:
    """The server's own latency histograms over one step (``after`` minus ``before``, both
    from scrape_histograms()), printed under the step beside what the clients measured."""
    parts = []
    for name, what in (("chat_delivery_seconds", "commit→socket"), ("chat_ack_seconds", "send→ack")):
        a, b = after.get(name, []), dict(before.get(name, []))
        delta = [(le, count - b.get(le, 0.0)) for le, count in a]
        n = delta[-1][1] if delta else 0
        if n:
            parts.append(f"{what} p50 {histogram_quantile(delta, 0.5) * 1000:.1f} ms, "
                         f"p99 {histogram_quantile(delta, 0.99) * 1000:.1f} ms (n={n:,.0f})")
    return "      server histograms: " + ("; ".join(parts) if parts else "nothing observed")


STEP_HEADER = (f"  {'server':<22} {'msg/s':>8} {'offered':>9} {'sent':>7} {'delivered':>9} {'lost':>7} {'dup':>4} "
               f"{'deliv/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'srv':>4} {'gen':>4} {'other':>5}")



def cpu_per_delivery(run: dict) -> float:
    """Server CPU µs per delivery at the busiest step that delivered everything.

    Less sensitive to other load on the machine than the rate itself: a server that gets
    half the CPU delivers half as fast, but spends about the same CPU per delivery.
    """
    full = [s for s in run["steps"] if not s.lost and s.deliveries_per_s] or run["steps"]
    top = max(full, key=lambda s: s.deliveries_per_s)
    return top.server_cpu / top.deliveries_per_s * 1e6


def overload_line(what: str, o: StepResult) -> str:
    return (f"overload, {what}: {o.rate:,.0f} msg/s offered ({o.offered:,.0f} deliveries/s) for {o.sent / o.rate:g} s: "
            f"{o.sent} sent, {o.acks} acked, {o.delivered:,} of {o.expected:,} delivered, {o.lost} lost, "
            f"{o.dups} duplicated, {o.closed} sockets closed; p50 {o.p50_ms:,.0f} ms, max {o.max_ms:,.0f} ms")


def summary(results: dict, args) -> str:
    lines = [f"machine: {results['machine']}", f"project: {args.project_version}",
             f"steps of {args.duration:g} s, {args.senders} senders, pass = no loss, duplicate or error and p99 <= {args.p99:g} ms",
             ""]
    fan = results["fanout"]
    ns = sorted({int(n) for per in fan.values() for n in per})
    head = f"{'server':<26}" + "".join(f" {'deliv/s N=' + str(n):>16} {'p99 ms':>7} {'µs/deliv':>8}" for n in ns)
    head += f" {'KB/idle conn':>13} {'connects/s':>11}"
    lines.append(head)
    for kind, per in fan.items():
        row = f"{LABELS[kind]:<26}"
        for n in ns:
            best = per.get(str(n), {}).get("best")
            row += (f" {best.deliveries_per_s:>16,.0f} {best.p99_ms:>7.1f} {cpu_per_delivery(per[str(n)]):>8.1f}"
                    if best else f" {'-':>16} {'-':>7} {'-':>8}")
        mem = results["memory"].get(kind, [])
        if mem:
            row += f" {mem[0]['kb_per_conn']:>13.1f} {mem[0]['connects_per_s']:>11,.0f}"
        lines.append(row)
    for kind in PROJECT_KINDS:
        for m in results["memory"].get(kind, [])[1:]:
            lines.append(f"{LABELS[kind] + ', joined':<26}" + " " * (34 * len(ns)) +
                         f" {m['kb_per_conn']:>13.1f} {m['connects_per_s']:>11,.0f}")

    def best(kind, n):
        b = fan.get(kind, {}).get(str(n), {}).get("best")
        return b.deliveries_per_s if b else None

    lines.append("")
    for kind, per in fan.items():
        for n, run in per.items():
            if run.get("best") is None and run.get("steps"):
                low = min(run["steps"], key=lambda s: s.offered)
                lines.append(f"{LABELS[kind]}, N={n}: no rate passed; at the lowest, {low.offered:,.0f} deliveries/s, "
                             f"p99 was {low.p99_ms:.0f} ms" + (f" and {low.lost} lost" if low.lost else ""))
    for kind, mem in results["memory"].items():
        worst = max(m["kb_per_conn"] for m in mem)
        if kind in PROJECT_KINDS:
            lines.append(f"{LABELS[kind]}: {worst:.1f} KB per idle connection at {mem[0]['connections']:,} "
                         f"(target <= 40 KB)")
    for n in ns:
        for kind in PROJECT_KINDS:
            ours, tut, bare = best(kind, n), best("tutorial", n), best("bare", n)
            if ours and tut:
                lines.append(f"N={n}: {LABELS[kind]} / tutorial = {ours / tut:.1f}x (target 8x)"
                             + (f"; / bare = {ours / bare:.2f} (target 0.5)" if bare else ""))
    for kind, per in fan.items():
        for n, run in per.items():
            o = run.get("overload")
            if o:
                lines.append(overload_line(f"{LABELS[kind]}, N={n}", o))
    for kind, r in results["rooms"].items():
        b = r["best"]
        full = [s for s in r["steps"] if not s.lost] or r["steps"]
        top = max(full, key=lambda s: s.rate)
        cost = top.server_cpu / (top.deliveries_per_s / top.fanout) * 1e3
        lines.append(f"{r['clients']} clients in {r['rooms']} rooms, {LABELS[kind]}: "
                     + (f"{b.rate:,.0f} stored msgs/s ({b.deliveries_per_s:,.0f} deliveries/s), p99 {b.p99_ms:.0f} ms"
                        if b else "no passing step") + f"; server CPU {cost:.2f} ms per stored message"
                     + " (target 2,000/s on PostgreSQL)")
        o = r.get("overload")
        if o:
            lines.append(overload_line(f"{r['clients']} clients in {r['rooms']} rooms, {LABELS[kind]}", o))
    return "\n".join(lines)


def plot(results: dict, path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fan = results["fanout"]
    ns = sorted({int(n) for per in fan.values() for n in per})
    panels = len(ns) + (1 if results["rooms"] else 0)
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.6), squeeze=False)
    colors = {"bare": "tab:gray", "tutorial": "tab:orange", "sqlite": "tab:blue", "postgres": "tab:green",
              "sqlite-uvicorn": "tab:cyan", "postgres-uvicorn": "tab:olive"}

    def draw(ax, kind, steps, x_of):
        best: dict[float, StepResult] = {}  # a retried rate: its better try, as the search counts it
        for s in steps:
            if s.rate not in best or (s.lost, s.p99_ms) < (best[s.rate].lost, best[s.rate].p99_ms):
                best[s.rate] = s
        steps = sorted(best.values(), key=x_of)
        xs = [x_of(s) for s in steps]
        ax.plot(xs, [s.p99_ms for s in steps], "-o", color=colors[kind], label=f"{LABELS[kind]} p99", ms=4)
        ax.plot(xs, [s.p50_ms for s in steps], "--", color=colors[kind], alpha=0.6, label=f"{LABELS[kind]} p50")
        bad = [s for s in steps if s.lost or s.dups or s.errors]
        ax.plot([x_of(s) for s in bad], [s.p99_ms for s in bad], "x", color="red", ms=9, mew=2)

    for ax, n in zip(axes[0], ns):
        for kind, per in fan.items():
            if str(n) in per:
                draw(ax, kind, per[str(n)]["steps"], lambda s: s.offered)
        ax.set_title(f"{n} clients in one room, {args.senders} senders")
        ax.set_xlabel("offered deliveries/s")
    if results["rooms"]:
        ax = axes[0][-1]
        for kind, r in results["rooms"].items():
            draw(ax, kind, r["steps"], lambda s: s.rate)
        ax.set_title("1,000 clients in 100 rooms, all sending")
        ax.set_xlabel("offered messages/s (each to 10)")
    for ax in axes[0]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(args.p99, color="red", lw=0.8, ls=":")
        ax.set_ylabel("delivery latency, ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Latency against offered rate (red x: loss, duplicates or errors; dotted: p99 limit; a retried rate "
                 f"shows its better try) — {args.machine}, project {args.project_version}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
