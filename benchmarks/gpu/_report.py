"""The markdown page of a GPU validation run, made from its JSON alone (so it can be rebuilt from the file)."""

from __future__ import annotations

from typing import Any

READINGS = (  # (JSON key, column title)
    ("peak_bytes", "tensor peak (MemTracker)"),
    ("cuda_max_allocated_bytes", "CUDA max allocated"),
    ("cuda_max_reserved_bytes", "CUDA max reserved"),
    ("nvml_process_peak_bytes", "NVML process"),
    ("nvml_device_delta_peak_bytes", "NVML device Δ"),
)


def markdown(results: dict[str, Any]) -> str:
    """The whole page: header, speed, fitted rates, memory (vs the estimate, vs e2e, vs the paper) and the
    Pareto front, budget, wall time, accuracy, tests."""
    parts = [_header(results), _speed(results.get("speed")), _fit(results.get("fit")), _memory(results),
             _pareto(results.get("pareto")), _budget(results.get("budget")), _walltime(results.get("walltime")),
             _accuracy(results.get("accuracy")), _tests(results.get("tests")), _notes(results)]
    return "\n".join(p for p in parts if p).rstrip() + "\n"


def _skipped(title: str, section: dict[str, Any]) -> str | None:
    if section.get("status") == "skipped":
        return f"{title}\n\nSkipped: {section['reason']}.\n"
    if section.get("status") == "failed" and section.get("error"):
        return f"{title}\n\n**Failed**:\n\n```\n{section['error']}\n```\n"
    return None


def _speed(sp: dict[str, Any] | None) -> str:
    if not sp:
        return ""
    title = "## 1. Speed: sequential against e2e, as the trainer feeds them"
    if (done := _skipped(title, sp)) is not None:
        return done
    s = sp["setting"]
    size = "x".join(str(n) for n in s["input"])
    feeds = sp.get("feeds", [])
    e2e = sp.get("e2e", {})
    out = [f"{title}: {s['model']} {size}, batch {s['batch_size']}, device {s['device']}", "",
           f"One epoch of {sp['batches']} batches per figure after {sp['warmup']} warm-up steps, one host sync per step "
           "(the trainer's). Feeds: `device` the batches already on the device (the floor); `plain` the prefetch "
           "thread's copies (before the CUDA feed); `stream` the CUDA feed (pinned staging, side stream, one batch "
           "ahead); `stream-nosync` the same without the per-step host sync.", "",
           f"**{sp.get('target_verdict', 'target: n/a')}**", ""]
    head = ["K", "split"] + [f"sequential / e2e ({f})" for f in feeds] + ["parallel / e2e (stream)", "parallel / e2e (device)"]
    rows = []
    for r in sp.get("ratios", []):
        rows.append([r["modules"], r["split"]] + [_x(r.get(f"sequential_{f.replace('-', '_')}")) for f in feeds]
                    + [_x(r.get("parallel_stream")), _x(r.get("parallel_device"))])
    out.append(_table(head, rows))
    head = ["what"] + [f"ms / sample ({f})" for f in feeds]
    rows = [["e2e"] + [_ms(e2e.get(f)) for f in feeds]]
    for r in sp.get("rows", []):
        rows.append([f"sequential K={r['modules']} {r['split']}"] + [_ms((r.get("sequential") or {}).get(f)) for f in feeds])
        rows.append([f"parallel K={r['modules']} {r['split']}"] + [_ms((r.get("parallel") or {}).get(f)) for f in feeds])
    out.append(_table(head, rows))
    if sp.get("stopped"):
        out.append("Stopped at its time share: the figures missing above were not measured.\n")
    prof = sp.get("profile")
    if prof:
        out.append(f"### torch.profiler: one epoch of sequential module {prof['module']} (K={prof['modules']} "
                   f"{prof['split']}), sorted by {prof['sort']}\n")
        for feed in ("plain", "stream"):
            if feed in prof:
                out += [f"{feed} feed: epoch {prof[feed]['epoch_s'] * 1e3:.1f} ms (under the profiler)", "", "```",
                        prof[feed]["table"].rstrip(), "```", ""]
    return "\n".join(out)


