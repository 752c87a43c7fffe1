"""Keeping a workspace safe: whose folder it is, who writes it, and undoing a failed stage.

A finished workspace is hours of CPU time, so vid3d treats it as git treats a
repository:

- **Ownership** (:func:`claim`). vid3d writes only into a folder it made (the
  marker ``.vid3d/workspace.json``) or an empty one; a folder of other files is
  refused, never cleared.
- **One writer** (:func:`locked`). A command that writes a workspace holds
  ``.vid3d/lock`` (``flock``: the kernel releases it when the process ends, however
  it ends, so a killed process's lock is simply taken over). A second writer is refused
  with a line naming the holder.
- **All or nothing per stage** (:func:`stage_transaction`). Before a stage runs,
  ``.vid3d/journal/`` records every file of the workspace as a hard link: no copy, no
  disk space. This relies on one rule that all vid3d code keeps: a workspace file is
  never changed in place, only replaced by a new file renamed over it
  (:func:`vid3d.workspace.atomic_path`), so the links keep the old bytes. A stage that
  fails, is interrupted, or whose process is killed is undone: on the spot, or by the
  next command that takes the lock (:func:`recover`). Files the stage added are removed
  and every recorded file is put back as it was.

Not recorded, because they are the state of processes rather than results:
``.vid3d/lock``, ``.vid3d/journal``, ``.vid3d/resume/`` (an unfinished training, kept
so that it can resume) and ``.vid3d/logs/``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vid3d import __version__
from vid3d.errors import WorkspaceBusyError, WorkspaceError, os_error
from vid3d.workspace import Workspace, write_json

#: Entries of ``.vid3d/`` that belong to running processes, not to results.
_PROCESS_STATE = ("lock", "journal", "resume", "logs")
_JOURNAL_TMP = ".journal.tmp-"


def _is_state(rel_parts: tuple[str, ...]) -> bool:
    return (
        len(rel_parts) >= 2
        and rel_parts[0] == ".vid3d"
        and (rel_parts[1] in _PROCESS_STATE or rel_parts[1].startswith(_JOURNAL_TMP))
    )


def is_workspace(path: Path) -> bool:
    """Whether ``path`` is a vid3d workspace: the marker, or stage manifests of an older vid3d."""
    ws = Workspace(path)
    return ws.marker.is_file() or (
        ws.meta.is_dir()
        and any((ws.meta / f"{stage}.json").is_file() for stage in ("frames", "poses", "splat", "render"))
    )


def claim(ws: Workspace, *, new: bool) -> None:
    """Make sure vid3d may write ``ws``, creating it when ``new`` allows.

    Args:
        ws: The workspace.
        new: The command starts a workspace (``frames``, ``reconstruct``): a missing or
            empty folder becomes one. Otherwise the folder must already be a workspace.

    Raises:
        WorkspaceError: ``ws.root`` is a file, a folder of other files, or (``new`` False)
            not a workspace.
    """
    root = ws.root
    if root.exists() and not root.is_dir():
        raise WorkspaceError(f"{root} is a file, not a folder", "give --out the path of a new folder")
    if root.is_dir() and is_workspace(root):
        if not ws.marker.is_file():  # a workspace of an older vid3d: mark it
            write_json(ws.marker, _marker())
        return
    if root.is_dir() and any(root.iterdir()):
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise WorkspaceError(
            f"{root} is not a vid3d workspace and already holds files ({shown}); "
            "vid3d writes only into an empty folder or one of its own workspaces",
            "give --out a new or empty folder"
            if new
            else "give the folder that `vid3d reconstruct` or `vid3d frames` made",
        )
    if not new:
        raise WorkspaceError(
            f"{root} is not a vid3d workspace",
            f"run `vid3d frames VIDEO --out {root}` or `vid3d reconstruct VIDEO --out {root}` first",
        )
    root.mkdir(parents=True, exist_ok=True)
    write_json(ws.marker, _marker())


BATCH_MARKER = ".vid3d-batch"


def claim_results(out: Path) -> None:
    """Make sure ``vid3d batch`` may write its output folder ``out``, creating it if needed.

    A batch writes only into a new or empty folder, a folder of vid3d workspaces, or one an
    earlier batch made (the marker ``<out>/.vid3d-batch``, or the ``summary.json`` of an
    older vid3d).

    Raises:
        WorkspaceError: ``out`` is a file, or a folder of other files.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WorkspaceError(f"{out} is a file, not a folder", "give --out the path of a new folder")
    marker = out / BATCH_MARKER
    if out.is_dir() and not marker.is_file():
        foreign = [p for p in out.iterdir() if not (p.is_dir() and is_workspace(p))]
        if (out / "summary.json").is_file():
            pass  # the results of an older vid3d
        elif foreign:  # (a folder of vid3d workspaces only is fine)
            names = sorted(p.name for p in foreign)
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise WorkspaceError(
                f"{out} already holds files that vid3d did not write ({shown})",
                "give --out a new or empty folder, or one an earlier batch wrote",
            )
    out.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        write_json(marker, _marker())


