"""Model precision as a setting: ``settings.dtype`` / ``--dtype`` / ``load_pipeline(dtype=)``, and ``dtype="auto"``."""

from __future__ import annotations

import json

import pytest
import torch

import glinker
from glinker.errors import ConfigError
from glinker.model import BiEncoder
from glinker.model import biencoder as bienc


@pytest.fixture
def fresh_auto(monkeypatch):
    """auto_dtype's cache emptied, the CPU one with AVX512-BF16 and no AMX (where the timing decides), and
    ``bf16_speedup`` replaced by the returned setter's value."""
    monkeypatch.setattr(bienc, "_AUTO", {})
    monkeypatch.setattr(bienc, "_cpu_bf16_units", lambda: "avx512_bf16")
    speed = {"x": None}
    monkeypatch.setattr("glinker.model.scoring.bf16_speedup", lambda device="cpu": speed["x"])

    def set_speedup(x):
        speed["x"] = x
        bienc._AUTO.clear()

    return set_speedup


@pytest.mark.parametrize("speedup, want", [(3.5, torch.bfloat16), (2.0, torch.bfloat16), (1.9, torch.float32),
                                           (0.03, torch.float32), (None, torch.float32)])
def test_auto_dtype_follows_the_measured_bf16_speed(fresh_auto, speedup, want):
    fresh_auto(speedup)
    assert bienc.auto_dtype("cpu") == want


def test_from_pretrained_auto_keeps_the_fingerprint(fresh_auto, tiny_model):
    fresh_auto(4.0)
    ref = BiEncoder.from_pretrained(tiny_model)
    m = BiEncoder.from_pretrained(tiny_model, dtype="auto")
    assert m.dtype == torch.bfloat16 and ref.dtype == torch.float32
    assert m.fingerprint == ref.fingerprint  # KBs and banks the float32 model encoded still match
    fresh_auto(1.0)
    assert BiEncoder.from_pretrained(tiny_model, dtype="AUTO").dtype == torch.float32
    with pytest.raises(ConfigError, match="auto"):
        BiEncoder.from_pretrained(tiny_model, dtype="bf16")


def _model_of(pipe):
    pipe.warm_up()
    models = [v for v in pipe.context._resources.values() if isinstance(v, BiEncoder)]
    assert len(models) == 1
    return models[0]


def test_pipeline_setting_and_override(pipeline, tmp_path):
    base = glinker.load_pipeline(str(pipeline))
    assert "dtype" not in base.identity()["settings"]  # unset: the identity (and resumable outputs) as before
    y = tmp_path / "bf16.yaml"
    y.write_text(pipeline.read_text().replace("settings: {batch_size: 2}", "settings: {batch_size: 2, dtype: bfloat16}"))
    bf = glinker.load_pipeline(str(y))
    assert bf.identity()["settings"]["dtype"] == "bfloat16"
    assert bf.fingerprint() != base.fingerprint()
    assert _model_of(bf).dtype == torch.bfloat16
    assert _model_of(base).dtype == torch.float32  # not the bfloat16 copy: dtype is part of the shared model's key
    over = glinker.load_pipeline(str(y), dtype="torch.float32")
    assert over.spec.header.settings.dtype == "float32" and _model_of(over).dtype == torch.float32
    # the links agree with float32's on the tiny model (scores within bfloat16 rounding)
    texts = ["John Smith lives in Berlin and works for Google."]
    a, b = base.link(texts)[0].links, bf.link(texts)[0].links
    assert a and [(x.mention.start, x.mention.end, x.entity_id) for x in a] == [
        (x.mention.start, x.mention.end, x.entity_id) for x in b]
    for x, z in zip(a, b):
        assert x.confidence == pytest.approx(z.confidence, abs=0.05)


