"""JAMSPredictor and ``python -m jams_pyg predict`` on a model trained for a few steps on
the synthetic corpus, checked against the in-memory model's own forward pass."""

import gzip
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from jams_pyg.cli import main
from jams_pyg.data import JointCodingDataset, WordTokenizer, clean_text, load_edin_dataset
from jams_pyg.data.synthetic import generate_synthetic_corpus
from jams_pyg.data.text import pad_sequences
from jams_pyg.graph.gem_graph import GEMGraph
from jams_pyg.icd.titles import code_title
from jams_pyg.inference.bundle import save_bundle
from jams_pyg.inference.notes import read_notes
from jams_pyg.inference.predictor import JAMSPredictor
from jams_pyg.models import ModelConfig, build_model, jams_loss

MAX_LEN = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    generate_synthetic_corpus(root / "data", seed=0, size="small")
    ds = {s: load_edin_dataset(root / "data", s) for s in ("icd9", "icd10")}
    codes = {s: list(d.codes) for s, d in ds.items()}
    tok = WordTokenizer.fit([t for d in ds.values() for t in d.train.text], min_df=2,
                            max_length=MAX_LEN)
    graph = GEMGraph.from_cms_2018(codes["icd9"], codes["icd10"])
    torch.manual_seed(0)
    config = ModelConfig.for_backbone(
        "laat", vocab_size=tok.vocab_size, embedding_dim=12, rnn_hidden_size=8,
        projection_size=8, embed_dropout=0.0, rnn_dropout=0.0, mat_heads=2)
    model = build_model(config, graph, {s: len(c) for s, c in codes.items()})
    train = JointCodingDataset(ds, "train", tok, max_length=MAX_LEN)
    collate = train.collator()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    n9 = len(ds["icd9"].train)
    for step in range(3):  # a few steps, both systems in every batch
        batch = collate([train[step * 8 + i] for i in range(8)]
                        + [train[n9 + step * 8 + i] for i in range(8)])
        loss = jams_loss(model(batch.input_ids, batch.attention_mask, batch.system),
                         batch.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    # raw-looking notes: upper case and punctuation, which the predictor must clean
    notes = [t.upper().replace(" ", ", ", 3) + "!" for t in ds["icd9"].test.text[:4]]
    notes += list(ds["icd10"].test.text[:4])
    in_memory = JAMSPredictor.from_model(model, tok, codes, {"icd9": 0.5, "icd10": 0.5},
                                         graph, MAX_LEN)
    probs = in_memory.predict_proba(notes)
    # thresholds that leave a few codes above and a few below for every note
    thresholds = {s: float(np.quantile(p, 0.97)) for s, p in probs.items()}
    bundle = save_bundle(root / "model", model, config, tok, codes, thresholds, graph, MAX_LEN,
                         extra={"run": "test"})

    # a model without MAT (GEM graph kept for evidence)
    torch.manual_seed(1)
    plain_config = ModelConfig.for_backbone(
        "caml", vocab_size=tok.vocab_size, embedding_dim=8, num_filters=8, kernel_size=3,
        use_mat=False)
    plain = build_model(plain_config, None, {s: len(c) for s, c in codes.items()}).eval()
    plain_bundle = save_bundle(root / "plain", plain, plain_config, tok, codes,
                               {"icd9": 0.5, "icd10": 0.5}, graph, MAX_LEN)
    return {"model": model, "tok": tok, "codes": codes, "graph": graph, "bundle": bundle,
            "thresholds": thresholds, "notes": notes, "plain": plain,
            "plain_bundle": plain_bundle, "root": root, "in_memory": in_memory}


@pytest.fixture(scope="module")
def predictor(trained):
    return JAMSPredictor.load(trained["bundle"], device="cpu")


def reference_probs(model, tok, notes, system):
    """The in-memory model's own forward pass on the cleaned, tokenised notes."""
    ids, mask = pad_sequences([tok.encode(clean_text(n), max_length=MAX_LEN) for n in notes])
    with torch.no_grad():
        logits = model(ids, mask, [system] * len(notes))[system]
    return torch.sigmoid(logits).numpy()


def test_reload_gives_identical_probabilities(trained, predictor):
    notes = trained["notes"]
    loaded = predictor.predict_proba(notes, batch_size=3)
    before = trained["in_memory"].predict_proba(notes, batch_size=3)
    for s in ("icd9", "icd10"):
        np.testing.assert_array_equal(loaded[s], before[s])  # bit for bit after reload
        ref = reference_probs(trained["model"], trained["tok"], notes, s)
        np.testing.assert_allclose(loaded[s], ref, rtol=0, atol=2e-6)
    assert predictor.thresholds == trained["thresholds"]
    assert predictor.bundle.extra == {"run": "test"}
    # predict() reports the same probabilities, whatever the batch size
    result = predictor.predict(notes, top_k=5, batch_size=8)
    for i, note in enumerate(result):
        for s in ("icd9", "icd10"):
            for c in note.codes[s]:
                j = trained["codes"][s].index(c.code)
                assert c.probability == pytest.approx(float(loaded[s][i, j]), abs=2e-6)


def test_mat_runs_once_per_call_and_the_logits_are_the_models(trained):
    """The predictor refines the code tables once per call (not per batch) and scores with
    the model's own forward: a batch gives model.forward's numbers bit for bit."""
    model, tok, notes = trained["model"], trained["tok"], trained["notes"]
    predictor = JAMSPredictor.from_model(model, tok, trained["codes"], trained["thresholds"],
                                         trained["graph"], MAX_LEN)
    calls = []
    mat_forward = model.mat.forward

    def counting(*args, **kwargs):
        calls.append(kwargs.get("return_attention_weights", False))
        return mat_forward(*args, **kwargs)

    model.mat.forward = counting  # nn.Module.__call__ finds the instance attribute
    try:
        predictor.predict(notes, top_k=3, evidence=True, batch_size=3)  # three batches
        assert calls == [True]  # one MAT pass, with its attention for the evidence
        calls.clear()
        probs = predictor.predict_proba(notes, batch_size=len(notes))
        assert calls == [False]
    finally:
        del model.mat.forward
    # the predictor's one batch: the notes sorted by length, padded to the longest
    ids = [tok.encode(clean_text(n), max_length=MAX_LEN) for n in notes]
    order = sorted(range(len(notes)), key=lambda i: -len(ids[i]))
    batch, mask = pad_sequences([ids[i] for i in order])
    for s in ("icd9", "icd10"):
        with torch.no_grad():
            logits = model(batch, mask, s)[s]
        np.testing.assert_array_equal(probs[s][order], torch.sigmoid(logits).numpy())


def test_raw_text_is_cleaned_before_tokenising(predictor):
    raw = "Patient DIAGNOSED with: Hemorrhoids; third-degree (internal)."
    cleaned = clean_text(raw)
    a = predictor.predict_proba([raw])
    b = predictor.predict_proba([cleaned])
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])


