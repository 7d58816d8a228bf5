"""Field types that work from QGIS 3.22 to QGIS 4.

QGIS 3.38 moved QgsField's type to QMetaType.Type; QVariant.String, .Double, .Int and .Bool are deprecated there
and gone under PyQt6 (QGIS 4), where they raise AttributeError. Older QGIS only knows the QVariant types. The
choice is made once, by the QGIS version that runs.
"""

from __future__ import annotations

from typing import NamedTuple

from qgis.core import Qgis, QgsField

#: First QGIS whose QgsField takes a QMetaType.Type.
QMETATYPE_SINCE = 33800


class FieldTypes(NamedTuple):
    string: object
    double: object
    int: object
    bool: object


def field_types(qgis_version: int = Qgis.QGIS_VERSION_INT) -> FieldTypes:
    """The field type values that this QGIS takes: QMetaType.Type on 3.38 and later, QVariant before."""
    if qgis_version >= QMETATYPE_SINCE:
        from qgis.PyQt.QtCore import QMetaType

        return FieldTypes(QMetaType.Type.QString, QMetaType.Type.Double, QMetaType.Type.Int, QMetaType.Type.Bool)
    from qgis.PyQt.QtCore import QVariant

    return FieldTypes(QVariant.String, QVariant.Double, QVariant.Int, QVariant.Bool)


TYPES = field_types()


def string_field(name: str) -> QgsField:
    return QgsField(name, TYPES.string)


def double_field(name: str) -> QgsField:
    return QgsField(name, TYPES.double)


def int_field(name: str) -> QgsField:
    return QgsField(name, TYPES.int)


def bool_field(name: str) -> QgsField:
    return QgsField(name, TYPES.bool)
