"""Peak memory of ``jams-pyg prepare mimiciv`` as the input grows.

Writes raw files in the MIMIC-IV schema (``note/discharge.csv.gz``,
``hosp/diagnoses_icd.csv.gz``, ``hosp/procedures_icd.csv.gz``) with N and 10·N
discharge notes (~1,000 words each, like MIMIC-IV's), then runs, each in a
fresh subprocess whose peak RSS is read with ``os.wait4`` (the child's own
``ru_maxrss``):

* ``streaming``: ``jams-pyg prepare mimiciv RAW OUT`` (this package);
* ``in_memory``: the same pipeline done as Edin et al.'s script does it (all
  tables read whole with pandas, merged, cleaned with vectorised pandas string
  operations, written with ``to_feather``), for contrast;
* ``import_only``: ``import jams_pyg.data.prepare`` (the interpreter, pandas,
  pyarrow and torch, which ``jams_pyg/__init__`` imports), the floor.

Usage::

    python benchmarks/prepare_memory.py [--notes 2000] [--scales 1 10]
        [--output benchmarks/results/prepare_memory.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

IN_MEMORY = r"""
import sys
from pathlib import Path
import pandas as pd
from jams_pyg.data.prepare import edin_format

raw, out = Path(sys.argv[1]), Path(sys.argv[2])
notes = pd.read_csv(raw / "note/discharge.csv.gz")
diag = pd.read_csv(raw / "hosp/diagnoses_icd.csv.gz", dtype={"icd_code": str})
proc = pd.read_csv(raw / "hosp/procedures_icd.csv.gz", dtype={"icd_code": str})
frames = {}
for kind, codes in (("dx", diag), ("proc", proc)):
    codes["icd_code"] = [edin_format(c, v, kind) for c, v in
                         zip(codes["icd_code"], codes["icd_version"])]
    codes = codes.drop_duplicates(subset=["hadm_id", "icd_code"])
    frames[kind] = codes.groupby(["hadm_id", "icd_version"])["icd_code"].agg(
        lambda s: sorted(s)).reset_index()
notes = notes.dropna(subset=["text"]).drop_duplicates(subset=["hadm_id", "text"])
for version, system in ((9, "icd9"), (10, "icd10")):
    data = notes
    for kind, col in (("proc", f"{system}_proc"), ("dx", f"{system}_diag")):
        part = frames[kind][frames[kind]["icd_version"] == version]
        data = data.merge(part[["hadm_id", "icd_code"]].rename(columns={"icd_code": col}),
                          on="hadm_id", how="left")
    data = data.dropna(subset=[f"{system}_proc", f"{system}_diag"], how="all")
    for col in (f"{system}_proc", f"{system}_diag"):
        data[col] = data[col].apply(lambda x: x if isinstance(x, list) else [])
        counts = data[col].explode().value_counts()
        keep = set(counts[counts >= 10].index)
        data[col] = data[col].apply(lambda x: [c for c in x if c in keep])
    data["target"] = data[f"{system}_proc"] + data[f"{system}_diag"]
    data = data[data["target"].map(len) > 0].reset_index(drop=True)
    text = data["text"].str.lower().str.replace("[^A-Za-z0-9]+", " ", regex=True)
    text = text.str.replace(r"(\s\d+)+\s", " ", regex=True)
    data["text"] = text.str.replace(r"\s+", " ", regex=True).str.strip()
    (out / system).mkdir(parents=True, exist_ok=True)
    data.to_feather(out / system / f"mimiciv_{system}.feather")
