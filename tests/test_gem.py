import gzip

import pytest

from jams_pyg.gem import cms_2018_gem_paths, read_gem_file


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_gems_equal_cms_files(shared_data):
    """The package ships the CMS files unchanged (only gzipped)."""
    forward, backward = cms_2018_gem_paths()
    for shipped, name in ((forward, "2018_I9gem.txt"), (backward, "2018_I10gem.txt")):
        original = (shared_data / "gems" / name).read_bytes()
        assert gzip.decompress(shipped.read_bytes()) == original


def test_read_forward_file_counts_and_columns():
    forward, backward = cms_2018_gem_paths()
    fwd = read_gem_file(forward)
    bwd = read_gem_file(backward)
    # Line counts from ../shared/data/README.md.
    assert len(fwd) == 24_860
    assert len(bwd) == 81_593
    # Distinct mapped pairs per file (combination entries repeat a pair).
    for frame, pairs, lines in ((fwd, 24_428, 24_438), (bwd, 80_559, 80_862)):
        mapped = frame[~frame.no_map]
        assert len(mapped) == lines
        assert len(mapped[["source", "target"]].drop_duplicates()) == pairs
    assert list(fwd.columns) == [
        "source", "target", "approximate", "no_map", "combination", "scenario",
        "choice_list", "line",
    ]
    assert fwd.attrs["kind"] == "dx"
    # The paper's examples.
    row = fwd[(fwd.source == "5762") & (fwd.target == "K831")].iloc[0]
    assert (row.approximate, row.no_map, row.combination) == (False, False, False)
    row = fwd[(fwd.source == "40511") & (fwd.target == "I150")].iloc[0]
    assert row.approximate and not row.no_map
    row = fwd[(fwd.source == "74911") & (fwd.target == "Q369")].iloc[0]
    assert row.approximate


def test_no_map_lines_kept_as_such(tmp_path):
    path = write(
        tmp_path, "gem.txt",
        "0010  A000    00000\nE0000 NoDx    01000\n0030  A020    10112\n\n",
    )
    frame = read_gem_file(path)
    assert frame.target.tolist() == ["A000", "NoDx", "A020"]
    assert frame.no_map.tolist() == [False, True, False]
    assert frame.combination.tolist() == [False, False, True]
    assert frame.scenario.tolist() == [0, 0, 1]
    assert frame.choice_list.tolist() == [0, 0, 2]
    assert frame.line.tolist() == [1, 2, 3]


def test_procedure_gem_kind(tmp_path):
    path = write(tmp_path, "gem_i9pcs.txt", "0001 6A750Z6 10000\n0002 NoPCS 01000\n")
    assert read_gem_file(path).attrs["kind"] == "proc"
    assert read_gem_file(write(tmp_path, "custom_pcs.txt", "0001 6A750Z6 10000\n")).attrs[
        "kind"] == "proc"


def test_lowercase_code_is_normalised(tmp_path):
    # 2018_I10gem.txt line 73170 writes "v5889".
    frame = read_gem_file(write(tmp_path, "g.txt", "T8853XD v5889 10000\n"))
    assert frame.target.tolist() == ["V5889"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0010 A000 00000\n0011 A001\n", "line 2: expected 'source target flags'"),
        ("0010 A000 00000 extra\n", "line 1: expected 'source target flags'"),
        ("0010 A000 0000\n", "line 1: flags must be five digits"),
        ("0010 A000 20000\n", "line 1: flags must be five digits"),
        ("00.10 A000 00000\n", "line 1: malformed source code '00.10'"),
        ("0010 A0-0 00000\n", "line 1: malformed target code 'A0-0'"),
        ("0010 NoDx 00000\n", "line 1: target NoDx without the no-map flag"),
        ("0010 A000 01000\n", "line 1: no-map flag set but target is 'A000'"),
        ("0010 NoDx 01000\n0011 NoPCS 01000\n", "line 2: NoPCS in a file of dx mappings"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(ValueError, match=f"bad.txt, {message}".replace("(", r"\(")):
        read_gem_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_gem_file(tmp_path / "nope.txt")


def test_gzip_and_crlf(tmp_path):
    path = tmp_path / "g.txt.gz"
    path.write_bytes(gzip.compress(b"0010  A000    00000\r\n0011  A001    10000\r\n"))
    frame = read_gem_file(path)
    assert frame.target.tolist() == ["A000", "A001"]
    assert frame.approximate.tolist() == [False, True]