def _fit(f: dict[str, Any] | None) -> str:
    if not f:
        return ""
    title = "## 2. Fitted rates of the time model (benchmarks/step_time_model.py)"
    if (done := _skipped(title, f)) is not None:
        return done
    rows = [[precision, _rate(r["flops_per_s"], 1e12, "TFLOP/s"), _rate(r["bytes_per_s"], 1e9, "GB/s"),
             f"{1e6 * r['seconds_per_op']:.2f} us"] for precision, r in (f.get("fitted") or {}).items()]
    out = [title, "", f"`python {f['command']}`: {f.get('rows', 0)} module steps"
           + (" (stopped at its time share)" if f.get("stopped_at_deadline") else "") + f", [{f.get('results_file')}]"
           f"({f.get('results_file')}).", "", _table(["precision", "F (matrix rate)", "B (bytes written)", "L (per op)"], rows),
           f"Pairs of one module's options ranked right: fitted {_pct(f.get('ranking_agreement_fitted'))}, shipped "
           f"{_pct(f.get('ranking_agreement_shipped'))}; pairs of whole plans (options summed over the network): fitted "
           f"{_pct(f.get('plans_ranked_right_fitted'))}, shipped {_pct(f.get('plans_ranked_right_shipped'))}.", ""]
    if f.get("rates_file"):
        out += [f"To ship the fit: `{f['rates_file']['install']}` (the file is `{f.get('rates_file_written')}` "
                "beside these results; edgetrgl/planning/speed.py reads it by GPU name).", ""]
    return "\n".join(out)


def _pareto(pa: dict[str, Any] | None) -> str:
    if not pa:
        return ""
    title = f"### Pareto front at K={pa['modules']} ({pa['split']}): tensor peak against time per sample"
    if (done := _skipped(title, pa)) is not None:
        return done
    rows = [[x["method"], _mib(x.get("peak_bytes")), _mib(x.get("cuda_max_reserved_bytes")), _ms(x.get("time_per_sample_s")),
             "*" if x.get("on_pareto_front") else ""] for x in pa.get("points", [])]
    chart = f"![Pareto chart]({pa['png']})" if pa.get("png") else f"No chart: {pa.get('png_error')}."
    return "\n".join([title, "", _table(["method", "tensor peak", "CUDA max reserved", "ms / sample", "front"], rows),
                      chart, ""])


def _accuracy(a: dict[str, Any] | None) -> str:
    if not a:
        return ""
    title = "## 6. Accuracy: ResNet-110 on Fashion-MNIST at paper scale (issue 19)"
    if (done := _skipped(title, a)) is not None:
        return done
    if "exit_code" not in a:
        return f"{title}\n\n**{a.get('status')}**: {a.get('reason', '')}\n"
    lines = [title, "", f"`python {a['script']} {' '.join(a.get('args', []))}`: exit {a['exit_code']}, "
             f"{a.get('wall_s', 0):.0f} s of a {a.get('budget_s')} s budget"
             + (f", beside {a['concurrent_with']}" if a.get("concurrent_with") else "") + ".", "",
             "Its last lines:", "", "```", *a.get("stdout_tail", []), "```", ""]
    if a.get("outputs"):
        lines += ["Its files: " + ", ".join(f"`{o}`" for o in a["outputs"]), ""]
    return "\n".join(lines)


