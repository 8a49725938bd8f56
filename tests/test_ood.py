"""The out-of-distribution signal of ``predict`` (issue #22): calibrated on validation notes
when a bundle is saved, it withholds the codes of notes the model cannot read, reports
codes that fire on most notes, and leaves probabilities and evaluation untouched."""

import json
import math
import shutil
import warnings

import numpy as np
import pytest
import torch

from jams_pyg.cli import main
from jams_pyg.data import WordTokenizer, load_edin_dataset, word_tokenize
from jams_pyg.data.synthetic import generate_synthetic_corpus
from jams_pyg.inference.bundle import BundleError, config_checksum, load_bundle, save_bundle
from jams_pyg.inference.ood import OOD_QUANTILE, calibrate, order_statistic
from jams_pyg.inference.predictor import JAMSPredictor
from jams_pyg.models import ModelConfig, build_model

MAX_LEN = 64
GIBBERISH = "qwzx plorb frimble zzzt vonk"
SYSTEMS = ("icd9", "icd10")

pytestmark = pytest.mark.usefixtures("one_thread")


def unknown_share(vocab, text):
    """Independent of the code under test: the words of the first MAX_LEN the vocabulary
    lacks, over the words read."""
    words = word_tokenize(text)[:MAX_LEN]
    return sum(w not in vocab for w in words) / len(words)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ood")
    generate_synthetic_corpus(root / "data", seed=0, size="small")
    ds = {s: load_edin_dataset(root / "data", s) for s in SYSTEMS}
    codes = {s: list(d.codes) for s, d in ds.items()}
    tok = WordTokenizer.fit([t for d in ds.values() for t in d.train.text], min_df=3,
                            max_length=MAX_LEN)
    torch.manual_seed(0)
    config = ModelConfig.for_backbone(
        "caml", vocab_size=tok.vocab_size, embedding_dim=8, num_filters=8, kernel_size=3,
        use_mat=False)
    model = build_model(config, None, {s: len(c) for s, c in codes.items()}).eval()
    with torch.no_grad():  # away from the initialisation: codes of differing probability
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    val = {s: list(d.val.text) for s, d in ds.items()}
    plain = JAMSPredictor.from_model(model, tok, codes, {"icd9": 0.5, "icd10": 0.5},
                                     None, MAX_LEN)
    probs = {s: plain.predict_proba(val[s], s, clean=False)[s] for s in SYSTEMS}
    # thresholds that leave some codes above and most below on the validation notes
    thresholds = {s: float(np.quantile(probs[s], 0.9)) for s in SYSTEMS}
    texts = val["icd9"] + val["icd10"]
    ood = calibrate(tok, texts, probs, thresholds, MAX_LEN)
    calibrated = save_bundle(root / "calibrated", model, config, tok, codes, thresholds, None,
                             MAX_LEN, ood=ood)
    old = save_bundle(root / "old", model, config, tok, codes, thresholds, None, MAX_LEN)
    return {"root": root, "tok": tok, "codes": codes, "val": val, "texts": texts,
            "probs": probs, "thresholds": thresholds, "ood": ood, "calibrated": calibrated,
            "old": old, "model": model, "config": config}


@pytest.fixture(scope="module")
def predictor(setup):
    return JAMSPredictor.load(setup["calibrated"], device="cpu")


def test_threshold_is_the_quantile_of_the_validation_notes(setup):
    values = [unknown_share(setup["tok"].vocab, t) for t in setup["texts"]]
    assert max(values) > 0  # the corpus has words below min_df: a real quantile
    expected = float(np.quantile(values, OOD_QUANTILE, method="inverted_cdf"))
    ood = setup["ood"]
    assert ood["statistic"] == "unknown_words"
    assert ood["threshold"] == pytest.approx(expected, abs=1e-12)
    assert ood["num_notes"] == len(setup["texts"])
    assert ood["quantile"] == OOD_QUANTILE
    # at most 1 % of the validation notes lie above it
    assert sum(v > ood["threshold"] for v in values) <= 0.01 * len(values)
    for s in SYSTEMS:  # per code: the share of its system's validation notes it fires on
        p = setup["probs"][s]
        expected_rate = [float(np.mean(p[:, j] > setup["thresholds"][s]))
                         for j in range(p.shape[1])]
        np.testing.assert_allclose(ood["fire_rate"][s], expected_rate, atol=1e-6)


def test_order_statistic_is_a_value_that_occurred():
    # hand-counted: the ceil(q * n)-th smallest value
    tenths = [i / 10 for i in range(10, 0, -1)]  # 1.0, 0.9, ..., 0.1
    assert [order_statistic(tenths, q) for q in (0.1, 0.5, 0.9, 0.95, 0.99, 1.0)] == [
        0.1, 0.5, 0.9, 1.0, 1.0, 1.0]
    hundred = [(37 * i % 100) / 100 for i in range(100)]  # 0.00 .. 0.99, shuffled
    assert order_statistic(hundred, 0.99) == 0.98  # the 99th smallest, not interpolated
    assert order_statistic([0.3], 0.99) == 0.3
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="quantile"):
            order_statistic(tenths, bad)
    with pytest.raises(ValueError, match="no values"):
        order_statistic([], 0.99)


