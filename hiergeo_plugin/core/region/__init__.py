"""Fine-scale localization inside a region where ground photos are dense (no QGIS).

* stats: shares within distances, Wilson intervals and the exact McNemar test, to tell real differences from
  noise on a few hundred held-out photos;
* position: a position inside the cell from the scores of the neighbouring cells, instead of the cell's centre;
* training: the region model (the second paper's training half): the photo encoder fine-tuned on a proxy
  classification over cells whose classifier weights are the prototypes, and the aerial side trained into the
  same space, written as an ordinary model file; checkpoint: its finished photo stage, kept for a resume;
* cli: `scripts/hiergeo region train`, the training on a machine without QGIS (e.g. with a GPU).
"""
