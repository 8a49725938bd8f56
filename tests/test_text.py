"""Text cleaning, word tokenizer and vocabulary, word2vec, Hugging Face tokenizer."""

import numpy as np
import pytest
import torch

from jams_pyg.data.text import (
    PAD_ID,
    UNK_ID,
    Vocabulary,
    WordTokenizer,
    clean_text,
    load_hf_tokenizer,
    pad_sequences,
    train_hf_tokenizer,
    train_word2vec,
)

TEXTS = [
    "chest pain and shortness of breath",
    "chest pain resolved",
    "atrial fibrillation with rapid ventricular response",
    "chest x ray clear pain free",
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # The final "." leaves a space after "2", so that number goes too.
        ("Pt. is a 65 y/o M w/ HTN, DM-2.", "pt is a y o m w htn dm"),
        ("BP 120/80 mmHg; HR 72", "bp mmhg hr 72"),
        ("12 mg of B12\n\tdaily", "12 mg of b12 daily"),
        # "2180 01" lie between spaces; the last "01" closes the text and stays.
        ("Name: ___ Unit No: ___ 2180-01-01", "name unit no 01"),
        ("  ###  ", ""),
    ],
)
def test_clean_text_matches_edin_rules(raw, expected):
    # Edin et al.: lowercase, [^A-Za-z0-9]+ -> " ", (\s\d+)+\s -> " ", collapse, strip.
    # A number at the very start or end has no space on that side and stays.
    assert clean_text(raw) == expected


def test_vocabulary_min_df_and_order():
    vocab = Vocabulary.build(TEXTS, min_df=2)
    # chest: 3 docs, pain: 3 docs; everything else in one document only.
    assert vocab.itos == ["<pad>", "<unk>", "chest", "pain"]
    assert vocab.document_frequency == {"chest": 3, "pain": 3}
    full = Vocabulary.build(TEXTS, min_df=1)
    words = {w for t in TEXTS for w in t.split()}
    assert set(full.words) == words and len(full) == len(words) + 2
    # Ordered by document frequency, then alphabetically.
    assert full.words[:4] == ["chest", "pain", "and", "atrial"]
    assert Vocabulary.build(TEXTS, min_df=1, max_size=3).words == ["chest", "pain", "and"]
    with pytest.raises(ValueError, match="min_df"):
        Vocabulary.build(TEXTS, min_df=0)
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["a", "a"])


def test_word_tokenizer_encode_truncate_pad(tmp_path):
    tok = WordTokenizer.fit(TEXTS, min_df=2, max_length=3)
    assert tok.encode("chest pain today") == [2, 3, UNK_ID]
    assert tok.encode("pain pain pain pain pain") == [3, 3, 3]  # truncated to max_length
    assert tok.encode("pain chest x", max_length=2) == [3, 2]
    assert tok.decode([2, 3, 0, 0]) == "chest pain"
    ids, mask = tok.batch_encode(["chest", "pain chest zebra", ""])
    assert ids.tolist() == [[2, 0, 0], [3, 2, 1], [0, 0, 0]]
    assert mask.tolist() == [[True, False, False], [True, True, True], [False] * 3]
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert WordTokenizer.fit(TEXTS, min_df=1).max_length == 4000

    path = tmp_path / "vocab.json"
    tok.save(path)
    again = WordTokenizer.load(path)
    assert again.vocab.itos == tok.vocab.itos and again.max_length == 3
    tok.vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").itos == tok.vocab.itos
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="bad.json"):
        Vocabulary.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="max_length"):
        WordTokenizer(tok.vocab, max_length=0)


def test_pad_sequences_with_custom_pad():
    ids, mask = pad_sequences([[5, 6], [7]], pad_id=9)
    assert ids.tolist() == [[5, 6], [7, 9]]
    assert mask.tolist() == [[True, True], [True, False]]
    # documents without tokens (Edin et al. keep empty notes) still get one masked position
    ids, mask = pad_sequences([[], []], pad_id=9)
    assert ids.tolist() == [[9], [9]] and mask.tolist() == [[False], [False]]
    assert pad_sequences([], pad_id=9)[0].shape == (0, 1)


