"""Datasets: Edin et al.'s MIMIC-IV format and its preparation, the text pipeline, the
joint ICD-9/ICD-10 dataset and the synthetic GEM-linked corpus (names load on first use)."""

from jams_pyg.lazy import lazy_exports

_EXPORTS = {
    ".edin": ("SPLITS", "CodingDataset", "load_edin_dataset", "load_joint_datasets",
              "split_by_patient", "stratified_group_split"),
    ".joint": ("BucketBatchSampler", "JointBatch", "JointCodingDataset", "JointCollator",
               "JointItem", "collate_joint"),
    ".text": ("PAD_ID", "UNK_ID", "Vocabulary", "WordTokenizer", "clean_text",
              "load_hf_tokenizer", "train_hf_tokenizer", "train_word2vec", "word_tokenize"),
    ".synthetic": ("corpus_statistics", "generate_synthetic_corpus"),
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