def test_bad_dtype_is_refused_before_loading(pipeline, tmp_path):
    with pytest.raises(ConfigError, match="dtype must be one of float32, bfloat16, float16, auto") as e:
        glinker.load_pipeline(str(pipeline), dtype="half")
    assert "auto" in (e.value.fix or "")
    y = tmp_path / "bad.yaml"
    y.write_text(pipeline.read_text().replace("settings: {batch_size: 2}", "settings: {batch_size: 2, dtype: fp8}"))
    with pytest.raises(glinker.errors.PipelineError, match="dtype"):
        glinker.load_pipeline(str(y))


def test_link_resume_refuses_another_dtype(pipeline, tmp_path):
    from glinker.cli.link import run_link

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                           for i, t in enumerate(["John Smith lives in Berlin.", "Google in Berlin."])))
    out = tmp_path / "out.jsonl"
    assert run_link(src, pipeline, out, dtype="bfloat16")["written"] == 2
    src.write_text(src.read_text() + json.dumps({"id": "d2", "text": "Berlin again."}) + "\n")
    with pytest.raises(ConfigError, match="written by another"):
        run_link(src, pipeline, out)  # float32 now: the two halves would differ in precision
    assert run_link(src, pipeline, out, dtype="bfloat16")["written"] == 1


# ---- review of the first version -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["float8_e4m3fn", torch.float8_e5m2, "int8", torch.int32])
def test_only_float_precisions_that_run_load(tiny_model, bad):
    with pytest.raises(ConfigError, match="not one of float32, bfloat16, float16, float64, auto"):
        BiEncoder.from_pretrained(tiny_model, dtype=bad)


@pytest.mark.parametrize("cmd", [["ner", "-m", "M", "-l", "person", "-"], ["eval", "ner", "--data", "D"],
                                 ["kb", "build", "-a", "jsonl", "-s", "S", "--out", "O"], ["kb", "add", "K", "-s", "S"],
                                 ["link", "-p", "P", "-o", "o.jsonl", "IN"], ["serve", "-p", "P"],
                                 ["worker", "--model", "M", "--queue", "redis://127.0.0.1:1/0"],
                                 ["eval", "el", "--data", "D", "-p", "P"], ["labels", "build", "L", "-m", "M", "-o", "O"]])
def test_every_dtype_option_is_checked_when_read(cmd, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from glinker.cli import _load_groups, app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "IN").write_text("x\n")
    _load_groups()
    r = CliRunner().invoke(app, [*cmd, "--dtype", "float8_e4m3fn"], env={"COLUMNS": "300"})
    assert r.exit_code == 2
    out = r.output
    assert "--dtype" in out and "float32, bfloat16, float16, auto" in out


def test_a_bank_is_cast_once_per_precision(tiny_model):
    m = BiEncoder.from_pretrained(tiny_model, dtype="bfloat16")
    bank = m.encode_labels([f"label {i}" for i in range(300)])
    assert bank.vectors.dtype == torch.float32
    first = m._label_spec(bank, 1)[0]
    assert first.dtype == torch.bfloat16
    assert m._label_spec(bank, 1)[0] is first  # kept on the bank, not cast at every call
    m32 = BiEncoder.from_pretrained(tiny_model)
    assert m32._label_spec(bank, 1)[0] is bank.vectors  # same precision: the bank's own tensor
    got = m.predict(["John Smith lives in Berlin."], bank, threshold=0.0)
    assert got and got[0]


def test_explicit_bf16_on_a_cpu_without_bf16_units_warns(tiny_model, monkeypatch, caplog):
    monkeypatch.setattr(bienc, "_cpu_bf16_units", lambda: "")
    monkeypatch.setattr(bienc, "_WARNED_SLOW", set())
    monkeypatch.setattr(bienc, "_AUTO", {})
    with caplog.at_level("WARNING", logger="glinker.model.biencoder"):
        assert BiEncoder.from_pretrained(tiny_model, dtype="bfloat16").dtype == torch.bfloat16
    assert any("without bfloat16 units" in r.getMessage() for r in caplog.records)
    assert bienc.auto_dtype("cpu") == torch.float32  # auto keeps float32 there, without measuring
    monkeypatch.setattr(bienc, "_cpu_bf16_units", lambda: "amx")
    speed = {"x": 0.9}  # a loaded machine
    monkeypatch.setattr("glinker.model.scoring.bf16_speedup", lambda device="cpu": speed["x"])
    monkeypatch.setattr(bienc, "_AUTO", {})
    assert bienc.auto_dtype("cpu") == torch.bfloat16  # AMX: a loaded machine's timing does not flip it
    speed["x"] = 0.05  # reported, with no bfloat16 products worth the name
    monkeypatch.setattr(bienc, "_AUTO", {})
    assert bienc.auto_dtype("cpu") == torch.float32