def test_threshold_and_top_k_decisions_match_probabilities(trained, predictor):
    notes = trained["notes"]
    probs = predictor.predict_proba(notes)
    above = predictor.predict(notes, system="both")
    top = predictor.predict(notes, system="icd10", top_k=7)
    saw_above = saw_below = False
    for i in range(len(notes)):
        for s in ("icd9", "icd10"):
            p, thr, codes = probs[s][i], trained["thresholds"][s], trained["codes"][s]
            expected = [codes[j] for j in np.argsort(-p, kind="stable") if p[j] > thr]
            assert [c.code for c in above[i].codes[s]] == expected
            assert all(c.predicted for c in above[i].codes[s])
            saw_above |= bool(expected)
        assert set(top[i].codes) == {"icd10"}
        p, thr = probs["icd10"][i], trained["thresholds"]["icd10"]
        listed = top[i].codes["icd10"]
        assert [c.code for c in listed] == [trained["codes"]["icd10"][j]
                                            for j in np.argsort(-p, kind="stable")[:7]]
        assert [c.predicted for c in listed] == [c.probability > thr for c in listed]
        saw_below |= not all(c.predicted for c in listed)
        assert top[i].thresholds == {"icd10": thr}
        for c in listed:
            assert c.title == code_title(c.code, "icd10", default="")
            assert c.tokens is None and c.linked is None
    assert saw_above and saw_below


