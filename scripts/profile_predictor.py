"""Where the predictor's CPU goes, stage by stage, under the bench's load (issue 19).

Usage (from the repository root, in the dev venv, which has py-spy from requirements-dev.txt):

    python -m scripts.profile_predictor                          # MLflow + champion + predictor, 3 cases
    python -m scripts.profile_predictor --markdown /tmp/profile.md --duration 30
    python -m scripts.profile_predictor --tracking-uri http://127.0.0.1:5000  # an MLflow with a champion
    python -m scripts.profile_predictor --cases 100x8 --keep-raw /tmp/raw     # one case, keep py-spy's files
    python -m scripts.profile_predictor --raw /tmp/raw/*.txt --top 5           # re-classify kept files only

What it does, all on 127.0.0.1 and bounded in time (about 25 s per case, plus a minute to train a
champion when the registry has none):

1. starts a local MLflow (scripts/local_stack.start_mlflow) and trains the champion (`trainer train`),
   as `make bench` does, unless `--tracking-uri` names a server that has one;
2. starts one predictor process with default settings (no ledger, no shadow) from *this* checkout's
   services/predictor/src (put first on PYTHONPATH), so a git worktree profiles its own code;
3. per case, `ROWSxCONNECTIONS` (default batch 1 at 1 and 16 connections, batch 100 at 8), drives it with
   wrk and the bench's `dataframe_records` bodies (scripts.bench), first a warm-up, then a run during which
   `py-spy record --gil --format raw --rate R --duration D --pid PID` samples the predictor;
4. puts every sample in one stage (CATEGORIES) and prints markdown tables: each stage's share of the
   process's CPU, the same as CPU µs per request, and the run's own figures (req/s, latency under the
   profiler, CPU used from /proc/PID/stat).

Why `--gil`: the event loop and the inference thread share one GIL. py-spy's default counts a thread
whenever it is not sleeping, and a thread that waits for the GIL after a system call is "not sleeping"
on the line of that call (measured here: `uuid.uuid4()` in the middleware, 1.5 µs, took 8% of the
samples at batch 100). With `--gil` only the thread that holds the GIL is sampled, i.e. the Python work
that is actually running. What runs without the GIL (the booster's tree walk, numpy kernels, system
calls) is the process's CPU time from /proc minus the GIL time, the row "outside the GIL".
`--mode running` keeps py-spy's default instead (every non-idle thread; shares of samples, not of CPU).

How a sample is classified: its frames are walked from the innermost out; the first frame that matches
a rule of RULES (by file, function and, for our own code, the source line) decides. Libraries without a
rule (pandas, numpy, pydantic, asyncio, ...) count for the nearest caller that has one: pydantic under
`InputSchema.validate_records` is validation, pandas under `to_frame` is frame building, the same pandas
under scikit-learn is the model. A model sample is then refined by the whole stack (MODEL_PARTS): a
ColumnTransformer frame anywhere in it makes it the ColumnTransformer's, else a HistGradientBoosting
frame the booster's, else the compiled path's encoder or trees (predictor/compiled.py, treelite), else
"model: other". orjson has no Python frames: `orjson.loads`/`orjson.dumps` are told apart by the source
line of their caller. Samples no rule matches are "other", and the report lists their innermost
frames, so a renamed function (someone's refactor) shows up there and says which rule to extend.

py-spy pauses the process for each sample (`--rate` trades that for resolution) and needs ptrace rights on
it (root, or kernel.yama.ptrace_scope=0). Kept raw files open in https://www.speedscope.app.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from scripts import bench
from scripts import local_stack as stack

PREDICTOR_SRC = stack.REPO / "services" / "predictor" / "src"
DEFAULT_CASES = "1x1,1x16,100x8"
GRACE_SECONDS = 60  # beyond a run's duration, before a hung py-spy is killed

# ---------------------------------------------------------------- classification


@dataclass(frozen=True)
class Frame:
    function: str
    file: str
    line: int

    @classmethod
    def parse(cls, text: str) -> Frame:
        """`Class.method (package/module.py:123)`; native frames (`--native`) may have no line."""
        match = re.fullmatch(r"(.*) \((.*?)(?::(\d+))?\)", text)
        if match is None:
            return cls(text, "", 0)
        return cls(match[1], match[2], int(match[3] or 0))


@dataclass(frozen=True)
class Rule:
    """Frames of `file` (the path py-spy prints, e.g. `predictor/api.py`; or a folder prefix such as
    `sklearn/`), optionally only functions matching `function` (a regex, searched) and only on a source
    line matching `line`."""

    category: str
    file: str
    function: str | None = None
    line: str | None = None

    def matches(self, frame: Frame, source_line: Callable[[Frame], str]) -> bool:
        file = frame.file
        if not (file == self.file or file.startswith(self.file) or file.endswith("/" + self.file)):
            return False
        if self.function is not None and not re.search(self.function, frame.function):
            return False
        return self.line is None or re.search(self.line, source_line(frame)) is not None


PARSING = "body parsing (orjson.loads)"
VALIDATION = "validation (protocol, schema.validate_records, pydantic)"
FRAME = "frame building (schema.to_frame, pandas)"
MODEL = "model"  # refined into the three below
MODEL_CT = "model: ColumnTransformer (encoders)"
MODEL_HGB = "model: HistGradientBoostingRegressor.predict"
MODEL_ENCODER = "model: compiled encoder (compiled.LookupEncoder)"
MODEL_TREES = "model: compiled trees (treelite GTIL, FoldedTrees)"
MODEL_OTHER = "model: other (Pipeline, MLflow wrapper, LoadedModel, CompiledPipeline)"
ENCODING = "response encoding (json_response, orjson.dumps)"
ROUTE = "route handler (api.predict: prediction ids, response dict)"
METRICS = "metrics (prometheus_client)"
SAMPLES = "samples (Sample rows, SampleBuffer)"
BATCHING = "micro-batching, inference thread hand-off"
MIDDLEWARE = "middleware, request id, access log"
HTTP = "uvicorn/starlette/fastapi, event loop, HTTP"
OTHER = "other (no rule matched)"
IDLE = "waiting (blocked, yet sampled as running)"  # --mode running only; left out of every share
OUTSIDE_GIL = "outside the GIL (process CPU - GIL time: native tree walks, numpy, syscalls)"

CATEGORIES = [
    PARSING, VALIDATION, FRAME, MODEL_CT, MODEL_HGB, MODEL_ENCODER, MODEL_TREES, MODEL_OTHER, ENCODING, ROUTE,
    METRICS, SAMPLES, BATCHING, MIDDLEWARE, HTTP, OTHER,
]  # fmt: skip

# For each frame the first matching rule counts; the innermost frame with a match decides the sample.
RULES = [
    # Blocking waits that py-spy's default mode may still report as running (never seen with --gil).
    Rule(IDLE, "concurrent/futures/thread.py", line=r"work_queue\.get\("),
    Rule(IDLE, "threading.py", line=r"\.acquire\(|\.wait\("),
    Rule(IDLE, "queue.py", line=r"\.wait\(|\.get\("),
    Rule(IDLE, "selectors.py", line=r"\.poll\(|\.select\("),
    Rule(IDLE, "libc.so.6", function=r"^epoll_p?wait$"),
    # Our own code, by module, function and line.
    Rule(PARSING, "predictor/protocol.py", line=r"orjson\.loads\("),
    Rule(VALIDATION, "predictor/protocol.py"),
    Rule(FRAME, "predictor/schema.py", function=r"to_frame|_column|_frame"),
    Rule(VALIDATION, "predictor/schema.py"),
    Rule(ENCODING, "predictor/api.py", function=r"json_response"),
    Rule(ENCODING, "predictor/api.py", line=r"orjson\.dumps\("),
    Rule(HTTP, "predictor/api.py", function=r"read_body"),
    Rule(ROUTE, "predictor/api.py"),
    Rule(ROUTE, "predictor/ledger/__init__.py", function=r"prediction_id"),
    Rule(METRICS, "predictor/metrics.py"),
    Rule(SAMPLES, "predictor/samples.py"),
    Rule(SAMPLES, "predictor/inference.py", function=r"_record|_sample"),
    Rule(BATCHING, "predictor/inference.py"),
    Rule(BATCHING, "predictor/batching.py"),
    Rule(MODEL, "predictor/model.py"),
    Rule(MODEL, "predictor/compiled.py"),
    Rule(MIDDLEWARE, "predictor/middleware.py"),
    Rule(MIDDLEWARE, "predictor/logging.py"),
    # Libraries that are a stage of their own wherever they are called from.
    Rule(METRICS, "prometheus_client/"),
    Rule(MIDDLEWARE, "logging/"),
    Rule(MIDDLEWARE, "pythonjsonlogger/"),
    Rule(MODEL, "sklearn/"),
    Rule(MODEL, "mlflow/"),
    Rule(HTTP, "uvicorn/"),
    Rule(HTTP, "starlette/"),
    Rule(HTTP, "fastapi/"),
    Rule(HTTP, "anyio/"),
    Rule(HTTP, "h11/"),
    # The inference thread's executor (what is left of it once its wait is idle), and thread start-up.
    Rule(BATCHING, "concurrent/futures/"),
    Rule(BATCHING, "threading.py"),
]
# A model sample is refined by what its whole stack contains, in this order: scikit-learn's own steps,
# then the compiled path (predictor/compiled.py) that replaces them for recognised pipelines.
MODEL_PARTS = [
    Rule(MODEL_CT, "sklearn/compose/_column_transformer.py"),
    Rule(MODEL_HGB, "sklearn/ensemble/_hist_gradient_boosting/"),
    Rule(MODEL_ENCODER, "predictor/compiled.py", function=r"Lookup|encode"),
    Rule(MODEL_TREES, "predictor/compiled.py", function=r"gtil|FoldedTrees|_fold"),
    Rule(MODEL_TREES, "treelite/"),
]


class SourceLines:
    """The text of a frame's line, for rules with `line`: files looked up under `roots` in order."""

    def __init__(self, roots: Iterable[Path]):
        self.roots = list(roots)
        self._files: dict[str, list[str]] = {}

    def __call__(self, frame: Frame) -> str:
        if frame.file not in self._files:
            self._files[frame.file] = []
            for root in self.roots:
                path = root / frame.file
                if path.is_file():
                    self._files[frame.file] = path.read_text(errors="replace").splitlines()
                    break
        lines = self._files[frame.file]
        return lines[frame.line - 1] if 0 < frame.line <= len(lines) else ""


