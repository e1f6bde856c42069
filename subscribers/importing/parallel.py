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

Protocol on the helper's stdout: frames of a header (kind, rows, length) and
``length`` bytes: kind 0 is a batch of COPY text holding ``rows`` rows, 1 an
ImportFileError message, 2 the end.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import os
import queue
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_HEADER = struct.Struct("!BII")
_ROWS, _ERROR, _END = 0, 1, 2
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
ROOT = Path(__file__).resolve().parent.parent.parent


@contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """Pause Python's cycle collector while rows are read and checked.

    Reading makes millions of short-lived lists and strings and no reference
    cycles; with a batch of rows alive at any time the collector keeps
    walking every object of the process (Django's included) for nothing:
    a third of the reading time. Plain reference counting still frees every
    row as soon as it is sent.
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


class Helper:
    """The import's side: start the helper, read its batches, stop it."""

    def __init__(self, path: Path, max_bytes: int, definitions: list[dict[str, Any]], batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._process = subprocess.Popen(
            [sys.executable, "-m", "subscribers.importing.parallel"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "marketing.settings"),
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
        )
        spec = {"path": str(path), "max_bytes": max_bytes, "definitions": definitions, "batch_rows": batch_rows}
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(spec).encode() + b"\n")
        self._process.stdin.close()
        self._out: IO[bytes] = self._process.stdout

    def _read(self, size: int) -> bytes:
        data = self._out.read(size)
        if len(data) != size:
            self._process.wait()
            self._stderr.seek(0)
            last = self._stderr.read().decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError("The import's helper process stopped unexpectedly: " + " | ".join(last))
        return data

    def next_batch(self) -> tuple[int, bytes]:
        """Return (rows, COPY text) of the helper's next batch; raise its ImportFileError if it hit one."""
        from subscribers.importing.reader import ImportFileError

        kind, rows, length = _HEADER.unpack(self._read(_HEADER.size))
        data = self._read(length) if length else b""
        if kind == _ERROR:
            raise ImportFileError(data.decode())
        if kind != _ROWS:
            raise RuntimeError("The import's helper process ended before the file did.")
        return rows, data

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._out.close()
        self._stderr.close()


def _serve(stdin: IO[bytes], out: IO[bytes]) -> None:
    """The helper's side: check the odd batches and write them as COPY text."""
    import django

    django.setup()
    from subscribers.importing.engine import ImportResult, _parse_row, _plan_columns
    from subscribers.importing.reader import ImportFileError, open_csv
    from subscribers.models import AttributeDefinition

    spec = json.loads(stdin.readline())
    definitions = [AttributeDefinition(**d) for d in spec["definitions"]]
    # Frames go out through a thread and a short queue, so the helper can
    # check its next batch while the import has not yet taken the last one
    # (a pipe holds 64 KB; a batch is about 1 MB).
    frames: queue.Queue[bytes | None] = queue.Queue(maxsize=3)

    def send() -> None:
        while (frame := frames.get()) is not None:
            out.write(frame)
            out.flush()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        csv_file = open_csv(spec["path"], max_bytes=spec["max_bytes"])
        try:
            plan = _plan_columns(csv_file.headers, ImportResult(), definitions)
            with cycle_collection_paused():
                for index, batch in enumerate(batches(csv_file.rows, spec["batch_rows"])):
                    if index % 2 == 0:
                        continue  # the import's own batch
                    rows = [_parse_row(line, cells, plan) for line, cells in batch if not is_blank(cells)]
                    data = copy_text(rows)
                    frames.put(_HEADER.pack(_ROWS, len(rows), len(data)) + data)
        finally:
            csv_file.close()
    except ImportFileError as exc:
        message = str(exc).encode()
        frames.put(_HEADER.pack(_ERROR, 0, len(message)) + message)
    frames.put(_HEADER.pack(_END, 0, 0))
    frames.put(None)
    sender.join()


if __name__ == "__main__":
    try:
        _serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the import stopped first (an error on its side); nothing to say
        sys.exit(0)
