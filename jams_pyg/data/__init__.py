"""Datasets: Edin et al.'s MIMIC-IV format, the text pipeline, the joint
ICD-9/ICD-10 dataset and the synthetic GEM-linked corpus."""

from jams_pyg.data.edin import (
    SPLITS,
    CodingDataset,
    load_edin_dataset,
    load_joint_datasets,
    split_by_patient,
    stratified_group_split,
)
from jams_pyg.data.joint import (
    BucketBatchSampler,
    JointBatch,
    JointCodingDataset,
    JointCollator,
    JointItem,
    collate_joint,
)
from jams_pyg.data.text import (
    PAD_ID,
    UNK_ID,
    Vocabulary,
    WordTokenizer,
    clean_text,
    load_hf_tokenizer,
    train_hf_tokenizer,
    train_word2vec,
    word_tokenize,
)

__all__ = [
    "PAD_ID",
    "SPLITS",
    "UNK_ID",
    "BucketBatchSampler",
    "CodingDataset",
    "JointBatch",
    "JointCodingDataset",
    "JointCollator",
    "JointItem",
    "Vocabulary",
    "WordTokenizer",
    "clean_text",
    "collate_joint",
    "corpus_statistics",
    "generate_synthetic_corpus",
    "load_edin_dataset",
    "load_hf_tokenizer",
    "load_joint_datasets",
    "split_by_patient",
    "stratified_group_split",
    "train_hf_tokenizer",
    "train_word2vec",
    "word_tokenize",
]


def __getattr__(name: str):
    # Imported lazily so that ``python -m jams_pyg.data.synthetic`` does not
    # find the module already imported by the package.
    if name in ("generate_synthetic_corpus", "corpus_statistics"):
        from jams_pyg.data import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module 'jams_pyg.data' has no attribute {name!r}")
