"""Drives a real QGIS desktop through what an analyst does with HierGeo; run by `qgis --code driver.py`.

tests/desktop/test_desktop.py starts QGIS under Xvfb with a fresh profile holding the plugin from `make zip`, and
passes a JSON config in $HIERGEO_DESKTOP_CONFIG (tile template, photo folder, output folders). The steps open
Processing's own algorithm dialogs (processing.createAlgorithmDialog, the Run button): Cancel as the first run
starts, Geolocate and Evaluate twice each with temporary and with GeoPackage outputs, the photo inspector on both,
Geolocate in the batch dialog (two rows), a Modeler model (Geolocate into Evaluate, saved to the profile's models)
twice, a region index build and a training run.
Each step is screenshotted; QGIS's message log and each dialog's log are kept. The result goes to the config's
"result" file as JSON, then QGIS quits. The steps are a generator that yields "wait until" conditions, checked on
a timer: the event loop keeps running, as in a real session.
"""

import json
import os
import sys
import time
import traceback

from qgis.core import Qgis, QgsApplication, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QTextEdit
from qgis.utils import iface, plugins

CONFIG = json.loads(open(os.environ["HIERGEO_DESKTOP_CONFIG"], encoding="utf-8").read())
SHOTS = CONFIG["shots"]
#: What must never appear in QGIS's message log or a dialog's log.
BAD_WORDS = ("Traceback", "not correctly generated", "Execution failed", "has been deleted", "Error loading result")
STATE = {"steps": [], "messages": [], "problems": [], "shots": [], "done": False}


def log_message(message, tag, level):
    STATE["messages"].append({"tag": tag, "level": int(level), "message": message})
    if tag == "Python error" or any(word in message for word in BAD_WORDS):
        STATE["problems"].append(f"message log [{tag}]: {message[:2000]}")


def shot(widget, name):
    """Save a screenshot of `widget` (the whole main window when None) as NN_name.png."""
    from qgis.PyQt.QtWidgets import QApplication

    QApplication.processEvents()
    target = widget if widget is not None else iface.mainWindow()
    path = os.path.join(SHOTS, f"{len(STATE['shots']) + 1:02d}_{name}.png")
    if target.grab().save(path):
        STATE["shots"].append(path)


def dialog_log(dialog) -> str:
    text = dialog.findChild(QTextEdit, "txtLog")
    return text.toPlainText() if text is not None else ""


def show_outputs(dialog) -> None:
    """Scroll the parameters panel to its end, where the outputs are."""
    from qgis.PyQt.QtWidgets import QScrollArea

    for area in dialog.findChildren(QScrollArea):
        area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())


def log_settled(dialog, end_words):
    """A condition: the dialog's log shows one of `end_words`, no task runs, and the log stopped changing (the
    loading of the results, which follows the end of the run, is over too)."""
    seen = {"text": None, "stable": 0}

    def settled():
        text = dialog_log(dialog)
        ended = any(word in text for word in end_words)
        busy = QgsApplication.taskManager().countActiveTasks() > 0
        seen["stable"] = seen["stable"] + 1 if (ended and not busy and text == seen["text"]) else 0
        seen["text"] = text
        return seen["stable"] >= 3

    return settled