def _header(r: dict[str, Any]) -> str:
    m = r["machine"]
    title = m.get("gpu") or "CPU" if m["device"] == "cuda" else "CPU"
    lines = [f"# GPU validation: {title} ({r['profile']} profile)", "",
             f"Command: `{r['command']}`  ",
             f"Date: {r['date']}, {r.get('elapsed_s', 0):.0f} s in all  ",
             f"GPU: {m.get('gpu') or 'none'}; driver {m.get('driver_version') or 'n/a'} "
             f"(CUDA {m.get('cuda_driver_version') or 'n/a'}); {_mib(m.get('gpu_total_bytes'))} per NVML  ",
             f"Software: torch {m['torch']} (CUDA {m.get('cuda') or 'n/a'}, cuDNN {m.get('cudnn') or 'n/a'}), "
             f"Python {m['python']}, edgetrgl {m.get('edgetrgl_commit')}  ",
             f"Host: {m['platform']}, {m['cpu']}, {m['nproc']} CPUs", ""]
    if r.get("failures"):
        lines += ["**Failed checks:**", ""] + [f"- {f}" for f in r["failures"]] + [""]
    else:
        lines += ["Every check passed.", ""]
    return "\n".join(lines)


def _tests(t: dict[str, Any] | None) -> str:
    if not t:
        return ""
    if t.get("status") == "skipped":
        return f"## 7. CUDA tests\n\nSkipped: {t['reason']}.\n"
    if "status" not in t:
        return "## 7. CUDA tests\n\nRunning (beside the budget, wall-time and accuracy steps).\n"
    counts = ", ".join(f"{t.get(k, 0)} {k}" for k in ("passed", "failed", "errors", "skipped"))
    return (f"## 7. CUDA tests\n\n`python {t['command']}`: **{t['status']}**: {counts} "
            f"({t.get('wall_s', 0):.0f} s; tests skip themselves without a GPU).\n")


def _memory(r: dict[str, Any]) -> str:
    section = r.get("memory")
    if not section:
        return ""
    if section.get("status") == "skipped":
        return f"## 3. Memory and time\n\nSkipped: {section['reason']}.\n"
    s = section["setting"]
    records = section["records"]
    e2e = next((x for x in records if x["method"] == "e2e" and "error" not in x), {})
    size = "x".join(str(n) for n in s["input"])
    out = [f"## 3. Memory and time: {s['model']} {size}, batch {s['batch_size']}, {s['data']}, device {s['device']}", "",
           f"Each method in a fresh process (`edgetrgl bench`'s worker), {s['warmup']} warm-up and {s['steps']} timed "
           "steps (median); the estimate is `edgetrgl bench --estimate` (fake tensors) on the same plan.", "",
           "### Measured vs the estimate (ratio measured / estimated)", ""]
    rows = []
    for x in records:
        if "error" in x:
            rows.append([x["label"], "error: " + x["error"]] + [""] * (len(READINGS) + 1))
            continue
        est = x.get("estimate_bytes")
        row = [x["label"], _mib(est)]
        for key, _ in READINGS:
            value = x.get(key)
            ratio = f" ({_ratio(value, est)})" if key in ("peak_bytes", "cuda_max_allocated_bytes", "cuda_max_reserved_bytes") and value is not None else ""
            row.append(_mib(value) + ratio)
        rows.append(row)
    out.append(_table(["method", "estimate"] + [title for _, title in READINGS], rows))
    out += ["### Against e2e (ratio to e2e's figure; lower is better)", ""]
    rows = []
    for x in records:
        if "error" in x:
            continue
        row = [x["label"], _ratio(x.get("estimate_bytes"), e2e.get("estimate_bytes"))]
        row += [_ratio(x.get(key), e2e.get(key)) for key, _ in READINGS]
        t = x.get("time_per_sample_s")
        row += ["n/a" if t is None else f"{1e3 * t:.3f}", _ratio(t, e2e.get("time_per_sample_s"))]
        rows.append(row)
    out.append(_table(["method", "estimate"] + [title for _, title in READINGS] + ["ms / sample", "time vs e2e"], rows))
    out.append(_paper(r, records, e2e))
    if section.get("skipped"):
        out.append(f"Skipped (deadline): {', '.join(section['skipped'])}.\n")
    if section.get("estimates_unfinished"):
        out.append(f"Estimates unfinished at the deadline: {', '.join(section['estimates_unfinished'])}.\n")
    return "\n".join(out)


