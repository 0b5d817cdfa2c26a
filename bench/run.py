"""``make bench``: tensorweave side by side with TensorFlow (graph mode) and PyTorch (eager).

    python -m bench.run                     # full run: prints the table, writes bench/results.md
    python -m bench.run --quick             # fewer repetitions (a smoke run)
    python -m bench.run --threads 1,0       # matched 1-thread table, then each default

Each framework runs in its own worker process (so no framework's libraries or thread pools
touch another's), driven over a pipe by this process. For every workload the workers time
``--reps`` rounds of a few steps each, interleaved (tw, TF, torch, tw, TF, torch, ...), so a
burst of load from other users of the machine hits all three alike; medians are over all
timed steps. Peak memory of the LSTM step is measured by ``bench/memory.py`` in a fresh
process per framework. The tensorweave model steps are profiled (per-op-type times from a
traced run, and cProfile's top functions) and the profiles go into the results file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "src") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "src"))

from bench import workloads as W  # noqa: E402

TARGETS = {"session_run_us": 10.0, "per_op_us": 1.5, "import_s": 0.3}
# steps per round (fast workloads time many steps per round to beat timer resolution)
STEPS = {"session_run": 400, "per_op": 40, "mlp": 10, "lstm": 2, "cnn": 2}
MODEL_WORKLOADS = ("mlp", "lstm", "cnn")


# --- worker side -----------------------------------------------------------------------------
def worker(framework, threads):
    """Serves build/time/profile requests, one JSON line each way, until 'quit'."""
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not corrupt the protocol
    if os.environ.get("TW_BENCH_CPU"):  # before any framework starts its threads
        os.sched_setaffinity(0, {int(os.environ["TW_BENCH_CPU"])})
    W.set_threads(framework, threads)
    cases = {}
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        try:
            if cmd == "quit":
                break
            if cmd == "build":
                t0 = time.perf_counter()
                case = cases[req["workload"]] = W.build(framework, req["workload"],
                                                        threads=threads)
                loss0 = case.step()
                for _ in range(req.get("warmup", 3)):
                    case.step()
                reply = {"loss0": loss0, "notes": case.notes,
                         "build_s": time.perf_counter() - t0}
                if framework == "tensorweave":
                    reply["blas"] = blas_info()
            elif cmd == "time":
                step = cases[req["workload"]].step
                times, cpu = [], []
                for _ in range(req["n"]):
                    c0, t0 = time.process_time(), time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                reply = {"times": times, "cpu": cpu}
            elif cmd == "profile":
                reply = profile_tensorweave(cases[req["workload"]], req.get("n", 3))
            elif cmd == "phases":
                reply = traced_phases(framework, cases[req["workload"]], req.get("n", 3))
            elif cmd == "close":
                cases.pop(req["workload"]).close()
                reply = {}
            else:
                reply = {"error": f"unknown command {cmd!r}"}
        except Exception as e:  # noqa: BLE001  (reported in the table, the run goes on)
            reply = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def blas_info():
    """NumPy's BLAS as threadpoolctl sees it (library, kernel architecture, threads)."""
    import threadpoolctl
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: d.get(k) for k in keep} for d in threadpoolctl.threadpool_info()
            if d.get("user_api") == "blas"]


