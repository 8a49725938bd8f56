import pytest

from jams_pyg.icd.codes import format_code, parse_code


@pytest.mark.parametrize(
    ("code", "system", "key"),
    [
        ("401.9", "icd9", ("dx", "4019")),
        ("40.19", "icd9", ("proc", "4019")),
        ("042", "icd9", ("dx", "042")),
        ("V30.01", "icd9", ("dx", "V3001")),
        ("E880.9", "icd9", ("dx", "E8809")),
        ("E880", "icd9", ("dx", "E880")),
        ("99", "icd9", ("proc", "99")),
        ("I15.0", "icd10", ("dx", "I150")),
        ("I10.", "icd10", ("dx", "I10")),
        ("I10", "icd10", ("dx", "I10")),
        ("S72.001A", "icd10", ("dx", "S72001A")),
        ("0DTJ4ZZ", "icd10", ("proc", "0DTJ4ZZ")),
        (" k83.1 ", "icd10", ("dx", "K831")),
    ],
)
def test_parse_code(code, system, key):
    assert parse_code(code, system) == key


@pytest.mark.parametrize(
    ("raw", "system", "kind", "dotted"),
    [
        ("4019", "icd9", "dx", "401.9"),
        ("4019", "icd9", "proc", "40.19"),
        ("E8809", "icd9", "dx", "E880.9"),
        ("042", "icd9", "dx", "042"),
        ("I10", "icd10", "dx", "I10."),
        ("I150", "icd10", "dx", "I15.0"),
        ("0DTJ4ZZ", "icd10", "proc", "0DTJ4ZZ"),
    ],
)
def test_format_code_round_trips(raw, system, kind, dotted):
    assert format_code(raw, system, kind) == dotted
    assert parse_code(dotted, system) == (kind, raw)


@pytest.mark.parametrize(
    ("code", "system", "message"),
    [
        ("4019", "icd9", "ambiguous undotted ICD-9 code '4019'"),
        ("4.019", "icd9", "unknown icd9 code format '4.019'"),
        ("40.1.9", "icd9", "more than one dot"),
        ("", "icd9", "empty icd9 code"),
        ("I1500", "icd10", "unknown icd10 code format 'I1500'"),
        ("I1.50", "icd10", "unknown icd10 code format"),
        ("0DTJ4ZI", "icd10", "unknown icd10 code format"),
        ("ABC.D", "icd9", "unknown icd9 dx code format 'ABC.D'"),
        ("401.9", "icd11", "unknown coding system 'icd11'"),
    ],
)
def test_parse_code_errors_name_the_code(code, system, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_code(code, system)


def test_kind_hint_for_undotted_icd9():
    assert parse_code("4019", "icd9", kind="proc") == ("proc", "4019")
    assert parse_code("4019", "icd9", kind="dx") == ("dx", "4019")
    with pytest.raises(ValueError, match="is a dx code, not proc"):
        parse_code("401.9", "icd9", kind="proc")