def _paper(r: dict[str, Any], records: list[dict], e2e: dict) -> str:
    """Parallel TRGL / e2e at the paper's K, beside the paper's nvidia-smi ratios (V100)."""
    s = r["memory"]["setting"]
    if (s["model"], s["input"], s["batch_size"]) != ("resnet110", [3, 96, 96], 64):
        return "### Against the paper\n\nn/a: this profile is not the paper's setting (ResNet-110, 3x96x96, batch 64).\n"
    nvml_key = "nvml_process_peak_bytes" if e2e.get("nvml_process_peak_bytes") else "nvml_device_delta_peak_bytes"
    rows = []
    for k, paper in sorted((int(k), v) for k, v in r["paper"].items()):
        row = [str(k), f"{paper:.2f}x"]
        for split in ("equal", "balanced"):
            x = next((x for x in records if x["method"] == "parallel-trgl" and x["modules"] == k
                      and x["split"] == split and "error" not in x), {})
            row += [_ratio(x.get(nvml_key), e2e.get(nvml_key)), _ratio(x.get("cuda_max_reserved_bytes"), e2e.get("cuda_max_reserved_bytes")),
                    _ratio(x.get("estimate_bytes"), e2e.get("estimate_bytes"))]
        rows.append(row)
    nvml = "NVML process" if nvml_key == "nvml_process_peak_bytes" else "NVML device Δ"
    head = ["K", "paper (nvidia-smi, V100)"] + [f"{split}: {what}" for split in ("equal", "balanced")
                                                for what in (nvml, "reserved", "estimate")]
    return ("### Against the paper: parallel TRGL / e2e\n\n" + _table(head, rows)
            + f"\nThe paper's figure and the {nvml} column include the CUDA context and library workspaces "
              "(a fixed few hundred MiB in numerator and denominator); reserved and the estimate do not.\n")


_READING = {"cuda_max_reserved_bytes": "CUDA max reserved", "peak_bytes": "tensor peak (on the CPU)"}


def _budget(b: dict[str, Any] | None) -> str:
    if not b:
        return ""
    if b.get("status") == "skipped":
        return f"## 4. Budget held\n\nSkipped: {b['reason']}.\n"
    seq, e2e = b.get("sequential", {}), b.get("e2e", {})
    lines = [f"## 4. Budget held: `--budget {b['budget']}` ({_mib(b['budget_bytes'])}): **{b.get('status', 'incomplete')}**", "",
             "Synthetic data of the measured shape, one epoch per module; config:", "", "```toml", b["setting"].rstrip(), "```", ""]
    if seq:
        per = ", ".join(_mib(v) for v in seq.get("per_module_bytes") or [])
        est = ", ".join(_mib(v) for v in seq.get("estimated_bytes") or [])
        lines += [f"- sequential ({' '.join(seq['args'])}): exit "
                  f"{seq['exit_code']}, peak {_READING.get(seq.get('reading_name'), 'n/a')} **{_mib(seq.get('peak_bytes'))}** "
                  f"({'held' if seq.get('held') else 'NOT held'}); per module: {per or 'n/a'}; planner's estimates: "
                  f"{est or 'n/a'}; NVML process peak {_mib(seq.get('nvml_process_peak_bytes'))}, device Δ "
                  f"{_mib(seq.get('nvml_device_delta_peak_bytes'))} (both include the CUDA context, outside the budget)."]
    if e2e:
        said = e2e["stderr_lines"][0] if len(e2e.get("stderr_lines", [])) == 1 else f"{len(e2e.get('stderr_lines', []))} lines"
        if e2e.get("micro_batch"):
            held = "held it" if e2e.get("held") else "did NOT hold it"
            lines += [f"- e2e under the same budget: micro-batches of {e2e['micro_batch']}, peak "
                      f"{_mib(e2e.get('peak_bytes'))}: {held}"]
        else:
            lines += [f"- e2e under the same budget: exit {e2e['exit_code']}, "
                      f"{'refused in one line' if e2e.get('refused_in_one_line') else 'NOT refused in one line'}: `{said}`"]
    oom = b.get("oom")
    if oom:
        said = oom["stderr_lines"][0] if len(oom.get("stderr_lines", [])) == 1 else f"{len(oom.get('stderr_lines', []))} lines"
        lines += [f"- out of memory at the second step (`{oom['env']}`: on a GPU the caching allocator asked for a "
                  f"petabyte), no budget: exit {oom['exit_code']}, "
                  f"{'one line' if oom.get('one_line') else 'NOT one line'}: `{said}`"]
    return "\n".join(lines) + "\n"


