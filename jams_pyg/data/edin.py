"""Datasets in Edin et al.'s (2023) MIMIC-IV format, the format the JAMS paper used.

A dataset directory holds, for ``system`` in ``{"icd9", "icd10"}``:

* ``mimiciv_{system}.feather``: one row per document with columns ``_id``
  (the admission, ``hadm_id``), ``subject_id`` (the patient), ``text``
  (preprocessed), ``{system}_diag`` and ``{system}_proc`` (lists of dotted
  codes), ``target`` (procedures + diagnoses), ``num_words`` and
  ``num_targets``; other columns are kept;
* ``mimiciv_{system}_split.feather``: columns ``_id`` and ``split`` in
  ``{"train", "val", "test"}``.

Edin et al.'s layout puts each system in a folder of its own
(``.../mimiciv_icd9/mimiciv_icd9.feather``); :func:`load_edin_dataset` takes
either that folder or its parent.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from jams_pyg.icd.codes import CodeKey, System, check_system, parse_code

PathLike = str | os.PathLike[str]

SPLITS: tuple[str, str, str] = ("train", "val", "test")
ID_COLUMN = "_id"
SUBJECT_ID_COLUMN = "subject_id"
TEXT_COLUMN = "text"
TARGET_COLUMN = "target"


def data_filename(system: System) -> str:
    """``mimiciv_{system}.feather``."""
    return f"mimiciv_{check_system(system)}.feather"


def split_filename(system: System) -> str:
    """``mimiciv_{system}_split.feather``."""
    return f"mimiciv_{check_system(system)}_split.feather"


def code_columns(system: System) -> tuple[str, str]:
    """The ``(diagnosis, procedure)`` code columns: ``{system}_diag``, ``{system}_proc``."""
    check_system(system)
    return f"{system}_diag", f"{system}_proc"


@dataclass
class CodingDataset:
    """One coding system's documents, split, with its label vocabulary.

    Attributes:
        system (str): ``"icd9"`` or ``"icd10"``.
        train, val, test (pandas.DataFrame): The documents of each split, with
            at least ``_id``, ``subject_id``, ``text`` and ``target`` (a
            ``list[str]`` of dotted codes per document), in file order.
        codes (list[str]): Every code of the dataset (all splits), sorted; the
            label index of a code is its position here, which is also its node
            index in ``GEMGraph.from_cms_2018(ds9.codes, ds10.codes)``.
        directory (pathlib.Path, optional): Where it was read from.
    """

    system: System
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    codes: list[str]
    directory: Path | None = None

    def split(self, name: str) -> pd.DataFrame:
        """The documents of split ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: expected one of {list(SPLITS)}")
        return getattr(self, name)

    @property
    def num_codes(self) -> int:
        return len(self.codes)

    @property
    def code_index(self) -> dict[str, int]:
        """``{code: label index}``."""
        return {code: i for i, code in enumerate(self.codes)}

    def code_frequencies(self, split: str = "train") -> np.ndarray:
        """Number of documents of ``split`` carrying each code, in label order
        (``int64 [num_codes]``)."""
        index = self.code_index
        counts = np.zeros(len(self.codes), dtype=np.int64)
        for targets in self.split(split)[TARGET_COLUMN]:
            for code in targets:
                counts[index[code]] += 1
        return counts

    def __len__(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)

    def __repr__(self) -> str:
        return (
            f"CodingDataset(system={self.system!r}, train={len(self.train)}, "
            f"val={len(self.val)}, test={len(self.test)}, codes={len(self.codes)})"
        )


def resolve_dataset_dir(directory: PathLike, system: System) -> Path:
    """The folder holding ``mimiciv_{system}.feather``: ``directory`` itself or
    its subfolder ``mimiciv_{system}``."""
    directory = Path(directory)
    name = data_filename(system)
    for candidate in (directory, directory / f"mimiciv_{system}"):
        if (candidate / name).is_file():
            return candidate
    if not directory.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {directory}")
    raise FileNotFoundError(
        f"{name} not found in {directory} or {directory / f'mimiciv_{system}'}"
    )


