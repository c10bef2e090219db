"""Does a knob matter? Interleaved rounds of every setting, then a ratio with an interval.

    import lab
    result = lab.sweep("/fast", knobs={"nodelay": ["true", "false"]},
                       fixed={"split_writes": True}, rounds=9, duration_seconds=0.3)
    for effect in result.effects:
        print(effect.setting, effect.metric, effect.ratio, effect.verdict)

How a sweep runs, and why:

- The server runs in a process of its own (``isolation="process"``), pinned to one core and the
  load generator to another where the machine has two: the sweep process must not share a GIL
  or a core with what it measures.
- Each round runs every setting once, in an order shuffled anew per round from a seed that is
  recorded: a drift of the machine (another job starting, a thermal limit) then spreads over
  all settings instead of loading onto whichever ran last.
- A knob the server can change live is applied with ``reconfigure`` before the run (every run
  opens new connections, so the setting applies to all of them). When a swept knob needs a
  restart (``backlog``, buffers), every run gets a fresh server, whatever its setting, so no
  setting enjoys a warm server that another does not.
- Every run is a record of its own, tagged with the sweep, its setting and its round, so
  ``runs`` lists them and ``compare`` puts any of them side by side.
- The first setting (every knob at its first value) is the baseline of every ratio.
- With ``network_path`` (``--emulate``) the server runs behind an emulated path (lab/netpath)
  for every run: a knob's effect over a real round trip, which loopback cannot show.
- The path's own settings are knobs too, named as in its text form: ``knobs={"delay":
  ["10ms", "40ms"]}`` (``--knob delay=10ms,40ms``), ``loss``, ``rate``, ...; swept or held
  (``--set loss=1%``), beside server knobs or alone. Sweeping one builds a path (from
  ``network_path``, or an empty one) and changes it in place between runs; every run's record
  keeps the path it crossed.
- With ``to`` (``--to 127.0.0.1:8000``) the runs go to a server the lab did not start, behind
  a path (lab/netpath/front.py) whose knobs are the only ones a sweep can vary there: the lab
  cannot reconfigure, restart or pin a server it does not run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import math
import os
import random
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.engine.result import LoadResult
from lab.engine.spec import LoadSpec
from lab.errors import ConfigError, LabError
from lab.experiments.effects import DEFAULT_NOISE_BAND, MINIMUM_ROUNDS, Effect, measure_effect
from lab.http.config import ServerConfig
from lab.loadgen import run_load
from lab.measure.run import latency_document
from lab.measure.stats import PERCENTILES
from lab.measure.summary import RunSummary
from lab.netpath import Path, PathInFront, missing_privilege, start_path_to
from lab.netpath.front import check_listening, parse_target
from lab.netpath.spec import PATH_KNOBS, Target, knob_text
from lab.netpath.spec import knob_value as path_knob_value
from lab.options import knobs, parse_value
from lab.peers.pinning import server_and_load_cores
from lab.records.experiment import record_from_result
from lab.records.store import RecordStore
from lab.server import RESTART_KNOBS, ServerHandle, start_server

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Knobs a sweep may not vary: where the server listens is not a property of its latency.
NOT_SWEEPABLE = frozenset({"host", "port"})
DEFAULT_METRICS: tuple[str, ...] = ("p50", "p90", "p99")
DEFAULT_WARMUP_SECONDS = 0.1  # a new connection starts in quick-ACK mode: let it settle

Setting = dict[str, Any]
Progress = Callable[[str], None]


# --- the plan: checked before anything runs -------------------------------------------------

def server_knob_names() -> list[str]:
    return [f.name for f, _ in knobs(ServerConfig) if f.name not in NOT_SWEEPABLE]


def knob_value(option: str, name: str, value: Any) -> Any:
    """A knob's value, parsed like its CLI flag when given as text, checked against its range.

    ``option`` is the flag the user wrote it in (``knob`` or ``set``), so the error names it.
    A knob of the emulated path (``delay``, ``loss``, ...) is read as the path's text reads it.
    """
    if name in PATH_KNOBS:
        return _path_knob_value(option, name, value)
    if name not in server_knob_names():
        raise ConfigError(option, f"unknown server knob {name!r}; knobs: {', '.join(server_knob_names())}; "
                          f"knobs of the emulated path: {', '.join(PATH_KNOBS)}")
    if isinstance(value, str):
        try:
            value = parse_value(ServerConfig, name, value)
        except ValueError as error:
            raise ConfigError(option, f"{name}={value}: {error}") from None
    try:
        ServerConfig().replace(**{name: value})
    except ConfigError as error:
        raise ConfigError(option, f"{name}={value}: {error.message}") from None
    return value


def _path_knob_value(option: str, name: str, value: Any) -> Any:
    try:
        if isinstance(value, str):
            return path_knob_value(name, value)
        Path().with_knob(name, value)  # its range, as a Path checks it
    except ConfigError as error:
        raise ConfigError(option, f"{name}={value}: {error.message}") from None
    return value


def parse_assignment(option: str, text: str) -> tuple[str, list[str]]:
    """``nodelay=true,false`` -> ("nodelay", ["true", "false"])."""
    name, equals, values = text.partition("=")
    words = [word.strip() for word in values.split(",") if word.strip()]
    if not equals or not name.strip() or not words:
        raise ConfigError(option, f"{text!r} is not NAME=VALUE[,VALUE...]")
    return name.strip(), words


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    """What a sweep will run, validated as a whole."""

    path: str
    knobs: dict[str, tuple[Any, ...]]
    fixed: Setting
    rounds: int
    duration_seconds: float
    warmup_seconds: float
    connections: int
    rate: float | None
    stages: tuple[str, ...]  # open-loop rate stages instead of one rate (lab.engine.stages)
    seed: int
    metrics: tuple[str, ...]
    noise_band: float
    network_path: Path | None = None  # the server behind an emulated path (lab/netpath)
    target: tuple[str, int] | None = None  # a server the lab did not start, behind the path

    @classmethod
    def create(cls, path: str, *, knobs: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any] | None,
               rounds: int, duration_seconds: float, warmup_seconds: float | None,
               connections: int, rate: float | None, stages: Sequence[str], seed: int | None,
               metrics: Sequence[str],
               noise_band: float, network_path: Path | str | None = None,
               to: Target | None = None) -> SweepPlan:
        if not knobs:
            raise ConfigError("knob", "give at least one knob to sweep, e.g. nodelay=true,false")
        swept = {name: tuple(knob_value("knob", name, value) for value in values)
                 for name, values in knobs.items()}
        for name, values in swept.items():
            if len(set(values)) != len(values) or len(values) < 2:
                raise ConfigError("knob", f"{name}: give two or more different values")
        settled = {name: knob_value("set", name, value) for name, value in (fixed or {}).items()}
        both = sorted(set(swept) & set(settled))
        if both:
            raise ConfigError("set", f"{both[0]} is swept; it cannot also be set")
        if rounds < MINIMUM_ROUNDS:
            raise ConfigError("rounds", f"{rounds} is too few; at least {MINIMUM_ROUNDS} rounds "
                              "(9 or more give an interval worth reading)")
        unknown = [metric for metric in metrics if metric not in PERCENTILES and metric != "mean"]
        if unknown:
            raise ConfigError("metric", f"{unknown[0]!r}: one of mean, {', '.join(PERCENTILES)}")
        if not 0 <= noise_band < 1:
            raise ConfigError("noise_band", f"{noise_band!r} is out of range; allowed: 0 to 1 (0.05 = ±5 %)")
        if "://" in path:  # sweep is not bench: it starts (and reconfigures) its own server
            raise ConfigError("path", f"{path!r} is a URL: sweep starts its own lab server, so give "
                              "the path alone (e.g. /fast); for a server already running, use "
                              "bench URL, or --to HOST:PORT to sweep a network path's knobs")
        if not path.startswith("/"):
            raise ConfigError("path", f"{path!r} must start with '/'")
        target = None if to is None else parse_target(to)
        if target is not None:
            server_knobs = [name for name in [*swept, *settled] if name not in PATH_KNOBS]
            if server_knobs:
                option = "knob" if server_knobs[0] in swept else "set"
                raise ConfigError(option, f"{server_knobs[0]} is a knob of the lab's server; with --to "
                                  "the server is not the lab's, and only the path's knobs "
                                  f"({', '.join(PATH_KNOBS)}) can vary")
        emulated = Path.coerce(network_path)
        if emulated is None and (target is not None or path_knobs_in(swept) | path_knobs_in(settled)):
            emulated = Path()  # a path knob with no path given: start from an empty one
        for name, value in settled.items():
            if name in PATH_KNOBS:
                assert emulated is not None
                emulated = emulated.with_knob(name, value)
        settled = {name: value for name, value in settled.items() if name not in PATH_KNOBS}
        if emulated is not None and (missing := missing_privilege()) is not None:
            raise ConfigError("emulate", f"cannot build an emulated network path: {missing}")
        if target is not None:
            check_listening(*target)  # before any run: nothing there is one line naming --to
        plan = cls(path=path, knobs=swept, fixed=settled, rounds=rounds, network_path=emulated,
                   target=target,
                   duration_seconds=duration_seconds,
                   warmup_seconds=_warmup(warmup_seconds, stages), connections=connections,
                   rate=rate, stages=tuple(stages),
                   seed=secrets.randbits(32) if seed is None else seed,
                   metrics=tuple(metrics), noise_band=noise_band)
        spec = plan.load_spec("http://127.0.0.1:1")  # a bad duration, rate or stage fails now
        # with stages the run lasts as long as they do, whatever --duration said
        return dataclasses.replace(plan, duration_seconds=spec.duration_seconds)

    @property
    def settings(self) -> list[Setting]:
        """Every combination of the swept values; the first is the baseline."""
        names = list(self.knobs)
        return [dict(zip(names, values, strict=True))
                for values in itertools.product(*(self.knobs[name] for name in names))]

    @property
    def restarts(self) -> bool:
        """True when a swept knob needs a new listener: then every run gets a fresh server."""
        return bool(RESTART_KNOBS.intersection(self.knobs))

    def round_orders(self) -> list[list[int]]:
        """Per round, the order its settings run in (indexes into ``settings``), from the seed."""
        shuffler = random.Random(self.seed)
        orders = []
        for _ in range(self.rounds):
            order = list(range(len(self.settings)))
            shuffler.shuffle(order)
            orders.append(order)
        return orders

    def server_config(self, setting: Setting) -> ServerConfig:
        return ServerConfig().replace(**self.fixed, **server_part(setting))

    def network_path_for(self, setting: Setting) -> Path | None:
        """The path a setting's run crosses: the plan's, with the setting's path knobs."""
        path = self.network_path
        for name, value in setting.items():
            if name in PATH_KNOBS:
                assert path is not None  # create() gives a plan with path knobs a path
                path = path.with_knob(name, value)
        return path

    def load_spec(self, base_url: str) -> LoadSpec:
        return LoadSpec(url=base_url + self.path, connections=self.connections,
                        duration_seconds=self.duration_seconds, warmup_seconds=self.warmup_seconds,
                        mode="closed" if self.rate is None and not self.stages else "open",
                        rate=self.rate, stages=self.stages)