def _walltime(w: dict[str, Any] | None) -> str:
    if not w:
        return ""
    if w.get("status") == "skipped":
        return f"## 5. Wall time\n\nSkipped: {w['reason']}.\n"
    runs = w.get("runs", [])
    cpu = {r["label"].split(" ", 1)[1]: r.get("wall_time_s") for r in runs if r["device"] == "cpu"}
    rows = []
    for x in runs:
        variant = x["label"].split(" ", 1)[1]
        rows.append([f"`edgetrgl train {' '.join(x['args'])}`", x["device"], _seconds(x.get("wall_time_s")),
                     _ratio(x.get("wall_time_s"), cpu.get(variant)) if x["device"] != "cpu" else "1.00x",
                     _percent(x.get("last_module_accuracy")), x.get("cache") or "n/a",
                     _mib(x.get("cuda_max_reserved_bytes"))])
    out = ["## 5. Wall time: `edgetrgl train` on the bundled data (summary.json's `wall_time_s`)", "",
           _table(["command", "device", "wall time", "vs CPU", "last module test acc.", "cache", "CUDA max reserved"], rows)]
    if w.get("train_toml"):
        out += ["`train.toml`:", "", "```toml", w["train_toml"].rstrip(), "```", ""]
    if w.get("note"):
        out.append(w["note"] + ".\n")
    if w.get("skipped"):
        out.append(f"Skipped (deadline): {', '.join(w['skipped'])}.\n")
    return "\n".join(out)


def _notes(r: dict[str, Any]) -> str:
    return ("## Notes\n\n"
            "- tensor peak: MemTracker over one step after warm-up (the same figure on CPU and GPU); CUDA max allocated / "
            "reserved: the caching allocator's peaks over the timed steps (sequential: the worst module's, the cache "
            "emptied between modules); NVML process: this run's child process as NVML lists it (None where NVML's pids "
            "are not ours, e.g. in a container); NVML device Δ: device memory used at the peak minus just before the "
            "child started; both sampled every 20 ms by the parent.\n"
            "- sequential: each module alone on the device, fed a random batch of its input shape (what the cache "
            "serves); time per sample is the sum over modules of the median module step.\n"
            "- the estimate of sequential is its worst module's; of offload, what stays on the device (offload's "
            "MemTracker figure also counts the saved activations waiting in host memory: it sums every device).\n")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _mib(n: int | float | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**20:,.0f} MiB" if n >= 10 * 2**20 else f"{n / 2**20:.2f} MiB"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}x"


def _seconds(t: float | None) -> str:
    return "n/a" if t is None else f"{t:.1f} s"


def _percent(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def _ms(t: float | None) -> str:
    return "n/a" if t is None else f"{1e3 * t:.3f}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def _rate(v: float | None, scale: float, unit: str) -> str:
    return "free (fitted 0 s per unit)" if v is None else f"{v / scale:.3g} {unit}"
