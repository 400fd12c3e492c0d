"""The committed reports are what ``keras-cnns report`` makes of the committed records.

Every experiment's records (and search trials) are copied to a temporary results root and
regenerated there; each README and CSV must equal the committed one, character for character.
So a change to the report code, a preset's text or the records that is not followed by
``keras-cnns report --out results`` fails here, and a refactoring of the reports that changes a
number shows.
(The plots are left out: their bytes depend on the matplotlib version.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from keras_cnns.lab import report
from keras_cnns.lab.experiments import list_experiments

RESULTS = Path(__file__).resolve().parent.parent / "results"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for name in list_experiments():
        source = RESULTS / name
        if not source.is_dir():
            continue
        target = root / name
        target.mkdir()
        for item in source.iterdir():
            if item.name == "records.jsonl":
                shutil.copy2(item, target / item.name)
            elif item.is_dir():  # a search's trial files (checkpoints are not committed)
                shutil.copytree(item, target / item.name)
        report.write_report(name, root)
    report.write_index(root)
    return root


@pytest.mark.smoke
@pytest.mark.parametrize("name", [n for n in list_experiments() if (RESULTS / n).is_dir()])
@pytest.mark.parametrize("file", ["README.md", "results.csv"])
def test_each_committed_report_regenerates_unchanged(regenerated, name, file):
    committed = RESULTS / name / file
    if not committed.is_file():
        pytest.skip(f"{name} has no {file}")
    assert (regenerated / name / file).read_text() == committed.read_text(), (
        f"results/{name}/{file} is not what 'keras-cnns report' makes of the committed records: "
        "run 'keras-cnns report --out results' and commit the result"
    )


@pytest.mark.smoke
def test_the_results_index_regenerates_unchanged(regenerated):
    assert (regenerated / "README.md").read_text() == (RESULTS / "README.md").read_text()
