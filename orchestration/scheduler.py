"""Scheduled and data-triggered pipeline runs, and cron conversion for Kubeflow.

``CronSchedule`` wraps croniter (cron parsing and time zones are not
hand-written) and settles DST: when a wall time does not exist (spring
forward) the run happens at the next valid time; when it exists twice (fall
back) it runs once, at the first.

``Scheduler`` runs a job in the foreground: one run at a time (a later fire
time that passes during a run is skipped, not queued), missed runs are not
replayed unless ``catch_up``, a failing run is logged and the loop goes on, and
``stop()`` (wired to SIGTERM) ends it between runs. Time comes from an injected
clock, so tests never sleep for the schedule.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import glob
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sluice.components.io import spans
from sluice.components.sdk import DefinitionError
from sluice.orchestration.secrets import mask_text

log = logging.getLogger("sluice.scheduler")


class ScheduleError(DefinitionError):
    """An invalid cron expression, time zone or trigger."""


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"--timezone {name!r}: unknown time zone (use an IANA name like Europe/Berlin)") from None


class CronSchedule:
    """A 5-field cron expression evaluated in a time zone.

    >>> s = CronSchedule("0 3 * * *", "Europe/Berlin")
    >>> [t.isoformat() for t in s.times_after(dt.datetime(2026, 3, 28, 12, tzinfo=dt.timezone.utc), 2)]
    ['2026-03-29T03:00:00+02:00', '2026-03-30T03:00:00+02:00']
    """

    def __init__(self, expression: str, timezone: str = "UTC"):
        from croniter import croniter

        fields = expression.split()
        if len(fields) != 5 or not croniter.is_valid(expression):
            raise ScheduleError(
                f"--cron {expression!r}: invalid cron expression (5 fields: minute hour day-of-month month day-of-week)"
            )
        self.expression = expression
        self.tz = parse_timezone(timezone)

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        from croniter import croniter

        local = moment.astimezone(self.tz)
        it = croniter(self.expression, local)
        while True:
            candidate = it.get_next(dt.datetime)
            # Fall back: the repeated wall time (fold=1) is the same scheduled slot.
            if getattr(candidate, "fold", 0) == 1 and candidate.replace(fold=0).utcoffset() != candidate.utcoffset():
                continue
            if candidate > moment:
                return candidate

    def times_after(self, moment: dt.datetime, count: int) -> list[dt.datetime]:
        times = []
        for _ in range(count):
            moment = self.next_after(moment)
            times.append(moment)
        return times


def to_kfp_cron(expression: str, timezone: str, now: dt.datetime | None = None) -> str:
    """A 5-field cron in ``timezone`` as KFP's 6-field cron in UTC (seconds first).

    Uses the zone's current UTC offset; hours that wrap past midnight move the
    day-of-week with them. Schedules that cannot be expressed in UTC are errors.
    """
    from croniter import croniter

    CronSchedule(expression, timezone)  # validates
    tz = parse_timezone(timezone)
    now = now or dt.datetime.now(dt.UTC)
    offset = now.astimezone(tz).utcoffset() or dt.timedelta(0)
    offset_minutes = int(offset.total_seconds() // 60)
    minute_f, hour_f, dom_f, month_f, dow_f = expression.split()
    if offset_minutes == 0:
        return f"0 {expression}"
    expanded, _ = croniter.expand(expression)
    minutes, hours = expanded[0], expanded[1]
    if offset_minutes % 60 and minutes == ["*"]:
        raise ScheduleError(f"--cron {expression!r}: cannot shift an every-minute schedule by a partial-hour offset")
    if hours == ["*"] and minutes != ["*"] and offset_minutes % 60 == 0:
        return f"0 {minute_f} {hour_f} {dom_f} {month_f} {dow_f}"
    if hours == ["*"]:
        new_minutes = sorted({(m - offset_minutes) % 60 for m in minutes})
        return f"0 {','.join(map(str, new_minutes))} * {dom_f} {month_f} {dow_f}"
    pairs = set()
    day_shifts = set()
    for h in hours:
        for m in (minutes if minutes != ["*"] else [None]):
            total = h * 60 + (m or 0) - offset_minutes
            day_shifts.add(total // (24 * 60))
            total %= 24 * 60
            pairs.add((total // 60, None if m is None else total % 60))
    if len(day_shifts) > 1:
        raise ScheduleError(
            f"--cron {expression!r} in {timezone}: its times fall on different UTC days; split it into two schedules"
        )
    shift = day_shifts.pop()
    new_hours = sorted({h for h, _ in pairs})
    new_minutes = sorted({m for _, m in pairs if m is not None})
    if minutes != ["*"] and len(pairs) != len(new_hours) * len(new_minutes):
        raise ScheduleError(f"--cron {expression!r} in {timezone}: cannot be expressed as one UTC cron")
    if shift:
        if dom_f != "*":
            raise ScheduleError(
                f"--cron {expression!r} in {timezone}: moves to another UTC day; day-of-month schedules cannot move"
            )
        if dow_f != "*":
            days = expanded[4]
            dow_f = ",".join(str((d + shift) % 7) for d in sorted(int(d) % 7 for d in days))
    minute_out = "*" if minutes == ["*"] else ",".join(map(str, new_minutes))
    return f"0 {minute_out} {','.join(map(str, new_hours))} {dom_f} {month_f} {dow_f}"


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    def sleep_until(self, moment: dt.datetime, stop: threading.Event) -> None: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def sleep_until(self, moment: dt.datetime, stop: threading.Event) -> None:
        while not stop.is_set():
            remaining = (moment - self.now()).total_seconds()
            if remaining <= 0:
                return
            stop.wait(min(remaining, 60))


@dataclasses.dataclass
class ScheduledRun:
    scheduled_for: dt.datetime
    status: str  # executed | failed | skipped
    detail: str = ""


class RunLock:
    """A lock file shared by every scheduler of one pipeline: never two runs at once."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self._fh = None

    def acquire(self) -> bool:
        self._fh = open(self.path, "a+")  # noqa: SIM115 - held open until release(): the flock lives with it
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            self._fh.close()
            self._fh = None
            return False

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class Scheduler:
    """Runs ``job`` at the fire times of a trigger (a cron schedule or a span watcher)."""

    def __init__(self, job: Callable[[], Any], state_dir: str, pipeline: str,
                 clock: Clock | None = None, catch_up: bool = False):
        self.job = job
        self.clock = clock or SystemClock()
        self.catch_up = catch_up
        self.pipeline = pipeline
        self.state_path = os.path.join(state_dir, f"{pipeline}.json")
        self.lock = RunLock(os.path.join(state_dir, f"{pipeline}.lock"))
        self.history: list[ScheduledRun] = []
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    # -- state ------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        try:
            with open(self.state_path) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return {}

    def _save_state(self, **values: Any) -> None:
        state = {**self._load_state(), **values}
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(state, fh)
        os.replace(tmp, self.state_path)

    # -- running ------------------------------------------------------------------

    def _run_once(self, scheduled_for: dt.datetime, reason: str) -> ScheduledRun:
        if not self.lock.acquire():
            record = ScheduledRun(scheduled_for, "skipped", "another run of this pipeline is in progress")
        else:
            try:
                log.info("run for %s (%s) starting", scheduled_for.isoformat(), reason)
                result = self.job()
                ok = getattr(result, "ok", True)
                record = ScheduledRun(scheduled_for, "executed" if ok else "failed",
                                      getattr(result, "run_id", "") or getattr(result, "error", ""))
            except Exception as exc:  # noqa: BLE001 - a failing run never stops the scheduler
                record = ScheduledRun(scheduled_for, "failed", mask_text(f"{type(exc).__name__}: {exc}"))
            finally:
                self.lock.release()
        log.info("run for %s: %s %s", scheduled_for.isoformat(), record.status, record.detail)
        self.history.append(record)
        return record

    def run_cron(self, schedule: CronSchedule, max_runs: int | None = None) -> list[ScheduledRun]:
        state = self._load_state()
        now = self.clock.now()
        last = dt.datetime.fromisoformat(state["last_scheduled"]) if state.get("last_scheduled") else None
        if last is not None and self.catch_up:
            for missed in self._times_between(schedule, last, now):
                if self._stop.is_set() or (max_runs is not None and len(self.history) >= max_runs):
                    return self.history
                self._run_once(missed, "catch-up")
                self._save_state(last_scheduled=missed.isoformat())
        cursor = now
        while not self._stop.is_set() and (max_runs is None or len(self.history) < max_runs):
            fire = schedule.next_after(cursor)
            self.clock.sleep_until(fire, self._stop)
            if self._stop.is_set():
                break
            self._run_once(fire, "schedule")
            self._save_state(last_scheduled=fire.isoformat())
            finished = self.clock.now()
            # Fire times that passed during the run are skipped, never run concurrently.
            for skipped in self._times_between(schedule, fire, finished):
                self.history.append(ScheduledRun(skipped, "skipped", "the previous run was still going"))
                log.info("run for %s: skipped (previous run still going)", skipped.isoformat())
            # A slot at exactly the finish time may still run.
            cursor = max(fire, finished - dt.timedelta(microseconds=1))
        return self.history

    @staticmethod
    def _times_between(schedule: CronSchedule, start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
        moment = start
        while True:
            moment = schedule.next_after(moment)
            if moment >= end:
                return
            yield moment

    def run_on_new_span(self, watcher: SpanWatcher, poll_seconds: float,
                        max_runs: int | None = None) -> list[ScheduledRun]:
        state = self._load_state()
        seen = state.get("last_span")
        while not self._stop.is_set() and (max_runs is None or len(self.history) < max_runs):
            latest = watcher.latest_span()
            if latest is not None and (seen is None or latest > seen):
                record = self._run_once(self.clock.now(), f"new span {latest}")
                if record.status != "skipped":
                    seen = latest
                    self._save_state(last_span=latest)
                continue
            self.clock.sleep_until(self.clock.now() + dt.timedelta(seconds=poll_seconds), self._stop)
        return self.history


class SpanWatcher:
    """Finds the latest ``{SPAN}`` present for a pipeline's span-pattern inputs.

    It reads the compiled IR: any string parameter containing ``{SPAN}``,
    taken relative to the node's external-data parameter (its input folder),
    parsed by ``sluice.components.io.spans`` as ExampleGen parses it.
    """

    def __init__(self, ir: dict[str, Any]):
        self.patterns: list[str] = []
        for node in ir["nodes"]:
            base = next((node["parameters"][p] for p in node.get("fingerprinted_parameters", [])
                         if isinstance(node["parameters"].get(p), str)), "")
            for value in _strings(node["parameters"]):
                if "{SPAN}" in value:
                    self.patterns.append(value if os.path.isabs(value) or not base else os.path.join(base, value))
        if not self.patterns:
            raise ScheduleError(
                f"--on-new-span: pipeline {ir['pipeline']['name']} has no input with a {{SPAN}} pattern"
            )

    def latest_span(self) -> int | None:
        latest = None
        for pattern in self.patterns:
            try:
                parsed = spans.parse(pattern)
            except ValueError:  # a pattern ExampleGen rejects when it runs: it selects no span
                continue
            for path in glob.glob(parsed.glob):
                found = parsed.match(path)
                if found is not None:
                    span = found[0]
                    latest = span if latest is None else max(latest, span)
        return latest


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


__all__ = ["CronSchedule", "Scheduler", "SpanWatcher", "SystemClock", "to_kfp_cron", "ScheduleError"]