def test_evidence_tokens_are_the_heads_top_attended_words(trained, predictor):
    model, tok, notes = trained["model"], trained["tok"], trained["notes"]
    result = predictor.predict(notes, top_k=3, evidence=True)
    for i, note in enumerate(notes):
        words = clean_text(note).split()
        ids, mask = pad_sequences([tok.encode(clean_text(note), max_length=MAX_LEN)])
        for s, listed in result[i].codes.items():
            index = torch.tensor([trained["codes"][s].index(c.code) for c in listed])
            with torch.no_grad():
                _, att = model.forward_with_attention(ids, mask, s, {s: index})
            for k, c in enumerate(listed):
                assert len(c.tokens) == 5
                ref_w, ref_pos = torch.topk(att[s][0, k], 5)
                assert [t.position for t in c.tokens] == ref_pos.tolist()
                np.testing.assert_allclose([t.weight for t in c.tokens], ref_w.numpy(),
                                           atol=1e-6)
                for t in c.tokens:
                    assert t.word == words[t.position] and t.position < MAX_LEN


def test_evidence_neighbours_are_gem_neighbours_with_mat_attention(trained, predictor):
    graph, model = trained["graph"], trained["model"]
    with torch.no_grad():
        out = model.code_embeddings(return_attention_weights=True)
    edge_arg, a9, a10, s9, s10 = out["mat_attention"]
    assert isinstance(edge_arg, tuple)  # the directional graph: one edge set per system
    edges = dict(zip(("icd9", "icd10"), edge_arg, strict=True))
    alpha = {"icd9": a9.mean(1), "icd10": a10.mean(1)}
    self_alpha = {"icd9": s9.mean(1), "icd10": s10.mean(1)}
    result = predictor.predict(trained["notes"], top_k=40, evidence=True)
    checked = 0
    for note in result:
        for s, listed in note.codes.items():
            other = "icd10" if s == "icd9" else "icd9"
            row = 0 if s == "icd9" else 1
            edge_index = edges[s]
            for c in listed:
                expected = dict(graph.neighbors(c.code, s))
                assert {n.code: n.gem_weight for n in c.linked} == expected
                i = graph.index(c.code, s)
                for n in c.linked:
                    j = graph.index(n.code, other)
                    e = ((edge_index[row] == i) & (edge_index[1 - row] == j)).nonzero()
                    assert n.attention == pytest.approx(float(alpha[s][e.item()]), abs=1e-6)
                    assert n.system == other
                    assert n.title == code_title(n.code, other, default="")
                assert c.self_attention == pytest.approx(float(self_alpha[s][i]), abs=1e-6)
                # the softmax over self + neighbours sums to one
                total = c.self_attention + sum(n.attention for n in c.linked)
                assert total == pytest.approx(1.0, abs=1e-5)
                attn = [n.attention for n in c.linked]
                assert attn == sorted(attn, reverse=True)
                checked += bool(c.linked)
    assert checked > 10


def test_evidence_without_mat_lists_gem_neighbours_with_omega_only(trained):
    plain = JAMSPredictor.load(trained["plain_bundle"], device="cpu")
    result = plain.predict(trained["notes"][:3], top_k=30, evidence=True)
    linked = 0
    for note in result:
        for s, listed in note.codes.items():
            for c in listed:
                assert {n.code: n.gem_weight for n in c.linked} == dict(
                    trained["graph"].neighbors(c.code, s))
                assert all(n.attention is None for n in c.linked)
                assert c.self_attention is None
                linked += len(c.linked)
    assert linked > 0


