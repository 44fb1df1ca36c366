"""The metric files' schemas (pipelines/results/metric_schemas.py): the committed tables pass through them
unchanged, byte for byte as the writers write them, and a malformed table is refused naming the key."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.results.metric_schemas import SCHEMAS, Table1File, describe, validated_json

REPO = Path(__file__).resolve().parents[1]
COMMITTED = [REPO / "metrics" / f"{name}.json" for name in SCHEMAS] + \
            [REPO / "reports" / "reference" / "smoke" / f"{name}.json" for name in SCHEMAS]


def written(data: dict) -> str:
    """What pipelines.core.files.write_json writes."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("path", [p for p in COMMITTED if p.is_file()], ids=lambda p: p.relative_to(REPO).as_posix())
def test_committed_tables_pass_through_their_schema_byte_for_byte(path):
    text = path.read_text()
    assert written(validated_json(SCHEMAS[path.stem], json.loads(text))) == text


def test_fixture_tables_without_the_newer_keys_still_validate():
    fixture = REPO / "tests" / "fixtures" / "report" / "metrics"
    for name, schema in SCHEMAS.items():
        data = json.loads((fixture / f"{name}.json").read_text())
        assert validated_json(schema, data) == data  # absent optional keys stay absent, nothing is added


def test_a_malformed_table_names_the_key():
    table = json.loads((REPO / "reports" / "reference" / "smoke" / "table1.json").read_text())
    cases = [
        (lambda d: d["rows"][0]["gain"]["psnr"].pop("ci_low"), "missing key 'rows[0].gain.psnr.ci_low'"),
        (lambda d: d["rows"][0]["baseline"].update(psnr="27.2"), "rows[0].baseline.psnr: expected a finite number"),
        (lambda d: d["rows"][0]["gain"].update(psnr=None), "rows[0].gain.psnr: the PSNR gain must be given"),
        (lambda d: d["meta"]["bootstrap"].update(seed=True), "meta.bootstrap.seed: expected an integer"),
        (lambda d: d["rows"][0].update(typo=1), "rows[0].typo: unexpected key"),
        (lambda d: d["average_gain"].clear(), "missing key 'average_gain."),
    ]
    for edit, message in cases:
        data = copy.deepcopy(table)
        edit(data)
        with pytest.raises(ValidationError) as err:
            Table1File.model_validate(data)
        assert describe(err.value).startswith(message), describe(err.value)


def test_table1_rows_name_their_training_set_and_one_set_fills_a_column():
    table = json.loads((REPO / "metrics" / "table1.json").read_text())  # four backbones (smoke's reference has one)
    for row in table["rows"]:
        row.update(train_set="synthetic", scoring=None)
    Table1File.model_validate(table)
    cases = [
        (lambda d: d["rows"][1].update(train_set="realblur_j"),
         f"rows[1].train_set: {table['rows'][1]['dataset']} is scored by the models of synthetic, not realblur_j"),
        (lambda d: d["rows"][0].update(scoring="official"), "rows[0].scoring: synthetic is scored as None"),
        (lambda d: d["rows"][0].update(dataset="realblur_j"),
         "rows[0].scoring: realblur_j is scored as authors, official, not None"),
        (lambda d: d["rows"][0].update(scoring="aligned"), "rows[0].scoring: not an allowed key"),
        (lambda d: d["rows"].append(copy.deepcopy(d["rows"][0])),
         f"rows[{len(table['rows'])}]: a second row for synthetic / mimo_unet"),
    ]
    for edit, message in cases:
        data = copy.deepcopy(table)
        edit(data)
        with pytest.raises(ValidationError) as err:
            Table1File.model_validate(data)
        assert describe(err.value).startswith(message), describe(err.value)