def test_word2vec_is_aligned_with_the_vocabulary():
    from gensim.models import Word2Vec

    from jams_pyg.data.text import _stable_hash

    texts = TEXTS * 5
    vocab = Vocabulary.build(texts, min_df=1)
    vocab.stoi["zzz"] = len(vocab.itos)  # a word word2vec never saw
    vocab.itos.append("zzz")
    weights = train_word2vec(texts, vocab, dim=16, epochs=2, seed=3, normalize=False)
    assert weights.shape == (len(vocab), 16) and weights.dtype == np.float32
    assert not weights[PAD_ID].any()
    reference = Word2Vec([t.split() for t in texts], vector_size=16, window=5, min_count=1,
                         workers=1, epochs=2, seed=3, hashfxn=_stable_hash)
    for word in ("chest", "fibrillation", "free"):
        np.testing.assert_allclose(weights[vocab[word]], reference.wv[word], rtol=1e-6)
    # Deterministic for a seed; normalised rows have unit norm (pad stays 0).
    again = train_word2vec(texts, vocab, dim=16, epochs=2, seed=3, normalize=False)
    np.testing.assert_array_equal(weights, again)
    normed = train_word2vec(texts, vocab, dim=16, epochs=2, seed=3)
    np.testing.assert_allclose(np.linalg.norm(normed[1:], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        normed[vocab["chest"]], weights[vocab["chest"]] / np.linalg.norm(weights[vocab["chest"]]),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="non-empty"):
        train_word2vec([""], vocab)


@pytest.mark.parametrize("model", ["wordpiece", "bpe"])
def test_hf_tokenizer_round_trip(tmp_path, model):
    texts = TEXTS * 10 + ["hypertension hypertensive heart disease"] * 5
    tok = train_hf_tokenizer(texts, tmp_path / "tok", vocab_size=200, model=model,
                             model_max_length=8)
    assert tok.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [
        0, 1, 2, 3, 4]
    assert tok.pad_token_id == 0
    ids = tok.encode("chest pain resolved")
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == "chestpainresolved"
    loaded = load_hf_tokenizer(tmp_path / "tok")
    assert loaded.encode("atrial fibrillation, chest") == tok.encode("atrial fibrillation, chest")
    assert loaded.model_max_length == 8
    batch = loaded(["chest pain", "a b c d e f g h i j"], padding=True, truncation=True)
    assert len(batch["input_ids"][1]) == 8
    assert batch["input_ids"][0][-1] == 0 and batch["attention_mask"][0][-1] == 0
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_hf_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="unknown tokenizer model"):
        train_hf_tokenizer(texts, model="unigram")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "Expecting value"),
        (b"[]", "a JSON list, not an object"),
        (b"null", "a JSON NoneType, not an object"),
        (b"{}", "format/version mismatch"),
        (b'{"format": "jams_pyg.Vocabulary", "version": 1}', "'tokens' must be a list"),
        (b'{"format": "jams_pyg.Vocabulary", "version": 1, "tokens": 5}',
         "'tokens' must be a list"),
        (b'{"format": "jams_pyg.Vocabulary", "version": 1, "tokens": ["<pad>", "<unk>", 3]}',
         "token 2 must be a non-empty string"),
        (b'{"format": "jams_pyg.Vocabulary", "version": 1, "tokens": ["<pad>", "<unk>", "a"],'
         b' "max_length": 1.5}', "max_length must be a positive integer"),
        (b'{"format": "jams_pyg.Vocabulary", "version": 1, "tokens": ["<pad>", "<unk>", "a"],'
         b' "max_length": true}', "max_length must be a positive integer"),
        (b"\xff\xfe", "codec can't decode"),
    ],
)
def test_malformed_tokenizer_file_is_a_value_error_naming_it(tmp_path, content, message):
    """Issue #13: an emptied or malformed vocab.json gives ValueError naming the file
    (an AttributeError before), for the tokenizer and the bare vocabulary."""
    path = tmp_path / "vocab.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"vocab\.json: cannot read word tokenizer .*{message}"):
        WordTokenizer.load(path)
    if b"max_length" not in content:
        with pytest.raises(ValueError, match=r"vocab\.json: "):
            Vocabulary.load(path)