def path_knobs_in(setting: Mapping[str, Any]) -> set[str]:
    return set(setting) & set(PATH_KNOBS)


def server_part(setting: Mapping[str, Any]) -> Setting:
    """A setting without its path knobs: what the server is configured with."""
    return {name: value for name, value in setting.items() if name not in PATH_KNOBS}


def _warmup(seconds: float | None, stages: Sequence[str]) -> float:
    """The default warm-up, except with stages: they plan the whole run, warm-up included."""
    if seconds is not None:
        return seconds
    return 0.0 if stages else DEFAULT_WARMUP_SECONDS


def label(setting: Setting) -> str:
    return ",".join(knob_text(name, value) if name in PATH_KNOBS else f"{name}={_word(value)}"
                    for name, value in setting.items())


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


# --- running --------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SweepRun:
    """One run of one setting in one round: its figures are its record's summary."""

    round: int  # 1-based
    position: int  # 1-based place within the round's shuffled order
    setting: Setting
    record_id: str
    summary: RunSummary
    stages: list[dict[str, Any]] = field(default_factory=list)  # per-stage figures, when staged

    def figure(self, metric: str) -> float:
        return float(getattr(self.summary.latency, metric))

    def as_dict(self) -> dict[str, Any]:
        return {"round": self.round, "position": self.position, "setting": dict(self.setting),
                "record_id": self.record_id, "requests": self.summary.requests,
                "errors": self.summary.error_total, "rps": self.summary.rps,
                **latency_document(self.summary.latency),  # null where nothing or too little
                **({"stages": self.stages} if self.stages else {})}


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    sweep_id: str
    plan: SweepPlan
    orders: list[list[int]]
    runs: list[SweepRun]
    effects: list[Effect] = field(default_factory=list)
    cores: dict[str, list[int] | None] = field(default_factory=dict)
    saved: bool = False  # every run is a record in a store
    # the store the runs were saved in, where a report finds their samples (not in to_json_dict)
    store: RecordStore | None = field(default=None, repr=False, compare=False)

    def forest_plot(self) -> Figure:
        """Every effect with its interval (lab.experiments.forest); matplotlib loads here."""
        from lab.experiments.forest import forest_plot

        return forest_plot(self.effects, title=f"{self.sweep_id}: against {label(self.plan.settings[0])}")

    def to_json_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "sweep_id": self.sweep_id, "path": plan.path,
            "knobs": {name: list(values) for name, values in plan.knobs.items()},
            "fixed": dict(plan.fixed), "baseline": plan.settings[0], "settings": plan.settings,
            "rounds": plan.rounds, "duration_seconds": plan.duration_seconds,
            "warmup_seconds": plan.warmup_seconds, "connections": plan.connections, "rate": plan.rate,
            "stages": list(plan.stages),
            "seed": plan.seed, "order": self.orders, "noise_band": plan.noise_band,
            "restart_per_run": plan.restarts, "cores": self.cores, "saved": self.saved,
            "network_path": None if plan.network_path is None else str(plan.network_path),
            "target": None if plan.target is None else f"{plan.target[0]}:{plan.target[1]}",
            "effects": [effect.as_dict() for effect in self.effects],
            "runs": [run.as_dict() for run in self.runs],
        }


