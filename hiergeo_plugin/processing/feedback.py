"""The core's Reporter speaking to QGIS: progress, log lines, warnings and cancel through QgsProcessingFeedback."""

from __future__ import annotations

from typing import Optional

from qgis.core import QgsProcessingFeedback

from ..core.progress import Reporter
from ..core.tiles.redact import Redactor


class FeedbackReporter(Reporter):
    """A core Reporter speaking to a QgsProcessingFeedback: progress 0-100, log lines, warnings, cancel.

    Every message passes through the tile source's Redactor (when given), so no API key reaches the log.
    """

    def __init__(self, feedback: Optional[QgsProcessingFeedback], redactor: Optional[Redactor] = None):
        self.feedback = feedback if feedback is not None else QgsProcessingFeedback()
        self.redactor = redactor or Redactor()
        super().__init__(
            on_progress=self._progress,
            on_info=self._info,
            is_cancelled=self._cancelled,
            on_warning=self._warning,
        )

    def _progress(self, fraction: float) -> None:
        self.feedback.setProgress(100.0 * fraction)

    def _info(self, message: str) -> None:
        self.feedback.pushInfo(self.redactor.redact(message))

    def _warning(self, message: str) -> None:
        self.feedback.pushWarning(self.redactor.redact(message))

    def _cancelled(self) -> bool:
        return bool(self.feedback.isCanceled())
