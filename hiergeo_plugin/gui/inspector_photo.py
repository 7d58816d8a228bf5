"""The inspector's picture of a photo: a thumbnail, upright, or the reason it cannot be shown.

Apart from the dock because it must work in two installs: with the plugin's dependencies (Pillow, through
core.search.photos.load_photo, the same upright image the model saw) and before they are installed (Qt's reader
with its EXIF auto-transform), so the inspector opens either way.
"""

from __future__ import annotations

import io
from typing import Optional, Tuple

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QImageReader, QPixmap

THUMBNAIL_PX = 320


def photo_pixmap(path: Optional[str], size: int = THUMBNAIL_PX) -> Tuple[Optional[QPixmap], str]:
    """A thumbnail of the photo, upright (EXIF orientation applied), or (None, why not).

    core.search.photos.load_photo when Pillow is there (the same upright image the model saw); Qt's reader with its
    EXIF auto-transform otherwise, so the inspector works before the dependencies are installed.
    """
    if not path:
        return None, "no photo path"
    try:
        from ..core.search.photos import PhotoError, load_photo
    except ImportError:
        reader = QImageReader(path)
        reader.setAutoTransform(True)
        image = reader.read()
        if image.isNull():
            return None, reader.errorString()
        keep, smooth = Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        return QPixmap.fromImage(image).scaled(size, size, keep, smooth), ""
    try:
        image = load_photo(path)
    except PhotoError as exc:
        return None, str(exc)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    pixmap = QPixmap()
    return (pixmap, "") if pixmap.loadFromData(buffer.getvalue(), "PNG") else (None, "could not show the photo")