@contextlib.contextmanager
def _affinity(cores: tuple[int, ...] | None) -> Iterator[None]:
    """Run the block on ``cores``; processes started meanwhile inherit them (the generator's
    workers), and the caller gets its own cores back afterwards."""
    if cores is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class _Server:
    """The server under test: one process, pinned, reconfigured or restarted per run."""

    def __init__(self, plan: SweepPlan, cores: tuple[int, ...] | None) -> None:
        self.plan = plan
        self.cores = cores
        self.handle: ServerHandle | None = None

    def ready_for(self, setting: Setting) -> tuple[str, ServerConfig]:
        """The URL a setting's run goes to, and the server's settings for its record."""
        handle = self._handle_for(setting)
        return handle.url, handle.config

    def _handle_for(self, setting: Setting) -> ServerHandle:
        wanted_path = self.plan.network_path_for(setting)
        if self.handle is not None and not self.plan.restarts:
            self.handle.reconfigure(**server_part(setting))  # the fixed knobs never change
            if self.handle.path is not None and wanted_path != self.handle.path.spec:
                assert wanted_path is not None
                self.handle.path.update(wanted_path)  # between runs: nothing is in flight
            return self.handle
        self.stop()
        self.handle = start_server(self.plan.server_config(setting), isolation="process",
                                   path=wanted_path)
        cores = self.cores
        if cores is not None:
            for pid in self.handle.pids:
                os.sched_setaffinity(pid, cores)
        return self.handle

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.handle = None


