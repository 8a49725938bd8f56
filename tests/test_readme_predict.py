"""The README's predict example reproduces (issue #22): ``jams-pyg predict`` with the
committed demo bundle on the committed notes gives the codes and probabilities the README
shows (rounded as shown), marks the notes it shows as out of distribution, and gives the
gibberish line no code above the threshold."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BUNDLE = "examples/demo_bundle"
NOTES = "examples/demo_notes.jsonl"
COMMAND = ["predict", "--model", BUNDLE, NOTES, "--top-k", "3"]
BEGIN, END = "<!-- predict-demo -->", "<!-- /predict-demo -->"
NAMES = {"icd9": "ICD-9 ", "icd10": "ICD-10"}
GIBBERISH = "qwzx plorb frimble zzzt vonk"


def render(records: list[dict]) -> str:
    """The README's condensed view of the JSONL records: per note its unknown-word share
    and OOD state, per system the listed codes with ``*`` where predicted."""
    lines = []
    for r in records:
        ood = r["ood"]
        if ood is None:
            state = "not checked"
        elif ood["out_of_distribution"]:
            state = "out of distribution, codes withheld" if ood["withheld"] else \
                "out of distribution"
        else:
            state = "in distribution"
        lines.append(f"{r['id']}: {r['unknown_words']:.0%} unknown words, {state}")
        for system, codes in r["codes"].items():
            lines.append(f"  {NAMES[system]} " + ", ".join(
                f"{c['code']}{'*' if c['predicted'] else ''} ({c['probability']:.2f})"
                for c in codes))
    return "\n".join(lines)


@pytest.fixture(scope="module")
def run():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "jams_pyg", *COMMAND], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def readme_block() -> list[str]:
    """The lines of the text blocks between the README's predict-demo markers."""
    text = README.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    region = text.split(BEGIN)[1].split(END)[0]
    blocks = re.findall(r"```text\n(.*?)```", region, re.S)
    assert len(blocks) == 2
    return [line for block in blocks for line in block.rstrip("\n").splitlines()]


def test_readme_shows_the_command_it_ran():
    lines = readme_block()
    assert lines[0] == f"$ jams-pyg {' '.join(COMMAND)} > codes.jsonl"


def parse(lines: list[str]) -> dict:
    """``{note id: (header, {system: {(code, predicted, probability)}})}`` of the README's
    block (order-free within a system: codes at p 1.00 may swap across CPUs)."""
    notes: dict = {}
    current = None
    for line in lines:
        if line.startswith(("jams-pyg predict: warning:", "$ ")):
            continue
        if not line.startswith("  "):
            current = line.split(":")[0]
            notes[current] = (line, {})
            continue
        name, _, rest = line.strip().partition(" ")
        system = {"ICD-9": "icd9", "ICD-10": "icd10"}[name]
        notes[current][1][system] = {
            (m.group(1), m.group(2) == "*", m.group(3))
            for m in re.finditer(r"(\S+?)(\*?) \((\d\.\d\d)\)", rest)}
    return notes


def test_readme_predict_example_reproduces(run):
    records, stderr = run
    shown = parse(readme_block())
    actual = parse(render(records).splitlines())
    assert len(shown) == len(records) == 8
    assert shown == actual
    # the warnings the README shows are the ones printed
    warned = [line for line in readme_block() if line.startswith("jams-pyg predict:")]
    assert warned and warned == [line for line in stderr.splitlines()
                                 if line.startswith("jams-pyg predict:")]


def test_gibberish_gets_no_code_above_threshold(run):
    records, _ = run
    [gibberish] = [r for r in records if r["id"] == "gibberish"]
    assert gibberish["ood"]["out_of_distribution"] and gibberish["ood"]["withheld"]
    for codes in gibberish["codes"].values():
        assert len(codes) == 3  # the ranking (--top-k), none predicted
        assert not any(c["predicted"] for c in codes)
    # without --top-k: no code at all (before the signal: 35 ICD-9 and 55 ICD-10 codes)
    from jams_pyg.inference.predictor import JAMSPredictor

    predictor = JAMSPredictor.load(ROOT / BUNDLE, device="cpu")
    with pytest.warns(UserWarning, match="out of distribution"):
        [note] = predictor.predict([GIBBERISH])
    assert note.codes == {"icd9": [], "icd10": []} and note.withheld
    [before] = predictor.predict([GIBBERISH], ood="off")
    assert all(len(before.predicted_codes(s)) > 10 for s in ("icd9", "icd10"))
    # the six plain notes are withheld too; the corpus note keeps its codes
    for r in records:
        if r["id"] == "corpus-test-note":
            assert not r["ood"]["out_of_distribution"]
            assert all(c["predicted"] for cs in r["codes"].values() for c in cs)
        else:
            assert r["ood"]["withheld"] and not any(
                c["predicted"] for cs in r["codes"].values() for c in cs)