def test_bundle_stores_the_calibration_under_its_checksum(setup):
    config = json.loads((setup["calibrated"] / "config.json").read_text())
    assert config["ood"] == setup["ood"]
    assert config["config_sha256"] == config_checksum(config)
    assert load_bundle(setup["calibrated"]).ood == setup["ood"]


def test_gibberish_is_flagged_and_its_codes_withheld(setup, predictor):
    # without the signal the gibberish line does get codes above the threshold
    [off] = predictor.predict([GIBBERISH], ood="off")
    assert off.ood is None and any(off.codes[s] for s in SYSTEMS)
    with pytest.warns(UserWarning, match="1 of 1 notes .* are out of distribution"):
        [note] = predictor.predict([GIBBERISH])
    assert note.unknown_words == 1.0
    assert note.ood["out_of_distribution"] and note.ood["withheld"] and note.withheld
    assert note.ood["value"] == 1.0 and note.ood["threshold"] == setup["ood"]["threshold"]
    assert "withheld" in note.ood["reason"]
    assert note.codes == {"icd9": [], "icd10": []}
    assert note.to_dict()["ood"]["withheld"] is True
    # --top-k shows the ranking, none predicted
    with pytest.warns(UserWarning):
        [ranked] = predictor.predict([GIBBERISH], top_k=4)
    probs = predictor.predict_proba([GIBBERISH])
    for s in SYSTEMS:
        assert len(ranked.codes[s]) == 4 and not any(c.predicted for c in ranked.codes[s])
        top = sorted(probs[s][0].tolist(), reverse=True)[:4]
        assert [c.probability for c in ranked.codes[s]] == pytest.approx(top, abs=1e-6)
    # mark: flagged, codes kept
    with pytest.warns(UserWarning, match="kept, marked"):
        [marked] = predictor.predict([GIBBERISH], ood="mark")
    assert marked.ood["out_of_distribution"] and not marked.ood["withheld"]
    assert marked.codes.keys() == off.codes.keys()
    for s in SYSTEMS:
        assert [c.code for c in marked.codes[s]] == [c.code for c in off.codes[s]]


def test_validation_notes_are_not_flagged(setup, predictor):
    vocab = setup["tok"].vocab
    familiar = [t for t in setup["val"]["icd9"] if unknown_share(vocab, t) == 0][:5]
    assert len(familiar) == 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        notes = predictor.predict(familiar, system="icd9")
    assert not any("out of distribution" in str(w.message) for w in caught)
    off = predictor.predict(familiar, system="icd9", ood="off")
    probs = predictor.predict_proba(familiar, "icd9")["icd9"]
    for i, (note, plain) in enumerate(zip(notes, off, strict=True)):
        assert note.ood["out_of_distribution"] is False and note.ood["withheld"] is False
        assert note.ood["value"] == 0.0 and note.ood["reason"] is None
        # the codes above the threshold, exactly as without the signal
        expected = sorted(np.flatnonzero(probs[i] > setup["thresholds"]["icd9"]).tolist())
        got = sorted(setup["codes"]["icd9"].index(c) for c in note.predicted_codes("icd9"))
        assert got == expected
        assert note.predicted_codes("icd9") == plain.predicted_codes("icd9")


def test_codes_firing_on_most_notes_are_reported(setup, predictor):
    rates = setup["ood"]["fire_rate"]["icd9"]
    vocab = setup["tok"].vocab
    notes = [t for t in setup["val"]["icd9"] if unknown_share(vocab, t) == 0][:4]
    result = predictor.predict(notes, system="icd9", top_k=len(setup["codes"]["icd9"]))
    probs = predictor.predict_proba(notes, "icd9")["icd9"]
    above = (probs > setup["thresholds"]["icd9"]).sum(0)
    for note in result:
        for c in note.codes["icd9"]:
            j = setup["codes"]["icd9"].index(c.code)
            assert c.fires_on_most_notes == (rates[j] > 0.5)
            assert c.fires_on_most_call_notes == (above[j] > len(notes) / 2)
    assert any(c.fires_on_most_call_notes for c in result[0].codes["icd9"])
    assert not all(c.fires_on_most_call_notes for c in result[0].codes["icd9"])
    # two notes are too few for the call rule; off reports nothing
    [a, _] = predictor.predict(notes[:2], system="icd9", top_k=3)
    assert all(c.fires_on_most_call_notes is None for c in a.codes["icd9"])
    assert "fires_on_most_call_notes" not in a.to_dict()["codes"]["icd9"][0]
    [b, *_] = predictor.predict(notes, system="icd9", top_k=3, ood="off")
    assert all(c.fires_on_most_notes is None and c.fires_on_most_call_notes is None
               for c in b.codes["icd9"])