def test_auto_on_a_missing_gpu_is_the_device_error(pipeline):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="device 'cuda' is not available"):
        bienc.auto_dtype("cuda")
    p = glinker.load_pipeline(str(pipeline), device="cuda", dtype="auto")
    with pytest.raises(ConfigError, match="device 'cuda' is not available"):
        p(["John Smith lives in Berlin."])


def test_non_x86_cpus_are_measured(monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert bienc._cpu_bf16_units() == "unknown"  # torch's AMX/AVX512 checks say nothing about ARM's BF16


def test_ner_resume_refuses_another_dtype_either_way(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from glinker.cli import _load_groups, app

    _load_groups()
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "John Smith lives in Berlin."}) + "\n")
    out = tmp_path / "out.jsonl"
    base = ["ner", "-m", str(tiny_model), "-l", "person", "-l", "location", str(src), "-o", str(out)]
    r = CliRunner().invoke(app, [*base, "--dtype", "bfloat16"])
    assert r.exit_code == 0, r.output
    src.write_text(src.read_text() + json.dumps({"id": "b", "text": "Berlin."}) + "\n")
    r = CliRunner().invoke(app, base)  # glinker.cli.main prints a GlinkerError as its message, exit 2
    assert isinstance(r.exception, ConfigError) and "dtype 'bfloat16' then, the checkpoint's (not set) now" in str(r.exception)
    r = CliRunner().invoke(app, [*base, "--dtype", "bfloat16"])
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 2


def test_link_refusal_names_the_dtype(pipeline, tmp_path):
    from glinker.cli.link import run_link

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "d0", "text": "John Smith lives in Berlin."}) + "\n")
    out = tmp_path / "out.jsonl"
    run_link(src, pipeline, out)
    src.write_text(src.read_text() + json.dumps({"id": "d1", "text": "Berlin."}) + "\n")
    with pytest.raises(ConfigError, match="dtype the checkpoint's \\(not set\\) then, 'auto' now"):
        run_link(src, pipeline, out, dtype="auto")


def test_auto_and_its_choice_share_one_model_copy(pipeline, fresh_auto):
    fresh_auto(4.0)
    a = glinker.load_pipeline(str(pipeline), dtype="auto")
    b = glinker.load_pipeline(str(pipeline), dtype="bfloat16")
    assert _model_of(a) is _model_of(b)


def test_an_encode_job_refuses_a_worker_of_another_precision(tiny_model, redis_job):
    from glinker.cluster import EncodeTask, RemoteEncoder, Worker

    from .test_cluster import URL, encode_job_refusals

    remote = RemoteEncoder(BiEncoder.from_pretrained(tiny_model, dtype="bfloat16"), URL, redis_job)
    assert remote.fingerprint == BiEncoder.from_pretrained(tiny_model).fingerprint  # what the KB records
    assert "--dtype bfloat16" in remote._coordinator().worker_hint
    errors = encode_job_refusals(remote, Worker(EncodeTask(BiEncoder.from_pretrained(tiny_model)), URL, redis_job,
                                                poll=0.2))
    assert errors and "in bfloat16; this worker's model runs in float32" in errors[0].message
    assert "--dtype bfloat16" in errors[0].fix


