"""Running the rehearsal: a separate copy of the repository, ``dvc exp run`` in it, a timestamped stage log
and the peak memory of the whole process tree.

* :func:`copy_repository`: the files of the working tree (tracked, and untracked ones git does not ignore)
  into a fresh git repository with one commit, and the virtual environment linked in. Nothing the run writes
  (params.yaml, dvc.lock, runs/, eval/, metrics/, mlflow.db, the DVC cache) can touch the source tree.
* :func:`run_logged`: runs a command, writes every output line to a log with the seconds since the start,
  and returns the DVC stages it ran (``Running stage '...'``), each with its start, duration and the peak RSS of
  the process tree while it ran.
* :class:`TreeMemory`: samples the resident memory of a process and all its descendants together (``/proc``,
  shared pages counted once), every ``interval`` seconds; the peak is the most the tree held at once
  (``getrusage`` only gives the largest single process, reported beside it).
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

STAGE_RE = re.compile(r"^Running stage '([^']+)':")
SKIP_RE = re.compile(r"^Stage '([^']+)' didn't change, skipping")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MARKER = ".blurdm-rehearsal"  # in every folder the rehearsal made: only such a folder is ever replaced


# ------------------------------------------------------------------------------------------- the copy
def working_tree_files(src: Path) -> list[str]:
    """The working tree's files as git sees them: tracked (still present) and untracked-not-ignored."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=src,
                         check=True, capture_output=True).stdout.decode()
    names = sorted({n for n in out.split("\0") if n})
    return [n for n in names if (src / n).is_file() or (src / n).is_symlink()]