def test_uncalibrated_bundle_warns_of_unread_notes_beside_frequent_codes(setup):
    # The two warnings are independent facts: a code above threshold on most notes of the
    # call does not silence the unknown-words warning of a bundle without calibration.
    vocab = setup["tok"].vocab
    notes = [t for t in setup["val"]["icd9"] if unknown_share(vocab, t) == 0][:4]
    old = JAMSPredictor.load(setup["old"], device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = old.predict([*notes, GIBBERISH], system="icd9")
    messages = [str(w.message) for w in caught]
    assert any(c.fires_on_most_call_notes for r in result for c in r.codes["icd9"])
    assert any("above their threshold on more than half" in m for m in messages)
    assert any("1 of 5 notes (first: index 4) have more than 50%" in m for m in messages)


def test_bundle_saved_before_the_signal_loads_and_says_so(setup, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(setup["old"], old)
    config = json.loads((old / "config.json").read_text())
    del config["ood"]  # as written before the signal existed
    config["config_sha256"] = config_checksum(config)
    (old / "config.json").write_text(json.dumps(config))
    bundle = load_bundle(old)
    assert bundle.ood is None
    [note] = JAMSPredictor(bundle).predict(["renal failure acute"])
    assert note.ood is None and note.to_dict()["ood"] is None
    notes = tmp_path / "notes.txt"
    notes.write_text(GIBBERISH + "\n")
    assert main(["predict", str(notes), "--model", str(old)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["ood"] is None
    assert "warning: the bundle has no out-of-distribution calibration" in err


def test_malformed_calibration_is_refused(setup, tmp_path):
    for change in (lambda o: o.update(threshold=2.0), lambda o: o.update(fire_rate={}),
                   lambda o: o.update(statistic="energy"), lambda o: o.pop("num_notes")):
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(setup["calibrated"], copy)
        config = json.loads((copy / "config.json").read_text())
        change(config["ood"])
        config["config_sha256"] = config_checksum(config)
        (copy / "config.json").write_text(json.dumps(config))
        with pytest.raises(BundleError, match="out-of-distribution calibration"):
            load_bundle(copy)


def test_probabilities_and_evaluation_are_untouched(setup, predictor, tmp_path):
    old = JAMSPredictor.load(setup["old"])
    notes = [GIBBERISH, *setup["val"]["icd10"][:3]]
    a, b = predictor.predict_proba(notes), old.predict_proba(notes)
    for s in SYSTEMS:
        np.testing.assert_array_equal(a[s], b[s])
    results = []
    for name in ("calibrated", "old"):
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", "--model", str(setup[name]), "--data",
                     str(setup["root"] / "data"), "--split", "val", "--output", str(out)]) == 0
        results.append(json.loads(out.read_text()))
    assert results[0].pop("model") != results[1].pop("model")  # only the folder differs
    assert results[0] == results[1]
    assert results[0]["systems"]["icd9"]["threshold"] == setup["thresholds"]["icd9"]


def test_cli_withholds_with_one_warning_line_and_exit_0(setup, tmp_path, capsys):
    notes = tmp_path / "notes.jsonl"
    familiar = next(t for t in setup["val"]["icd9"] if unknown_share(setup["tok"].vocab, t) == 0)
    notes.write_text(json.dumps({"id": "g", "text": GIBBERISH}) + "\n"
                     + json.dumps({"id": "v", "text": familiar}) + "\n")
    assert main(["predict", str(notes), "--model", str(setup["calibrated"])]) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert records[0]["ood"]["withheld"] and records[0]["codes"] == {"icd9": [], "icd10": []}
    assert records[1]["ood"]["withheld"] is False
    assert err.count("\n") == 1
    assert err.startswith("jams-pyg predict: warning: 1 of 2 notes (first: index 0) are out "
                          "of distribution")
    assert "UserWarning" not in err
    assert main(["predict", str(notes), "--model", str(setup["calibrated"]),
                 "--ood", "off"]) == 0
    out, _ = capsys.readouterr()
    first = json.loads(out.splitlines()[0])
    assert first["ood"] is None and any(first["codes"][s] for s in SYSTEMS)


def test_training_saves_a_calibrated_bundle(setup, tmp_path):
    from jams_pyg.cli.train import save_run_bundle
    from jams_pyg.train.experiment import TrainedModel

    trained = TrainedModel(tmp_path / "model", setup["model"], setup["config"], setup["tok"],
                           setup["codes"], setup["thresholds"], None, MAX_LEN, {},
                           validation_texts=setup["texts"], validation_probs=setup["probs"])
    path = save_run_bundle(trained)
    assert load_bundle(path).ood == setup["ood"]
    assert math.isfinite(setup["ood"]["threshold"])