def source_lines() -> SourceLines:
    """This checkout's predictor first (the profiled code), then this interpreter's path (stdlib, venv)."""
    return SourceLines([PREDICTOR_SRC, *(Path(p) for p in sys.path if p)])


def classify(frames: list[Frame], source_line: Callable[[Frame], str]) -> str:
    for frame in reversed(frames):  # innermost first
        for rule in RULES:
            if rule.matches(frame, source_line):
                if rule.category != MODEL:
                    return rule.category
                for part in MODEL_PARTS:
                    if any(part.matches(f, source_line) for f in frames):
                        return part.category
                return MODEL_OTHER
    return OTHER


@dataclass
class Profile:
    """One recording's samples by stage, by thread, and the innermost frames behind each stage."""

    categories: Counter[str] = field(default_factory=Counter)
    threads: Counter[str] = field(default_factory=Counter)
    inner: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def busy(self) -> int:
        """Samples of work: all but IDLE."""
        return sum(n for category, n in self.categories.items() if category != IDLE)

    def top(self, category: str, n: int) -> list[tuple[str, int]]:
        return self.inner.get(category, Counter()).most_common(n)


def aggregate(raw: str, source_line: Callable[[Frame], str]) -> Profile:
    """py-spy's `--format raw` output: one `frame;frame;...;frame count` line per distinct stack."""
    profile = Profile()
    for text in raw.splitlines():
        stack_text, _, count_text = text.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [Frame.parse(f) for f in stack_text.split(";")]
        category = classify(frames, source_line)
        profile.categories[category] += count
        inner = next((f for f in reversed(frames) if f.line), frames[-1])
        where = f"{inner.function} ({inner.file}:{inner.line})"
        profile.inner.setdefault(category, Counter())[where] += count
        if category != IDLE:
            worker = any(f.file.endswith("threading.py") for f in frames)
            profile.threads["worker threads" if worker else "event loop thread"] += count
    return profile