def profile_tensorweave(case, n=3):
    """Per-op-type milliseconds per step (traced run) and cProfile's top functions."""
    import cProfile
    import io
    import pstats

    import tensorweave as tw

    sess, fetches, feed = case.session, case.fetches, case.feed
    by_type: dict = {}
    traced = 0.0
    for _ in range(n):
        md = tw.RunMetadata()
        sess.run(fetches, feed, options=tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE),
                 run_metadata=md)
        for dev in md.step_stats.dev_stats:
            for ns in dev.node_stats:
                e = by_type.setdefault(ns.op_type, [0.0, 0])
                e[0] += ns.all_end_rel_micros / 1e3 / n
                e[1] += 1
                traced += ns.all_end_rel_micros / 1e3 / n
    ops = sorted(([k, round(v[0], 3), v[1] // n] for k, v in by_type.items()),
                 key=lambda r: -r[1])
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        case.step()
    prof.disable()
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    rows = []
    for (file, line, fn), (_cc, nc, tt, _ct, _) in st.stats.items():
        where = fn if file == "~" else f"{os.path.basename(file)}:{line}({fn})"
        rows.append([where, round(tt / n * 1e3, 3), nc // n])
    rows.sort(key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    return {"by_op_type": ops[:12], "traced_ms": round(traced, 3),
            "cprofile_top": rows[:10], "cprofile_total_ms": round(total, 3)}


# --- driver side -------------------------------------------------------------------------------
PHASES = ("forward", "gradients", "optimizer")


def _phase(node_name):
    """Which part of a training step a node of the shared graph builder belongs to: both
    frameworks name the nodes alike (``gradients/...``, ``Adam/...``, the forward pass plain)."""
    if node_name.startswith("gradients/"):
        return "gradients"
    if node_name.split("/")[0] in ("Adam", "GradientDescent") or "/update_" in node_name:
        return "optimizer"
    return "forward"


def traced_phases(framework, case, n=3):
    """One traced step's op times (medians of ``n``) per phase and per op type, in ms, for a
    graph-mode framework (tensorweave or TF's ``tf.compat.v1``): the same measurement for
    both, so the missed-target notes compare like with like."""
    if framework == "tensorweave":
        import tensorweave as tf_api
        options = tf_api.RunOptions(trace_level=tf_api.RunOptions.FULL_TRACE)
    elif framework == "tensorflow":
        import tensorflow as tf
        tf_api = tf.compat.v1
        options = tf_api.RunOptions(trace_level=tf_api.RunOptions.FULL_TRACE)
    else:
        return {"error": f"no graph trace for {framework}"}
    per_node: dict = {}
    for _ in range(n):
        md = tf_api.RunMetadata()
        case.session.run(case.fetches, case.feed, options=options, run_metadata=md)
        for dev in md.step_stats.dev_stats:
            for ns in dev.node_stats:
                if ns.node_name.startswith("_"):  # TF's _SOURCE, _Arg, _Retval
                    continue
                op_type = ns.op_type if framework == "tensorweave" else \
                    ns.timeline_label.partition(" = ")[2].partition("(")[0] or "?"
                per_node.setdefault((ns.node_name, op_type), []).append(
                    ns.all_end_rel_micros / 1e3)
    phases = {p: 0.0 for p in PHASES}
    types: dict = {}
    for (name, op_type), ts in per_node.items():
        ms = statistics.median(ts)
        phases[_phase(name)] += ms
        e = types.setdefault(op_type, [0.0, 0])
        e[0] += ms
        e[1] += 1
    top = sorted(([k, round(v[0], 3), v[1]] for k, v in types.items()), key=lambda r: -r[1])
    return {"phases": {k: round(v, 3) for k, v in phases.items()}, "by_op_type": top[:8]}


class Worker:
    def __init__(self, framework, threads):
        self.framework = framework
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.run", "--worker", framework, "--threads", str(threads)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=worker_env(threads))

    def ask(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"{self.framework} worker exited (rc={self.proc.poll()})"}
        return json.loads(line)

    def close(self):
        try:
            self.ask(cmd="quit")
        except (BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=30)


PIN_CPU = None  # the CPU every 1-thread worker runs on (set by main unless --no-pin)


def pin_cpu():
    """The CPU to pin 1-thread workers to: the last one this process may use."""
    try:
        return max(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def worker_env(threads):
    """A worker's environment: quiet TF; with ``threads``, NumPy's OpenBLAS pool is sized
    before NumPy loads (threadpoolctl re-applies it and reports it). With one thread each,
    every worker is pinned to the same CPU (``TW_BENCH_CPU``): on this shared 2-core machine
    the cores are not equally fast at a given moment, and unpinned the tw/TF MLP ratio ranged
    0.89-1.21x over seven runs within an hour (2026-11-29); pinned, 0.94-1.07x over four."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TW_BENCH_CPU", None)
    if threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    if threads == 1 and PIN_CPU is not None:
        env["TW_BENCH_CPU"] = str(PIN_CPU)
    return env


def available(framework):
    mod = {"tensorweave": "tensorweave", "tensorflow": "tensorflow", "pytorch": "torch"}
    import importlib.util
    return importlib.util.find_spec(mod[framework]) is not None


def import_time(module, runs, bytecode=True):
    """Median seconds of ``import module`` in fresh interpreters. ``bytecode``: with compiled
    bytecode caches, as after any ``pip install`` (kept in a private PYTHONPYCACHEPREFIX,
    filled by one untimed import first); False: as this environment runs Python, with
    PYTHONDONTWRITEBYTECODE=1 every import compiles every module from source."""
    import tempfile
    code = f"import time; t = time.perf_counter(); import {module}; " \
           "print(time.perf_counter() - t)"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "tensorweave-bench-pyc")
        runs += 1  # the first run writes the caches
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    vals = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=ROOT, env=env)
        if r.returncode == 0:
            vals.append(float(r.stdout.strip().splitlines()[-1]))
    if bytecode:
        vals = vals[1:]
    return statistics.median(vals) if vals else None


def time_all(frameworks, workloads, threads, reps, log):
    """{workload: {framework: {'median_s', 'n', 'loss0', 'notes', 'error'}}} (+ profiles)."""
    workers = {fw: Worker(fw, threads) for fw in frameworks}
    res: dict = {}
    profiles: dict = {}
    blas = None
    try:
        for wl in workloads:
            row = res[wl] = {}
            for fw, wk in workers.items():
                r = wk.ask(cmd="build", workload=wl)
                row[fw] = {"times": [], **r}
                blas = blas or r.get("blas")
            live = [fw for fw in workers if "error" not in row[fw]]
            log(f"  {wl}: timing {', '.join(live)} interleaved, {reps} rounds "
                f"x {STEPS[wl]} steps")
            for _ in range(reps):
                for fw in live:
                    r = workers[fw].ask(cmd="time", workload=wl, n=STEPS[wl])
                    if "error" in r:
                        row[fw]["error"] = r["error"]
                    else:
                        row[fw]["times"] += r["times"]
                        row[fw].setdefault("cpu", []).extend(r["cpu"])
                live = [fw for fw in live if "error" not in row[fw]]
            for fw in workers:
                ts = row[fw].pop("times")
                cpu = row[fw].pop("cpu", [])
                row[fw]["cpu_median_s"] = statistics.median(cpu) if cpu else None
                row[fw]["n"] = len(ts)
                row[fw]["median_s"] = statistics.median(ts) if ts else None
                row[fw]["q1_s"], row[fw]["q3_s"] = _quartiles(ts)
            if wl in MODEL_WORKLOADS and "tensorweave" in workers \
                    and "error" not in row["tensorweave"]:
                profiles[wl] = workers["tensorweave"].ask(cmd="profile", workload=wl)
                profiles[wl]["phases"] = {fw: workers[fw].ask(cmd="phases", workload=wl)
                                          for fw in ("tensorweave", "tensorflow")
                                          if fw in workers and "error" not in row[fw]}
            for fw, wk in workers.items():
                if "error" not in row[fw]:
                    wk.ask(cmd="close", workload=wl)
            log("    " + "  ".join(f"{fw} {_fmt_s(row[fw].get('median_s'))}"
                                   for fw in workers))
    finally:
        for wk in workers.values():
            wk.close()
    return res, profiles, blas


def _quartiles(ts):
    if len(ts) < 4:
        return None, None
    q = statistics.quantiles(ts, n=4)
    return q[0], q[2]


def _fmt_s(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.2f} us"
    return f"{s * 1e3:.2f} ms"


def memory_all(frameworks, threads, log):
    out = {}
    for fw in frameworks:
        log(f"  memory: {fw} LSTM step")
        r = subprocess.run([sys.executable, "-m", "bench.memory", fw, "--threads", str(threads)],
                           capture_output=True, text=True, cwd=ROOT, env=worker_env(threads))
        try:
            out[fw] = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out[fw] = {"error": (r.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return out


def derived(res, key="median_s"):
    """Per framework: session-run overhead, per-op overhead, model step medians (seconds);
    ``key``: "median_s" (wall clock) or "cpu_median_s" (process CPU time)."""
    out = {}
    for fw in {f for row in res.values() for f in row}:
        d = {}
        sr = res.get("session_run", {}).get(fw, {}).get(key)
        chain = res.get("per_op", {}).get(fw, {}).get(key)
        d["session_run"] = sr
        if chain is not None and sr is not None:
            d["per_op"] = (chain - sr) / W.CHAIN
        for wl in MODEL_WORKLOADS:
            d[wl] = res.get(wl, {}).get(fw, {}).get(key)
        out[fw] = d
    return out


def table(res, der, frameworks, imports, memory):
    peers = [f for f in ("tensorflow", "pytorch") if f in frameworks]
    names = {"tensorweave": "tensorweave", "tensorflow": "TF 2 graph", "pytorch": "PyTorch"}
    head = "| benchmark | " + " | ".join(names[f] for f in frameworks) + " | " + \
        " | ".join(f"tw/{names[p]}" for p in peers) + " | target | met |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def ratio(a, b):
        return f"{a / b:.2f}x" if a is not None and b else "-"

    rows = [("session_run", "Session.run overhead", 1e6, "us"),
            ("per_op", "per-op overhead (tanh chain)", 1e6, "us"),
            ("mlp", "MLP step", 1e3, "ms"), ("lstm", "LSTM step", 1e3, "ms"),
            ("cnn", "CNN step", 1e3, "ms")]
    verdicts = {}
    for key, label, scale, unit in rows:
        vals = [der.get(f, {}).get(key) for f in frameworks]
        if all(v is None for v in vals):
            continue
        cells = []
        for f, v in zip(frameworks, vals):
            err = res.get(key, {}).get(f, {}).get("error")
            cells.append(f"{v * scale:.2f} {unit}" if v is not None else f"error: {err}"
                         if err else "-")
        tw_v = der.get("tensorweave", {}).get(key)
        ratios = [ratio(tw_v, der.get(p, {}).get(key)) for p in peers]
        if key == "session_run":
            target, met = "<= 10 us", tw_v is not None and tw_v * 1e6 <= 10
        elif key == "per_op":
            target, met = "<= 1.5 us", tw_v is not None and tw_v * 1e6 <= 1.5
        else:
            target = "<= 1.0x each peer"
            met = tw_v is not None and all(der.get(p, {}).get(key) is None
                                           or tw_v <= der[p][key] for p in peers)
        verdicts[key] = met
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) +
                     f" | {target} | {'yes' if met else 'NO'} |")
    if imports:
        cells = [f"{imports[f]:.3f} s" if imports.get(f) is not None else "-" for f in frameworks]
        met = imports.get("tensorweave") is not None and imports["tensorweave"] <= 0.3
        verdicts["import"] = met
        lines.append("| import time | " + " | ".join(cells) + " | " +
                     " | ".join(ratio(imports.get("tensorweave"), imports.get(p))
                                for p in peers) + f" | <= 0.3 s | {'yes' if met else 'NO'} |")
    if memory:
        vals = {f: memory.get(f, {}).get("step_peak_mb") for f in frameworks}
        cells = [f"{vals[f]:.1f} MB" if vals[f] is not None else
                 f"error: {memory.get(f, {}).get('error', '-')}" for f in frameworks]
        tf_v = vals.get("tensorflow")
        met = vals.get("tensorweave") is not None and (tf_v is None or vals["tensorweave"] <= tf_v)
        verdicts["memory"] = met
        lines.append("| LSTM step peak memory (VmHWM - VmRSS) | " + " | ".join(cells) + " | " +
                     " | ".join(ratio(vals.get("tensorweave"), vals.get(p)) for p in peers) +
                     f" | <= TF's | {'yes' if met else 'NO'} |")
        hwm = {f: memory.get(f, {}).get("hwm_mb") for f in frameworks}
        lines.append("| LSTM process peak RSS (VmHWM) | " + " | ".join(
            f"{hwm[f]:.1f} MB" if hwm[f] is not None else "-" for f in frameworks) + " | " +
            " | ".join(ratio(hwm.get("tensorweave"), hwm.get(p)) for p in peers) + " | - | - |")
    return "\n".join(lines), verdicts


def machine_info():
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f
                               if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info["uptime"] = _uptime()
    info["openblas_env"] = {k: os.environ.get(k, "(unset)")
                            for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    return info


def _uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def import_profile(top=8):
    """The modules with the largest own import time (``-X importtime``, bytecode cached)."""
    import tempfile
    env = {**os.environ, "PYTHONPYCACHEPREFIX": os.path.join(tempfile.gettempdir(),
                                                              "tensorweave-bench-pyc")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tensorweave"],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    rows = []
    for ln in r.stderr.splitlines():
        parts = ln.split("|")
        if len(parts) == 3 and parts[0].startswith("import time:") and parts[1].strip().isdigit():
            rows.append((int(parts[0].split(":")[1]), int(parts[1]), parts[2].strip()))
    total = max((c for _, c, n in rows if n == "tensorweave"), default=0)
    rows.sort(reverse=True)
    return total / 1e6, [(name, own / 1e3) for own, _, name in rows[:top]]


def missed_md(der, verdicts, profiles, imports, imp_prof):
    """By how much each missed target is missed, with the measured profile behind it."""
    out = []
    for wl in MODEL_WORKLOADS:
        if verdicts.get(wl, True):
            continue
        tw_v = der.get("tensorweave", {}).get(wl)
        peers = [(p, der.get(p, {}).get(wl)) for p in ("tensorflow", "pytorch")]
        gaps = ", ".join(f"{tw_v / v:.2f}x {p} ({(tw_v - v) * 1e3:+.1f} ms)"
                         for p, v in peers if v and tw_v and tw_v > v)
        prof = profiles.get(wl) or {}
        top = ", ".join(f"{t} {ms:.1f} ms ({n} ops)" for t, ms, n in prof.get("by_op_type", [])[:5])
        out.append(f"- **{wl}**: tensorweave is {gaps}. Where its step goes (traced, ms/step): "
                   f"{top}.")
        out += _phases_md(wl, prof.get("phases") or {})
    if not verdicts.get("import", True) and imp_prof:
        total, rows = imp_prof
        out.append(f"- **import**: {imports.get('tensorweave', 0):.3f} s against 0.3 s; "
                   f"`-X importtime` total {total:.3f} s, largest own times: " +
                   ", ".join(f"{n} {ms:.1f} ms" for n, ms in rows) + ".")
    if not verdicts.get("memory", True):
        out.append("- **memory**: see the details below.")
    return out


def _phases_md(wl, phases):
    """tensorweave and TF side by side, from one traced step each (tracing adds overhead to
    both, so the sums exceed the untraced medians): which part of the step the gap is in."""
    tw_p, tf_p = phases.get("tensorweave") or {}, phases.get("tensorflow") or {}
    if "phases" not in tw_p or "phases" not in tf_p:
        return []
    out = ["", f"  {wl}, traced op time per phase of the step (ms; tensorweave vs TF 2 graph):",
           "", "  | phase | tensorweave | TF 2 graph | difference |", "  |---|---|---|---|"]
    for ph in PHASES + ("total",):
        a = sum(tw_p["phases"].values()) if ph == "total" else tw_p["phases"][ph]
        b = sum(tf_p["phases"].values()) if ph == "total" else tf_p["phases"][ph]
        out.append(f"  | {ph} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
    out += ["", "  Largest op types, TF 2 graph (ms/step, ops): " +
            ", ".join(f"{t} {ms:.1f} ({n})" for t, ms, n in tf_p["by_op_type"]) + ".", ""]
    return out


def _profile_md(wl, prof):
    if not prof or "error" in prof:
        return [f"- {wl}: profile failed: {prof.get('error') if prof else 'none'}"]
    out = [f"**{wl}** (tensorweave; traced per-op-type times, ms per step, sum "
           f"{prof['traced_ms']:.1f} ms):", "",
           "| op type | ms/step | ops |", "|---|---|---|"]
    out += [f"| {t} | {ms:.2f} | {n} |" for t, ms, n in prof["by_op_type"]]
    out += ["", f"cProfile, top functions by own time (ms per step; profiled total "
            f"{prof['cprofile_total_ms']:.1f} ms):", "", "| function | ms/step | calls |",
            "|---|---|---|"]
    out += [f"| `{f}` | {ms:.2f} | {n} |" for f, ms, n in prof["cprofile_top"]]
    return out + [""]


def report(args, runs, imports, memory, info, log):
    lines = ["# tensorweave benchmarks", "",
             f"Written by `make bench` (`python -m bench.run`) on {time.strftime('%Y-%m-%d %H:%M')}. "
             "Medians over interleaved rounds (tw, TF, torch, tw, ...), each framework in its "
             "own worker process; ratios are tensorweave / peer from the same run.", "",
             f"- machine: {info.get('cpu', '?')}, {info['cores']} cores, {info['platform']}, "
             f"Python {info['python']}",
             f"- load before: `{info['uptime']}`",
             f"- BLAS env for this run: {info['openblas_env']} (make bench unsets both)",
             f"- 1-thread workers pinned to CPU {PIN_CPU} (all frameworks on the same core)"
             if PIN_CPU is not None else "- workers not pinned (--no-pin)"]
    verdicts_all = {}
    for threads, (res, profiles, blas, after) in runs.items():
        der = derived(res)
        tbl, verdicts = table(res, der, args.frameworks, imports if threads == args.threads[0]
                              else None, memory if threads == args.threads[0] else None)
        verdicts_all[threads] = verdicts
        missed = missed_md(der, verdicts, profiles, imports or {},
                           getattr(args, "import_profile", None)
                           if threads == args.threads[0] else None)
        tlabel = (f"{threads} intra-op thread(s) per framework (tw: NumPy's BLAS pool; TF: "
                  "intra/inter-op pools; torch: set_num_threads)" if threads
                  else "each framework's default threading")
        cpu_tbl, _ = table(res, derived(res, "cpu_median_s"), args.frameworks, None, None)
        lines += ["", f"## Results: {tlabel}", "", "Wall clock, median per step:", "", tbl, "",
                  "Process CPU time (all threads), median per step: less sensitive to other "
                  "users' load on this shared machine (with 1 thread per framework it is the "
                  "work each framework does):", "", cpu_tbl, "",
                  f"- load after: `{after}`",
                  *(["", "Missed targets, by how much, with the measured profile:", ""] + missed
                    + [""] if missed else []),
                  f"- NumPy BLAS in the tensorweave worker (threadpoolctl): {blas}"]
        for wl, row in res.items():
            losses = {fw: r.get("loss0") for fw, r in row.items() if r.get("loss0") is not None}
            if losses:
                lines.append(f"- {wl} first-step loss (same weights and batch): " +
                             ", ".join(f"{fw} {v:.6f}" for fw, v in losses.items()))
        notes = sorted({n for row in res.values() for r in row.values()
                        for n in r.get("notes", [])})
        lines += [f"- {n}" for n in notes]
        lines += ["- per-op overhead = (median chain step - median Session.run step) / "
                  f"{W.CHAIN}, for each framework"]
        if profiles:
            lines += ["", "### tensorweave profiles", ""]
            for wl, prof in profiles.items():
                lines += _profile_md(wl, prof)
    if memory:
        lines += ["", "## LSTM step memory (details)", "",
                  "Each framework in its own process: 3 warm-up steps, VmRSS read, peak reset "
                  "via `/proc/self/clear_refs` (5), 5 steps, VmHWM read.", ""]
        for fw, m in memory.items():
            lines.append(f"- {fw}: {json.dumps(m)}")
    if imports:
        lines += ["", "## Import time", "",
                  "Medians over fresh interpreters, with bytecode caches (as after a pip "
                  "install; the table's numbers): " +
                  ", ".join(f"`import {'torch' if m == 'pytorch' else m}` {v:.3f} s"
                            for m, v in imports.items() if v and not m.startswith("("))]
        lines += [f"- {m[1:-1]}: {v:.3f} s" for m, v in imports.items()
                  if v and m.startswith("(")]
    return "\n".join(lines) + "\n", verdicts_all


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--threads", default="1",
                    help="comma list of intra-op thread counts, one table each (0: defaults)")
    ap.add_argument("--reps", type=int, default=7, help="interleaved rounds per workload")
    ap.add_argument("--quick", action="store_true", help="3 rounds, no memory, 3 imports")
    ap.add_argument("--workloads", default=",".join(W.WORKLOADS))
    ap.add_argument("--frameworks", default=",".join(W.FRAMEWORKS))
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-pin", action="store_true",
                    help="let the scheduler place 1-thread workers (default: all on one CPU)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results.md"))
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, int(args.threads))
        return
    args.threads = [int(t) for t in args.threads.split(",")]
    global PIN_CPU
    PIN_CPU = None if args.no_pin else pin_cpu()
    if args.quick:
        args.reps = 3
    log = print
    args.frameworks = [f for f in args.frameworks.split(",") if f]
    missing = [f for f in args.frameworks if not available(f)]
    if missing:
        log(f"not installed, skipped: {', '.join(missing)} (pip install -e '.[bench]')")
    args.frameworks = [f for f in args.frameworks if f not in missing]
    info = machine_info()
    log(f"load: {info['uptime']}")
    log(f"BLAS env: {info['openblas_env']}")
    runs = {}
    for threads in args.threads:
        log(f"timing with threads={threads or 'default'}")
        res, profiles, blas = time_all(args.frameworks, args.workloads.split(","), threads,
                                       args.reps, log)
        runs[threads] = (res, profiles, blas, _uptime())
    log("import times")
    mods = {"tensorweave": "tensorweave", "tensorflow": "tensorflow", "pytorch": "torch"}
    imports = {f: import_time(mods[f], 3 if args.quick or f != "tensorweave" else 7)
               for f in args.frameworks}
    args.import_profile = import_profile() if "tensorweave" in imports else None
    if "tensorweave" in imports:  # context: NumPy's share, and the cost without bytecode
        imports["(import numpy alone, with bytecode)"] = import_time("numpy", 5)
        imports["(import tensorweave without bytecode caches, PYTHONDONTWRITEBYTECODE=1 "
                "as set in this environment)"] = import_time("tensorweave", 3, bytecode=False)
    memory = None if (args.quick or args.no_memory) else memory_all(args.frameworks,
                                                                    args.threads[0], log)
    text, verdicts = report(args, runs, imports, memory, info, log)
    with open(args.out, "w") as f:
        f.write(text)
    first = runs[args.threads[0]]
    print()
    print(table(first[0], derived(first[0]), args.frameworks, imports, memory)[0])
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
