"""The user docs stay in step with the code."""

from pathlib import Path

from twin.catalog import LAYERS

ROOT = Path(__file__).resolve().parents[1]


def test_data_model_doc_lists_every_layer_and_column():
    doc = (ROOT / "docs" / "data-model.md").read_text()
    for layer_id, spec in LAYERS.items():
        assert f"## `{layer_id}`" in doc, layer_id
        for col in spec.table.columns:
            assert f"| `{col.name}` |" in doc, f"{layer_id}.{col.name}"


def test_readme_quick_start_has_the_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "./run.sh demo" in readme and "./run.sh test" in readme
    assert "./run.sh test" in (ROOT / ".ci" / "run").read_text()
