"""Check a big file's rows in two processes: this one and a helper.

Reading a row and checking its cells is pure Python, about 15 µs a row, and
for a million rows it is the longest part of an import: one core works while
the other waits. So for files over ``IMPORT_PARALLEL_MIN_MB`` on PostgreSQL a
helper process (``python -m subscribers.importing.parallel``, a plain
subprocess, so it also works inside a Celery worker, whose processes may not
fork children of their own) reads the same file with the same reader and the
same column plan. The rows are cut into batches (``engine.BATCH_ROWS`` lines); the
import checks the even batches itself and the helper the odd ones, turning
them into ``COPY`` text that the import passes on to PostgreSQL unchanged.

The two take turns: the import checks batch 0 while the helper checks batch
1, then reads the helper's batch 1 and sends it to ``COPY``, and so on. The
helper is never more than one batch ahead, so memory stays flat and neither
side waits for long. Row numbers, results and the report are the same as with
one process (a test compares them). The helper never touches the database.

Protocol on the helper's stdout: frames of a header (kind, rows, first line,
last line, length) and ``length`` bytes: kind 0 is a batch of COPY text
holding ``rows`` rows, 1 an ImportFileError message, 2 the end. The import
checks each batch's line numbers against the batch it read itself, and the
helper checks that it opened the same file (device, inode, size, mtime).
The helper's stdin stays open while the import runs: when it closes (the
import finished, failed or was killed) the helper exits at once.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import os
import queue
import select
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, NoReturn

_HEADER = struct.Struct("!BIqqI")
# Objects waiting in the youngest generation before batches() collects them.
GARBAGE_OBJECTS = 50_000
# Seconds the import waits for one batch before it gives up on the helper.
BATCH_TIMEOUT = 300
logger = logging.getLogger(__name__)
_ROWS, _ERROR, _END = 0, 1, 2
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
COMMAND = [sys.executable, "-m", "subscribers.importing.parallel"]


@contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """Keep Python's cycle collector from walking the whole process while rows are read.

    Reading makes millions of short-lived objects; with a batch of rows alive
    the collector's automatic runs kept walking every object of the process
    (Django's included): a third of the reading time. It is paused, and
    ``batches`` collects the youngest generation between batches once more
    than ``GARBAGE_OBJECTS`` objects are waiting there: the few cycles
    reading does make (a Django ValidationError refers to itself, about 20
    objects and 3 KB for a row with a bad cell) are freed every few thousand
    bad rows, so memory stays flat whatever the file holds, and a clean file
    is hardly ever collected.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def batches(rows: Iterator[tuple[int, list[str]]], size: int) -> Iterator[list[tuple[int, list[str]]]]:
    """Cut the reader's rows into lists of ``size`` lines, blank ones included, as both processes count them."""
    batch: list[tuple[int, list[str]]] = []
    for item in rows:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
            if not gc.isenabled() and gc.get_count()[0] > GARBAGE_OBJECTS:  # see cycle_collection_paused
                gc.collect(0)
    if batch:
        yield batch


def is_blank(cells: list[str]) -> bool:
    """A blank line, or one with only empty cells: not a row."""
    return not "".join(cells).strip()


def _text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, dt.date):  # dates and aware datetimes, in ISO 8601
        return value.isoformat()
    return str(value)


def copy_text(rows: list[list[Any]]) -> bytes:
    """Rows in PostgreSQL's COPY text format (what psycopg's ``write_row`` sends).

    Text cells rarely hold a backslash, tab or line break, so each line is
    joined first and escaped cell by cell only when the joined line shows one
    (more backslashes than NULL markers, or more tabs than separators).
    """
    lines = []
    for row in rows:
        cells = ["\\N" if v is None else v if v.__class__ is str else _text(v) for v in row]
        line = "\t".join(cells)
        if (line.count("\\") != row.count(None) or "\n" in line or "\r" in line
                or line.count("\t") != len(cells) - 1):
            line = "\t".join([v.translate(_ESCAPES) if v.__class__ is str else c
                              for v, c in zip(row, cells, strict=True)])
        lines.append(line)
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def file_identity(fileno: int) -> list[int]:
    """What tells two opened files apart: device, inode, size, modification time."""
    info = os.fstat(fileno)
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]


class HelperFailed(RuntimeError):
    """The helper process stopped or went silent; the import stops and rolls back."""