# ---------------------------------------------------------------- running


@dataclass(frozen=True)
class Case:
    rows: int
    connections: int

    @classmethod
    def parse(cls, text: str) -> Case:
        rows, _, connections = text.strip().partition("x")
        if not (rows.isdigit() and connections.isdigit() and int(rows) > 0 and int(connections) > 0):
            raise SystemExit(f"a case is ROWSxCONNECTIONS, e.g. 100x8; got {text!r}")
        return cls(int(rows), int(connections))

    def __str__(self) -> str:
        return f"batch {self.rows}, conc {self.connections}"


@dataclass(frozen=True)
class Measured:
    """One case: the profile and what the process did meanwhile."""

    case: Case
    profile: Profile
    mode: str
    rate: int
    seconds: float
    requests: int
    cpu_seconds: float
    main_thread_cpu_seconds: float
    """The main thread's share of `cpu_seconds`: the event loop (the rest: the inference thread, ...)."""
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def sampled_seconds(self) -> float:
        return self.profile.busy / self.rate

    @property
    def base_seconds(self) -> float:
        """What the shares divide: the process's CPU (gil mode; at least the GIL time: on a busy machine a
        thread can hold the GIL while the OS runs something else), or the sampled time (running mode)."""
        return max(self.cpu_seconds, self.sampled_seconds) if self.mode == "gil" else self.sampled_seconds

    def seconds_of(self, category: str) -> float:
        if category == OUTSIDE_GIL:
            return self.base_seconds - self.sampled_seconds if self.mode == "gil" else 0.0
        return self.profile.categories[category] / self.rate


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of the whole process (all threads), or of one of its threads, from /proc."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def py_spy_binary() -> str:
    for candidate in (stack.VENV_BIN / "py-spy", shutil.which("py-spy")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise SystemExit("py-spy is not installed: `.venv/bin/pip install py-spy` (a wheel with the binary)")


def profile_case(
    pid: int, url: str, case: Case, load: bench.Load, *, mode: str, rate: int, native: bool, raw_path: Path
) -> Measured:
    body = load.bodies[case.rows]
    if load.warmup:
        bench.wrk(
            url, body, rows=case.rows, connections=case.connections, seconds=load.warmup, script=load.script
        )
    argv = [
        py_spy_binary(), "record", "--pid", str(pid), "--format", "raw", "--output", str(raw_path),
        "--rate", str(rate), "--duration", f"{load.duration:g}",
        *(["--gil"] if mode == "gil" else []), *(["--native"] if native else []),
    ]  # fmt: skip
    cpu_before, main_before = cpu_seconds(pid), cpu_seconds(pid, pid)
    started = time.monotonic()
    spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        result = bench.wrk(
            url, body, rows=case.rows, connections=case.connections, seconds=load.duration, script=load.script
        )
        cpu, main = cpu_seconds(pid) - cpu_before, cpu_seconds(pid, pid) - main_before
        seconds = time.monotonic() - started
        output, _ = spy.communicate(timeout=GRACE_SECONDS)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if spy.returncode != 0 or not raw_path.is_file():
        raise SystemExit(f"py-spy failed (exit {spy.returncode}):\n{output[-2000:]}")
    return Measured(
        case=case,
        profile=aggregate(raw_path.read_text(), source_lines()),
        mode=mode,
        rate=rate,
        seconds=seconds,
        requests=round(result.requests_per_second * load.duration),
        cpu_seconds=cpu,
        main_thread_cpu_seconds=main,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
    )


def source_description() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=stack.REPO, capture_output=True, text=True, check=False)
        return done.stdout.rstrip()

    changed = [line[3:] for line in git("status", "--porcelain", "--", "services/predictor").splitlines()]
    dirty = f", plus uncommitted changes to {', '.join(changed)}" if changed else ""
    return f"`{PREDICTOR_SRC}` at commit {git('rev-parse', '--short', 'HEAD').strip()}{dirty}"


