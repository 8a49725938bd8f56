import gzip
import hashlib

import pandas as pd
import pytest
from conftest import load_benchmark

from jams_pyg.icd import gem
from jams_pyg.icd.gem import DataFileError, cms_2018_gem_paths, read_gem_file


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_gems_are_the_cms_files():
    """The package ships the CMS files unchanged (only gzipped): their SHA-256 is the
    published files' (and, where ../shared is present, their bytes are its copies')."""
    from conftest import CMS_GEM_SHA256, SHARED_DATA

    forward, backward = cms_2018_gem_paths()
    for shipped, name in ((forward, "2018_I9gem.txt"), (backward, "2018_I10gem.txt")):
        data = gzip.decompress(shipped.read_bytes())
        assert hashlib.sha256(data).hexdigest() == CMS_GEM_SHA256[name]
        if (SHARED_DATA / "gems" / name).is_file():
            assert data == (SHARED_DATA / "gems" / name).read_bytes()


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


# ------------------------------------------------------------ reliability (issue #13)
def test_real_files_match_an_independent_parser():
    """Values of both shipped GEMs equal a plain whitespace split of the decompressed
    file (the reader streams and packs rows in chunks; nothing may shift)."""
    for path in cms_2018_gem_paths():
        lines = gzip.decompress(path.read_bytes()).decode("ascii").split("\n")
        rows = [(n, line.split()) for n, line in enumerate(lines, start=1) if line.strip()]
        frame = read_gem_file(path)
        assert frame.line.tolist() == [n for n, _ in rows]
        assert frame.source.tolist() == [f[0].upper() for _, f in rows]
        assert frame.target.tolist() == [
            f[1] if f[1] in ("NoDx", "NoPCS") else f[1].upper() for _, f in rows]
        flags = [f[2] for _, f in rows]
        assert frame.approximate.tolist() == [f[0] == "1" for f in flags]
        assert frame.no_map.tolist() == [f[1] == "1" for f in flags]
        assert frame.combination.tolist() == [f[2] == "1" for f in flags]
        assert frame.scenario.tolist() == [int(f[3]) for f in flags]
        assert frame.choice_list.tolist() == [int(f[4]) for f in flags]
        assert [str(t) for t in frame.dtypes] == [
            "str", "str", "bool", "bool", "bool", "int8", "int8", "int64"]
        assert frame.attrs == {"path": str(path), "kind": "dx"}
        assert frame.index.equals(pd.RangeIndex(len(rows)))


def test_many_chunks_keep_order_and_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(gem, "_CHUNK_ROWS", 7)
    text = "".join(f"{1000 + i} A{100 + i} 1000{i % 2}\n" + ("\n" if i % 5 == 0 else "")
                   for i in range(40))
    frame = read_gem_file(write(tmp_path, "g.txt", text))
    assert frame.source.tolist() == [str(1000 + i) for i in range(40)]
    assert frame.choice_list.tolist() == [i % 2 for i in range(40)]
    expected_lines, number = [], 0
    for i in range(40):
        number += 1
        expected_lines.append(number)
        number += i % 5 == 0
    assert frame.line.tolist() == expected_lines


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_gem_file_is_an_error(tmp_path, text):
    with pytest.raises(DataFileError, match=r"empty\.txt: empty GEM file"):
        read_gem_file(write(tmp_path, "empty.txt", text))


def test_line_without_newline_is_refused_with_a_short_message(tmp_path):
    path = tmp_path / "one_line.txt"
    path.write_bytes(b"0010 A000 00000 " * 200_000)  # 3.2 MB, no newline
    with pytest.raises(DataFileError) as info:
        read_gem_file(path)
    message = str(info.value)
    assert "one_line.txt, line 1: line longer than" in message
    assert len(message) < 300


