"""MkDocs hook: tables generated from ``benchmarks/*.json``.

In a page, ``<!-- benchmark: NAME.json -->`` is replaced by the tables of that file, and
``<!-- benchmarks: others -->`` by a section for every file that no marker named, so a
new file shows up without editing the page. Each file is rendered by its shape, not its
name: the ``kiosk bench core`` shape (``stage_ms`` and ``train``), the ``kiosk bench
live`` shape (``gallery`` with ``fast`` and ``camera``, maybe a ``soak``), and anything
else as its top-level figures. A file that cannot be read is listed with the reason;
it never breaks the build. A marker naming a file that does not exist is a warning,
which ``--strict`` turns into a failed build.

Every JSON file is also published beside the pages (``benchmarks/NAME.json`` in the
site), so the pages can link to the raw figures.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

ONE = re.compile(r"<!--\s*benchmark:\s*([^\s>]+)\s*-->")
OTHERS = "<!-- benchmarks: others -->"
log = logging.getLogger("mkdocs.hooks.benchmarks")


def bench_dir(config: Any) -> Path:
    return Path(config.config_file_path).resolve().parent / "benchmarks"


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path in sorted(bench_dir(config).glob("*.json")):
        files.append(File.generated(config, f"benchmarks/{path.name}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if not ONE.search(markdown) and OTHERS not in markdown:
        return markdown
    folder = bench_dir(config)
    here = page.file.src_uri.count("/")
    link = "../" * here + "benchmarks/"
    named: set[str] = set()

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        named.add(name)
        path = folder / name
        if not path.is_file():
            log.warning(f"{page.file.src_uri}: benchmark file benchmarks/{name} does not exist")
            return f"*benchmarks/{name} is missing.*"
        return render_file(path, link)

    markdown = ONE.sub(one, markdown)
    if OTHERS in markdown:
        rest = [p for p in sorted(folder.glob("*.json")) if p.name not in named]
        parts = [f"### `{p.name}`\n\n{render_file(p, link)}" for p in rest]
        markdown = markdown.replace(OTHERS, "\n\n".join(parts) or "*No other benchmark files.*")
    return markdown


# ---------------------------------------------------------------------------- renderers


def render_file(path: Path, link: str) -> str:
    source = f"Generated from [`benchmarks/{path.name}`]({link}{path.name})."
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return f"{source} It could not be read: {error}.\n"
    for shape in (core_tables, live_tables, quantize_tables):
        try:
            body = shape(data)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as error:
            log.info(f"benchmarks/{path.name}: not the {shape.__name__} shape ({error!r})")
            continue
        if body is not None:
            return f"{source}\n\n{body}\n"
    return f"{source}\n\n{generic_tables(data)}\n"


def core_tables(data: Any) -> str | None:
    """``kiosk bench core``: median stage latency and training runs."""
    if not (isinstance(data, dict) and "stage_ms" in data and "train" in data):
        return None
    out = [
        machine_line(
            cpus=data.get("cpu_count"),
            threads=data.get("threads"),
            load_start=data.get("load_average_start"),
            load_end=data.get("load_average_end"),
            extra=[("detector", data.get("detector"))],
        ),
        "",
        f"Stages, median over {fmt(data.get('frames'))} frames and {fmt(data.get('faces'))} faces:",
        "",
        table(
            ["stage", "median ms", "providers"],
            [
                [name, fmt(value), providers_for(name, data.get("providers", {}))]
                for name, value in data["stage_ms"].items()
            ],
        ),
    ]
    if "onnx_vs_torch_max_abs_diff" in data:
        out += [
            "",
            "ONNX against torch image tower, largest absolute difference: "
            f"{fmt(data['onnx_vs_torch_max_abs_diff'])}.",
        ]
    rows = []
    for run in data["train"]:
        people = run.get("people")
        chance = f"{100 / people:.1f}%" if isinstance(people, int) and people else ""
        rows.append(
            [
                run.get("set", ""),
                fmt(people),
                fmt(run.get("images")),
                f"{fmt(run.get('seconds'))} ({fmt(run.get('feature_seconds'))} / "
                f"{fmt(run.get('finetune_seconds'))})",
                fmt(run.get("process_seconds")),
                fmt(run.get("peak_rss_mb")),
                f"{pct(run.get('train_accuracy'))} / {pct(run.get('test_accuracy'))} "
                f"({pct(run.get('test_accuracy_before'))})",
                chance,
            ]
        )
    caps = sorted({fmt(run.get("max_photos")) for run in data["train"] if "max_photos" in run})
    cap = f", at most {' or '.join(caps)} photos a person" if caps else ""
    out += [
        "",
        f"Training runs{cap}. Seconds are the training call (feature extraction / "
        "finetuning), process seconds the whole process; accuracy is on the training "
        "photos / the held-out photos (held-out before finetuning):",
        "",
        table(
            [
                "set",
                "people",
                "photos",
                "seconds (features / finetune)",
                "process s",
                "peak RSS MB",
                "accuracy: train / held-out (before)",
                "chance",
            ],
            rows,
        ),
    ]
    return "\n".join(out)


LIVE_MODES = (("fast", "as fast as possible"), ("camera", "camera speed"))


def live_tables(data: Any) -> str | None:
    """``kiosk bench live``: FPS, latency, stages, memory, soak, goals."""
    if not (isinstance(data, dict) and isinstance(data.get("gallery"), dict)):
        return None
    if "fast" not in data["gallery"]:
        return None
    machine = data.get("machine", {})
    videos = data.get("videos") or []
    out = [
        command_machine_line(
            machine, [("platform", machine.get("platform")), ("detector", data.get("detector"))]
        ),
        "",
        f"Clips: {', '.join(f'`{v}`' for v in videos) or 'not recorded'}; "
        f"up to {fmt(data.get('max_frames_per_clip'))} frames each.",
        "",
    ]
    recognizers = [("MobileFaceNet gallery", "gallery", data["gallery"])]
    clip = data.get("clip")
    if isinstance(clip, dict):
        recognizers.append(("CLIP", "CLIP", clip))
    clip_int8 = data.get("clip_int8")
    if isinstance(clip_int8, dict):
        recognizers.append(("CLIP int8", "CLIP int8", clip_int8))
    rows, columns, stages = [], [], []
    for label, short, measured in recognizers:
        for mode, mode_label in LIVE_MODES:
            run = measured.get(mode)
            if not isinstance(run, dict):
                continue
            rows.append(
                [
                    label,
                    mode_label,
                    fmt(run.get("fps")),
                    f"{fmt(run.get('latency_p50_ms'))} / {fmt(run.get('latency_p95_ms'))}",
                    f"{fmt(run.get('dropped_frames'))} of {fmt(run.get('frames_read'))}",
                    fmt(run.get("seconds")),
                ]
            )
            mean = run.get("mean_stage_ms") or {}
            stages += [s for s in mean if s not in stages]
            columns.append((f"{short}, {mode}", mean))
    reference = data.get("reference") or {}
    if data.get("reference_fps") is not None:
        rows.append(
            [
                "face_recognition (reference)",
                LIVE_MODES[0][1],
                fmt(data["reference_fps"]),
                "",
                "",
                fmt(reference.get("seconds")),
            ]
        )
    out.append(
        table(
            ["recognizer", "mode", "FPS", "latency p50 / p95 ms", "dropped", "seconds"],
            rows,
        )
    )
    notes = []
    if isinstance(clip, dict) and clip.get("recognizer"):
        notes.append(f"CLIP is {clip['recognizer']}.")
    if isinstance(clip_int8, dict) and clip_int8.get("recognizer"):
        notes.append(f"CLIP int8 is {clip_int8['recognizer']}.")
    if data.get("reference_fps") is not None and reference.get("loop"):
        notes.append(f"The reference is the face_recognition library's loop: {reference['loop']}.")
    providers = sorted(
        {p for *_, measured in recognizers for p in (measured.get("providers") or [])}
    )
    if providers:
        notes.append(f"Execution providers bound: {', '.join(providers)}.")
    skipped = []
    if clip is None and data.get("clip_reason"):
        skipped.append(f"CLIP recognizer: {data['clip_reason']}")
    if data.get("reference_fps") is None and reference.get("reason"):
        skipped.append(f"face_recognition reference: {reference['reason']}")
    if skipped:
        notes.append("Not measured in this run: " + "; ".join(skipped) + ".")
    if notes:
        out += ["", " ".join(notes)]
    out += [
        "",
        "Mean milliseconds per frame by stage:",
        "",
        table(
            ["stage", *(name for name, _ in columns)],
            [[s, *(fmt(mean.get(s)) for _, mean in columns)] for s in stages],
        ),
        "",
        "Resident memory (MB): "
        + "; ".join(
            f"{label} {fmt(data[key])}"
            for key, label in (
                ("rss_start_mb", "at the start"),
                ("rss_after_gallery_mb", "after the gallery runs"),
                ("rss_end_mb", "at the end of the command"),
            )
            if key in data
        )
        + ".",
    ]
    soak = data.get("soak")
    if isinstance(soak, dict):
        out += ["", soak_text(soak)]
    if isinstance(data.get("save_to_named"), dict):
        out += ["", lifecycle_text(data["save_to_named"], data.get("delete") or {})]
    out += goals_table("recognizer", data.get("goals"))
    return "\n".join(out)


def lifecycle_text(saved: dict[str, Any], deleted: dict[str, Any]) -> str:
    """``kiosk bench live``'s lifecycle figures (kiosk/bench/lifecycle.py)."""
    out = [
        f"From Save to named, {fmt(saved.get('people'))} people "
        f"({fmt(saved.get('photos_of_newcomer'))} photos of the newcomer "
        f"`{fmt(saved.get('newcomer'))}`, pretrained {fmt(saved.get('pretrained'))}): the "
        f"retrain began {fmt(saved.get('save_to_retrain_start_s'))} s after Save and took "
        f"{fmt(saved.get('retrain_s'))} s; the first frame with the new bundle "
        f"{fmt(saved.get('save_to_bundle_live_s'))} s after Save, the first naming them "
        f"{fmt(saved.get('save_to_named_s'))} s."
    ]
    if saved.get("named_reason"):
        out.append(f"Not named: {saved['named_reason']}.")
    during = saved.get("door_during_retrain") or {}
    if during.get("fps") is not None:
        out.append(
            f"The door during the retrain: {fmt(during['fps'])} FPS, latency p95 "
            f"{fmt(during.get('latency_p95_ms'))} ms."
        )
    rows = [
        [
            f"`{kind}`",
            fmt(check.get("deleted")),
            fmt(check.get("frames_after_delete")),
            fmt(check.get("frames_after_delete_naming_them")),
            fmt(check.get("of_which_begun_before_delete_returned")),
        ]
        if check.get("measured")
        else [f"`{kind}`", f"not measured: {fmt(check.get('reason'))}", "", "", ""]
        for kind, check in deleted.items()
        if isinstance(check, dict)
    ]
    text = " ".join(out)
    if rows:
        header = ["recognizer", "deleted", "frames after", "naming them", "begun before"]
        text += "\n\nAfter a delete returned:\n\n" + table(header, rows)
    return text


