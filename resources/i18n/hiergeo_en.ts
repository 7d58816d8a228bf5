<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="en" sourcelanguage="en">
<context>
    <name>HierGeo</name>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source> (relative paths from {folder})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>: median error {km} km</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>; input points are the true locations</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>AREA has no polygons</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>AREA: feature {fid} has infinite or NaN coordinates</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Added {layer}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Aerial epochs (0 = photo side only)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Area to index (polygons: only cells that intersect them)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Base model (open_clip architecture/pretrained tag)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Base model (open_clip tag)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Base training epochs (train photo and map towers from scratch first; 0 = off)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Batch size</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Batch size (images per model pass)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Build region index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate_search.py"/>
        <source>CACHE_DIR {path} is a file, not a folder: give a folder (or leave CACHE_DIR empty for the default cache folder)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_confidence.py"/>
        <source>CALIBRATION_FILE: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_confidence.py"/>
        <source>CANDIDATES lacks the fields {fields}: the confidence is not evaluated</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>CPU only (smaller download, a few hundred MB; runs everywhere)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/params.py"/>
        <source>Cache folder</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Cache folder (tiles and embeddings)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Cache folder (tiles and embeddings, shared with Geolocate photos)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Cache folder (tiles)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Cancel</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Cancelled before the index build started</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Cancelled before the index update started</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Cancelled while calibrating: the index file is written and keeps the default temperature; run "Evaluate geolocation" with ground truth to calibrate it</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/lifecycle.py"/>
        <source>Cancelled while torch and open_clip were loading.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Cancelled.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Cancelled: no index written; the input index is unchanged</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Cancelled: no model file was written (tiles stay in the cache); running the algorithm again starts the training from the beginning</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Cancelled: no model file was written; the finished photo stage is kept in {name} next to the output: run the algorithm again with the same parameters to resume from it</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Cancelled: the finished shards are kept beside the output; run the algorithm again with the same parameters to resume</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Cancelled: {done} of {total} photos were searched; their rows are written.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Cancelling…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Candidate tiles</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/credible_regions.py"/>
        <location filename="../../hiergeo_plugin/processing/probability_map.py"/>
        <source>Candidates (CANDIDATES of Geolocate photos)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Candidates (CANDIDATES of Geolocate photos, for the confidence)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Cell zoom</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Cells in the index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Cells whose code changed</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Cells with a prototype from ground photos</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Checking which packages import…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Choose a photo and its candidates layer first</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Close</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Coarse classes (parent cells)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Coarse classes: zooms above the cell zoom</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_confidence.py"/>
        <source>Confidence over {n} photos: {c50} inside the 50% region, {c90} inside the 90% region, calibration error {ece}; refitted temperature {t}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Confidence: none for this photo (not located, or not computed)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Confidence: {p} within {km} km</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Could not draw it: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <location filename="../../hiergeo_plugin/processing/credible_regions.py"/>
        <source>Credible regions</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/layer_metadata.py"/>
        <source>Credible regions (hiergeo:credibleregions), levels {levels}; calibration: {calibration}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Credible regions: {photo}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/params.py"/>
        <source>Device</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Distance thresholds (km)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Done.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Done: {located} photos located, {failed} failed; tiles: {scored} scored, {downloaded} downloaded, {encoded} encoded, {gaps} gaps</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Draw this photo's 50% and 90% credible regions</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Draw this photo's probability map as a heat map</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Epochs per zoom</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Error lines</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Evaluate geolocation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Evaluation report</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Every module imports: {versions}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Every package HierGeo needs imports already; install again only to repair.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_confidence.py"/>
        <source>Expected calibration error of the confidence</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Expected calibration error of the confidence (cross-fitted)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Extent to index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Extra negative tiles per photo and zoom, from the tiles the search compares (0 = paper)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Failed.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/photo_layers.py"/>
        <source>Field with the photo path</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Fine classes (cells with enough photos)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Fit the confidence's temperature on the validation photos after training (a search of up to 100)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Fitted log-weight of the cells not returned</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Fitted temperature of the confidence</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_inputs.py"/>
        <source>GROUND_TRUTH has no field {field} (its fields: {fields})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_inputs.py"/>
        <source>GROUND_TRUTH needs point geometry or true_lat/true_lon (or lat/lon) fields for the true locations</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Geolocate photos</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/layer_metadata.py"/>
        <source>Geolocate photos (hiergeo:geolocatephotos), method {method}; calibration: {calibration}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/algorithm.py"/>
        <source>Geolocation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Ground photos for cell prototypes (points, optional)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Ground truth</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Ground truth (when the predictions have no true_lat/true_lon)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Ground truth joined to {joined} of {total} predictions on {field}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>HTML files (*.html)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/layer_metadata.py"/>
        <source>HierGeo credible regions</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>HierGeo evaluation: {layer}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>HierGeo index (*.hgindex)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>HierGeo index (*.hgindex);;All files (*.*)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>HierGeo model (*.safetensors)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/params.py"/>
        <source>HierGeo model (*.safetensors);;All files (*.*)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/layer_metadata.py"/>
        <source>HierGeo predicted locations</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/provider.py"/>
        <source>HierGeo {version}: photo geolocation on satellite tiles</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>HierGeo's Python packages are installed for QGIS's own Python into a folder of HierGeo's in your QGIS profile: no administrator rights, nothing else changes, and running this again repairs a broken install.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>HierGeo: install Python dependencies</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/probability_map.py"/>
        <source>Highest probability per km²</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Imagery credit (e.g. the provider's attribution)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Install</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/plugin.py"/>
        <source>Install Python dependencies…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Install instead: {build}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/plugin.py"/>
        <source>Install…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Learning rate</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Least confident first</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Less confident</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/credible_regions.py"/>
        <source>Levels (%)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>List the photos from the least to the most confident, empty ones last</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/lifecycle.py"/>
        <source>Loading model {model} on {device}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Located photos without a true location</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate_search.py"/>
        <source>METHOD {method} needs INDEX: a .hgindex file from Build region index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>MODEL: give the model file to start from</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Maximum zoom with imagery (empty = the source's own; finer zoom levels answer from this one)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Mean error (km)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Median error (km)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Method</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Missing or broken: {packages}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Model file to start from (written by Train map encoders)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>More confident</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>NVIDIA GPU (CUDA; a download of several GB)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate_search.py"/>
        <source>OUTPUT and CANDIDATES would both write {path}: the second would replace the first and leave the file empty. Give two files, or two tables of one GeoPackage (ogr:dbname='file.gpkg' table="predictions" and table="candidates").</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/layer_metadata.py"/>
        <source>One point per photo: where HierGeo places it (method {method}).
confidence: the probability that the true location is within {km:g} km of the point.
radius_km: the radius around the point that holds {level} of the probability (a {level} credible radius).
Both come from the similarity scores of the search, turned into probabilities by the calibration: {calibration}.
score (shown as similarity) is a cosine similarity, not a confidence.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/probability_map.py"/>
        <source>PHOTO: {photo!r} is not among the {n} photos of CANDIDATES (give one of them)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>PREDICTIONS has no true_lat/true_lon (its input was not a point layer) and no GROUND_TRUTH was given: nothing can be evaluated</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/params.py"/>
        <source>Parallel tile downloads</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Path weight (0 = each cell's own code, the paper)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Path weight (0 = the paper: each zoom ranks by its own similarity)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/layer_metadata.py"/>
        <source>Per photo, the smallest areas (unions of the densest scored tiles) that hold {levels} of the probability of where it was taken (field level), under the calibration: {calibration}.
probability: what a region holds (at least its level); area_km2: its area; tiles: the tiles it joins.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/probability_map.py"/>
        <source>Photo (as in the photo field; empty when the layer has one photo)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Photo epochs</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/plugin.py"/>
        <source>Photo inspector</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Photo path field of the ground truth</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Photo {n} of {total}, least confident first</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Photographed cells</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Photos (points, or a table with a photo path field)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Photos a cell needs to be a class of its own</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Photos added to the prototypes</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Photos evaluated</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Photos located</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Photos searched together</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Photos skipped: added before</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Photos that could not be located</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Photos that were not located</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Photos trained on</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Photos with known places to calibrate the confidence (points, optional; 20 at least)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/credible_regions.py"/>
        <source>Photos with regions</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Photos with true locations (points)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/probability_map.py"/>
        <source>Pixels along the longer side</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Predicted locations</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Predictions</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Predictions (OUTPUT of Geolocate photos)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <location filename="../../hiergeo_plugin/processing/probability_map.py"/>
        <source>Probability map</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Probability map: {photo}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/plugin.py"/>
        <source>Python packages installed: restart QGIS to use them.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Python: {python}
Folder: {target}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>QGIS's Python was not found: {why}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Random seed (shuffling)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Random seed (split, shuffling)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Ready.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_confidence.py"/>
        <source>Refitted temperature</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Refuse areas with more cells than</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/algorithm.py"/>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Region index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Region index (for the index methods)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Region index to update</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Region model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Reinstall / repair</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/algorithm.py"/>
        <source>Satellite tiles (XYZ URL template, saved XYZ connection name or XYZ layer)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Satellite tiles of the predictions (for the report's imagery credit)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Search extent (EPSG:4326): {extent}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Search only within this extent (empty = the whole world)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Share of calibration photos inside their 50% region (cross-fitted)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Share of calibration photos inside their 90% region (cross-fitted)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_confidence.py"/>
        <source>Share of photos inside their 50% region</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_confidence.py"/>
        <source>Share of photos inside their 90% region</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Share within {km} km</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Show the next less confident photo</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Show the next more confident photo</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Size of the index file (bytes)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Starting pip…</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Stopped: PyTorch's index cannot be reached. Nothing was installed.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Store the refitted temperature in (model file or region index)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/credible_regions.py"/>
        <source>Temperature (0 = from the file above, or the default)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>Temperature from</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <location filename="../../hiergeo_plugin/processing/credible_regions.py"/>
        <source>Temperature from (model file or region index; empty = the default)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_confidence.py"/>
        <source>Temperature {t} stored in {path}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>There is no CUDA on macOS; the CPU build uses Apple's GPU (MPS).</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>Thresholds (km)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/params.py"/>
        <source>Tile requests per second (0 = no limit)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Tile source (XYZ URL template or saved XYZ connection name)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate_search.py"/>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Tile source: {source} (zoom {zmin}-{zmax}); cache: {cache}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Tile source: {source}; cache: {cache}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Tile source: {source}; starting from {model} on {device}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Tiles downloaded</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Tiles encoded by the model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Tiles kept per zoom level (k)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Tiles missing from the source (skipped)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Train map encoders</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Train region model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Trained model</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Trained model file</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>Trained model file (empty: the base model)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/algorithm.py"/>
        <source>Training and evaluation</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Training cancelled; the finished zooms are kept in the checkpoint next to the output: run the same training again to resume.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>Try again</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>Unfrozen transformer blocks</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Update index with verified photos</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Updated region index</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Validation top-1 accuracy, zoom {zoom}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>Validation top-5 accuracy, zoom {zoom}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>Verified photos (points)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>Weight of the prototypes in the cell codes (kappa)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/params.py"/>
        <source>Zoom levels</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/layer_metadata.py"/>
        <source>could not store the layer metadata in {path}: {error}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate_search.py"/>
        <source>every zoom level {zooms} lies beyond the source's maximum zoom {zmax}: nothing can be searched; give ZOOM_LEVELS up to {zmax}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>feature {id}: no photo path in field {field}; skipped</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/layer_metadata.py"/>
        <source>fitted on {photos} held-out photos ({fitted_on})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>give EXTENT and/or AREA: the index covers that area</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/plugin.py"/>
        <source>install the missing Python packages first: {packages}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/plugin.py"/>
        <source>needs Python packages that are missing: {packages}.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_confidence.py"/>
        <source>no located photo with a true location has candidates: the confidence is not evaluated</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate_confidence.py"/>
        <source>no temperature could be fitted: {path} is left as it was</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>no usable photos: every feature lacks a photo path or a point geometry</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/photo_layers.py"/>
        <source>none</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>predictions</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/layer_metadata.py"/>
        <source>temperature {label}, {fitted}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/layer_metadata.py"/>
        <source>the default, not fitted on photos</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>the model has no map encoder for zoom {zooms}; the nearest trained zoom is used there (trained: {trained})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>tiles from {source}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>torch runs on the CPU.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/install_dialog.py"/>
        <source>torch sees a CUDA GPU.</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate_search.py"/>
        <source>zoom levels {zooms} lie below the source's range {zmin}-{zmax}: expect gaps there</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate_search.py"/>
        <source>zoom levels {zooms} lie beyond the source's maximum zoom {zmax}: they are not fetched, and the answers come from zoom {deepest} (status 'ok: answer from zoom {deepest}: ...')</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>zoom {zoom}: validation top-1 {top1} (untrained {untrained}), top-5 {top5}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train_region.py"/>
        <source>{count} features have no photo path or no point geometry and are left out</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>{count} ground photos have no usable location (no point, an empty point or coordinates off the globe) and are left out</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>{count} ground photos with a location for the cell prototypes</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>{count} photos evaluated</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/geolocate.py"/>
        <source>{count} photos from {field}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/build_index.py"/>
        <source>{count} photos with known places to calibrate the confidence</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/update_index.py"/>
        <source>{count} verified photos read</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>{credit}; tiles from {source}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/evaluate.py"/>
        <source>{layer} (joined on {field}: {joined} photos)</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/photo_layers.py"/>
        <source>{layer} has no field {field} with the photo paths (its fields: {fields}); set {field_key}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/params.py"/>
        <source>{name}: {value} is not one of {options} (give an option's name or its index 0-{last})</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/credible_regions.py"/>
        <source>{n} photos, temperature {t:.4g}</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/credible_regions.py"/>
        <source>{path} holds no fitted temperature: the default is used</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/train.py"/>
        <source>{photo}: no point geometry (true location unknown); skipped</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/processing/probability_map.py"/>
        <source>{photo}: {w} x {h} pixels, temperature {t}, peak {p} per km²</source>
        <translation type="unfinished"></translation>
    </message>
    <message>
        <location filename="../../hiergeo_plugin/gui/inspector_confidence.py"/>
        <source>{p} within {r} km of the prediction</source>
        <translation type="unfinished"></translation>
    </message>
</context>
</TS>
