"""The scheduler, driven by an injected clock: no test sleeps for the schedule."""

import datetime as dt
import os
import subprocess
import sys
import threading

import pytest

from sluice.orchestration.scheduler import CronSchedule, RunLock, ScheduleError, Scheduler, SpanWatcher, to_kfp_cron
from tests.conftest import FIXTURES, REPO

UTC = dt.UTC


class FakeClock:
    """Sleeping jumps time forward; jobs may advance it too."""

    def __init__(self, start):
        self.current = start

    def now(self):
        return self.current

    def advance(self, **delta):
        self.current += dt.timedelta(**delta)

    def sleep_until(self, moment, stop):
        if moment > self.current:
            self.current = moment


class Result:
    def __init__(self, ok=True, run_id="r"):
        self.ok, self.run_id = ok, run_id


def test_runs_at_each_fire_time(tmp_path):
    clock = FakeClock(dt.datetime(2026, 1, 1, 0, 30, tzinfo=UTC))
    seen = []
    sched = Scheduler(lambda: seen.append(clock.now()) or Result(), str(tmp_path), "p", clock=clock)
    history = sched.run_cron(CronSchedule("0 * * * *", "UTC"), max_runs=3)
    assert [h.status for h in history] == ["executed"] * 3
    assert [t.hour for t in seen] == [1, 2, 3]


def test_a_failing_run_does_not_stop_the_scheduler(tmp_path):
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=UTC))
    calls = iter([RuntimeError("boom"), Result(ok=False), Result()])

    def job():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    history = Scheduler(job, str(tmp_path), "p", clock=clock).run_cron(CronSchedule("*/5 * * * *"), max_runs=3)
    assert [h.status for h in history] == ["failed", "failed", "executed"]
    assert history[0].detail == "RuntimeError: boom"


def test_no_overlap_fire_times_during_a_long_run_are_skipped(tmp_path):
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=UTC))

    def slow_job():
        clock.advance(minutes=25)  # spans the next four 5-minute slots
        return Result()

    history = Scheduler(slow_job, str(tmp_path), "p", clock=clock).run_cron(CronSchedule("*/5 * * * *"), max_runs=6)
    assert [h.status for h in history[:6]] == ["executed", "skipped", "skipped", "skipped", "skipped", "executed"]
    assert history[5].scheduled_for == dt.datetime(2026, 1, 1, 0, 30, tzinfo=UTC)


def test_no_overlap_across_schedulers_of_one_pipeline(tmp_path):
    lock = RunLock(str(tmp_path / "p.lock"))
    assert lock.acquire()
    try:
        clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=UTC))
        history = Scheduler(lambda: Result(), str(tmp_path), "p", clock=clock).run_cron(
            CronSchedule("0 * * * *"), max_runs=1)
        assert history[0].status == "skipped" and "in progress" in history[0].detail
    finally:
        lock.release()


@pytest.mark.parametrize("catch_up, expected", [(False, [5]), (True, [3, 4, 5])])
def test_missed_runs_replayed_only_with_catch_up(tmp_path, catch_up, expected):
    clock = FakeClock(dt.datetime(2026, 1, 1, 1, 0, tzinfo=UTC))
    first = Scheduler(lambda: Result(), str(tmp_path), "p", clock=clock)
    first.run_cron(CronSchedule("0 * * * *"), max_runs=1)  # runs at 02:00, then "goes down"
    clock.advance(hours=2, minutes=30)  # 04:30: the 03:00 and 04:00 runs were missed
    seen = []
    second = Scheduler(lambda: seen.append(clock.now()) or Result(), str(tmp_path), "p", clock=clock,
                       catch_up=catch_up)
    history = second.run_cron(CronSchedule("0 * * * *"), max_runs=len(expected))
    assert [h.scheduled_for.hour for h in history] == expected
    assert [t.hour for t in seen] == ([4, 4, 5] if catch_up else [5])  # replays run at once, in order


def test_spring_forward_runs_once_at_the_next_valid_time():
    s = CronSchedule("30 2 * * *", "Europe/Berlin")
    times = s.times_after(dt.datetime(2026, 3, 28, 12, tzinfo=UTC), 3)
    assert [t.strftime("%m-%d %H:%M %z") for t in times] == [
        "03-29 03:00 +0200", "03-30 02:30 +0200", "03-31 02:30 +0200"]