class _Target:
    """A server the lab did not start, behind a path the sweep changes in place per setting."""

    def __init__(self, plan: SweepPlan, target: tuple[str, int]) -> None:
        self.plan = plan
        self.target = target
        self.front: PathInFront | None = None

    def ready_for(self, setting: Setting) -> tuple[str, None]:
        wanted = self.plan.network_path_for(setting)
        if self.front is None:
            self.front = start_path_to(wanted, self.target)
        elif wanted is not None and wanted != self.front.spec:
            self.front.update(wanted)  # between runs: nothing is in flight
        return self.front.url, None  # its settings are its own: the record keeps the path

    def stop(self) -> None:
        if self.front is not None:
            self.front.stop()
            self.front = None


def run_sweep(plan: SweepPlan, *, store: RecordStore | None = None,
              on_progress: Progress | None = None) -> SweepResult:
    """Run every round of the plan and measure each setting's effect against the baseline."""
    sweep_id = "sweep-" + dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    settings, orders = plan.settings, plan.round_orders()
    server_cores, load_cores = server_and_load_cores()
    server = _Server(plan, server_cores) if plan.target is None else _Target(plan, plan.target)
    runs: list[SweepRun] = []
    total = plan.rounds * len(settings)
    try:
        for round_index, order in enumerate(orders, start=1):
            for position, setting_index in enumerate(order, start=1):
                setting = settings[setting_index]
                url, server_config = server.ready_for(setting)
                with _affinity(load_cores):
                    result = run_load(plan.load_spec(url))
                if result.stopped_early:
                    # run_load turns Ctrl-C (or a stuck run) into a shortened run; a sweep
                    # must not go on comparing a cut round with whole ones
                    raise LabError(f"sweep: the run with {label(setting)} was stopped early; "
                                   "the sweep stops here")
                _require_a_whole_run(result, setting)
                tags = ("sweep", sweep_id, f"setting:{label(setting)}", f"round:{round_index}")
                record = record_from_result(result, server_config=server_config,
                                            name=f"{sweep_id} {label(setting)}", tags=tags)
                if store is not None:
                    store.save(record)
                run = SweepRun(round=round_index, position=position, setting=setting,
                               record_id=record.id, summary=result.summary,
                               stages=result.to_json_dict().get("stages", []))
                runs.append(run)
                if on_progress is not None:
                    on_progress(f"run {len(runs)}/{total}: round {round_index}, {label(setting)}: "
                                + ", ".join(f"{m} {run.figure(m):.3f} ms" for m in plan.metrics))
    finally:
        server.stop()
    pinned = server_cores is not None and plan.target is None  # not the lab's: not pinned
    cores = {"server": list(server_cores) if pinned and server_cores is not None else None,
             "load": None if load_cores is None else list(load_cores)}
    swept = SweepResult(sweep_id=sweep_id, plan=plan, orders=orders, runs=runs,
                        effects=effects_of(plan, runs), cores=cores, saved=store is not None,
                        store=store)
    if store is not None:
        store.save_sweep(sweep_id, swept.to_json_dict())  # what a later report reads
    return swept