def test_settings_device_takes_only_devices_models_run_on(pipeline, tmp_path):
    y = tmp_path / "xpu.yaml"
    y.write_text(pipeline.read_text().replace("settings: {batch_size: 2}", "settings: {batch_size: 2, device: xpu}"))
    with pytest.raises(glinker.errors.PipelineError, match="device"):  # was accepted, then refused at first batch
        glinker.load_pipeline(str(y))


def test_a_record_that_kept_the_dtype_in_the_fingerprint_only_resumes(pipeline, tmp_path):
    from glinker.cli.link import run_link

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "d0", "text": "John Smith lives in Berlin."}) + "\n")
    out = tmp_path / "out.jsonl"
    run_link(src, pipeline, out, dtype="auto")
    rec = out.parent / (out.name + ".run.json")
    data = json.loads(rec.read_text())
    assert data.pop("dtype") == "auto"
    rec.write_text(json.dumps(data) + "\n")  # as the first build with --dtype wrote it: the fingerprint has it
    src.write_text(src.read_text() + json.dumps({"id": "d1", "text": "Berlin."}) + "\n")
    assert run_link(src, pipeline, out, dtype="auto")["written"] == 1


def test_a_low_precision_model_folds_the_span_layer_only_where_it_pays(tiny_model, monkeypatch):
    """Folding trades a 4D x D span layer for 3D per label; the pre-filter makes the label product cheaper than a
    float32 span layer, but a bfloat16 model runs that layer in bfloat16 too (measured on an AMX CPU, 1,024 labels:
    unfolded 86.6 ex/s, folded 75.6)."""
    from glinker.model import scoring

    monkeypatch.setattr(scoring, "lowp_prefilter", lambda device="cpu": scoring.LowpInfo(torch.bfloat16, 4.0))
    for dtype, folds in (("float32", True), ("bfloat16", False), ("float64", True)):
        m = BiEncoder.from_pretrained(tiny_model, dtype=dtype)
        C = max(2 * m.dim, scoring.LOWP_MIN_LABELS)
        assert 4 * m.dim <= 3 * C < 16 * m.dim  # 4D/3 <= C < 16D/3: folds with a 4x pre-filter, not without
        names = [f"label {i}" for i in range(C)]
        bank = m.encode_labels(names)
        for labels in (bank, names):  # a bank (cast to the model's dtype) and a list (encoded in float32)
            P = m._label_spec(labels, 1)[0]
            folded, lowp = m._scoring_matrices(labels, P, None)
            assert (folded is not None) == folds and lowp is not None, (dtype, type(labels))


def test_validate_says_what_auto_picks_here(pipeline, tmp_path, fresh_auto):
    from typer.testing import CliRunner

    from glinker.cli import _load_groups, app

    _load_groups()
    fresh_auto(3.0)
    y = tmp_path / "auto.yaml"
    y.write_text(pipeline.read_text().replace("settings: {batch_size: 2}", "settings: {batch_size: 2, dtype: auto}"))
    r = CliRunner().invoke(app, ["pipeline", "validate", str(y)])
    assert r.exit_code == 0 and "dtype: auto (bfloat16 on this machine)" in r.output
    r = CliRunner().invoke(app, ["pipeline", "validate", str(pipeline)])
    assert r.exit_code == 0 and "dtype:" not in r.output


def test_float16_on_an_amx_cpu_does_not_warn(tiny_model, monkeypatch, caplog):
    monkeypatch.setattr(bienc, "_cpu_bf16_units", lambda: "amx")
    monkeypatch.setattr(bienc, "_cpu_fp16_fast", lambda: True)  # AVX512-FP16 (Sapphire Rapids)
    monkeypatch.setattr(bienc, "_WARNED_SLOW", set())
    with caplog.at_level("WARNING", logger="glinker.model.biencoder"):
        BiEncoder.from_pretrained(tiny_model, dtype="float16")
    assert not any("slower" in r.getMessage() for r in caplog.records)


