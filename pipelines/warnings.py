"""Warn before filing: a sink between the rules and the `CaseSink` that gives a problem a grace period.

How the reference deployments treat shopkeepers: the first report of a problem plays a warning (for example a
voice message through the camera's speaker) and is *held*; the case is filed only if the same problem is
reported again at least `grace` later. A problem not reported again within `grace + tolerance` is dropped
("warned, cleared"): it was put right. Once filed, later reports pass straight through (the filer attaches
them to the open case).

"The same problem" is the case store's notion: same camera, preset, zone and kind, and boxes overlapping by at
least `min_iou` (`cases.store.box_iou`, the filer's default 0.3); the held box follows the latest report.

Rules re-report a staying object every `repeat_every` (and only when the camera looks: once per visit of a
patrolled preset), so `grace` must be longer than `repeat_every` (checked in the config) and `tolerance` at
least the preset's re-report interval (checked too; by default twice it), or a problem still there could slip
between two reports and be dropped.

Time is the violation's frame time, never the wall clock: a recorded sequence replays to the same outcome.
Holds live in memory: after a restart a problem is warned (and held) again; its open case, if any, then gets
the attach after the grace.

Actions run in the background, so a slow speaker never stalls a camera's patrol. A failing action is logged
with the camera id and counted; the problem is held and filed exactly as if the warning had played: a warning
never loses a case.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx

from citywatch.pipelines.patrol import Sink
from citywatch.vision.boxes import Box, box_iou
from citywatch.vision.taxonomy import kind as taxonomy_kind
from citywatch.vision.violation import Violation

if TYPE_CHECKING:
    from citywatch.pipelines.config import ActionConfig, CityConfig

log = logging.getLogger(__name__)

ProblemKey = tuple[str, str | None, str, str]
"""camera, preset, zone, kind."""
PolicyKey = tuple[str, str | None, str]
"""camera, preset, rule."""


class WarningActionFailed(RuntimeError):
    """A warning could not be given (speaker unreachable, refused, timed out)."""


@dataclass(frozen=True)
class WarningMessage:
    """What a warning action is told: where, what, and the texts to say."""

    camera_id: str
    preset_id: str | None
    zone: str
    kind: str
    code: str
    rule: str
    box: Box
    seen_at: datetime
    grace_s: float
    text_zh: str
    text_en: str

    @classmethod
    def of(cls, violation: Violation, grace: timedelta) -> WarningMessage:
        entry = taxonomy_kind(violation.kind)
        minutes = max(1, round(grace.total_seconds() / 60))
        return cls(
            camera_id=violation.camera_id,
            preset_id=violation.preset_id,
            zone=violation.zone,
            kind=violation.kind,
            code=violation.code,
            rule=violation.rule,
            box=tuple(float(v) for v in violation.box),  # type: ignore[arg-type]
            seen_at=violation.frame.captured_at,
            grace_s=grace.total_seconds(),
            text_zh=f"您好，此处发现{entry.name_zh}，请在{minutes}分钟内自行整改，逾期未整改将自动立案。",
            text_en=f"Notice: {entry.name_en.lower()} here. Please clear it within {minutes} minutes, "
            "or a case will be filed.",
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["box"] = list(self.box)
        data["seen_at"] = self.seen_at.isoformat()
        return data


class WarningAction(Protocol):
    """Gives one warning; raises `WarningActionFailed` when it could not."""

    name: str

    def __call__(self, message: WarningMessage) -> Awaitable[None]: ...


class HttpWarning:
    """POSTs the warning as JSON to a speaker gateway or a camera's audio endpoint; retries with back-off."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: timedelta = timedelta(seconds=3),
        retries: int = 1,
        retry_after: timedelta = timedelta(seconds=1),
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = timeout.total_seconds()
        self.retries = retries
        self.retry_after = retry_after.total_seconds()
        self._client = client

    async def __call__(self, message: WarningMessage) -> None:
        if self._client is None:  # made on first use, inside the loop that uses it
            self._client = httpx.AsyncClient(follow_redirects=False)
        failure: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_after * 2 ** (attempt - 1))
            try:
                response = await self._client.post(
                    self.url, json=message.as_json(), headers=self.headers, timeout=self.timeout
                )
                response.raise_for_status()
                return
            except httpx.HTTPError as error:
                failure = error
        raise WarningActionFailed(f"action {self.name!r}: POST {self.url} failed {self.retries + 1}x: {failure!r}")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