def test_per_system_encoders_reload_and_predict_with_each_systems_encoder(trained):
    """The ``mat_only`` ablation (one encoder per system) round-trips through a bundle."""
    torch.manual_seed(2)
    codes, tok, notes = trained["codes"], trained["tok"], trained["notes"]
    config = ModelConfig.for_backbone(
        "caml", vocab_size=tok.vocab_size, embedding_dim=8, num_filters=8, kernel_size=3,
        shared_encoder=False)
    model = build_model(config, trained["graph"], {s: len(c) for s, c in codes.items()})
    model.eval()
    bundle = save_bundle(trained["root"] / "mat_only", model, config, tok, codes,
                         {"icd9": 0.5, "icd10": 0.5}, trained["graph"], MAX_LEN)
    loaded = JAMSPredictor.load(bundle, device="cpu")
    assert not loaded.model.shared_encoder
    probs = loaded.predict_proba(notes, batch_size=3)
    for s in ("icd9", "icd10"):
        np.testing.assert_allclose(probs[s], reference_probs(model, tok, notes, s),
                                   rtol=0, atol=2e-6)
    # the two encoders differ, so the ICD-9 encoder's output would give other scores
    assert not np.allclose(probs["icd9"],
                           reference_probs(_swap_encoders(model), tok, notes, "icd9"))
    top = loaded.predict(notes[:2], top_k=3, evidence=True)
    assert all(len(n.codes[s]) == 3 for n in top for s in ("icd9", "icd10"))


def _swap_encoders(model):
    import copy

    swapped = copy.deepcopy(model)
    swapped.encoder["icd9"], swapped.encoder["icd10"] = (swapped.encoder["icd10"],
                                                         swapped.encoder["icd9"])
    return swapped


@pytest.mark.parametrize(
    ("texts", "error", "match"),
    [
        (["fine note", ""], ValueError, r"texts\[1\] is empty"),
        (["fine note", "ok", "   \n\t"], ValueError, r"texts\[2\] is empty"),
        (["fine note", None], TypeError, r"texts\[1\] is a NoneType"),
        ([3.5], TypeError, r"texts\[0\] is a float"),
        (["fine", "?!... ---"], ValueError, r"texts\[1\] has no words"),
        ("a single string", TypeError, "wrap a single note in a list"),
    ],
)
def test_bad_input_is_refused_naming_the_index(predictor, texts, error, match):
    with pytest.raises(error, match=match):
        predictor.predict(texts)


def test_bad_options(predictor):
    with pytest.raises(ValueError, match="top_k"):
        predictor.predict(["a note"], top_k=0)
    with pytest.raises(ValueError, match="unknown coding system"):
        predictor.predict(["a note"], system="icd11")
    with pytest.raises(ValueError, match="batch_size"):
        predictor.predict(["a note"], batch_size=0)


def test_cli_text_and_jsonl(trained, predictor, tmp_path, capsys):
    notes = trained["notes"][:3]
    text_file = tmp_path / "notes.txt"
    text_file.write_text("\n".join(n.replace("\n", " ") for n in notes) + "\n")
    out = tmp_path / "out.jsonl"
    rc = main(["predict", "--model", str(trained["bundle"]), str(text_file), "--top-k", "4",
               "--evidence", "--batch-size", "2", "--device", "cpu", "--output", str(out)])
    assert rc == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    expected = predictor.predict(notes, top_k=4, evidence=True)
    assert [r["id"] for r in lines] == [1, 2, 3]
    for got, want in zip(lines, expected, strict=True):
        assert got["codes"] == json.loads(json.dumps(want.to_dict()))["codes"]
        assert len(got["codes"]["icd9"]) == len(got["codes"]["icd10"]) == 4
        assert "tokens" in got["codes"]["icd10"][0]

    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text(json.dumps({"id": "adm-7", "text": notes[0]}) + "\n\n"
                     + json.dumps({"text": notes[1]}) + "\n")
    rc = main(["predict", "--model", str(trained["bundle"]), str(jsonl), "--system", "icd9",
               "--device", "cpu"])
    assert rc == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in printed] == ["adm-7", 3]
    probs = predictor.predict_proba(notes[:2], system="icd9")["icd9"]
    for r, p in zip(printed, probs, strict=True):
        assert set(r["codes"]) == {"icd9"}
        assert [c["code"] for c in r["codes"]["icd9"]] == [
            trained["codes"]["icd9"][j] for j in np.argsort(-p, kind="stable")
            if p[j] > trained["thresholds"]["icd9"]]


