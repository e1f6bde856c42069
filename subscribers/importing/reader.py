"""Open a CSV file as it comes from real tools: any of , ; or tab, with or without BOM.

Only whole-file problems are raised here (ImportFileError); row problems are
the engine's to report.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

DELIMITERS = (",", ";", "\t")
# A single cell may hold a long notes field; the csv module's default is 128 KB.
csv.field_size_limit(1024 * 1024)


class ImportFileError(Exception):
    """The file as a whole cannot be imported; the message says why in plain words."""


@dataclass
class CsvFile:
    headers: list[str]
    delimiter: str
    encoding: str
    size: int
    rows: Iterator[tuple[int, list[str]]]
    raw: BinaryIO

    def bytes_read(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        self.raw.close()


def _detect_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8"


def _detect_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _not_utf8(path: Path, encoding: str) -> ImportFileError:
    where = ""
    if encoding.startswith("utf-8"):
        # Decoding runs on buffered chunks; find the exact line by reading again.
        with path.open("rb") as raw:
            for number, line in enumerate(raw, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    where = f" (the first unreadable character is on line {number})"
                    break
    return ImportFileError(
        f"The file is not saved as UTF-8 text{where}. "
        "In Excel choose “Save as → CSV UTF-8”; in Google Sheets “Download → CSV”."
    )


def open_csv(path: str | Path, *, max_bytes: int) -> CsvFile:
    """Open ``path`` and read its header, or raise ImportFileError."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ImportFileError(
            f"The file is {size / 1_048_576:.1f} MB; the limit is {max_bytes / 1_048_576:.0f} MB. "
            "Split it into smaller files or ask an administrator to raise IMPORT_MAX_FILE_MB."
        )
    if size == 0:
        raise ImportFileError("The file is empty.")
    raw = path.open("rb")
    encoding = _detect_encoding(raw.read(4))
    raw.seek(0)
    text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
    try:
        first_line = text.readline()
    except UnicodeDecodeError:
        raw.close()
        raise _not_utf8(path, encoding) from None
    if "\x00" in first_line:
        raw.close()
        raise ImportFileError("This is not a CSV text file (it contains binary data). Export the list as CSV.")
    delimiter = _detect_delimiter(first_line)
    header_cells = next(csv.reader([first_line], delimiter=delimiter), [])
    headers = [h.strip() for h in header_cells]
    if not any(headers):
        raw.close()
        raise ImportFileError("The first row is empty; it must name the columns, e.g. Email Address, First Name.")

    def rows() -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(text, delimiter=delimiter)
        # Row numbers are spreadsheet rows: the header is row 1.
        row_number = 1
        try:
            for cells in reader:
                row_number += 1
                yield row_number, cells
        except UnicodeDecodeError:
            raise _not_utf8(path, encoding) from None
        except csv.Error as exc:
            raise ImportFileError(f"Row {row_number + 1} cannot be read as CSV: {exc}.") from None

    return CsvFile(headers=headers, delimiter=delimiter, encoding=encoding, size=size, rows=rows(), raw=raw)
