"""Predictions to GeoParquet 1.1 for `hiergeo geolocate --out predictions.parquet` (pyarrow; no GDAL needed).

A Parquet file cannot be appended to, and one left open by a killed process has no footer and is unreadable. So
the run writes each finished batch as a small part file (written to a temporary name, then renamed) into
OUT.parts/, numbered in the list's order across runs, and only when the run ends merges the old OUT (if any) and
the parts, streamed one row group at a time, into a new OUT that replaces the old one atomically. The new file's
metadata names the last part it holds, so parts a killed clean-up left behind are recognised and dropped: an
interrupted run, its re-run and an uninterrupted run give the same file, byte for byte (the row groups are cut at
fixed row counts, not at the batches).

Fields and values are the GeoPackage output's (output_fields.py); the point is a WKB `geometry` column, null
where the photo was not located, in lon/lat (no `crs` key: GeoParquet's default, OGC:CRS84).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Set

from .output_fields import FIELDS, TAIL_FIELDS, TRUTH_FIELDS

#: Rows per row group of the final file (~10 MB of predictions; a reader can skip or stream by group).
ROW_GROUP = 65536
_INTS = {"zoom", "tile_x", "tile_y"}
_STRINGS = {"photo", "status"}
_META = b"hiergeo"


def _schema(names):
    import pyarrow as pa

    kind = {**{n: pa.string() for n in _STRINGS}, **{n: pa.int32() for n in _INTS}}
    return pa.schema([pa.field(n, kind.get(n, pa.float64())) for n in names] + [pa.field("geometry", pa.binary())])


def _wkb(row: dict) -> Optional[bytes]:
    if row.get("lat") is None:
        return None
    return struct.pack("<BIdd", 1, 1, float(row["lon"]), float(row["lat"]))  # little-endian WKB Point


class ParquetPredictions:
    """The OUTPUT rows as GeoParquet: parts while running, one file at `finish`; the GpkgPredictions interface."""

    def __init__(self, path: os.PathLike, with_truth: bool, row_group: int = ROW_GROUP):
        self.path = Path(path)
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.names = self._earlier_names() or FIELDS + (TRUTH_FIELDS if with_truth else ()) + TAIL_FIELDS
        self.schema = _schema(self.names)
        self.row_group = row_group
        self.merged = self._merged_upto()
        for stale in self._part_files(upto=self.merged):  # merged already; a clean-up was cut short
            stale.unlink()
        self.next_part = max([self.merged] + [self._seq(p) for p in self._part_files()]) + 1

    def done(self) -> Set[str]:
        """The photos in OUT and in the parts of an interrupted run (skipped by a re-run)."""
        import pyarrow.parquet as pq

        sources = ([self.path] if self.path.exists() else []) + self._part_files()
        return {p for f in sources for p in pq.read_table(f, columns=["photo"]).column("photo").to_pylist()}

    def write(self, rows: Iterable[dict]) -> int:
        """One part file for the batch, renamed into place whole (a batch is kept whole or not at all)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = list(rows)
        columns = {n: [r.get(n) for r in rows] for n in self.names}
        columns["geometry"] = [_wkb(r) for r in rows]
        self.parts.mkdir(exist_ok=True)
        final = self.parts / f"{self.next_part:09d}.parquet"
        tmp = final.with_suffix(".tmp")
        pq.write_table(pa.table(columns, schema=self.schema), tmp)
        os.replace(tmp, final)
        self.next_part += 1
        return len(rows)

    def finish(self) -> None:
        """OUT := old OUT + parts, in order, written to a temporary file and renamed over OUT; parts removed."""
        parts = self._part_files()
        if self.path.exists() and not parts:
            shutil.rmtree(self.parts, ignore_errors=True)
            return
        sources = ([self.path] if self.path.exists() else []) + parts
        last = self._seq(parts[-1]) if parts else self.merged
        tmp = self.path.with_name(self.path.name + ".tmp")
        _merge(sources, tmp, self.schema, self.row_group, last)
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)
        self.merged = last

    def rows(self) -> List[dict]:
        import pyarrow.parquet as pq

        return pq.read_table(self.path).drop_columns(["geometry"]).to_pylist()

    def close(self) -> None:
        """Nothing open between batches; an unfinished run's parts stay for the re-run."""

    def _earlier_names(self) -> tuple:
        """The fields of an earlier run's file or parts, kept (as a GeoPackage keeps its layer's) so rows append."""
        import pyarrow.parquet as pq

        first = ([self.path] if self.path.exists() else []) + self._part_files()[:1]
        return tuple(n for n in pq.read_schema(first[0]).names if n != "geometry") if first else ()

    def _merged_upto(self) -> int:
        import pyarrow.parquet as pq

        if not self.path.exists():
            return -1
        meta = pq.read_schema(self.path).metadata or {}
        return int(json.loads(meta.get(_META, b"{}")).get("last_part", -1))

    def _part_files(self, upto: Optional[int] = None) -> List[Path]:
        if not self.parts.is_dir():
            return []
        found = sorted(self.parts.glob("*.parquet"))
        return [p for p in found if upto is None or self._seq(p) <= upto]

    @staticmethod
    def _seq(part: Path) -> int:
        return int(part.stem)


def _merge(sources: List[Path], out: Path, schema, row_group: int, last_part: int) -> None:
    """Stream the sources' rows into `out` in row groups of exactly `row_group` rows (the last one shorter)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bbox = _bbox(sources)
    meta = {b"geo": json.dumps(_geo(bbox)).encode(), _META: json.dumps({"last_part": last_part}).encode()}
    with pq.ParquetWriter(out, schema.with_metadata(meta)) as writer:
        pending: List = []
        size = 0
        for batch in _batches(sources, schema):
            pending.append(batch)
            size += batch.num_rows
            while size >= row_group:
                table = pa.Table.from_batches(pending, schema=schema).combine_chunks()
                writer.write_table(table.slice(0, row_group), row_group_size=row_group)
                rest = table.slice(row_group)
                pending, size = rest.to_batches(), rest.num_rows
        if size or not sources:
            writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=row_group)


def _batches(sources: List[Path], schema) -> Iterator:
    import pyarrow.parquet as pq

    for source in sources:
        f = pq.ParquetFile(source)
        for i in range(f.num_row_groups):
            yield from f.read_row_group(i).cast(schema).to_batches()


def _bbox(sources: List[Path]) -> Optional[List[float]]:
    """[xmin, ymin, xmax, ymax] of the located points, from the lon/lat columns, one row group at a time."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    lo: Optional[List[float]] = None
    hi: Optional[List[float]] = None
    for source in sources:
        f = pq.ParquetFile(source)
        for i in range(f.num_row_groups):
            t = f.read_row_group(i, columns=["lon", "lat"])
            mins = [pc.min(t.column(c)).as_py() for c in ("lon", "lat")]
            maxs = [pc.max(t.column(c)).as_py() for c in ("lon", "lat")]
            if mins[0] is not None:
                lo = mins if lo is None else [min(a, b) for a, b in zip(lo, mins)]
                hi = maxs if hi is None else [max(a, b) for a, b in zip(hi, maxs)]
    return None if lo is None or hi is None else lo + hi


def _geo(bbox: Optional[List[float]]) -> dict:
    column: Dict[str, object] = {"encoding": "WKB", "geometry_types": ["Point"]}
    if bbox is not None:
        column["bbox"] = bbox
    return {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": column}}
