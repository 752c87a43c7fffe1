"""What a batch tells its display: the :class:`BatchMonitor` protocol and
:class:`NullMonitor`, which shows nothing (the CLI's is :class:`vid3d.console.RichBatchMonitor`)."""

from __future__ import annotations

from typing import Protocol

from vid3d.batch.jobs import Job, VideoResult


class BatchMonitor(Protocol):
    """Watches a batch: the CLI's live display, or nothing (:class:`NullMonitor`).

    ``event`` gets the workers' progress events, tuples ``(key, kind, *payload)`` as
    :class:`vid3d.batch.EventReporter` describes them, and the batch's own log lines
    with the key ``"batch"``.
    """

    def start(self, jobs: list[Job], todo: int, backend: str) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def event(self, event: tuple) -> None: ...
    def job_finished(self, job: Job, result: VideoResult) -> None: ...
    def stop(self) -> None: ...


class NullMonitor:
    """A monitor that shows nothing; keeps the warnings in ``warnings``."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def start(self, jobs, todo, backend) -> None:
        pass

    def job_started(self, job) -> None:
        pass

    def event(self, event) -> None:
        if event[1] == "log" and event[2] == "warn":
            self.warnings.append(f"{event[0]}: {event[3]}")

    def job_finished(self, job, result) -> None:
        pass

    def stop(self) -> None:
        pass
