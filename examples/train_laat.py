#!/usr/bin/env python
"""Train JAMS on the LAAT backbone and report Edin et al.'s metrics for ICD-9 and ICD-10.

With no arguments it generates the embedded synthetic corpus (built from the
real CMS 2018 GEMs and code titles) and trains on it on the CPU in a few
minutes. Common variations::

    python examples/train_laat.py --no-jams                 # the plain LAAT backbone
    python examples/train_laat.py --model caml              # another backbone
    python examples/train_laat.py --data /path/to/mimiciv   # Edin et al.'s MIMIC-IV files
    torchrun --nproc_per_node=4 examples/train_laat.py --data /path/to/mimiciv

Outputs go to ``outputs/<model>/``: the side-by-side ``report.md``,
``metrics.json`` and ``buckets.png``, and one folder per variant
(``backbone/``, ``jams/``) with its ``metrics.json`` (per system: the nine
metrics of the paper's Table 2 and macro-F1 by frequency bucket and GEM linkage),
``config.json``, ``best.pt`` / ``last.pt`` checkpoints and the prediction bundle
``model/`` (the backbone, one model per system, in ``backbone/icd9/`` and
``backbone/icd10/``).
"""

import sys

from jams_pyg.train.experiment import main

if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