def test_the_link_jobs_worker_hint_carries_the_overrides(tmp_path, monkeypatch):
    from glinker.cli.link import _worker_args

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my model").mkdir()
    got = _worker_args("my model", "kbs/kb", "auto")
    assert got == f"--model '{tmp_path / 'my model'}' --kb {tmp_path / 'kbs/kb'} --dtype auto"
    assert _worker_args("glinker-bi-minilm", None, None) == "--model glinker-bi-minilm"  # a name stays a name
    assert _worker_args(None, None, None) == ""


def test_float16_warns_where_the_cpu_has_no_float16_kernels(tiny_model, monkeypatch, caplog):
    monkeypatch.setattr(bienc, "_cpu_bf16_units", lambda: "avx512_bf16")  # as AMD Zen 4: bfloat16, no float16
    monkeypatch.setattr(bienc, "_cpu_fp16_fast", lambda: False)
    monkeypatch.setattr(bienc, "_WARNED_SLOW", set())
    with caplog.at_level("WARNING", logger="glinker.model.biencoder"):
        BiEncoder.from_pretrained(tiny_model, dtype="bfloat16")
        assert not any("slower" in r.getMessage() for r in caplog.records)
        BiEncoder.from_pretrained(tiny_model, dtype="float16")
    assert any("without float16 units" in r.getMessage() for r in caplog.records)


def test_kb_add_embeds_in_the_precision_the_kb_was_built_in(tiny_model, tmp_path, caplog):
    """A KB built with --dtype bfloat16 records it; `kb add` without --dtype embeds in it too (it embedded in
    float32: one KB of two precisions), and another --dtype is warned about."""
    from typer.testing import CliRunner

    from glinker.cli import app
    from glinker.kb import KB

    src, more = tmp_path / "e.jsonl", tmp_path / "more.jsonl"
    src.write_text("".join(json.dumps({"id": f"Q{i}", "label": f"thing {i}", "description": "a thing"}) + "\n"
                           for i in range(1, 6)), encoding="utf-8")
    more.write_text(json.dumps({"id": "Q9", "label": "new thing", "description": "another"}) + "\n", encoding="utf-8")
    run = CliRunner().invoke
    for dt in ("bfloat16", "float32"):
        kb = tmp_path / f"kb-{dt}"
        r = run(app, ["kb", "build", "-a", "jsonl", "-s", str(src), "--model", str(tiny_model), "--out", str(kb),
                      "--dtype", dt])
        assert r.exit_code == 0, r.output
        with KB.open(kb) as k:
            assert k.manifest.vectors_dtype == dt and k.manifest.history[0]["dtype"] == dt
        caplog.clear()
        with caplog.at_level("INFO"):
            r = run(app, ["kb", "add", str(kb), "-s", str(more)])
        assert r.exit_code == 0, r.output
        assert ("running the model in bfloat16, the precision" in caplog.text) == (dt == "bfloat16")
        assert "the model in use runs in" not in caplog.text
        caplog.clear()
        other = "float32" if dt == "bfloat16" else "bfloat16"
        with caplog.at_level("WARNING"):
            r = run(app, ["kb", "add", str(kb), "-s", str(more), "--dtype", other])
        assert r.exit_code == 0, r.output
        assert f"was embedded in {dt}, the model in use runs in {other}" in caplog.text


def _tiny_kb(tiny_model, tmp_path, dtype, name="kb"):
    from glinker.kb.adapters import load_adapter
    from glinker.kb.build import build_kb

    src = tmp_path / f"{name}.jsonl"
    src.write_text("".join(json.dumps({"id": f"Q{i}", "label": f"thing {i}", "description": "a thing"}) + "\n"
                           for i in range(1, 6)), encoding="utf-8")
    out = tmp_path / name
    build_kb(load_adapter("jsonl", str(src)), out, BiEncoder.from_pretrained(tiny_model, dtype=dtype),
             model_name=str(tiny_model))
    return out


def test_a_kb_keeps_its_precision_past_a_hundred_updates(tiny_model, tmp_path):
    """The history keeps its last 100 entries: the build's, which records the precision, is always kept."""
    from glinker.kb import KB

    out = _tiny_kb(tiny_model, tmp_path, "bfloat16")
    with KB.open(out, writable=True) as kb:
        for _ in range(120):
            kb.remove(["Q404"])
    with KB.open(out) as kb:
        h = kb.manifest.history
        assert len(h) == 100 and h[0]["op"] == "build" and kb.manifest.vectors_dtype == "bfloat16"


