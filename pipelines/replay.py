"""`citywatch replay`: the serving path of one preset run on recorded footage, with a report of what it files.

What runs is what serving builds for that preset (`pipelines.build`): the preset's detector (`open_detector`,
`builtin:` models included) on the windows its `detect:` names (`preset_detect`), its scene (zones, rules,
tracker), the warning gate (`WarningGate.from_config`;
its actions are replaced by ones that only record, so no speaker plays) and the `CaseSink` → `CaseFiler` with
its dedupe against open cases. Storage is throwaway: a SQLite database and an evidence folder under `out`;
the config's storage, serving address, camera addresses and webhooks are not used (`replay_config`).

Frames → visits, as the preset's patrol would take them (`VisitSampler`): a visit takes `samples` frames
`sample_every` apart (the first decoded frame at or after each due time); the next visit starts at the first
frame `schedule.every` after the visit's start (no schedule: back to back, i.e. a frame every
`sample_every`). A scheduled preset's visits are bracketed by `begin_visit`/`end_visit` as the patrol does;
an unscheduled one is never closed. `every_frame` analyses every decoded frame instead (video-rate rules),
with the same visit boundaries. Picture folders: every picture is analysed. The schedule's `between` window is
not applied (replay looks at the footage it is given); rules' `active` windows are, by frame time.

Time: video and RTSP frames by their pts from `start`; pictures by EXIF DateTimeOriginal, else `step` apart
from `start`. `start` defaults to `DEFAULT_START`. Several sources play one after another (tracks do not span
them): each starts at `start` or one minute after the previous source's last frame, whichever is later
(pictures with EXIF keep their own time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml

from citywatch.cases.evidence_folder import FolderEvidenceStore
from citywatch.cases.filing import CaseFiler, FilingResult
from citywatch.cases.records import CaseRecord, EvidenceRecord
from citywatch.cases.spool import EvidenceSpool
from citywatch.cases.store import CaseStore
from citywatch.pipelines.build import case_sink, in_process, open_detector, preset_detect, preset_visit
from citywatch.pipelines.config import CityConfig, ConfigError, parse_config
from citywatch.pipelines.replay_reasons import NearMisses, Sighting, filing_outcome
from citywatch.pipelines.replay_sources import Picture, SourceError, is_stream, read_folder, read_stream, read_video
from citywatch.pipelines.sink import CaseSink
from citywatch.pipelines.warnings import WarningGate, WarningMessage
from citywatch.vision.frame import Frame
from citywatch.vision.taxonomy import kind as taxonomy_kind
from citywatch.vision.violation import Violation

DEFAULT_START = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
"""Monday 2026-01-05 10:00 in Asia/Shanghai: inside the usual daytime rule windows."""
SOURCE_GAP = timedelta(minutes=1)


class ReplayError(ValueError):
    """Replay cannot start as asked (unknown camera or preset, no sources); the message says what is wrong."""


class ReplayProgress(Protocol):
    def source(self, name: str, total: int | None) -> None: ...

    def advance(self, frames: int = 1) -> None: ...


@dataclass(frozen=True)
class ReplayOptions:
    start: datetime = DEFAULT_START
    step: timedelta = timedelta(seconds=2)
    seconds: float = 10.0
    """How long an RTSP source is read."""
    every_frame: bool = False


@dataclass(frozen=True)
class FiledCase:
    case_id: int
    kind: str
    code: str
    name_en: str
    name_zh: str
    rule: str
    zone: str
    class_name: str
    confidence: float
    dwell_s: float
    first_seen: datetime
    source: str
    attaches: int
    """Later violations attached to this case (observations − 1)."""
    evidence: dict[str, str]
    """Role → file, relative to the output folder."""
    also_seen_kinds: tuple[str, ...] = ()
    """Related kinds merged into this case (`filing → related_kinds`)."""


@dataclass
class ReplayResult:
    config: str
    camera_id: str
    preset_id: str
    detector: str
    model_version: str
    out: Path
    sources: list[str]
    errors: list[str] = field(default_factory=list)
    frames_decoded: int = 0
    frames_analysed: int = 0
    seconds: float = 0.0
    violations: int = 0
    cases: list[FiledCase] = field(default_factory=list)
    near_misses: list[tuple[str, int, list[Sighting]]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames_analysed / self.seconds if self.seconds > 0 else 0.0


def replay_config(path: Path) -> CityConfig:
    """The city config as replay uses it: storage, serving address, camera addresses (RTSP, ONVIF) and webhooks
    are replaced, so their ${ENV} values need not be set; everything replay runs comes from the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    quality = _literal((data.get("storage") or {}).get("evidence"), "jpeg_quality")
    data["storage"] = {"evidence": {"endpoint": "replay.invalid", "access_key": "-", "secret_key": "-", **quality}}
    data["serving"] = _literal(data.get("serving") or {}, "timezone")
    data.pop("webhooks", None)
    for camera_id, camera in (data.get("cameras") or {}).items():
        if isinstance(camera, dict):
            camera["rtsp"] = f"rtsp://replay.invalid/{camera_id}"
            if camera.get("ptz") is not None:
                camera["ptz"] = {"onvif": "replay.invalid:80"}
    for action in (data.get("actions") or {}).values():
        if isinstance(action, dict) and "url" in action:
            action["url"], action["headers"] = "http://replay.invalid/", {}
    return parse_config(data, source=str(path))