def quantize_tables(data: Any) -> str | None:
    """``kiosk bench quantize``: int8 against fp32, quality and speed per model."""
    if not (isinstance(data, dict) and isinstance(data.get("mobilefacenet"), dict)):
        return None
    out = [
        command_machine_line(data.get("machine", {}), []),
        "",
        f"Faces: `{fmt(data.get('faces'))}`, {fmt(data.get('people'))} people, "
        f"{fmt(data.get('images'))} photos ({fmt(data.get('gallery_images'))} gallery, "
        "the others probes).",
        "",
    ]
    models = [("MobileFaceNet", data["mobilefacenet"])]
    if isinstance(data.get("clip"), dict):
        models.append((f"CLIP {fmt(data['clip'].get('model'))}", data["clip"]))
    quality_rows, speed_rows, skipped = [], [], []
    for name, model in models:
        quality = model.get("quality")
        if isinstance(quality, dict):
            quality_rows.append(
                [
                    name,
                    pct(quality.get("top1_agreement")),
                    pct(quality.get("top1_fp32")),
                    pct(quality.get("top1_int8")),
                    " / ".join(
                        f"{value:.3f}" if isinstance(value, float) else fmt(value)
                        for value in (quality.get("cosine_mean"), quality.get("cosine_min"))
                    ),
                    fmt(quality.get("probes")),
                ]
            )
        elif model.get("quality_reason"):
            skipped.append(f"{name}: {model['quality_reason']}")
        for speed in model.get("speed") or []:
            speed_rows.append(
                [
                    name,
                    fmt(model.get("recipe")),
                    fmt(speed.get("threads")),
                    fmt(speed.get("fp32_ms")),
                    fmt(speed.get("int8_ms")),
                    fmt(speed.get("speedup")),
                    f"{fmt(model.get('fp32_mb'))} / {fmt(model.get('int8_mb'))}",
                ]
            )
    if quality_rows:
        header = ["model", "top-1 agreement", "top-1 fp32", "top-1 int8", "cosine mean / min"]
        out += [table([*header, "probes"], quality_rows), ""]
    if skipped:
        out += ["Quality not measured: " + "; ".join(skipped), ""]
    header = ["model", "recipe", "threads", "fp32 ms", "int8 ms", "speed-up", "MB fp32 / int8"]
    out.append(table(header, speed_rows))
    out += goals_table("model", data.get("goals"))
    return "\n".join(out)