def test_long_bad_line_is_quoted_short(tmp_path):
    path = write(tmp_path, "g.txt", "0010 A000 00000\n0011 " + "x " * 100 + "\n")
    with pytest.raises(DataFileError, match="line 2: expected") as info:
        read_gem_file(path)
    assert len(str(info.value)) < 250


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (gzip.compress(b"0010 A000 00000\n" * 2000)[:-30],
         r"g\.txt\.gz.*truncated or corrupt gzip"),
        (b"0010 A000 00000\n", r"g\.txt\.gz: not a gzip file"),
        (gzip.compress(b"0010 A000 00000\n0011 A\xe9 00000\n"),
         r"g\.txt\.gz, line 2: not ascii text \(byte 0xe9 at column 7\)"),
    ],
)
def test_gzip_and_encoding_errors_name_the_file(tmp_path, data, message):
    path = tmp_path / "g.txt.gz"
    path.write_bytes(data)
    with pytest.raises(DataFileError, match=message):
        read_gem_file(path)


def test_latin1_plain_file_names_the_line(tmp_path):
    path = tmp_path / "g.txt"
    path.write_bytes(b"0010 A000 00000\n0011 A001 00000\n0012 \xc0001 00000\n")
    with pytest.raises(DataFileError, match=r"g\.txt, line 3: not ascii text"):
        read_gem_file(path)


def test_reader_memory_does_not_grow_with_the_file(tmp_path):
    """benchmarks/gem_reader_memory.py at a tiny size: the reader's own working memory
    (peak RSS growth minus the returned table) for a 4x larger file grows by less than
    half the extra bytes (before streaming it grew by ~20x them)."""
    bench = load_benchmark("gem_reader_memory")
    small, large, one_line = bench.run([1.0, 4.0], tmp_path)
    assert (small["rows"], large["rows"]) == (52_428, 209_715)
    extra_mb = large["file_mb"] - small["file_mb"]
    assert large["overhead_mb"] - small["overhead_mb"] < 0.5 * extra_mb
    assert one_line["error"] is not None and one_line["error_chars"] < 300
    assert one_line["peak_growth_mb"] < 2.0


@pytest.mark.slow
def test_graph_build_memory_grows_with_distinct_links_not_lines(tmp_path):
    """The GEM graph build keeps distinct links only: 4,000 lines of the forward CMS GEM
    repeated 10x cost no more Python-traced memory (tracemalloc peak) than once, and give
    the same links; when every line was kept until the graph was built, the whole file
    repeated 10x peaked at 62 MiB against 11 MiB (about 8 MiB more here)."""
    import tracemalloc

    import torch

    from jams_pyg.graph.gem_files import read_gem_files

    block = b"".join(gzip.decompress(cms_2018_gem_paths()[0].read_bytes())
                     .splitlines(keepends=True)[:4000])
    peaks, links = [], []
    for repeat in (1, 10):
        path = tmp_path / f"gem_x{repeat}.txt"
        path.write_bytes(block * repeat)
        tracemalloc.start()
        try:
            links.append(read_gem_files([path], []))
            peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        finally:
            tracemalloc.stop()
    assert peaks[1] < peaks[0] + 1.0, peaks
    assert links[0].icd9_keys == links[1].icd9_keys
    assert links[0].icd10_keys == links[1].icd10_keys
    for a, b in zip(links[0].forward, links[1].forward, strict=True):
        assert torch.equal(a, b)


def test_duplicate_lines_with_conflicting_flags_keep_the_exact_link(tmp_path):
    """A pair mapped approximately by one line and exactly by another is one exact link
    (ω = 1), in any order, as before de-duplication while streaming; a bad code names
    its first line."""
    from jams_pyg.graph.gem_files import read_gem_files

    for first, second in (("0010 A000 10000", "0010 A000 00000"),
                          ("0010 A000 00000", "0010 A000 10000")):
        lines = [first, second, "0010 A001 10000", "0010 A001 10000"]
        path = write(tmp_path, "f.txt", "\n".join(lines) + "\n")
        links = read_gem_files([path], [])
        assert links.names("icd10") == ["A00.0", "A00.1"]
        assert links.forward[0].tolist() == [[0, 0], [0, 1]]
        assert links.forward[1].tolist() == [1.0, 0.5]
    path = write(tmp_path, "f.txt", "0010 A000 00000\n0010 A000 00000\nA001 A000 00000\n")
    with pytest.raises(ValueError, match=r"f\.txt, line 3: 'A001' is no icd9 dx code"):
        read_gem_files([path], [])