def test_finishing_an_update_in_another_precision_warns(tiny_model, tmp_path, caplog):
    """An interrupted update's entities, embedded by the next remove (or sync) with another precision's model, are
    warned about as an upsert's are."""
    from glinker.kb import KB
    from glinker.types import Entity

    out = _tiny_kb(tiny_model, tmp_path, "bfloat16")
    with KB.open(out, writable=True) as kb:
        kb.store.upsert([Entity(id="Q9", label="new thing")], kb.template, track_pending=True)  # as if interrupted
        with caplog.at_level("WARNING", logger="glinker.kb.kb"):
            kb.remove(["Q404"], BiEncoder.from_pretrained(tiny_model))
    assert "was embedded in bfloat16, the model in use runs in float32" in caplog.text


def test_a_pipeline_rebuilds_its_source_kb_when_the_precision_changes(tiny_model, tmp_path, caplog):
    """A pipeline's KB read from a source (cached) and then run with another dtype: rebuilt, not synced with
    vectors of two precisions."""
    from glinker.kb import KB

    (tmp_path / "e.jsonl").write_text(json.dumps({"id": "Q1", "label": "thing one", "description": "a"}) + "\n",
                                      encoding="utf-8")
    p = tmp_path / "p.yaml"
    p.write_text(f"name: dt\nmodel: {tiny_model}\nsettings: {{dtype: bfloat16}}\n"
                 f"kb: {{adapter: jsonl, source: e.jsonl, cache: {tmp_path / 'cache'}}}\n"
                 "stages:\n  m: {type: alias_mentions}\n  c: {type: alias_candidates, input: m}\n", encoding="utf-8")
    with glinker.load_pipeline(str(p)) as pipe:
        pipe.link(["thing one"])
    with KB.open(tmp_path / "cache") as kb:
        assert kb.manifest.vectors_dtype == "bfloat16"
    with caplog.at_level("WARNING"), glinker.load_pipeline(str(p), dtype="float32") as pipe:
        pipe.link(["thing one"])
    assert "the precision changed: its vectors were embedded in bfloat16" in caplog.text
    with KB.open(tmp_path / "cache") as kb:
        assert kb.manifest.vectors_dtype == "float32" and [h["op"] for h in kb.manifest.history] == ["build"]


def test_ner_resume_refusal_says_the_labels_changed_not_their_hashes(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from glinker.cli import _load_groups, app

    _load_groups()
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "John Smith lives in Berlin."}) + "\n")
    out = tmp_path / "out.jsonl"
    base = ["ner", "-m", str(tiny_model), str(src), "-o", str(out)]
    assert CliRunner().invoke(app, [*base, "-l", "person", "-l", "location"]).exit_code == 0
    src.write_text(src.read_text() + json.dumps({"id": "b", "text": "Berlin."}) + "\n")
    r = CliRunner().invoke(app, [*base, "-l", "person"])
    assert isinstance(r.exception, ConfigError) and "the labels (another set" in str(r.exception)


def test_a_link_refusal_shows_a_model_name_whole(pipeline, tmp_path):
    """`glinker link` records the model as named (a path, a shipped name): shown whole, not cut as a fingerprint."""
    from glinker.cli.link import _shown

    assert _shown("/tmp/review/a_long_model_folder_name", "model") == "'/tmp/review/a_long_model_folder_name'"
    assert _shown("0f1e2d3c4b5a" * 5 + "abcd", "model") == "fingerprint 0f1e2d3c4b5a"
    assert _shown(None, "dtype") == "the checkpoint's (not set)" and _shown(None, "threshold") == "none"
    assert _shown(True, "flat_ner") == "on" and _shown(False, "multi_label") == "off" and _shown(0.5) == "0.5"