def _as_code_list(value: object, where: str) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        raise ValueError(f"{where}: expected a list of codes, got the string {value!r}")
    if isinstance(value, (list, tuple, np.ndarray)):
        codes = list(value)
    else:
        raise ValueError(f"{where}: expected a list of codes, got {type(value).__name__}")
    for code in codes:
        if not isinstance(code, str):
            raise ValueError(f"{where}: code {code!r} is not a string")
    return codes


def _kind(value: object) -> str:
    """What a value that should be a text is, for an error message."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "a missing value"
    return f"the {type(value).__name__} {value!r}"[:80]


def _read_feather(path: Path, required: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    try:
        frame = pd.read_feather(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise ValueError(f"{path}: not a readable feather file ({err})") from err
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; found {list(frame.columns)}"
        )
    return frame


def load_edin_dataset(directory: PathLike, system: System) -> CodingDataset:
    """Read one system of a MIMIC-IV dataset in Edin et al.'s format.

    Args:
        directory (str or os.PathLike): The folder holding
            ``mimiciv_{system}.feather`` and ``mimiciv_{system}_split.feather``,
            or its parent (holding ``mimiciv_{system}/``).
        system (str): ``"icd9"`` or ``"icd10"``.

    Returns:
        A :class:`CodingDataset`; ``target`` holds Python lists of the codes as
        written (dotted) and ``codes`` all codes of the dataset, sorted.

    Raises:
        FileNotFoundError: if a file is missing.
        ValueError: naming the file and the ``_id`` (and code) at fault, for a
            missing column, a duplicated ``_id``, an ``_id`` of the split file
            that is not in the data or the reverse, an unknown split name, a
            text that is not a string (an empty text is kept, as Edin et al.'s
            pipeline writes one for a note empty after cleaning), a document without
            codes, a code that is no ``system`` code (or a diagnosis in the procedure
            column and vice versa), a ``target`` that differs from the diagnosis and
            procedure columns, or two spellings of one code (``I10`` and
            ``I10.``).
    """
    system = check_system(system)
    folder = resolve_dataset_dir(directory, system)
    data_path, split_path = folder / data_filename(system), folder / split_filename(system)
    diag_col, proc_col = code_columns(system)
    data = _read_feather(
        data_path, [ID_COLUMN, SUBJECT_ID_COLUMN, TEXT_COLUMN, diag_col, proc_col, TARGET_COLUMN]
    )
    splits = _read_feather(split_path, [ID_COLUMN, "split"])

    ids = data[ID_COLUMN]
    if ids.isna().any():
        raise ValueError(f"{data_path}: missing _id in row {int(np.flatnonzero(ids.isna())[0])}")
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise ValueError(f"{data_path}: duplicated _id {duplicated.tolist()[0]!r}")
    split_dup = splits[ID_COLUMN][splits[ID_COLUMN].duplicated()]
    if len(split_dup):
        raise ValueError(f"{split_path}: _id {split_dup.tolist()[0]!r} has more than one split")
    bad_split = splits.loc[~splits["split"].isin(SPLITS)]
    if len(bad_split):
        name, bad_id = bad_split["split"].tolist()[0], bad_split[ID_COLUMN].tolist()[0]
        raise ValueError(
            f"{split_path}: unknown split {name!r} for _id {bad_id!r}; "
            f"expected one of {list(SPLITS)}"
        )
    data_ids, split_ids = set(ids.tolist()), set(splits[ID_COLUMN].tolist())
    not_in_data = split_ids - data_ids
    if not_in_data:
        first = sorted(not_in_data, key=str)[0]
        raise ValueError(
            f"{split_path}: _id {first!r} is not in {data_path.name} "
            f"({len(not_in_data)} such _id)"
        )
    not_in_split = data_ids - split_ids
    if not_in_split:
        first = sorted(not_in_split, key=str)[0]
        raise ValueError(
            f"{data_path}: _id {first!r} has no split in {split_path.name} "
            f"({len(not_in_split)} such _id)"
        )

    texts = data[TEXT_COLUMN].tolist()
    targets: list[list[str]] = []
    seen: dict[str, CodeKey] = {}
    for row_id, text, diag, proc, target in zip(
        ids.tolist(), texts, data[diag_col].tolist(), data[proc_col].tolist(),
        data[TARGET_COLUMN].tolist(), strict=True,
    ):
        where = f"{data_path}, _id {row_id!r}"
        if not isinstance(text, str):
            raise ValueError(f"{where}, column {TEXT_COLUMN}: {_kind(text)}, not text "
                             f"(the column's type is {data[TEXT_COLUMN].dtype})")
        diag_codes = _as_code_list(diag, f"{where}, column {diag_col}")
        proc_codes = _as_code_list(proc, f"{where}, column {proc_col}")
        codes = _as_code_list(target, f"{where}, column {TARGET_COLUMN}")
        if not codes:
            raise ValueError(f"{where}: document has no codes (empty {TARGET_COLUMN})")
        for column, column_codes, kind in (
            (diag_col, diag_codes, "dx"),
            (proc_col, proc_codes, "proc"),
            (TARGET_COLUMN, codes, None),
        ):
            for code in column_codes:
                if code not in seen:
                    # Parsed without a kind: the vocabulary must be readable as
                    # GEMGraph reads it (the dot tells diagnoses from procedures).
                    try:
                        seen[code] = parse_code(code, system)
                    except ValueError as err:
                        raise ValueError(
                            f"{where}, column {column}: code {code!r}: {err}"
                        ) from None
                if kind is not None and seen[code][0] != kind:
                    raise ValueError(
                        f"{where}, column {column}: code {code!r} is a {seen[code][0]} "
                        f"code, not {kind}"
                    )
        if sorted(codes) != sorted(diag_codes + proc_codes):
            raise ValueError(
                f"{where}: {TARGET_COLUMN} {codes} is not {proc_col} + {diag_col} "
                f"({proc_codes + diag_codes})"
            )
        if len(set(codes)) != len(codes):
            dup = next(c for c, n in Counter(codes).items() if n > 1)
            raise ValueError(f"{where}: code {dup!r} is listed twice")
        targets.append(codes)

    by_key: dict[CodeKey, str] = {}
    for code in sorted(seen):
        key = seen[code]
        if key in by_key:
            raise ValueError(
                f"{data_path}: {by_key[key]!r} and {code!r} are two spellings of one "
                f"{system} code; write every code in Edin et al.'s dotted form"
            )
        by_key[key] = code

    frame = data.copy()
    frame[TARGET_COLUMN] = targets
    frame[diag_col] = [_as_code_list(v, "") for v in data[diag_col].tolist()]
    frame[proc_col] = [_as_code_list(v, "") for v in data[proc_col].tolist()]
    if "num_words" not in frame.columns:
        frame["num_words"] = [t.count(" ") + 1 for t in texts]
    if "num_targets" not in frame.columns:
        frame["num_targets"] = [len(t) for t in targets]
    split_of = dict(zip(splits[ID_COLUMN].tolist(), splits["split"].tolist(), strict=True))
    assigned = frame[ID_COLUMN].map(split_of)
    parts = {
        name: frame.loc[assigned == name].reset_index(drop=True) for name in SPLITS
    }
    return CodingDataset(
        system=system,
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        codes=sorted(seen),
        directory=folder,
    )


#: Why a run needs documents of every system in each split.
_SPLIT_NEEDS = {
    "train": "its head would be trained on nothing, and its metrics and model would come "
             "from an untrained head",
    "val": "early stopping and threshold tuning need validation documents of every system",
    "test": "it would have no test metrics",
}


def check_every_split(dataset: CodingDataset) -> None:
    """Refuse a dataset one of whose splits (train, val, test) holds none of its
    documents: a training run needs each (checked before any training, so no run starts
    that would fail or report a head that saw no data).

    Raises:
        ValueError: naming the split file (or the system) and the empty split.
    """
    for split in SPLITS:
        if len(dataset.split(split)):
            continue
        where = (f"{dataset.directory / split_filename(dataset.system)}"
                 if dataset.directory is not None else f"the {dataset.system} dataset")
        raise ValueError(
            f"{where}: no {dataset.system} document is in the {split} split "
            f"({len(dataset)} documents: train {len(dataset.train)}, val "
            f"{len(dataset.val)}, test {len(dataset.test)}); {_SPLIT_NEEDS[split]}"
        )


def load_joint_datasets(directory: PathLike) -> tuple[CodingDataset, CodingDataset]:
    """Both systems of a directory: ``(load_edin_dataset(d, "icd9"),
    load_edin_dataset(d, "icd10"))``."""
    return load_edin_dataset(directory, "icd9"), load_edin_dataset(directory, "icd10")


# --------------------------------------------------------------------- splits
def stratified_group_split(
    groups: Sequence[object],
    labels: Sequence[Iterable[str]],
    ratios: Sequence[float] = (0.75, 0.10, 0.15),
    seed: int = 0,
) -> list[int]:
    """Split groups (patients) into folds, stratified on their multi-labels.

    Iterative stratification (Sechidis et al., 2011), the method Edin et al.
    used for their MIMIC-IV splits, applied to patients: a patient's label set
    is the union of the codes of their documents. Labels are visited from the
    rarest (fewest patients) on; each patient not yet placed who carries the
    label goes to the fold that most lacks that label (ties: the fold that most
    lacks patients, then the seeded random order). Patients without labels are
    spread to fill the folds' patient quotas. The label order is fixed once by
    the initial counts (Sechidis re-sorts after every step), which keeps it
    ``O(total labels · log)`` for the ~100k patients of MIMIC-IV.

    Args:
        groups: One group id per group (e.g. the unique subject ids).
        labels: For each group, its labels.
        ratios: The folds' shares of the groups (normalised).
        seed (int): Seed of the tie-breaking order.

    Returns:
        The fold index (``0 .. len(ratios) - 1``) of each group, in input order.
    """
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} groups but {len(labels)} label sets")
    ratios_arr = np.asarray(ratios, dtype=np.float64)
    if (ratios_arr <= 0).any():
        raise ValueError(f"ratios must be positive, got {list(ratios)}")
    ratios_arr = ratios_arr / ratios_arr.sum()
    n = len(groups)
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    rank = {g: r for r, g in enumerate(order)}  # random tie-break rank of each group

    label_sets = [set(s) for s in labels]
    members: dict[str, list[int]] = {}
    for g in order:
        for label in label_sets[g]:
            members.setdefault(label, []).append(g)
    # Desired number of each label per fold, and of groups per fold.
    want_label = {lab: ratios_arr * len(gs) for lab, gs in members.items()}
    want_groups = ratios_arr * n
    fold = [-1] * n
    for label in sorted(members, key=lambda lab: (len(members[lab]), lab)):
        for g in members[label]:
            if fold[g] >= 0:
                continue
            need = want_label[label]
            best = max(
                range(len(ratios_arr)),
                key=lambda f: (need[f], want_groups[f], -f),
            )
            fold[g] = best
            want_groups[best] -= 1
            for lab in label_sets[g]:
                want_label[lab][best] -= 1
    for g in sorted(range(n), key=lambda g: rank[g]):
        if fold[g] < 0:
            best = int(np.argmax(want_groups))
            fold[g] = best
            want_groups[best] -= 1
    return fold


def split_by_patient(
    ids: Sequence[object],
    subject_ids: Sequence[object],
    targets: Sequence[Iterable[str]],
    ratios: Sequence[float] = (0.75, 0.10, 0.15),
    seed: int = 0,
) -> pd.DataFrame:
    """Edin-style split file: every document of a patient lands in one split,
    stratified on the patients' codes (:func:`stratified_group_split`).

    Returns:
        A DataFrame with columns ``_id`` and ``split`` (``train``/``val``/``test``),
        in the input order.
    """
    if not len(ids) == len(subject_ids) == len(targets):
        raise ValueError("ids, subject_ids and targets must have the same length")
    patients: dict[object, set[str]] = {}
    for subject, codes in zip(subject_ids, targets, strict=True):
        patients.setdefault(subject, set()).update(codes)
    keys = list(patients)
    folds = stratified_group_split(keys, [patients[k] for k in keys], ratios, seed)
    fold_of = dict(zip(keys, folds, strict=True))
    names = list(SPLITS) if len(ratios) == 3 else [str(i) for i in range(len(ratios))]
    return pd.DataFrame(
        {ID_COLUMN: list(ids), "split": [names[fold_of[s]] for s in subject_ids]}
    )