# ---------------------------------------------------------------- report


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def markdown(measured: list[Measured], *, command: str, source: str) -> str:
    cases = [str(m.case) for m in measured]
    gil = all(m.mode == "gil" for m in measured)
    stages = [c for c in CATEGORIES if any(m.profile.categories[c] for m in measured)]
    stages += [OUTSIDE_GIL] if gil else []
    what = (
        "the process's CPU time (py-spy --gil samples of the GIL holder, plus the CPU spent outside it)"
        if gil
        else "py-spy's samples of non-idle threads (default mode: includes threads waiting for the GIL)"
    )
    lines = [f"Command: `{command}`  ", f"Predictor: {source}", "", f"Share of {what}, by stage:", ""]
    lines += table(
        ["stage", *cases],
        [[s, *(f"{100 * m.seconds_of(s) / m.base_seconds:.1f}%" for m in measured)] for s in stages],
    )
    lines += ["", "The same as CPU time per request, µs:", ""]
    lines += table(
        ["stage", *cases],
        [[s, *(f"{1e6 * m.seconds_of(s) / max(m.requests, 1):,.0f}" for m in measured)] for s in stages]
        + [["**total**", *(f"**{1e6 * m.base_seconds / max(m.requests, 1):,.0f}**" for m in measured)]],
    )
    rows = [
        ["requests (req/s)", *(f"{m.requests:,} ({m.requests / m.seconds:,.0f})" for m in measured)],
        ["p50 / p99 ms, under the profiler", *(f"{m.p50_ms:.1f} / {m.p99_ms:.1f}" for m in measured)],
        [
            "process CPU, s (cores)",
            *(f"{m.cpu_seconds:.1f} ({m.cpu_seconds / m.seconds:.2f})" for m in measured),
        ],
        [
            "of which event loop thread / other threads, s",
            *(
                f"{m.main_thread_cpu_seconds:.1f} / {m.cpu_seconds - m.main_thread_cpu_seconds:.1f}"
                for m in measured
            ),
        ],
        [
            "GIL held, s (share of the run)" if gil else "sampled busy, s",
            *(f"{m.sampled_seconds:.1f} ({m.sampled_seconds / m.seconds:.0%})" for m in measured),
        ],
        [
            "of which event loop thread / worker threads",
            *(
                f"{m.profile.threads['event loop thread'] / max(m.profile.busy, 1):.0%} / "
                f"{m.profile.threads['worker threads'] / max(m.profile.busy, 1):.0%}"
                for m in measured
            ),
        ],
        ["wrk errors", *(str(m.errors) for m in measured)],
    ]
    if not gil:
        rows.append(["samples left out as waits", *(f"{m.profile.categories[IDLE]:,}" for m in measured)])
    lines += ["", *table(["run", *cases], rows)]
    unmatched = Counter[str]()
    for m in measured:
        unmatched.update(dict(m.profile.top(OTHER, 20)))
    if unmatched:
        lines += ["", "Innermost frames of the samples no rule matched (all cases): extend RULES.", ""]
        lines += [f"- {count} × `{frame}`" for frame, count in unmatched.most_common(8)]
    return "\n".join(lines) + "\n"