def goals_table(first: str, goals: Any) -> list[str]:
    """The lines of a command's ``goals`` (who -> goal -> met), headed by ``first``."""
    if not (isinstance(goals, dict) and goals):
        return []
    names = sorted({g for checks in goals.values() for g in checks})
    return [
        "",
        "Goals, as the command checked them:",
        "",
        table(
            [first, *(f"`{n}`" for n in names)],
            [[who, *(yes_no(checks.get(n)) for n in names)] for who, checks in goals.items()],
        ),
    ]


def soak_text(soak: dict[str, Any]) -> str:
    samples = [s for s in soak.get("rss_mb", []) if isinstance(s, list | tuple) and len(s) == 2]
    out = [
        f"Soak: `{soak.get('video', '?')}` looped at camera speed for "
        f"{fmt(soak.get('minutes'))} minutes, {fmt(soak.get('frames'))} frames; "
        f"RSS growth from the second sample to the last {fmt(soak.get('rss_growth_mb'))} MB."
    ]
    if samples:
        values = [mb for _, mb in samples]
        out[0] += (
            f" {len(samples)} RSS samples: first {fmt(values[0])} MB, lowest {fmt(min(values))}, "
            f"highest {fmt(max(values))}, last {fmt(values[-1])} MB."
        )
        wanted = every_ten_minutes(samples)
        out += ["", table(["time", "RSS MB"], [[elapsed(s), fmt(mb)] for s, mb in wanted])]
    return "\n".join(out)


