#!/usr/bin/env python
"""Train JAMS on the LAAT backbone and report Edin et al.'s metrics for ICD-9 and ICD-10.

The same as ``jams-pyg train``. With no arguments it generates the embedded synthetic
corpus (built from the real CMS 2018 GEMs and code titles) and trains the plain LAAT and
LAAT+JAMS on it on the CPU in a few minutes. Common variations::

    python examples/train_laat.py --no-jams                 # the plain LAAT backbone
    python examples/train_laat.py --model caml              # another backbone
    python examples/train_laat.py --data /path/to/mimiciv   # Edin et al.'s MIMIC-IV files
    torchrun --nproc_per_node=4 examples/train_laat.py --data /path/to/mimiciv

Outputs go to ``outputs/laat/`` (``--output-dir``): the side-by-side ``report.md``,
``metrics.json`` and ``buckets.png``; the synthetic corpus in ``outputs/laat/data/``; one folder
per variant, ``backbone/`` (one model per system: ``backbone/icd9/``, ``backbone/icd10/``)
and ``jams/``, each with ``metrics.json`` (per system: the nine metrics of the paper's
Table 2 and macro-F1 by frequency bucket and GEM link), ``config.json``, ``report.md``,
``best.pt`` / ``last.pt`` checkpoints and the prediction bundle ``model/``.
"""

import sys

from jams_pyg.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
