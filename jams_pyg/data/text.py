"""Text pipeline: Edin et al.'s text cleaning, word-level tokenisation and
vocabulary, word2vec initialisation, and a locally trained Hugging Face
tokenizer for PLM-ICD.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

PathLike = str | os.PathLike[str]

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
PAD_ID = 0
UNK_ID = 1
DEFAULT_MAX_LENGTH = 4000
#: Edin et al. keep words found in at least 3 training documents
#: (``configs/text_encoder/word2vec.yaml``: ``min_document_count: 3``).
DEFAULT_MIN_DF = 3

_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")
_NUMBERS = re.compile(r"(\s\d+)+\s")
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    r"""Edin et al.'s MIMIC-IV text preprocessing.

    In order: lowercase; replace every run of characters outside
    ``[A-Za-z0-9]`` by one space; replace runs of whitespace-separated numbers
    (regex ``(\s\d+)+\s``) by one space; collapse white space; strip.

    As in Edin et al., a number is removed only between two spaces, so a
    number that opens or closes the text stays (``"12 mg"`` keeps ``12``)
    while ``"bp 120 80 mmhg"`` becomes ``"bp mmhg"``; digits inside words stay
    (``"b12"``).
    """
    text = _NON_ALNUM.sub(" ", text.lower())
    text = _NUMBERS.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def word_tokenize(text: str) -> list[str]:
    """Edin et al.'s word tokeniser: split the (preprocessed) text on white space."""
    return text.split()


class Vocabulary:
    """Word vocabulary with ``<pad>`` at index 0 and ``<unk>`` at index 1.

    Args:
        tokens (Sequence[str]): The words, after the two special tokens, in
            index order.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        self.itos: list[str] = [PAD_TOKEN, UNK_TOKEN]
        self.stoi: dict[str, int] = {PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID}
        #: Training document frequency of each word (set by :meth:`build`).
        self.document_frequency: dict[str, int] | None = None
        for token in tokens:
            if token in self.stoi:
                raise ValueError(f"duplicate vocabulary token {token!r}")
            self.stoi[token] = len(self.itos)
            self.itos.append(token)

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        min_df: int = DEFAULT_MIN_DF,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Words of ``texts`` found in at least ``min_df`` documents, ordered by
        document frequency (descending), then alphabetically.

        Args:
            texts: The (training) documents, already preprocessed.
            min_df (int): Minimum document frequency (Edin et al.: 3).
            max_size (int, optional): Keep at most this many words (the most
                frequent).
        """
        if min_df < 1:
            raise ValueError(f"min_df must be >= 1, got {min_df}")
        df: Counter[str] = Counter()
        for text in texts:
            df.update(set(word_tokenize(text)))
        words = sorted((w for w, n in df.items() if n >= min_df), key=lambda w: (-df[w], w))
        if max_size is not None:
            words = words[:max_size]
        vocab = cls(words)
        vocab.document_frequency = {w: df[w] for w in words}
        return vocab

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, UNK_ID)

    def lookup(self, tokens: Iterable[str]) -> list[int]:
        """Indices of ``tokens`` (``<unk>`` for unknown words)."""
        get = self.stoi.get
        return [get(t, UNK_ID) for t in tokens]

    @property
    def words(self) -> list[str]:
        """The words without the special tokens."""
        return self.itos[2:]

    def to_json(self) -> dict:
        return {"format": "jams_pyg.Vocabulary", "version": 1, "tokens": self.itos}

    @classmethod
    def from_json(cls, state: dict) -> Vocabulary:
        """Rebuild from :meth:`to_json`'s dict.

        Raises:
            ValueError: for anything else (not a JSON object, another format or
                version, ``tokens`` that is not a list of non-empty strings starting
                with ``<pad>``, ``<unk>``, a duplicated token).
        """
        if not isinstance(state, dict):
            raise ValueError(f"not a jams_pyg vocabulary (a JSON {type(state).__name__}, "
                             "not an object)")
        if state.get("format") != "jams_pyg.Vocabulary" or state.get("version") != 1:
            raise ValueError("not a jams_pyg vocabulary (format/version mismatch)")
        tokens = state.get("tokens")
        if not isinstance(tokens, list):
            raise ValueError("vocabulary 'tokens' must be a list of strings")
        for i, token in enumerate(tokens):
            if not isinstance(token, str) or not token:
                raise ValueError(f"vocabulary token {i} must be a non-empty string, "
                                 f"got {token!r}")
        if tokens[:2] != [PAD_TOKEN, UNK_TOKEN]:
            raise ValueError(f"vocabulary must start with {PAD_TOKEN}, {UNK_TOKEN}")
        return cls(tokens[2:])

    def save(self, path: PathLike) -> None:
        """Write the vocabulary as JSON, atomically (a symbolic link at ``path`` is
        replaced, never written through)."""
        from jams_pyg.atomic import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_json(), ensure_ascii=False))

    @classmethod
    def load(cls, path: PathLike) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"{path}: cannot read vocabulary ({err})") from err
        try:
            return cls.from_json(state)
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: {err}") from err

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)})"