def print_raw(paths: list[Path], top: int) -> None:
    """Shares of samples per stage in existing raw files (no CPU figures: no process to read)."""
    lines = source_lines()
    for path in paths:
        profile = aggregate(path.read_text(), lines)
        print(f"\n{path}: {profile.busy} samples of work ({profile.categories[IDLE]} left out as waits)")
        for category in [*CATEGORIES, IDLE]:
            count = profile.categories[category]
            if count:
                print(f"  {100 * count / max(profile.busy, 1):5.1f}%  {category}")
                for frame, n in profile.top(category, top):
                    print(f"          {n:6d}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tracking-uri", help="use this MLflow server (with a champion) instead of starting one"
    )
    parser.add_argument(
        "--cases", default=DEFAULT_CASES, help=f"comma-separated ROWSxCONNECTIONS (default {DEFAULT_CASES})"
    )
    parser.add_argument("--duration", type=float, default=20, help="seconds recorded per case (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before each recording (3)")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second (default 100)")
    parser.add_argument(
        "--mode",
        choices=("gil", "running"),
        default="gil",
        help="gil: sample the GIL holder, shares of process CPU (default); running: py-spy's default",
    )
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames too; slower)")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    parser.add_argument("--keep-raw", type=Path, help="copy py-spy's raw files (one per case) to this folder")
    parser.add_argument("--raw", type=Path, nargs="+", help="only classify these raw files (no servers)")
    parser.add_argument("--top", type=int, default=0, help="with --raw: N most sampled frames per stage")
    args = parser.parse_args()

    if args.raw:
        print_raw(args.raw, args.top)
        return
    cases = [Case.parse(text) for text in args.cases.split(",") if text.strip()]
    py_spy_binary()  # before starting anything
    command = " ".join(["python -m scripts.profile_predictor", *sys.argv[1:]])
    state_dir = Path(tempfile.mkdtemp(prefix="predictor-profile-"))
    print(f"logs and raw profiles in {state_dir}", flush=True)
    measured = []
    with stack.local_stack(state_dir) as local:
        tracking_uri = args.tracking_uri or local.add(stack.start_mlflow(state_dir)).url
        bench.ensure_champion(tracking_uri)
        script = state_dir / "post.lua"
        script.write_text(bench.WRK_SCRIPT)
        bodies = bench.write_bodies(state_dir, [(c.rows, c.connections) for c in cases])
        load = bench.Load(script, bodies, args.warmup, args.duration)
        pythonpath = os.pathsep.join(filter(None, [str(PREDICTOR_SRC), os.environ.get("PYTHONPATH")]))
        predictor = local.add(
            stack.start_predictor(
                state_dir, tracking_uri, name="profile-predictor", settings={"PYTHONPATH": pythonpath}
            )
        )
        url = f"{predictor.url}/v1/models/{bench.MODEL}:predict"
        for case in cases:
            print(f"{case}: {args.warmup:g} s warm-up, {args.duration:g} s recorded ...", flush=True)
            raw_path = state_dir / f"py-spy-{case.rows}x{case.connections}.txt"
            options = {"mode": args.mode, "rate": args.rate, "native": args.native, "raw_path": raw_path}
            measured.append(profile_case(predictor.popen.pid, url, case, load, **options))
            bench.wait_idle(predictor.url)
            if args.keep_raw:
                args.keep_raw.mkdir(parents=True, exist_ok=True)
                shutil.copy(raw_path, args.keep_raw / raw_path.name)
    report = markdown(measured, command=command, source=source_description())
    print("\n" + report)
    if args.markdown:
        args.markdown.write_text(report)
        print(f"written to {args.markdown}")


if __name__ == "__main__":
    main()