"""


def write_raw(root: Path, n_notes: int, words: int, seed: int = 0) -> float:
    """Write MIMIC-IV-schema raw files with ``n_notes`` admissions; returns the
    uncompressed note text size in MB."""
    rng = np.random.default_rng(seed)
    (root / "note").mkdir(parents=True, exist_ok=True)
    (root / "hosp").mkdir(parents=True, exist_ok=True)
    vocab = np.array([f"w{i}" for i in range(5000)] + [str(i) for i in range(100)])
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 0.9
    p /= p.sum()
    punct = np.array([" ", " ", " ", " ", ", ", ". ", ": ", "\n", " / ", " - "])
    codes9 = [f"{400 + i // 10}{i % 10}" for i in range(400)]
    codes10 = [f"I{10 + i // 10}{i % 10}" for i in range(600)]
    zipf9 = 1.0 / np.arange(1, 401) ** 1.1
    zipf10 = 1.0 / np.arange(1, 601) ** 1.1
    text_bytes = 0
    with gzip.open(root / "note/discharge.csv.gz", "wt", compresslevel=1) as notes, \
            gzip.open(root / "hosp/diagnoses_icd.csv.gz", "wt", compresslevel=1) as diag, \
            gzip.open(root / "hosp/procedures_icd.csv.gz", "wt", compresslevel=1) as proc:
        notes.write("note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text\n")
        diag.write("subject_id,hadm_id,seq_num,icd_code,icd_version\n")
        proc.write("subject_id,hadm_id,seq_num,chartdate,icd_code,icd_version\n")
        for i in range(n_notes):
            hadm, subject = 20_000_000 + i, 10_000_000 + i // 2
            tokens = vocab[rng.choice(len(vocab), words, p=p)]
            seps = punct[rng.integers(0, len(punct), words)]
            text = "".join(t + s for t, s in zip(tokens.tolist(), seps.tolist(), strict=True))
            text_bytes += len(text)
            notes.write(f'{subject}-DS-{i},{subject},{hadm},DS,1,2180-01-01 00:00:00,'
                        f'2180-01-01 00:00:00,"{text}"\n')
            version = 9 if i % 2 == 0 else 10
            pool, zipf = (codes9, zipf9) if version == 9 else (codes10, zipf10)
            picks = rng.choice(len(pool), 12, replace=False, p=zipf / zipf.sum())
            for seq, j in enumerate(picks.tolist(), start=1):
                diag.write(f"{subject},{hadm},{seq},{pool[j]},{version}\n")
            pcode = "3893" if version == 9 else "0DTJ4ZZ"
            proc.write(f"{subject},{hadm},1,2180-01-01,{pcode},{version}\n")
    return text_bytes / 1e6


def measure(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (peak RSS in MB, seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode()[-2000:]}")
    proc.stderr.close()
    kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return kib / 1024, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notes", type=int, default=2000, help="notes at scale 1")
    parser.add_argument("--words", type=int, default=1000, help="words per note")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--skip-in-memory", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/prepare_memory.json"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="jams_prepare_bench_"))
    results = []
    try:
        rss, secs = measure([sys.executable, "-c", "import jams_pyg.data.prepare"])
        results.append({"mode": "import_only", "peak_rss_mb": round(rss, 1),
                        "seconds": round(secs, 1)})
        print(f"import only: peak RSS {rss:.0f} MB")
        for scale in args.scales:
            n = args.notes * scale
            raw = work / f"raw_x{scale}"
            text_mb = write_raw(raw, n, args.words)
            gz_mb = sum(f.stat().st_size for f in raw.rglob("*.gz")) / 1e6
            modes = [("streaming", [sys.executable, "-m", "jams_pyg", "prepare", "mimiciv",
                                    str(raw), str(work / f"out_x{scale}")])]
            if not args.skip_in_memory:
                modes.append(("in_memory", [sys.executable, "-c", IN_MEMORY, str(raw),
                                            str(work / f"naive_x{scale}")]))
            for mode, cmd in modes:
                rss, secs = measure(cmd)
                results.append({
                    "mode": mode, "scale": scale, "notes": n, "note_text_mb": round(text_mb, 1),
                    "raw_gz_mb": round(gz_mb, 1), "peak_rss_mb": round(rss, 1),
                    "seconds": round(secs, 1),
                })
                print(f"x{scale:<3} {mode:10s} notes={n:6d} text={text_mb:7.1f} MB "
                      f"peak RSS={rss:7.1f} MB  {secs:6.1f} s")
            shutil.rmtree(raw)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "prepare_memory",
        "description": "peak RSS of the prepare subprocess (os.wait4 ru_maxrss) for N and 10N "
                       "MIMIC-IV-schema discharge notes; in_memory = Edin et al.'s approach",
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "words_per_note": args.words,
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