ActionFactory = Callable[[str, "ActionConfig"], WarningAction]
ACTION_TYPES: dict[str, ActionFactory] = {}
"""Action factories by config `type`; an ONVIF audio back-channel or a shell command registers here."""


def register_action(type_name: str) -> Callable[[ActionFactory], ActionFactory]:
    def register(factory: ActionFactory) -> ActionFactory:
        ACTION_TYPES[type_name] = factory
        return factory

    return register


@register_action("http")
def _http_action(name: str, config: ActionConfig) -> WarningAction:
    return HttpWarning(
        name,
        config.url,
        headers=config.headers,
        timeout=config.timeout,
        retries=config.retries,
        retry_after=config.retry_after,
    )


@dataclass(frozen=True)
class WarnPolicy:
    action: str
    grace: timedelta
    tolerance: timedelta
    """A hold not reported again by warned time + grace + tolerance is dropped."""


@dataclass
class _Problem:
    key: ProblemKey
    box: Box
    warned_at: datetime
    last_at: datetime
    policy: WarnPolicy
    filed: bool = False

    @property
    def deadline(self) -> datetime:
        """Held: dropped unless reported again by then. Filed: forgotten once unseen that long."""
        if self.filed:
            return self.last_at + self.policy.grace + self.policy.tolerance
        return self.warned_at + self.policy.grace + self.policy.tolerance


@dataclass
class WarningStats:
    warned: int = 0
    """Problems warned and held."""
    held: int = 0
    """Reports of a warned problem within its grace (not filed)."""
    filed_after_warning: int = 0
    """Warned problems still there after the grace: filed."""
    cleared: int = 0
    """Warned problems not reported again in time: dropped, never filed."""
    action_failures: int = 0
    """Warnings that could not be given (the problem was still held and filed normally)."""
    passed: int = 0
    """Reports passed straight to the sink (no warning configured, or already filed)."""
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    """Last outcomes: warned / cleared / filed / action_failed, with camera, zone, kind and frame time."""


