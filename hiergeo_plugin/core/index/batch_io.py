"""Photo lists in and predictions out for batch geolocation outside QGIS (`hiergeo geolocate`).

In: a CSV, Parquet or GeoPackage list of photos: a `path` (or `photo`) column, optionally `lat`/`lon` columns (or,
in a GeoPackage, point geometry) with the true positions; relative paths are relative to the list's folder.
Out: a GeoPackage point layer with the Processing algorithm's OUTPUT fields (docs: DESIGN.md), written through
GDAL/OGR (QGIS's own GDAL; no QGIS import), committed one batch at a time so that an interrupted run keeps its
finished photos and a re-run skips them; or, for a `.parquet` OUT, the same fields as GeoParquet (parquet_out.py).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, List, Optional, Set

from ..search.photos import PhotoRecord
from .output_fields import FIELDS, TAIL_FIELDS, TRUTH_FIELDS

_INTS = {"zoom", "tile_x", "tile_y"}
_STRINGS = {"photo", "status"}


def read_photo_list(path: os.PathLike) -> List[PhotoRecord]:
    """The photos of a CSV, Parquet or GeoPackage list, in the list's order."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    elif suffix == ".gpkg":
        rows = _gpkg_rows(path)
    else:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        name = str(row.get("path") or row.get("photo") or "").strip()
        if not name:
            continue
        full = name if os.path.isabs(name) else str(path.parent / name)
        out.append(PhotoRecord(name, full, _number(row.get("lat")), _number(row.get("lon"))))
    return out


def _number(value) -> Optional[float]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)


def _gpkg_rows(path: Path) -> List[dict]:
    """The first layer's rows; point geometry gives lat/lon where the attributes have none."""
    from osgeo import ogr

    ds = ogr.Open(str(path))
    if ds is None or ds.GetLayerCount() == 0:
        raise ValueError(f"{path}: not a GeoPackage with a layer")
    layer = ds.GetLayer(0)
    rows = []
    for feature in layer:
        row = {k: feature.GetField(k) for k in feature.keys()}
        geom = feature.GetGeometryRef()
        if geom is not None and row.get("lat") is None and geom.GetGeometryName() == "POINT":
            row["lon"], row["lat"] = geom.GetX(), geom.GetY()
        rows.append(row)
    return rows


def prediction_row(result, with_truth: bool) -> dict:
    """OUTPUT's attributes for one core PhotoResult, as the Processing algorithm's PredictionWriter writes them."""
    from ..geodesy import haversine_km

    record, p = result.record, (result.prediction if result.ok else None)
    row = dict.fromkeys(FIELDS + (TRUTH_FIELDS if with_truth else ()) + TAIL_FIELDS)
    row.update(photo=record.photo, status=result.status)
    if p is not None:
        row.update(lat=p.lat, lon=p.lon, score=p.score, zoom=p.tile.z, tile_x=p.tile.x, tile_y=p.tile.y)
        row.update(confidence=p.confidence, radius_km=p.radius_km)
    if with_truth:
        row.update(true_lat=record.true_lat, true_lon=record.true_lon)
        if p is not None and record.has_truth:
            row["error_km"] = float(haversine_km(record.true_lat, record.true_lon, p.lat, p.lon))
    return row


def open_predictions(path: os.PathLike, with_truth: bool):
    """The OUTPUT sink for OUT's suffix: GeoParquet for .parquet, else a GeoPackage."""
    if Path(path).suffix.lower() == ".parquet":
        from .parquet_out import ParquetPredictions

        return ParquetPredictions(path, with_truth)
    return GpkgPredictions(path, with_truth)


class GpkgPredictions:
    """The OUTPUT layer of a GeoPackage, opened for appending (created when absent)."""

    LAYER = "predictions"

    def __init__(self, path: os.PathLike, with_truth: bool):
        from osgeo import ogr, osr

        ogr.UseExceptions()
        self.path = Path(path)
        self.names = FIELDS + (TRUTH_FIELDS if with_truth else ()) + TAIL_FIELDS
        if self.path.exists():
            self.ds = ogr.Open(str(self.path), 1)
            self.layer = self.ds.GetLayerByName(self.LAYER)
        else:
            self.ds, self.layer = ogr.GetDriverByName("GPKG").CreateDataSource(str(self.path)), None
        if self.layer is None:
            srs = osr.SpatialReference()
            srs.ImportFromEPSG(4326)
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            self.layer = self.ds.CreateLayer(self.LAYER, srs, ogr.wkbPoint)
            for name in self.names:
                kind = ogr.OFTString if name in _STRINGS else ogr.OFTInteger if name in _INTS else ogr.OFTReal
                self.layer.CreateField(ogr.FieldDefn(name, kind))

    def done(self) -> Set[str]:
        """The photos written by an earlier run (skipped by a re-run)."""
        self.layer.ResetReading()
        return {f.GetField("photo") for f in self.layer}

    def write(self, rows: Iterable[dict]) -> int:
        """Append rows in one transaction (a batch is in the file whole or not at all)."""
        from osgeo import ogr

        n = 0
        self.layer.StartTransaction()
        for row in rows:
            feature = ogr.Feature(self.layer.GetLayerDefn())
            for name in self.names:
                if row.get(name) is not None:
                    feature.SetField(name, row[name])
            if row.get("lat") is not None:
                point = ogr.Geometry(ogr.wkbPoint)
                point.AddPoint_2D(float(row["lon"]), float(row["lat"]))
                feature.SetGeometry(point)
            self.layer.CreateFeature(feature)
            n += 1
        self.layer.CommitTransaction()
        return n

    def finish(self) -> None:
        """Nothing to do: each batch was committed by `write`."""

    def rows(self) -> List[dict]:
        self.layer.ResetReading()
        return [{k: f.GetField(k) for k in f.keys()} for f in self.layer]

    def close(self) -> None:
        self.layer = None
        self.ds = None