def _marker() -> dict:
    return {
        "vid3d_workspace": 1,
        "created_by": f"vid3d {__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# -- the writer's lock ---------------------------------------------------------------

_HELD: dict[str, list] = {}  # lock path -> [open file, depth]: re-entrant in one process


@contextmanager
def locked(ws: Workspace, command: str = "vid3d") -> Iterator[None]:
    """Hold the workspace's lock while the block runs, then undo any stage a killed
    process left half done (:func:`recover`).

    Re-entrant within a process (a batch worker holds it around ``reconstruct``).

    Raises:
        WorkspaceBusyError: Another process holds the lock.
        WorkspaceError: The lock cannot be created (read-only file system, permissions).
    """
    key = os.path.realpath(ws.lock)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        fcntl = None
    try:
        ws.meta.mkdir(parents=True, exist_ok=True)
        f = open(ws.lock, "a+", encoding="utf-8")
    except OSError as e:
        raise WorkspaceError(
            f"cannot write to the workspace {ws.root}: {e.strerror}", os_error(e).hint
        ) from e
    try:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                f.seek(0)
                raise WorkspaceBusyError(
                    f"{ws.root} is in use by {_holder(f.read())}",
                    "wait until it has finished, or stop it; the lock of a process that died is taken over",
                ) from e
            except OSError as e:  # a file system without locks: go on unlocked
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
        f.seek(0)
        f.truncate()
        f.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": command,
                    "since": time.strftime("%H:%M:%S"),
                }
            )
        )
        f.flush()
        _HELD[key] = [f, 1]
        recover(ws)
        yield
    finally:
        _HELD.pop(key, None)
        f.close()


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"`{info['command']}` (process {info['pid']} on {info['host']}, since {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "another vid3d process"


# -- stage journal ---------------------------------------------------------------------


@contextmanager
def stage_transaction(ws: Workspace, stage: str) -> Iterator[None]:
    """Run a block that changes the workspace as one step: on any exception (and after
    a kill, at the next :func:`recover`) the workspace returns to its state before it.

    The caller must hold the lock (:func:`locked`).
    """
    with _signals_deferred():
        _begin(ws, stage)
    try:
        yield
    except BaseException:
        with _signals_deferred():
            rollback(ws)
        raise
    with _signals_deferred():
        _commit(ws)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM while the journal is written, committed or undone, so
    that a second Ctrl-C cannot leave it half done (they arrive when the block ends)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """Every folder and file under ``root`` (relative POSIX paths), process state left out."""
    dirs, files = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if not _is_state((rel / d).parts)]
        dirs += [(rel / d).as_posix() for d in dirnames]
        files += [(rel / f).as_posix() for f in filenames if not _is_state((rel / f).parts)]
    return dirs, files


def _begin(ws: Workspace, stage: str) -> None:
    recover(ws)
    tmp = ws.meta / f"{_JOURNAL_TMP}{uuid.uuid4().hex[:8]}"
    dirs, files = _walk(ws.root)
    try:
        (tmp / "files").mkdir(parents=True)
        for rel in files:
            src, dst = ws.root / rel, tmp / "files" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                try:
                    os.link(src, dst)
                except OSError:  # a file system without hard links
                    shutil.copy2(src, dst)
        (tmp / "journal.json").write_text(
            json.dumps({"stage": stage, "pid": os.getpid(), "dirs": dirs, "files": files})
        )
        os.replace(tmp, ws.journal)  # the journal exists, complete, from here on
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _commit(ws: Workspace) -> None:
    done = ws.meta / f"{_JOURNAL_TMP}done-{uuid.uuid4().hex[:8]}"
    os.replace(ws.journal, done)  # the stage's results stand from here on
    shutil.rmtree(done, ignore_errors=True)


def journal_stage(ws: Workspace) -> str | None:
    """The stage a journal is open for (one is running or its process died), else None."""
    try:
        return json.loads((ws.journal / "journal.json").read_text())["stage"]
    except (OSError, ValueError, KeyError):
        return None


def recover(ws: Workspace) -> bool:
    """Undo a stage that a killed process left half done; clear stale journal folders.

    Returns:
        Whether a stage was undone.
    """
    if ws.meta.is_dir():
        for p in ws.meta.glob(f"{_JOURNAL_TMP}*"):
            shutil.rmtree(p, ignore_errors=True)
    if not (ws.journal / "journal.json").is_file():
        if ws.journal.exists():
            shutil.rmtree(ws.journal, ignore_errors=True)
        return False
    with _signals_deferred():
        rollback(ws)
    return True


def rollback(ws: Workspace) -> None:
    """Put the workspace back as the open journal recorded it, then close the journal
    (nothing to do when no journal is open)."""
    try:
        index = json.loads((ws.journal / "journal.json").read_text())
    except FileNotFoundError:
        return
    saved = ws.journal / "files"
    dirs, files = set(index["dirs"]), set(index["files"])
    root = ws.root
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):  # 1. what is new goes
        rel = Path(dirpath).relative_to(root)
        for d in list(dirnames):
            r = rel / d
            if _is_state(r.parts):
                dirnames.remove(d)
            elif r.as_posix() not in dirs:
                _remove(root / r)
                dirnames.remove(d)
        for f in filenames:
            r = rel / f
            if not _is_state(r.parts) and r.as_posix() not in files:
                (root / r).unlink(missing_ok=True)
    for rel in sorted(dirs):  # 2. what was there comes back
        (root / rel).mkdir(parents=True, exist_ok=True)
    for rel in files:
        src, dst = saved / rel, root / rel
        if not src.exists() and not src.is_symlink():
            continue  # put back already, by an undo that was cut short
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        elif dst.exists() and not dst.is_symlink() and os.path.samefile(src, dst):
            continue
        os.replace(src, dst)
    done = ws.meta / f"{_JOURNAL_TMP}undone-{uuid.uuid4().hex[:8]}"
    os.replace(ws.journal, done)
    shutil.rmtree(done, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