def run_as_batch(alg_id, rows, name):
    """Processing's batch dialog with one table row per dict of `rows` (outputs loaded on completion), Run, wait."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from processing.tools import dataobjects

    before = set(QgsProject.instance().mapLayers())
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    dialog = BatchAlgorithmDialog(alg, parent=iface.mainWindow())
    dialog.resize(1500, 700)
    dialog.show()
    panel = dialog.mainWidget()
    panel.addRow(len(rows) - panel.batchRowCount())
    context = dataobjects.createContext()
    for row, values in enumerate(rows):
        for key, value in values.items():
            column = panel.parameter_to_column[key]
            if alg.parameterDefinition(key).isDestination():
                panel.tblParameters.cellWidget(row + 1, column).setValue(value)  # row 0 is the fill-down row
            else:
                panel.wrappers[row][column].setParameterValue(value, context)
    panel.checkLoadLayersOnCompletion.setChecked(True)
    yield lambda: True
    shot(dialog, f"{name}_rows")
    dialog.runButton().click()
    yield log_settled(dialog, ("Batch execution completed",))
    text = dialog_log(dialog)
    dialog.showLog()
    shot(dialog, f"{name}_log")
    added = [QgsProject.instance().mapLayer(i) for i in set(QgsProject.instance().mapLayers()) - before]
    STATE["steps"].append(
        {
            "step": name,
            "algorithm": alg_id,
            "completed": text.count("Execution completed in"),
            "layers": sorted(layer.name() for layer in added),
        }
    )
    for word in BAD_WORDS + ("executions failed",):
        if word in text:
            STATE["problems"].append(f"{name}: batch log says {word!r}:\n{text[-3000:]}")
    dialog.close()
    dialog.deleteLater()


def run_in_dialog(alg_id, parameters, name, cancel=False):
    """Open the algorithm's dialog with `parameters`, press Run (and Cancel as soon as the run started, with
    `cancel`), wait for the end; the layers it added to the project."""
    import processing

    before = set(QgsProject.instance().mapLayers())
    dialog = processing.createAlgorithmDialog(alg_id, parameters)
    dialog.resize(1000, 760)
    dialog.show()
    yield lambda: True  # one turn of the event loop: the dialog is laid out
    shot(dialog, f"{name}_parameters")
    show_outputs(dialog)
    shot(dialog, f"{name}_outputs")
    dialog.runButton().click()
    if cancel:
        yield lambda: QgsApplication.taskManager().countActiveTasks() > 0 or "Execution" in dialog_log(dialog)
        cancelled_at = time.monotonic()
        dialog.cancelButton().click()

    yield log_settled(dialog, ("Execution completed in", "Execution failed after"))
    text = dialog_log(dialog)
    dialog.showLog()
    shot(dialog, f"{name}_log")
    added = [QgsProject.instance().mapLayer(i) for i in set(QgsProject.instance().mapLayers()) - before]
    step = {
        "step": name,
        "algorithm": alg_id if isinstance(alg_id, str) else alg_id.id(),
        "completed": "Execution completed in" in text,
        "layers": sorted(layer.name() for layer in added),
        "results": {k: str(v) for k, v in (dialog.results() or {}).items()},
    }
    STATE["steps"].append(step)
    # A cancelled run may end as "failed" (QGIS's task reports a cancelled run so); nothing else may.
    allowed = ("Execution failed",) if cancel else ()
    for word in BAD_WORDS:
        if word in text and word not in allowed:
            STATE["problems"].append(f"{name}: dialog log says {word!r}:\n{text[-3000:]}")
    if cancel:
        step["cancel_to_end_s"] = round(time.monotonic() - cancelled_at, 2)
        step["log"] = text[-1500:]
    elif "Execution completed in" not in text:
        STATE["problems"].append(f"{name}: the run did not complete:\n{text[-3000:]}")
    dialog.close()
    dialog.deleteLater()
    return added


def by_name(layers, name):
    return next((layer for layer in layers if layer.name() == name), None)


def render_canvas():
    canvas = iface.mapCanvas()
    canvas.refreshAllLayers()
    canvas.waitWhileRendering()


def inspect(predictions, candidates, name):
    dock = plugins["hiergeo"].show_inspector()
    dock.set_layers(predictions, candidates)
    photos = dock.photos()
    inspection = dock.show_photo(photos[0]) if photos else None
    yield lambda: True
    render_canvas()
    pixmap = dock.photo_label.pixmap()
    STATE["steps"].append(
        {
            "step": name,
            "photos": len(photos),
            "shown": inspection is not None,
            "picture": pixmap is not None and not pixmap.isNull(),
            "score_rows": dock.score_table.rowCount(),
            "details": dock.details.text(),
        }
    )
    if inspection is None or pixmap is None or pixmap.isNull():
        STATE["problems"].append(f"{name}: the inspector showed no photo ({dock.photo_label.text()})")
    shot(None, name)
    dock.restore()


#: What changes from one Geolocate run to the next.
PER_RUN = ("PHOTOS", "OUTPUT", "CANDIDATES")


def geolocate_parameters(photos, output, candidates):
    return {
        "PHOTOS": photos.id() if photos is not None else None,
        "TILE_SOURCE": CONFIG["template"],
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,
        "TOP_K": 2,
        "ZOOM_LEVELS": "4,6",
        "CACHE_DIR": CONFIG["cache"],
        "OUTPUT": output,
        "CANDIDATES": candidates,
    }


def geolocate_then_evaluate_model(out):
    """A Processing model, as built in the Modeler: Geolocate photos, its predictions into Evaluate."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFeatureSource,
    )

    model = QgsProcessingModelAlgorithm("geolocate_and_evaluate", "HierGeo desktop tests")
    model.addModelParameter(
        QgsProcessingParameterFeatureSource("photos", "Photos"), QgsProcessingModelParameter("photos")
    )
    steps = (
        ("geolocate", "hiergeo:geolocatephotos", "OUTPUT", "Predictions"),
        ("evaluate", "hiergeo:evaluategeolocation", "ERROR_LINES", "Error lines"),
    )
    fixed = {
        "geolocate": {k: v for k, v in geolocate_parameters(None, None, None).items() if k not in PER_RUN},
        "evaluate": {"OUTPUT_HTML": os.path.join(out, "report_model.html")},
    }
    for child_id, alg_id, output, name in steps:
        child = QgsProcessingModelChildAlgorithm(alg_id)
        child.setChildId(child_id)
        child.setDescription(child_id)
        for key, value in fixed[child_id].items():
            child.addParameterSources(key, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
        model_output = QgsProcessingModelOutput(name, name)
        model_output.setChildId(child_id)
        model_output.setChildOutputName(output)
        child.setModelOutputs({name: model_output})
        model.addChildAlgorithm(child)
    source = QgsProcessingModelChildParameterSource
    model.childAlgorithm("geolocate").addParameterSources("PHOTOS", [source.fromModelParameter("photos")])
    model.childAlgorithm("evaluate").addParameterSources("PREDICTIONS", [source.fromChildOutput("geolocate", "OUTPUT")])
    model.updateDestinationParameters()
    return save_model(model)


def save_model(model) -> str:
    """Save `model` into the profile's models folder and reload the model provider, as the Modeler's Save does;
    its algorithm id (a model dialog needs the model in the toolbox: QGIS 3.22 crashed on a bare one)."""
    from processing.modeler.ModelerUtils import ModelerUtils

    path = os.path.join(ModelerUtils.modelsFolders()[0], f"{model.name()}.model3")
    if not model.toFile(path):
        raise RuntimeError(f"could not save the model to {path}")
    QgsApplication.processingRegistry().providerById("model").refreshAlgorithms()
    alg_id = f"model:{model.name()}"
    if QgsApplication.processingRegistry().algorithmById(alg_id) is None:
        raise RuntimeError(f"the saved model is not in the Processing toolbox as {alg_id}")
    return alg_id


def steps():
    import processing
    from processing.core.ProcessingConfig import ProcessingConfig

    yield lambda: "hiergeo" in plugins and QgsApplication.processingRegistry().algorithmById("hiergeo:geolocatephotos")
    ProcessingConfig.setSettingValue(ProcessingConfig.KEEP_DIALOG_OPEN, True)
    out = CONFIG["out"]
    points = processing.run(
        "native:importphotos",
        {"FOLDER": CONFIG["photos"], "RECURSIVE": False, "OUTPUT": os.path.join(out, "photos.gpkg")},
    )["OUTPUT"]
    photos = QgsVectorLayer(points, "photos", "ogr")
    QgsProject.instance().addMapLayer(photos)
    shot(None, "photos_loaded")

    # Cancel while the first run of the session starts (it imports torch and open_clip, seconds when cold).
    yield from run_in_dialog(
        "hiergeo:geolocatephotos",
        geolocate_parameters(photos, "TEMPORARY_OUTPUT", "TEMPORARY_OUTPUT"),
        "geolocate_cancelled_first_run",
        cancel=True,
    )
    outputs = {}
    for kind in ("temporary", "geopackage"):
        for run in (1, 2):
            if kind == "temporary":
                output = candidates = "TEMPORARY_OUTPUT"
            else:
                output = os.path.join(out, f"predictions{run}.gpkg")
                candidates = os.path.join(out, f"candidates{run}.gpkg")
            added = yield from run_in_dialog(
                "hiergeo:geolocatephotos",
                geolocate_parameters(photos, output, candidates),
                f"geolocate_{kind}_run{run}",
            )
            outputs.setdefault(kind, added)
    for kind in ("temporary", "geopackage"):
        predictions = by_name(outputs[kind], "Predicted locations")
        for run in (1, 2):
            lines = "TEMPORARY_OUTPUT" if kind == "temporary" else os.path.join(out, f"error_lines{run}.gpkg")
            yield from run_in_dialog(
                "hiergeo:evaluategeolocation",
                {
                    "PREDICTIONS": predictions.id(),
                    "OUTPUT_HTML": os.path.join(out, f"report_{kind}{run}.html"),
                    "ERROR_LINES": lines,
                },
                f"evaluate_{kind}_run{run}",
            )
    for kind in ("temporary", "geopackage"):
        layers = outputs[kind]
        yield from inspect(
            by_name(layers, "Predicted locations"), by_name(layers, "Candidate tiles"), f"inspector_{kind}"
        )
    yield from run_as_batch(
        "hiergeo:geolocatephotos",
        [
            geolocate_parameters(
                photos,
                os.path.join(out, f"batch_predictions{row}.gpkg"),
                os.path.join(out, f"batch_candidates{row}.gpkg"),
            )
            for row in (1, 2)
        ],
        "geolocate_batch",
    )
    model_id = geolocate_then_evaluate_model(out)
    for run in (1, 2):
        yield from run_in_dialog(
            model_id,
            {
                "photos": photos.id(),
                "geolocate:Predictions": "TEMPORARY_OUTPUT",
                "evaluate:Error lines": "TEMPORARY_OUTPUT",
            },
            f"model_run{run}",
        )
    if CONFIG.get("build_index", True):
        yield from run_in_dialog(
            "hiergeo:buildregionindex",
            {
                "TILE_SOURCE": CONFIG["template"],
                "BASE_MODEL": "hiergeo-tiny",
                "EXTENT": "13.1,13.3,55.65,55.75 [EPSG:4326]",
                "ZOOM": 12,
                "DEVICE": 1,
                "CACHE_DIR": CONFIG["cache"],
                "OUTPUT_INDEX": os.path.join(out, "lund.hgindex"),
            },
            "build_region_index",
        )

    model_file = os.path.join(out, "trained.safetensors")
    yield from run_in_dialog(
        "hiergeo:trainmapencoders",
        {
            "PHOTOS": photos.id(),
            "TILE_SOURCE": CONFIG["template"],
            "BASE_MODEL": "hiergeo-tiny",
            "EPOCHS": 1,
            "BATCH_SIZE": 8,
            "ZOOM_LEVELS": "4,6",
            "DEVICE": 1,
            "CACHE_DIR": CONFIG["cache"],
            "SEED": 0,
            "OUTPUT_MODEL": model_file,
        },
        "train_map_encoders",
    )
    trained = geolocate_parameters(photos, "TEMPORARY_OUTPUT", "TEMPORARY_OUTPUT")
    yield from run_in_dialog("hiergeo:geolocatephotos", {**trained, "MODEL": model_file}, "geolocate_trained_model")


class Runner:
    """Advances the steps whenever the condition they wait for holds; writes the result and quits at the end."""

    def __init__(self):
        self.generator = steps()
        self.waiting = None
        self.busy = False
        self.deadline = time.monotonic() + float(CONFIG.get("timeout_s", 480))
        self.wait_limit = float(CONFIG.get("wait_s", 150))  # one condition: a run that never ends fails fast
        self.waiting_since = time.monotonic()
        self.timer = QTimer()
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    def tick(self):
        if STATE["done"] or self.busy:  # a step that processes events (a synchronous run) must not re-enter
            return
        self.busy = True
        try:
            now = time.monotonic()
            if now > self.deadline:
                raise TimeoutError(f"the desktop steps did not finish in {CONFIG.get('timeout_s', 480)} s")
            if now - self.waiting_since > self.wait_limit:
                raise TimeoutError(f"a step waited more than {self.wait_limit:.0f} s (see the last screenshot)")
            if self.waiting is None or self.waiting():
                self.waiting = next(self.generator)
                self.waiting_since = time.monotonic()
        except StopIteration:
            self.finish()
        except Exception:  # the driver's own failure is reported, never left hanging
            STATE["problems"].append("driver: " + traceback.format_exc())
            try:
                from qgis.PyQt.QtWidgets import QApplication

                for number, window in enumerate(w for w in QApplication.topLevelWidgets() if w.isVisible()):
                    shot(window, f"driver_failure_window{number}")
            finally:
                self.finish()
        finally:
            self.busy = False

    def finish(self):
        STATE["done"] = True
        self.timer.stop()
        STATE["qgis_version"] = Qgis.version()
        STATE["python"] = sys.version
        with open(CONFIG["result"], "w", encoding="utf-8") as handle:
            json.dump(STATE, handle, indent=1)
        QgsProject.instance().clear()
        QgsProject.instance().setDirty(False)
        QTimer.singleShot(500, QgsApplication.instance().quit)


QgsApplication.messageLog().messageReceived.connect(log_message)
RUNNER = Runner()