def elapsed(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return fmt(seconds)
    return f"{seconds / 60:g} min" if seconds >= 600 else f"{seconds:g} s"


def every_ten_minutes(samples: list[Any]) -> list[Any]:
    """The first samples, one at each ten minutes, and the last (a table that fits)."""
    wanted, next_mark = [], 600
    for i, (seconds, mb) in enumerate(samples):
        if i < 2 or i == len(samples) - 1 or seconds >= next_mark:
            wanted.append((seconds, mb))
            while seconds >= next_mark:
                next_mark += 600
    return wanted


def generic_tables(data: Any) -> str:
    """Anything else: its top-level figures, and the figures of its top-level tables."""
    if not isinstance(data, dict):
        return (
            f"A JSON {type(data).__name__} of {len(data) if hasattr(data, '__len__') else 1} items."
        )
    rows = [[f"`{k}`", fmt(v)] for k, v in data.items() if scalar_or_short(v)]
    out = [table(["figure", "value"], rows)] if rows else []
    for key, value in data.items():
        if isinstance(value, dict):
            inner = [[f"`{k}`", fmt(v)] for k, v in value.items() if scalar_or_short(v)]
            if inner:
                out += ["", f"`{key}`:", "", table(["figure", "value"], inner)]
        elif isinstance(value, list) and not scalar_or_short(value):
            out += ["", f"`{key}`: a list of {len(value)} items (see the JSON)."]
    return "\n".join(out) or "No figures at the top level."


# ------------------------------------------------------------------------------ pieces


def machine_line(
    cpus: Any, threads: Any, load_start: Any, load_end: Any, extra: list[tuple[str, Any]]
) -> str:
    parts = []
    if cpus is not None:
        parts.append(f"{fmt(cpus)} CPUs")
    if threads is not None:
        parts.append(f"{fmt(threads)} threads")
    for label, value in extra:
        if value:
            parts.append(f"{label} {fmt(value)}")
    if load_start:
        parts.append(f"load average (1, 5, 15 min) at the start {load(load_start)}")
    if load_end:
        parts.append(f"at the end {load(load_end)}")
    return "Machine: " + "; ".join(parts) + "." if parts else "Machine: not recorded."


def command_machine_line(machine: dict[str, Any], extra: list[tuple[str, Any]]) -> str:
    """The machine line of a command's ``machine`` record (CPUs, load at start and end)."""
    return machine_line(
        cpus=machine.get("cpus"),
        threads=None,
        load_start=machine.get("load_average_at_start"),
        load_end=machine.get("load_average_at_end"),
        extra=extra,
    )


def load(values: Any) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if isinstance(values, list) else fmt(values)


def providers_for(stage: str, providers: dict[str, Any]) -> str:
    for key, value in providers.items():
        if stage.startswith(key) or key.startswith(stage):
            return ", ".join(value) if isinstance(value, list) else fmt(value)
    return ""


def scalar_or_short(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) <= 8 and all(not isinstance(v, dict | list) for v in value)
    return not isinstance(value, dict)


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2g}"
        text = f"{value:.2f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ") if abs(value) >= 10000 else str(value)
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("<", "&lt;")


def pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def yes_no(value: Any) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}.get(value, fmt(value))


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