def _require_a_whole_run(result: LoadResult, setting: Setting) -> None:
    """A run with no answer, or one that lost part of itself (a worker, the target), is no
    round to compare: its figures cover only what the rest measured."""
    summary = result.summary
    if summary.succeeded == 0:
        raise LabError(f"sweep: the run with {label(setting)} got no successful answer "
                       f"({summary.requests} requests, errors {summary.errors})")
    if result.problems:
        raise LabError(f"sweep: the run with {label(setting)} is incomplete: "
                       + "; ".join(result.problems))


def effects_of(plan: SweepPlan, runs: Sequence[SweepRun]) -> list[Effect]:
    """Each setting against the baseline, per metric, rounds paired by their number."""
    settings = plan.settings
    by_setting: dict[str, dict[int, SweepRun]] = {}
    for run in runs:
        by_setting.setdefault(label(run.setting), {})[run.round] = run
    baseline = by_setting[label(settings[0])]
    effects = []
    for setting in settings[1:]:
        treated = by_setting[label(setting)]
        rounds = sorted(set(baseline) & set(treated))
        for metric in plan.metrics:
            base_figures = [baseline[r].figure(metric) for r in rounds]
            figures = [treated[r].figure(metric) for r in rounds]
            if any(math.isnan(value) for value in base_figures + figures):
                raise LabError(f"sweep: a round of {label(setting)} has no {metric}")
            effects.append(measure_effect(setting, metric, base_figures, figures,
                                          noise_band=plan.noise_band, seed=plan.seed))
    return effects


def sweep(path: str = "/fast", *, knobs: Mapping[str, Sequence[Any]],
          fixed: Mapping[str, Any] | None = None, rounds: int = 9, duration_seconds: float = 1.0,
          warmup_seconds: float | None = None, connections: int = 10,
          rate: float | None = None, stages: Sequence[str] = (), seed: int | None = None,
          metrics: Sequence[str] = DEFAULT_METRICS, noise_band: float = DEFAULT_NOISE_BAND,
          network_path: Path | str | None = None, to: Target | None = None,
          store: RecordStore | None = None, on_progress: Progress | None = None) -> SweepResult:
    """Sweep server knobs: ``knobs={"nodelay": [True, False]}`` (values may be CLI text, "64KiB").

    Every run is saved in ``store`` when one is given. ``network_path`` (``"delay=20ms"``) puts
    the server behind an emulated path (root or CAP_NET_ADMIN); path knobs (``"delay":
    ["10ms", "40ms"]``) vary it. ``to`` (``"127.0.0.1:8000"``) sweeps the path in front of a
    server the lab did not start instead of the lab's. See the module's docstring.
    """
    plan = SweepPlan.create(path, knobs=knobs, fixed=fixed, rounds=rounds,
                            duration_seconds=duration_seconds, warmup_seconds=warmup_seconds,
                            connections=connections, rate=rate, stages=stages, seed=seed,
                            metrics=metrics, noise_band=noise_band, network_path=network_path,
                            to=to)
    return run_sweep(plan, store=store, on_progress=on_progress)