class WarningGate:
    """A `Sink` that warns first and passes a problem on to `sink` only if it outlasts its grace."""

    def __init__(
        self,
        sink: Sink,
        actions: Mapping[str, WarningAction],
        policies: Mapping[PolicyKey, WarnPolicy],
        *,
        min_iou: float = 0.3,
    ) -> None:
        """`policies`: by (camera, preset, rule); a violation whose rule has none passes straight through."""
        missing = sorted({p.action for p in policies.values()} - set(actions))
        if missing:
            raise ValueError(f"warning policies name unknown actions {missing} (known: {', '.join(actions)})")
        self.sink = sink
        self.actions = dict(actions)
        self.policies = dict(policies)
        self.min_iou = min_iou
        self.stats = WarningStats()
        self._problems: dict[ProblemKey, list[_Problem]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._action_configs: dict[str, ActionConfig] = {}

    @classmethod
    def from_config(cls, config: CityConfig, sink: Sink) -> WarningGate:
        """The gate for `config`'s warned rules in front of `sink` (with none warned, it only passes through)."""
        gate = cls(sink, {}, {})
        gate.apply(config)
        return gate

    def apply(self, config: CityConfig) -> None:
        """Take a new config's warned rules and actions (hot reload). Holds under way keep their grace; an
        unchanged action keeps its client."""
        policies: dict[PolicyKey, WarnPolicy] = {}
        for camera_id, camera in config.cameras.items():
            for preset_id, preset in camera.presets.items():
                for zone in preset.zones.values():
                    for rule in zone.rules:
                        warn = config.rules[rule].warn
                        if warn is not None:
                            tolerance = config.warn_tolerance(camera_id, preset_id, rule)
                            policies[(camera_id, preset_id, rule)] = WarnPolicy(warn.action, warn.grace, tolerance)
        actions: dict[str, WarningAction] = {}
        configs: dict[str, ActionConfig] = {}
        for name in sorted({policy.action for policy in policies.values()}):
            action_config = config.actions[name]
            same = self._action_configs.get(name) == action_config
            actions[name] = self.actions[name] if same else ACTION_TYPES[action_config.type](name, action_config)
            configs[name] = action_config
        self.policies, self.actions, self._action_configs = policies, actions, configs

    async def __call__(self, violation: Violation) -> None:
        now = violation.frame.captured_at
        self.expire(now, camera_id=violation.camera_id)
        policy = self.policies.get((violation.camera_id, violation.preset_id, violation.rule))
        if policy is None:
            self.stats.passed += 1
            await self.sink(violation)
            return
        key: ProblemKey = (violation.camera_id, violation.preset_id, violation.zone, violation.kind)
        problem = self._match(key, violation.box)
        if problem is None:
            problem = _Problem(key, violation.box, now, now, policy)
            self._problems.setdefault(key, []).append(problem)
            self.stats.warned += 1
            self._record("warned", violation, now)
            self._start(policy, violation)
            return
        problem.box, problem.last_at = violation.box, max(problem.last_at, now)
        if problem.filed:
            self.stats.passed += 1
            await self.sink(violation)
            return
        if now - problem.warned_at < policy.grace:
            self.stats.held += 1
            return
        await self.sink(violation)  # raises: still held, and the next report tries again
        problem.filed = True
        self.stats.filed_after_warning += 1
        self._record("filed", violation, now)

    def expire(self, now: datetime, *, camera_id: str | None = None) -> None:
        """Drop holds past their deadline at frame time `now` (of one camera's frames, or of all cameras')."""
        for key in [k for k in self._problems if camera_id is None or k[0] == camera_id]:
            kept = []
            for problem in self._problems[key]:
                if now <= problem.deadline:
                    kept.append(problem)
                elif not problem.filed:
                    self.stats.cleared += 1
                    self.stats.recent.append(_outcome("cleared", key, problem.last_at))
                    camera, _preset, zone, kind = key
                    log.info("camera %s zone %s: %s warned, cleared (not seen after the grace)", camera, zone, kind)
            if kept:
                self._problems[key] = kept
            else:
                del self._problems[key]

    @property
    def holding(self) -> int:
        """Warned problems waiting for their grace to end."""
        return sum(not p.filed for problems in self._problems.values() for p in problems)

    async def settle(self) -> None:
        """Wait for the warnings under way (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def aclose(self) -> None:
        await self.settle()
        for action in self.actions.values():
            close = getattr(action, "aclose", None)
            if close is not None:
                await close()

    def health(self) -> dict[str, Any]:
        """Counters for /healthz, JSON-ready."""
        stats = asdict(self.stats)
        stats["recent"] = list(self.stats.recent)
        return {**stats, "holding": self.holding, "warnings_under_way": len(self._pending)}

    def _match(self, key: ProblemKey, box: Box) -> _Problem | None:
        best, best_iou = None, self.min_iou
        for problem in self._problems.get(key, ()):
            iou = box_iou(problem.box, box)
            if iou >= best_iou and (best is None or iou > best_iou):
                best, best_iou = problem, iou
        return best

    def _start(self, policy: WarnPolicy, violation: Violation) -> None:
        task = asyncio.get_running_loop().create_task(self._warn(policy, violation))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _warn(self, policy: WarnPolicy, violation: Violation) -> None:
        try:
            await self.actions[policy.action](WarningMessage.of(violation, policy.grace))
        except Exception as error:  # a silent speaker must not lose the case: it stays held and is filed
            self.stats.action_failures += 1
            self._record("action_failed", violation, violation.frame.captured_at)
            log.warning("camera %s: warning %r failed: %s", violation.camera_id, policy.action, error)

    def _record(self, outcome: Literal["warned", "filed", "action_failed"], violation: Violation, at: datetime) -> None:
        key = (violation.camera_id, violation.preset_id, violation.zone, violation.kind)
        self.stats.recent.append(_outcome(outcome, key, at))


def _outcome(outcome: str, key: ProblemKey, at: datetime) -> dict[str, Any]:
    camera_id, preset_id, zone, kind = key
    return {
        "outcome": outcome,
        "camera_id": camera_id,
        "preset_id": preset_id,
        "zone": zone,
        "kind": kind,
        "at": at.isoformat(),
    }
