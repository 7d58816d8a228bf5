"""Output field types through processing/fields.py: QMetaType on QGIS 3.38+, QVariant before (QGIS 4 has no
QVariant.String & co.). The contract's types must survive a real memory layer on the QGIS that runs the suite."""

from __future__ import annotations

from qgis.core import Qgis, QgsVectorLayer

from hiergeo_plugin.processing.fields import QMETATYPE_SINCE, TYPES, field_types
from hiergeo_plugin.processing.geolocate_outputs import candidate_fields, prediction_fields

TEXT = {"photo", "status"}
WHOLE = {"zoom", "tile_x", "tile_y", "rank", "cells"}  # cells: how many unreturned index cells a row stands for
FLAGS = {"kept", "chosen"}


def test_this_qgis_gets_the_type_family_it_takes():
    from qgis.PyQt.QtCore import QMetaType, QVariant

    family = QMetaType.Type if Qgis.QGIS_VERSION_INT >= QMETATYPE_SINCE else QVariant.Type
    assert all(isinstance(t, family) for t in TYPES)
    assert field_types(Qgis.QGIS_VERSION_INT) == TYPES
    assert len(set(TYPES)) == 4


def test_contract_fields_keep_their_types_in_a_real_layer():
    for kind, fields in (("Point", prediction_fields(with_truth=True)), ("Polygon", candidate_fields())):
        layer = QgsVectorLayer(f"{kind}?crs=EPSG:4326", "contract", "memory")
        assert layer.dataProvider().addAttributes(fields.toList())
        layer.updateFields()
        stored = {f.name(): f for f in layer.fields()}
        assert list(stored) == fields.names()
        for name, field in stored.items():
            if name in TEXT:
                assert field.type() == TYPES.string, name
            elif name in WHOLE:
                assert field.type() == TYPES.int, name
            elif name in FLAGS:
                assert field.type() == TYPES.bool, name
            else:
                assert field.type() == TYPES.double and field.isNumeric(), name