class WordTokenizer:
    """Word-level tokeniser (Edin et al.): white-space split, vocabulary
    look-up, truncation to ``max_length`` tokens.

    Args:
        vocab (Vocabulary): The vocabulary (pad 0, unk 1).
        max_length (int): Maximum number of tokens (default 4,000).

    Example:
        >>> tok = WordTokenizer.fit(["chest pain", "chest tube"], min_df=1)
        >>> tok.encode("chest pain today")
        [2, 3, 1]
    """

    pad_token_id = PAD_ID
    unk_token_id = UNK_ID

    def __init__(self, vocab: Vocabulary, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.vocab = vocab
        self.max_length = max_length

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        min_df: int = DEFAULT_MIN_DF,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_size: int | None = None,
    ) -> WordTokenizer:
        """Build the vocabulary on (training) ``texts``; see :meth:`Vocabulary.build`."""
        return cls(Vocabulary.build(texts, min_df=min_df, max_size=max_size), max_length)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> list[str]:
        return word_tokenize(text)[: self.max_length]

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Token ids of ``text``, truncated to ``max_length`` (default: the
        tokenizer's)."""
        limit = self.max_length if max_length is None else max_length
        return self.vocab.lookup(word_tokenize(text)[:limit])

    def decode(self, ids: Iterable[int]) -> str:
        """Words of ``ids``, padding skipped."""
        return " ".join(self.vocab.itos[i] for i in ids if i != PAD_ID)

    def batch_encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Encode and right-pad: ``input_ids`` LongTensor ``[B, L]`` (pad 0)
        and ``attention_mask`` BoolTensor ``[B, L]`` (True = token), ``L`` the
        longest encoded text."""
        return pad_sequences([self.encode(t) for t in texts], PAD_ID)

    def save(self, path: PathLike) -> None:
        """Write vocabulary and ``max_length`` as JSON, atomically (a symbolic link at
        ``path`` is replaced, never written through)."""
        from jams_pyg.atomic import atomic_write_text

        state = self.vocab.to_json()
        state["max_length"] = self.max_length
        atomic_write_text(path, json.dumps(state, ensure_ascii=False))

    @classmethod
    def load(cls, path: PathLike) -> WordTokenizer:
        """Read a tokenizer written by :meth:`save`.

        Raises:
            ValueError: naming the file, for a file that is unreadable, not UTF-8,
                not JSON, or not a tokenizer (see :meth:`Vocabulary.from_json`;
                ``max_length`` must be a positive integer).
        """
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            vocab = Vocabulary.from_json(state)
            max_length = state.get("max_length", DEFAULT_MAX_LENGTH)
            if isinstance(max_length, bool) or not isinstance(max_length, int) \
                    or max_length < 1:
                raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
            return cls(vocab, max_length)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}: cannot read word tokenizer ({err})") from err

    def __repr__(self) -> str:
        return f"WordTokenizer(vocab_size={len(self.vocab)}, max_length={self.max_length})"


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> tuple[
    Tensor, Tensor
]:
    """Right-pad id lists to ``(input_ids [B, L] long, attention_mask [B, L] bool)``.

    ``L`` is at least 1: a batch of documents without tokens (Edin et al. keep notes whose
    text is empty after cleaning) still gives the encoders one (masked) position, and the
    label-attention heads give such a document no text evidence (its logits are the
    biases)."""
    length = max(1, max((len(s) for s in sequences), default=0))
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        if len(seq):
            input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = True
    return input_ids, mask


# ------------------------------------------------------------------- word2vec
def _stable_hash(text: str) -> int:
    # gensim seeds each word's initial vector with hashfxn(word + seed); the
    # built-in hash is randomised per process, so use a stable one.
    return zlib.crc32(text.encode("utf-8"))


def train_word2vec(
    texts: Iterable[str],
    vocab: Vocabulary,
    dim: int = 100,
    epochs: int = 5,
    window: int = 5,
    seed: int = 0,
    workers: int = 1,
    normalize: bool = True,
) -> np.ndarray:
    """Train gensim Word2Vec (CBOW) on ``texts`` and return an embedding matrix
    aligned with ``vocab``, as Edin et al. initialise their embeddings.

    Row 0 (``<pad>``) is zero; row 1 (``<unk>``) and words that word2vec did
    not see are drawn from a seeded standard normal. With ``normalize`` every
    non-pad row is scaled to unit L2 norm (Edin et al. call gensim's
    ``init_sims(replace=True)``). With ``workers=1`` the result is the same for
    the same inputs and seed.

    Args:
        texts: The training documents (preprocessed).
        vocab (Vocabulary): The vocabulary to align to.
        dim (int): Embedding size (Edin et al.: 100).
        epochs (int): Word2vec epochs (Edin et al.: 5).
        window (int): Context window.
        seed (int): Random seed.
        workers (int): Gensim worker threads (1 = deterministic).
        normalize (bool): Unit-normalise rows.

    Returns:
        ``float32`` array ``[len(vocab), dim]``.
    """
    try:
        from gensim.models import Word2Vec
    except ImportError as err:  # pragma: no cover - gensim is an optional extra
        raise ImportError("word2vec needs gensim: pip install 'jams_pyg[word2vec]'") from err
    sentences = [word_tokenize(t) for t in texts]
    if not any(sentences):
        raise ValueError("train_word2vec needs at least one non-empty text")
    model = Word2Vec(
        sentences,
        vector_size=dim,
        window=window,
        min_count=1,
        workers=workers,
        epochs=epochs,
        seed=seed,
        hashfxn=_stable_hash,
    )
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((len(vocab), dim)).astype(np.float32)
    key_to_index = model.wv.key_to_index
    vectors = model.wv.vectors
    for i, word in enumerate(vocab.itos):
        j = key_to_index.get(word)
        if j is not None and i > UNK_ID:
            weights[i] = vectors[j]
    if normalize:
        norms = np.linalg.norm(weights, axis=1, keepdims=True)
        weights = weights / np.maximum(norms, 1e-12)
    weights[PAD_ID] = 0.0
    return weights.astype(np.float32)


# ------------------------------------------------------- Hugging Face tokenizer
HF_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_hf_tokenizer(
    texts: Iterable[str],
    save_dir: PathLike | None = None,
    vocab_size: int = 8000,
    model: str = "wordpiece",
    min_frequency: int = 2,
    model_max_length: int = 512,
):
    """Train a small Hugging Face fast tokenizer on ``texts`` (nothing is
    downloaded), for PLM-ICD on data without a pretrained model.

    Special tokens ``[PAD]`` (id 0), ``[UNK]`` (1), ``[CLS]`` (2), ``[SEP]``
    (3), ``[MASK]`` (4); encodings are ``[CLS] ... [SEP]``. Texts are
    lowercased and split on white space and punctuation before the subword
    model.

    Args:
        texts: Training texts.
        save_dir (str or os.PathLike, optional): Write the tokenizer there
            (``save_pretrained``); :func:`load_hf_tokenizer` reads it back.
        vocab_size (int): Target vocabulary size.
        model (str): ``"wordpiece"`` or ``"bpe"``.
        min_frequency (int): Minimum pair/word frequency for the trainer.
        model_max_length (int): The tokenizer's ``model_max_length``.

    Returns:
        A :class:`transformers.PreTrainedTokenizerFast`.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    if model == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency,
            special_tokens=HF_SPECIAL_TOKENS,
        )
        tok.decoder = decoders.WordPiece()
    elif model == "bpe":
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency,
            special_tokens=HF_SPECIAL_TOKENS,
        )
        tok.decoder = decoders.BPEDecoder()
    else:
        raise ValueError(f"unknown tokenizer model {model!r}: expected 'wordpiece' or 'bpe'")
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        hf.save_pretrained(str(save_dir))
    return hf


def load_hf_tokenizer(directory: PathLike):
    """Load a tokenizer saved by :func:`train_hf_tokenizer` (or any local
    ``save_pretrained`` folder); never touches the network."""
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    if not (directory / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer.json in {directory}")
    return PreTrainedTokenizerFast.from_pretrained(str(directory), local_files_only=True)