def test_fall_back_runs_once():
    s = CronSchedule("30 2 * * *", "Europe/Berlin")
    times = s.times_after(dt.datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert [t.strftime("%m-%d %H:%M %z") for t in times] == ["10-25 02:30 +0200", "10-26 02:30 +0100"]


def test_timezone_is_honoured():
    s = CronSchedule("0 3 * * *", "America/New_York")
    [t] = s.times_after(dt.datetime(2026, 7, 1, tzinfo=UTC), 1)
    assert t.astimezone(UTC).hour == 7


@pytest.mark.parametrize("cron, tz, expected", [
    ("0 3 * * *", "Europe/Berlin", "0 0 2 * * *"),           # winter: UTC+1
    ("30 1 * * 1-5", "Europe/Berlin", "0 30 0 * * 1-5"),
    ("30 0 * * 1-5", "Europe/Berlin", "0 30 23 * * 0,1,2,3,4"),
    ("0 0 * * 1", "Europe/Berlin", "0 0 23 * * 0"),          # wraps to the previous UTC day
    ("15 * * * *", "Asia/Kolkata", "0 45 * * * *"),          # UTC+5:30
    ("0 3 * * *", "UTC", "0 0 3 * * *"),
])
def test_kfp_cron_conversion(cron, tz, expected):
    assert to_kfp_cron(cron, tz, now=dt.datetime(2026, 1, 15, tzinfo=UTC)) == expected


@pytest.mark.parametrize("cron, tz, message", [
    ("61 * * * *", "UTC", r"invalid cron expression"),
    ("0 3 * *", "UTC", r"invalid cron expression"),
    ("0 3 * * *", "Nowhere/City", r"unknown time zone"),
    ("0 0 1 * *", "Europe/Berlin", r"moves to another UTC day"),
])
def test_bad_schedules_are_one_line_errors(cron, tz, message):
    with pytest.raises(ScheduleError, match=message):
        to_kfp_cron(cron, tz, now=dt.datetime(2026, 1, 15, tzinfo=UTC))


def test_new_span_detection(tmp_path):
    data = tmp_path / "data"
    (data / "span-1").mkdir(parents=True)
    (data / "span-1" / "data.csv").write_text("a\n1\n")
    ir = {"pipeline": {"name": "p"}, "nodes": [{
        "parameters": {"input_base": str(data), "input_pattern": "span-{SPAN}/data.csv"},
        "fingerprinted_parameters": ["input_base"]}]}
    watcher = SpanWatcher(ir)
    assert watcher.latest_span() == 1
    clock = FakeClock(dt.datetime(2026, 1, 1, tzinfo=UTC))
    runs = []

    def job():
        runs.append(watcher.latest_span())
        if len(runs) == 1:  # span-2 lands while the first run goes on
            (data / "span-2").mkdir()
            (data / "span-2" / "data.csv").write_text("a\n2\n")
        return Result()

    sched = Scheduler(job, str(tmp_path / "state"), "p", clock=clock)
    sched.run_on_new_span(watcher, poll_seconds=30, max_runs=2)
    assert runs == [1, 2]
    # A restarted watcher remembers the last span it ran for.
    again = Scheduler(job, str(tmp_path / "state"), "p", clock=clock)
    stopper = threading.Timer(0.5, again.stop)
    stopper.start()
    again.run_on_new_span(watcher, poll_seconds=30)
    assert runs == [1, 2]


def test_on_new_span_without_a_span_input():
    with pytest.raises(ScheduleError, match=r"pipeline q has no input with a \{SPAN\} pattern"):
        SpanWatcher({"pipeline": {"name": "q"}, "nodes": [{"parameters": {"x": "a.csv"}}]})


def test_cli_schedule_errors_and_once(toy_workspace):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, "-m", "sluice.orchestration.cli", "schedule", str(FIXTURES / "toy_pipeline.py")]
    for extra, expected in (
        (["--cron", "0 3 * *"], "invalid cron expression"),
        (["--cron", "0 3 * * *", "--timezone", "Mars/Base"], "unknown time zone"),
        (["--on-new-span"], "has no input with a {SPAN} pattern"),
    ):
        proc = subprocess.run(base + extra, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    once = subprocess.run(base + ["--cron", "0 3 * * *", "--timezone", "Europe/Berlin", "--once"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert once.returncode == 0 and len(once.stdout.strip().splitlines()) == 5


def test_cli_scheduler_stops_cleanly_on_sigterm(toy_workspace):
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.orchestration.cli", "schedule", str(FIXTURES / "toy_pipeline.py"),
         "--cron", "0 3 * * *", "--pipeline-root", str(toy_workspace / "root")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not (toy_workspace / "root").exists():
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "scheduler stopped" in err
