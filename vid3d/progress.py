"""Progress reporting shared by every stage.

Stages take a :class:`Reporter` and never print. The CLI passes a rich-backed
reporter (:class:`vid3d.console.RichReporter`); library users and tests get
:data:`NULL_REPORTER`, which does nothing.

Example::

    with reporter.task("Extracting features", total=len(images)) as task:
        for image in images:
            ...
            task.advance()
    reporter.log("kept 98 of 120 frames")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Task(Protocol):
    def advance(self, n: float = 1) -> None:
        """Move the bar forward by ``n`` units."""

    def update(
        self, *, completed: float | None = None, total: float | None = None, info: str | None = None
    ) -> None:
        """Set the position, the total or the short info text shown after the bar."""


class Reporter(Protocol):
    warnings: list[str]
    """The warnings given so far (the CLI's and batch's reporters keep them for the summary)."""

    def task(self, description: str, total: float | None = None) -> _TaskContext:
        """A context manager yielding a :class:`Task`; the bar is removed on exit."""

    def log(self, message: str) -> None:
        """A line of information (shown unless ``--quiet``)."""

    def debug(self, message: str) -> None:
        """A line shown only with ``--verbose``."""

    def warn(self, message: str) -> None:
        """A warning (always shown)."""


class _NullTask:
    def advance(self, n: float = 1) -> None:
        pass

    def update(self, *, completed=None, total=None, info=None) -> None:
        pass


class _TaskContext(Protocol):
    def __enter__(self) -> Task: ...
    def __exit__(self, *exc) -> None: ...


class NullReporter:
    """A reporter that reports nothing and keeps nothing (``warnings`` stays empty, so the
    shared :data:`NULL_REPORTER` does not grow over a long process)."""

    @property
    def warnings(self) -> list[str]:
        return []

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Task]:
        yield _NullTask()

    def log(self, message: str) -> None:
        pass

    def debug(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


NULL_REPORTER = NullReporter()


class CollectingReporter:
    """Passes everything on to ``inner`` and keeps the warnings given through it, so a
    stage can record its own warnings whatever reporter it was given.

    Args:
        inner: The reporter to pass messages on to.
    """

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.warnings: list[str] = []

    def task(self, description: str, total: float | None = None) -> _TaskContext:
        return self.inner.task(description, total)

    def log(self, message: str) -> None:
        self.inner.log(message)

    def debug(self, message: str) -> None:
        self.inner.debug(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.inner.warn(message)