def _literal(section: Any, key: str) -> dict[str, Any]:
    """`{key: value}` if the section holds it as a literal (not an ${ENV} reference), else {}."""
    if isinstance(section, dict) and key in section and "${" not in str(section[key]):
        return {key: section[key]}
    return {}


def split_camera(config: CityConfig, spec: str) -> tuple[str, str]:
    """`CAM` or `CAM/PRESET` → (camera, preset); a camera with one preset needs no preset."""
    camera_id, _, preset_id = spec.partition("/")
    camera = config.cameras.get(camera_id)
    if camera is None:
        raise ReplayError(f"no camera {camera_id!r} in the config (known: {', '.join(config.cameras)})")
    if not preset_id:
        if len(camera.presets) != 1:
            raise ReplayError(f"camera {camera_id!r} has presets {', '.join(camera.presets)}: name one as CAM/PRESET")
        preset_id = next(iter(camera.presets))
    if preset_id not in camera.presets:
        raise ReplayError(f"camera {camera_id!r} has no preset {preset_id!r} (known: {', '.join(camera.presets)})")
    return camera_id, preset_id


@dataclass
class VisitSampler:
    """Which decoded frames a patrol of the preset would analyse, and where its visits begin."""

    samples: int
    sample_every: float
    every: float | None
    all_frames: bool = False
    _start: float | None = None
    _taken: int = 0

    @property
    def period(self) -> float:
        burst = self.samples * self.sample_every
        return max(self.every, burst) if self.every is not None else burst

    def take(self, at: float) -> bool | None:
        """None: skip this frame; True: it starts a new visit; False: it is analysed within the current one."""
        if self._start is None or at >= self._start + self.period:
            self._start, self._taken = at, 1
            return True
        if self.all_frames:
            return False
        if self._taken < self.samples and at >= self._start + self._taken * self.sample_every:
            self._taken += 1
            return False
        return None


class _Recorder:
    """Behind the warning gate: files through the CaseSink and keeps each violation's filing result."""

    def __init__(self, sink: CaseSink) -> None:
        self.sink = sink
        self.results: dict[int, FilingResult] = {}

    async def __call__(self, violation: Violation) -> None:
        self.results[id(violation)] = await self.sink.file(violation)


class _DryWarning:
    """A warning action that only records what it would have said."""

    def __init__(self, name: str, said: list[dict[str, Any]]) -> None:
        self.name = name
        self.said = said

    async def __call__(self, message: WarningMessage) -> None:
        self.said.append({"action": self.name, **message.as_json()})


def _pictures(source: str, start: datetime, options: ReplayOptions, timezone: str) -> Iterator[Picture | SourceError]:
    if is_stream(source):
        yield from read_stream(source, start, options.seconds)
    elif Path(source).is_dir():
        yield from read_folder(Path(source), start, options.step, timezone)
    else:
        yield from read_video(Path(source), start)


