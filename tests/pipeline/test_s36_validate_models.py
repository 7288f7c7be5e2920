"""`glinker pipeline validate` says what loading the model would refuse (session 36, a fine-tuning walkthrough):
a `glinker train` output folder (the model is in its final/), a folder without gliner_config.json, and an
owner/name that is read as a hub id while its owner is a local folder (a mistyped path, most likely: a warning)."""

from __future__ import annotations

from typer.testing import CliRunner

from glinker.cli import app

PIPE = "name: n\nmodel: {model}\nstages:\n  m: {{type: biencoder_mentions, labels: [person]}}\n"


def _validate(tmp_path, model, *extra):
    p = tmp_path / "p.yaml"
    p.write_text(PIPE.format(model=model))
    return CliRunner().invoke(app, ["pipeline", "validate", str(p), *extra])


def test_a_train_output_folder_names_its_final_model(tmp_path):
    run = tmp_path / "runs" / "finetune"
    (run / "checkpoints").mkdir(parents=True)
    (run / "final").mkdir()
    (run / "final" / "gliner_config.json").write_text("{}")
    r = _validate(tmp_path, "runs/finetune")
    assert r.exit_code == 2, r.output
    assert "E251" in r.stderr and "glinker train` output folder" in r.stderr and str(run / "final") in r.stderr


def test_a_folder_without_a_config_is_refused(tmp_path):
    (tmp_path / "my-data").mkdir()
    r = _validate(tmp_path, "my-data")
    assert r.exit_code == 2 and "no gliner_config.json" in r.stderr, r.output


def test_an_owner_name_whose_owner_is_a_folder_here_is_warned(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    r = _validate(tmp_path, "runs/nothere")
    assert r.exit_code == 0 and "E254" in r.stderr and "read as a hub id" in r.stderr, r.output
    assert _validate(tmp_path, "runs/nothere", "--strict").exit_code == 2
    r = _validate(tmp_path, "someorg/somemodel")  # a hub id: nothing to say
    assert r.exit_code == 0 and "warning" not in r.stderr, r.output


def test_loading_is_not_refused_for_the_hub_id_warning(tmp_path, monkeypatch):
    """The warning is `validate`'s: loading goes on (the model is tried as a hub id when it loads)."""
    import glinker

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    p = tmp_path / "p.yaml"
    p.write_text(PIPE.format(model="runs/nothere"))
    assert glinker.load_pipeline(str(p)).name == "n"