def git_describe(src: Path) -> dict:
    """The source commit and whether the working tree differs from it."""
    def git(*args) -> str:
        result = subprocess.run(["git", *args], cwd=src, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""
    return {"commit": git("rev-parse", "HEAD") or None, "branch": git("rev-parse", "--abbrev-ref", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=normal"))}


def copy_repository(src: Path, dest: Path, venv: Path | None) -> dict:
    """Copy the working tree of ``src`` into the new folder ``dest`` as a git repository of one commit, and link
    ``dest/.venv`` to ``venv``. Returns where it came from (:func:`git_describe`) and how many files."""
    src, dest = Path(src).resolve(), Path(dest)
    names = [n for n in working_tree_files(src) if n.split("/")[0] != ".venv"]
    dest.mkdir(parents=True)
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (src / name).is_symlink():
            os.symlink(os.readlink(src / name), target)
        else:
            shutil.copy2(src / name, target)
    source = git_describe(src)
    ident = ["-c", "user.name=blurdm-bench rehearsal", "-c", "user.email=rehearsal@localhost",
             "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", "-b", "rehearsal"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    message = f"rehearsal of {source['commit'] or 'an uncommitted tree'}{' + working-tree changes' if source['dirty'] else ''}"
    subprocess.run(["git", *ident, "commit", "-q", "-m", message], cwd=dest, check=True)
    if venv is not None:  # linked after the commit, and excluded: the copy's tree stays clean for `dvc exp run`
        os.symlink(Path(venv).resolve(), dest / ".venv")
        with open(dest / ".git" / "info" / "exclude", "a") as fh:
            fh.write("/.venv\n")
    return {**source, "files": len(names)}


def prepare_folder(folder: Path) -> None:
    """An empty ``folder`` for a new rehearsal: an earlier rehearsal's folder (it holds :data:`MARKER`) is
    removed first; any other non-empty folder is refused."""
    folder = Path(folder)
    if folder.exists():
        if not (folder / MARKER).is_file() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} exists, is not empty and was not made by a rehearsal: choose another "
                                  f"--dir or remove it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by `blurdm-bench rehearse`; the next rehearsal replaces this folder\n")


# ------------------------------------------------------------------------------------------- memory
def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_memory(pid: int) -> int:
    """The resident bytes of one process, its shared pages counted by share (PSS, ``/proc/PID/smaps_rollup``;
    plain RSS where that is unreadable): summed over processes, a page forked data-loading workers share with
    their parent counts once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def tree_rss(root_pid: int) -> int:
    """Resident bytes of ``root_pid`` and every descendant together, now (:func:`process_memory`; 0 when gone)."""
    children, total, todo, seen = _children_map(), 0, [root_pid], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += process_memory(pid)
        todo += children.get(pid, [])
    return total


@dataclass
class TreeMemory:
    """Peak resident memory of a process tree, sampled in a background thread."""

    pid: int
    interval: float = 0.5
    peak: int = 0
    current: int = 0
    window: int = 0  # the peak since the last :meth:`take_window`
    loads: list = field(default_factory=list)  # the machine's 1-minute load average at every sample
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rehearsal-rss")
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> int:
        self.loads.append(load_average())
        self.current = tree_rss(self.pid)
        self.peak = max(self.peak, self.current)
        self.window = max(self.window, self.current)
        return self.current

    def take_window(self) -> int:
        """The peak since the previous call (e.g. over one stage), and start a new window (a sample taken just
        before the call may still land in the new one: windows are accurate to one ``interval``)."""
        window, self.window = self.window, 0
        return window

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.peak


def load_average() -> float:
    """The machine's 1-minute load average (every process, ours included); 0 where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def children_cpu_seconds() -> float:
    """User + system CPU seconds of every waited-for descendant of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def largest_child_rss() -> int:
    """The largest resident memory any waited-for descendant of this process reached (bytes; Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


# ------------------------------------------------------------------------------------------- the run
@dataclass
class StageTime:
    name: str
    start: float  # seconds since the run started
    seconds: float = 0.0
    peak_rss: int = 0  # bytes, the whole process tree while this stage ran


@dataclass
class RunResult:
    returncode: int
    seconds: float
    peak_rss: int  # the process tree, sampled
    cpu_seconds: float  # user + system of the whole process tree
    mean_load: float  # the machine's 1-minute load average over the run (other users' processes included)
    stages: list[StageTime]
    skipped: list[str]
    tail: list[str]  # the last lines of output


def parse_stage_lines(lines: list[tuple[float, str]], end: float) -> tuple[list[StageTime], list[str]]:
    """The stages a DVC run started (``Running stage 'NAME':``), each lasting until the next one starts (or
    ``end``), and the ones it skipped as unchanged, from ``(seconds, line)`` pairs."""
    stages, skipped = [], []
    for seconds, line in lines:
        found = STAGE_RE.match(line)
        if found:
            if stages:
                stages[-1].seconds = seconds - stages[-1].start
            stages.append(StageTime(found.group(1), seconds))
        elif SKIP_RE.match(line):
            skipped.append(SKIP_RE.match(line).group(1))
    if stages:
        stages[-1].seconds = end - stages[-1].start
    return stages, skipped


def run_logged(argv: list[str], cwd: Path, env: dict, log_path: Path, echo: Callable[[str], None] = print,
               interval: float = 0.5, tail_lines: int = 60) -> RunResult:
    """Run ``argv``, its stdout and stderr into ``log_path`` (each line prefixed with the seconds since the
    start; progress bars' carriage returns split lines), ``echo`` each stage as it starts; the stages, their
    times and the peak memory of the process tree."""
    start, cpu_before = time.monotonic(), children_cpu_seconds()
    lines: list[tuple[float, str]] = []
    peaks: list[int] = []
    # a session of its own: when the rehearsal is interrupted, the whole run (DVC and its stage) is ended with it
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    memory = TreeMemory(proc.pid, interval).start()
    try:
        _follow(proc, start, lines, peaks, memory, log_path, echo)
    finally:  # interrupted (Ctrl-C, SIGTERM): the run's processes end with it
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
    returncode = proc.wait()
    peak = memory.stop()
    peaks.append(memory.take_window())
    end = time.monotonic() - start
    stages, skipped = parse_stage_lines(lines, end)
    for stage, stage_peak in zip(stages, peaks[1:]):
        stage.peak_rss = stage_peak
    loads = memory.loads or [0.0]
    return RunResult(returncode, end, peak, children_cpu_seconds() - cpu_before, sum(loads) / len(loads), stages,
                     skipped, [line for _, line in lines[-tail_lines:]])


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _follow(proc, start: float, lines: list, peaks: list, memory: TreeMemory, log_path: Path, echo) -> None:
    """Read ``proc``'s output to its end: every line into ``lines`` and the log, a stage's start echoed."""
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        buffer = b""
        while True:
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = re.split(rb"\r\n|\r|\n", buffer)
            for raw in complete:
                line = raw.decode("utf-8", errors="replace").rstrip()
                if not line:
                    continue
                now = time.monotonic() - start
                lines.append((now, line))
                log.write(f"{now:9.1f}  {line}\n")
                found = STAGE_RE.match(line)
                if found:
                    peaks.append(memory.take_window())  # the previous stage's (the first: what came before)
                    echo(f"[{_clock(now)}] {found.group(1)}")
                    log.flush()
        if buffer.strip():
            lines.append((time.monotonic() - start, buffer.decode("utf-8", errors="replace").rstrip()))


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):3d}:{int(seconds % 60):02d}"