class Replay:
    """One preset's serving path over sources; `run` returns what it filed and what it saw but did not."""

    def __init__(self, config: CityConfig, camera_id: str, preset_id: str, out: Path, *, config_name: str = "") -> None:
        self.config, self.camera_id, self.preset_id, self.out = config, camera_id, preset_id, out
        out.mkdir(parents=True, exist_ok=True)
        self.detector_name = config.preset_detector(camera_id, preset_id)
        self.detector = open_detector(config.detectors[self.detector_name])
        self.visit = preset_visit(config, camera_id, preset_id, detect=None, model_version=self.detector.info.version)
        self.detect = preset_detect(config, camera_id, preset_id, in_process(self.detector))
        self.scene = self.visit.scene
        self.store = CaseStore.from_url(f"sqlite:///{(out / 'cases.db').resolve()}", policy=config.lifecycle.policy())
        self.evidence = FolderEvidenceStore(out / "evidence")
        filer = CaseFiler(self.store, self.evidence, EvidenceSpool(out / "spool"), related=config.filing.related())
        self.recorder = _Recorder(case_sink(config, filer))
        self.gate = WarningGate.from_config(config, self.recorder)
        self.said: list[dict[str, Any]] = []
        self.gate.actions = {name: _DryWarning(name, self.said) for name in self.gate.actions}
        start_track_at = {name: float(t.high_conf_det_threshold) for name, t in self.scene.trackers.items()}
        self.near = NearMisses(self.scene.zones, start_track_at)
        self.result = ReplayResult(
            config_name, camera_id, preset_id, self.detector_name, self.detector.info.version, out, []
        )
        self._created: list[tuple[int, Violation, str]] = []

    async def run(
        self, sources: Sequence[str], options: ReplayOptions, progress: ReplayProgress | None = None
    ) -> ReplayResult:
        if not sources:
            raise ReplayError("give at least one SOURCE (video file, picture folder or rtsp:// URL)")
        began = time.perf_counter()
        start = options.start
        for source in sources:
            self.result.sources.append(source)
            if progress is not None:
                progress.source(source, None)
            last = await self._run_source(source, start, options, progress)
            if last is not None:  # a source that gave no frame takes no time
                start = max(start, last + SOURCE_GAP)
        await self.gate.settle()
        self.near.finish()
        self.result.seconds = time.perf_counter() - began
        self.result.cases = [self._filed(case_id, violation, source) for case_id, violation, source in self._created]
        self.result.near_misses = self.near.groups()
        self.result.warnings = self.said
        return self.result

    async def _run_source(
        self, source: str, start: datetime, options: ReplayOptions, progress: ReplayProgress | None
    ) -> datetime | None:
        visit = self.visit
        scheduled = visit.schedule.every is not None
        sampler = VisitSampler(
            visit.samples,
            visit.sample_every,
            visit.schedule.every.total_seconds() if visit.schedule.every else None,
            all_frames=options.every_frame or Path(source).is_dir(),
        )
        last: datetime | None = None
        try:
            for item in _pictures(source, start, options, self.config.serving.timezone):
                if isinstance(item, SourceError):
                    self.result.errors.append(str(item))
                    continue
                self.result.frames_decoded += 1
                last = item.captured_at
                taken = sampler.take(item.captured_at.timestamp())
                if taken is None:
                    continue
                if taken and scheduled:
                    await self._end_visit()
                    self.scene.begin_visit(item.captured_at)
                await self._analyse(item)
                if progress is not None:
                    progress.advance()
        except SourceError as error:
            self.result.errors.append(str(error))
        finally:
            await self._end_visit()
            self.scene.reset()
        return last

    async def _end_visit(self) -> None:
        if self.scene.in_visit:
            for violation in self.scene.end_visit():
                await self._deliver(violation, "end of visit")

    async def _analyse(self, picture: Picture) -> None:
        frame = Frame(picture.image, self.camera_id, self.preset_id, picture.captured_at, self.result.frames_decoded)
        detections = await self.detect(frame.image)
        self.result.frames_analysed += 1
        violations = self.scene.observe(frame, detections)
        self.near.observe(frame, detections, picture.name, self.scene.confirmed)
        for violation in violations:
            await self._deliver(violation, picture.name)

    async def _deliver(self, violation: Violation, source: str) -> None:
        self.result.violations += 1
        self.near.violation(violation)
        await self.gate(violation)
        result = self.recorder.results.pop(id(violation), None)
        outcome = filing_outcome(
            None if result is None else result.created,
            bool(result and result.suppressed),
            None if result is None else result.case_id,
        )
        if outcome is None and result is not None:
            self._created.append((result.case_id, violation, source))
        elif outcome is not None:
            self.near.add(
                Sighting(
                    outcome[0],
                    outcome[1],
                    violation.class_name,
                    float(violation.confidence),
                    violation.box,
                    violation.frame,
                    source,
                )
            )

    def _filed(self, case_id: int, violation: Violation, source: str) -> FiledCase:
        case = self.store.get_case(case_id)
        assert case is not None, f"case {case_id} was filed in this run"
        entry = taxonomy_kind(case.kind)
        evidence = {
            role: self.evidence.path(record.key).relative_to(self.out).as_posix()
            for role, record in self._first_set_of_its_kind(case).items()
        }
        return FiledCase(
            case_id,
            case.kind,
            case.code,
            entry.name_en,
            entry.name_zh,
            case.rule,
            case.zone,
            case.class_name,
            case.confidence,
            violation.dwell_seconds,
            violation.first_seen,
            source,
            case.observations - 1,
            evidence,
            case.also_seen_kinds,
        )

    def _first_set_of_its_kind(self, case: CaseRecord) -> dict[str, EvidenceRecord]:
        """The first evidence set whose sidecar shows the case's kind: a case that took a related kind later
        was filed on a picture of the other kind. A set is one filing's rows (written together); a role it
        shares with an earlier set of the same frame (the untouched frame) was written once, by that set."""
        sets: list[tuple[datetime, dict[str, EvidenceRecord]]] = []
        for record in case.evidence:
            if not sets or record.role in sets[-1][1] or sets[-1][0] != record.captured_at:
                sets.append((record.captured_at, {}))
            sets[-1][1][record.role] = record
        for number, (captured_at, roles) in enumerate(sets):
            sidecar = roles.get("sidecar")
            if sidecar is not None and json.loads(self.evidence.path(sidecar.key).read_bytes())["kind"] == case.kind:
                shared = [earlier for at, earlier in sets[:number] if at == captured_at]
                return {role: record for part in [*shared, roles] for role, record in part.items()}
        return sets[0][1] if sets else {}


def default_out(now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Path:
    return Path("var/replay") / now().strftime("%Y%m%dT%H%M%SZ")