class Helper:
    """The import's side: start the helper, read its batches, stop it."""

    def __init__(self, path: Path, identity: list[int], max_bytes: int, definitions: list[dict[str, Any]],
                 batch_rows: int) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        from django.conf import settings

        root = str(settings.BASE_DIR)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "marketing.settings"),
               "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        try:
            self._process = subprocess.Popen(  # noqa: S603 (our own module; nothing from outside)
                COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=root, env=env,
            )
        except BaseException:
            self._stderr.close()
            raise
        spec = {"path": str(Path(path).resolve()), "identity": identity, "max_bytes": max_bytes,
                "definitions": definitions, "batch_rows": batch_rows}
        assert self._process.stdin is not None and self._process.stdout is not None
        self._out = self._process.stdout.fileno()
        try:
            # stdin stays open: the helper exits when it closes.
            self._process.stdin.write(json.dumps(spec).encode() + b"\n")
            self._process.stdin.flush()
        except OSError:
            self._fail("it did not start")

    def _fail(self, what: str) -> NoReturn:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._stderr.seek(0)
        output = self._stderr.read().decode(errors="replace")[-4000:]
        self.close()
        # The output may quote cells of the file: it goes to the log, not to the marketer.
        logger.error("import helper process: %s; its output:\n%s", what, output)
        raise HelperFailed("The import stopped because its helper process failed, so nothing was imported. "
                           "Try again; if it happens again, the worker's log says why.")

    def _read(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            ready, _, _ = select.select([self._out], [], [], BATCH_TIMEOUT)
            if not ready:
                self._fail(f"no batch for {BATCH_TIMEOUT} s")
            chunk = os.read(self._out, min(left, 1 << 20))
            if not chunk:
                self._fail(f"it stopped (exit code {self._process.wait()})")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def next_batch(self, batch: list[tuple[int, list[str]]]) -> tuple[int, bytes]:
        """Return (rows, COPY text) of the helper's batch that the import read as ``batch``.

        Raises the helper's ImportFileError if it hit one, HelperFailed if its
        batch is not this one.
        """
        from subscribers.importing.reader import ImportFileError

        kind, rows, first, last, length = _HEADER.unpack(self._read(_HEADER.size))
        data = self._read(length) if length else b""
        if kind == _ERROR:
            raise ImportFileError(data.decode())
        if kind != _ROWS or (first, last) != (batch[0][0], batch[-1][0]):
            self._fail(f"it sent lines {first}-{last} (kind {kind}) for lines {batch[0][0]}-{batch[-1][0]}")
        return rows, data

    def close(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.closed:
            with suppress(OSError):  # the helper may be gone already
                self._process.stdin.close()
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        assert self._process.stdout is not None
        self._process.stdout.close()
        self._stderr.close()


def _serve(stdin: IO[bytes], out: IO[bytes]) -> None:
    """The helper's side: check the odd batches and write them as COPY text."""
    import django

    django.setup()
    from subscribers.importing.engine import ImportResult, _parse_row, _plan_columns
    from subscribers.importing.reader import ImportFileError, open_csv
    from subscribers.models import AttributeDefinition

    spec = json.loads(stdin.readline())

    def exit_with_the_import() -> None:
        # The import closes stdin when it ends, or the system does when it dies.
        stdin.read()
        os._exit(0)

    threading.Thread(target=exit_with_the_import, daemon=True).start()
    definitions = [AttributeDefinition(**d) for d in spec["definitions"]]
    # Frames go out through a thread and a short queue, so the helper can
    # check its next batch while the import has not yet taken the last one
    # (a pipe holds 64 KB; a batch is about 1 MB).
    frames: queue.Queue[bytes | None] = queue.Queue(maxsize=3)

    def send() -> None:
        try:
            while (frame := frames.get()) is not None:
                out.write(frame)
                out.flush()
        except OSError:  # the import is gone
            os._exit(0)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        csv_file = open_csv(spec["path"], max_bytes=spec["max_bytes"])
        try:
            if file_identity(csv_file.raw.fileno()) != spec["identity"]:
                raise ImportFileError("The file changed while it was being imported; nothing was imported.")
            plan = _plan_columns(csv_file.headers, ImportResult(), definitions)
            with cycle_collection_paused():
                for index, batch in enumerate(batches(csv_file.rows, spec["batch_rows"])):
                    if index % 2 == 0:
                        continue  # the import's own batch
                    rows = [_parse_row(line, cells, plan) for line, cells in batch if not is_blank(cells)]
                    data = copy_text(rows)
                    frames.put(_HEADER.pack(_ROWS, len(rows), batch[0][0], batch[-1][0], len(data)) + data)
        finally:
            csv_file.close()
    except ImportFileError as exc:
        message = str(exc).encode()
        frames.put(_HEADER.pack(_ERROR, 0, 0, 0, len(message)) + message)
    frames.put(_HEADER.pack(_END, 0, 0, 0, 0))
    frames.put(None)
    sender.join()


if __name__ == "__main__":
    try:
        _serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the import stopped first (an error on its side); nothing to say
        sys.exit(0)