def test_cli_errors_name_the_line(trained, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("first note\n\nthird note\n")
    assert main(["predict", "--model", str(trained["bundle"]), str(bad)]) == 1
    assert "bad.txt, line 2: empty note" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": "no text"}\n')
    assert main(["predict", "--model", str(trained["bundle"]), str(bad)]) == 1
    assert "bad.jsonl, line 2: expected an object with a 'text' field" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "nowhere"), str(bad)]) == 1
    with pytest.raises(ValueError, match=r"line 1: 'text' must be a string"):
        bad.write_text('{"text": 12}\n')
        read_notes(bad)


def test_cli_help_via_subprocess():
    done = subprocess.run([sys.executable, "-m", "jams_pyg", "predict", "--help"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for needle in ("--model", "--top-k", "--evidence", "one note per line", ".jsonl",
                   '"probability"', "threshold"):
        assert needle in done.stdout


def test_graph_subcommand_still_works(tmp_path, capsys):
    assert main(["graph", "--save", str(tmp_path / "g.pt")]) == 0
    out = capsys.readouterr().out
    graph = GEMGraph.load(tmp_path / "g.pt")
    assert graph.summary() in out and graph.num_edges > 10000


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_a_clear_error(trained, capsys):
    with pytest.raises(ValueError, match="CUDA is not available"):
        JAMSPredictor.load(trained["bundle"], device="cuda")
    notes = trained["root"] / "one.txt"
    notes.write_text("a note\n")
    assert main(["predict", "--model", str(trained["bundle"]), str(notes), "--device",
                 "cuda"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


# ------------------------------------------------------- input/output reliability (#13)
def _strict_loads(line):
    def refuse(name):
        raise AssertionError(f"non-strict JSON constant {name}")
    return json.loads(line, parse_constant=refuse)


def test_notes_split_on_newline_only(tmp_path):
    """A form feed, vertical tab, file separator, U+2028 or U+2029 inside a note stays in
    it (str.splitlines would split there and shift every later id); reference: split on
    '\\n'."""
    notes = ["chest pain\x0cpage two", "fever\x0bcough", "rash\x1cpruritus",
             "sob\u2028wheeze", "edema\u2029ascites", "plain note", "crlf note"]
    content = "\n".join(notes[:-1]) + "\n" + notes[-1] + "\r\n"
    path = tmp_path / "notes.txt"
    path.write_bytes(content.encode("utf-8"))
    texts, ids = read_notes(path)
    reference = [line.removesuffix("\r") for line in content.split("\n")[:-1]]
    assert texts == reference == notes
    assert ids == list(range(1, 8))
    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_bytes(("\n".join(json.dumps({"id": i, "text": t}, ensure_ascii=False)
                                 for i, t in enumerate(notes)) + "\n").encode("utf-8"))
    assert "\u2028" in jsonl.read_text(encoding="utf-8")  # raw, not escaped
    texts, ids = read_notes(jsonl)
    assert texts == notes and ids == list(range(7))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": NaN, "text": "a note"}\n', r"line 1: invalid JSON \(NaN is not valid JSON"),
        (b'{"id": Infinity, "text": "a note"}\n', "line 1: invalid JSON"),
        (b'{"id": 1e400, "text": "a note"}\n', r"line 1: invalid JSON \(number 1e400"),
        (b'{"text": "ok note"}\n{"text": "caf\xe9 note"}\n',
         r"line 2: not UTF-8 text \(byte 0xe9"),
    ],
)
def test_non_strict_or_non_utf8_lines_are_refused(tmp_path, content, message):
    path = tmp_path / "notes.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"notes\.jsonl, {message}"):
        read_notes(path)


def test_on_error_skip_keeps_the_good_lines(trained, predictor, tmp_path):
    notes = trained["notes"][:3]
    lines = [json.dumps({"id": "a", "text": notes[0]}),
             '{"id": NaN, "text": "a note"}',
             json.dumps({"id": "b", "text": notes[1]}),
             "{broken",
             json.dumps({"id": "c", "text": "***"}),
             json.dumps({"id": "d", "text": notes[2]})]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    args = ["predict", "--model", str(trained["bundle"]), str(path), "--top-k", "3",
            "--device", "cpu", "--output", str(out)]
    assert main(args) == 1  # --on-error fail (default): nothing written
    assert not out.exists() and list(tmp_path.iterdir()) == [path]
    assert main([*args, "--on-error", "skip"]) == 0
    records = [_strict_loads(line) for line in out.read_text().split("\n")[:-1]]
    assert [r["id"] for r in records] == ["a", 2, "b", 4, "c", "d"]
    errors = [r for r in records if "error" in r]
    assert [(r["line"], r["error"].split(" (")[0]) for r in errors] == [
        (2, "invalid JSON"), (4, "invalid JSON"), (5, "empty note")]
    expected = predictor.predict(notes, top_k=3)
    good = [r for r in records if "error" not in r]
    for got, want in zip(good, expected, strict=True):
        assert got["codes"] == json.loads(json.dumps(want.to_dict()))["codes"]


def test_unwritable_output_fails_before_any_model_work(trained, tmp_path, capsys,
                                                       monkeypatch):
    import jams_pyg.inference.notes as notes_module

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(JAMSPredictor, "load", no_model)
    monkeypatch.setattr(notes_module, "load_notes", no_model)
    notes = tmp_path / "n.txt"
    notes.write_text("a note\n")
    for output in (tmp_path / "missing" / "out.jsonl", tmp_path):
        assert main(["predict", "--model", str(trained["bundle"]), str(notes),
                     "--output", str(output)]) == 1
        assert f"{output}:" in capsys.readouterr().err


def test_output_is_atomic_and_gets_an_ordinary_mode(trained, tmp_path, capsys):
    notes = tmp_path / "n.txt"
    notes.write_text(trained["notes"][0].replace("\n", " ") + "\n\n")  # line 2 is blank
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    assert main(["predict", "--model", str(trained["bundle"]), str(notes), "--output",
                 str(out), "--device", "cpu"]) == 1
    assert out.read_text() == "previous results\n"  # untouched on error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.txt", "out.jsonl"]
    new = tmp_path / "new.jsonl"
    notes.write_text(trained["notes"][0].replace("\n", " ") + "\n")
    assert main(["predict", "--model", str(trained["bundle"]), str(notes), "--output",
                 str(new), "--device", "cpu"]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask
    assert len(new.read_text().split("\n")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.txt", "new.jsonl", "out.jsonl"]


def test_strict_json_output():
    from jams_pyg.inference.notes import dumps_strict

    assert dumps_strict({"id": "é", "p": 0.5}) == '{"id": "é", "p": 0.5}'
    with pytest.raises(ValueError, match="Out of range float"):
        dumps_strict({"id": float("nan")})


def test_graph_subcommand_names_a_bad_gem_file(tmp_path, capsys):
    empty = tmp_path / "empty_gem.txt"
    empty.write_text("")
    assert main(["graph", "--icd9-gem", str(empty)]) == 1
    assert "empty_gem.txt: empty GEM file" in capsys.readouterr().err
    cut = tmp_path / "gem.txt.gz"
    cut.write_bytes(gzip.compress(b"0010 A000 00000\n" * 500)[:-20])
    assert main(["graph", "--icd9-gem", str(cut)]) == 1
    assert "gem.txt.gz" in capsys.readouterr().err


def test_unknown_words_are_reported_and_warned_about(trained, predictor):
    known = predictor.tokenizer.vocab.itos[2:6]
    text = " ".join([*known, "zzqx", "qqzv"])  # 4 known words, 2 unknown: 1/3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for a familiar note
        [note] = predictor.predict([text], top_k=1)
    assert note.unknown_words == pytest.approx(2 / 6)
    assert note.to_dict()["unknown_words"] == pytest.approx(2 / 6)
    with pytest.warns(UserWarning, match="1 of 2 notes .first: index 1. have more than 50%"):
        notes = predictor.predict([text, "zzqx qqzv " + known[0]], top_k=1)
    assert notes[1].unknown_words == pytest.approx(2 / 3)
