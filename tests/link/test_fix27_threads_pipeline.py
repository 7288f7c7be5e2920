"""A linking pipeline in a service: one pipeline shared by threads gives exactly what sequential calls give, a
result never depends on the batches before it, and pipelines loaded from one file share one model."""

from __future__ import annotations

import gc
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from glinker.pipeline import Pipeline, loads_spec

NER = """
  ner: {type: biencoder_mentions, labels: [person, organization, location], threshold: 0.3}
  mentions: {type: merge_mentions, inputs: [am, ner], overlap: first_input}"""
ALIAS_ONLY = """
  mentions: {type: merge_mentions, inputs: [am], overlap: first_input}"""

BASE = [
    "Steve Jobs founded Apple in California.",
    "Paris is the capital of France; Paris, Texas is a city.",
    "John Smith lives in Berlin and works for Google.",
    "Nothing to link here.",
    " ".join(["John Smith lives in Paris and works for Google in London"] * 3),
    "Apple and Google are companies in California , Germany has Berlin .",
]
DOCS = [{"id": f"d{i}", "text": t} for i, t in enumerate(BASE)]


def yaml(model: Path, kb: Path, mentions: str) -> str:
    return f"""name: t
model: {model}
kb: {kb}
settings: {{batch_size: 3}}
stages:
  am: {{type: alias_mentions}}{mentions}
  d: {{type: dense_candidates, input: mentions}}
  r: {{type: rescore, inputs: [d], weights: {{biencoder: 1.0, popularity: 0.2}}}}
  links: {{type: select, input: r, nil_threshold: 0.5}}
"""


def canon(docs) -> str:
    return json.dumps([d.model_dump(mode="json") for d in docs], sort_keys=True)


@pytest.fixture
def one_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("mentions", [NER, ALIAS_ONLY], ids=["ner", "alias_only"])
def test_threads_sharing_a_pipeline_get_what_sequential_calls_get(tiny_model, tiny_kb, mentions, one_thread):
    tasks = [[DOCS[i % 6], DOCS[(i * 5 + 1) % 6], DOCS[(i * 7 + 2) % 6], DOCS[(i + 3) % 6]] for i in range(12)]
    alone = [canon(Pipeline(loads_spec(yaml(tiny_model, tiny_kb, mentions))).link(t)) for t in tasks]
    p = Pipeline(loads_spec(yaml(tiny_model, tiny_kb, mentions)))
    for _ in range(2):
        with ThreadPoolExecutor(6) as ex:
            got = list(ex.map(lambda t: canon(p.link(t)), tasks))
        assert [i for i, (a, b) in enumerate(zip(got, alone)) if a != b] == []


def test_a_result_does_not_depend_on_the_batches_before_it(tiny_model, tiny_kb, one_thread):
    """Word vectors of a window encoded in one batch (padded to that batch's longest text) differ in the last
    digits from the same window encoded in another: a batch reads only those it encoded itself."""
    y = yaml(tiny_model, tiny_kb, ALIAS_ONLY)
    short, long_ = DOCS[1], DOCS[4]
    fresh = canon(Pipeline(loads_spec(y)).link([short]))
    p = Pipeline(loads_spec(y))
    p.link([long_, short])  # short encoded beside a longer text
    assert canon(p.link([short])) == fresh
    from glinker.stages.resources import WINDOW_CACHE

    cache = p.context._resources.get(WINDOW_CACHE)
    assert cache is not None and not cache.items and cache.words == 0  # an idle pipeline holds no word vectors


def _model_of(p: Pipeline):
    return next(v for k, v in p.context._resources.items() if isinstance(k, tuple) and k[0] == "model")


def test_pipelines_from_one_file_share_one_model(tiny_model, tiny_kb, tmp_path, one_thread):
    y = yaml(tiny_model, tiny_kb, NER)
    a, b = Pipeline(loads_spec(y)), Pipeline(loads_spec(y))
    a.warm_up()
    b.warm_up()
    assert _model_of(a) is _model_of(b)
    ref = canon(b.link(DOCS))
    a.close()  # closes a's KB and stages, not the model b uses
    assert canon(b.link(DOCS)) == ref
    assert canon(a.link(DOCS)) == ref  # a warms up again, on the same model
    # another window size, or another folder's checkpoint (even a copy), is another model
    other = Pipeline(loads_spec(y.replace("settings: {", "settings: {window_words: 12, ")))
    other.warm_up()
    assert _model_of(other) is not _model_of(a)
    copy = shutil.copytree(tiny_model, tmp_path / "copy")
    c = Pipeline(loads_spec(yaml(copy, tiny_kb, NER)))
    c.warm_up()
    assert _model_of(c) is not _model_of(a)
    # a checkpoint saved again into the same folder is loaded anew
    (copy / "gliner_config.json").write_text((copy / "gliner_config.json").read_text() + "\n")
    d = Pipeline(loads_spec(yaml(copy, tiny_kb, NER)))
    d.warm_up()
    assert _model_of(d) is not _model_of(c)


def test_a_shared_model_is_freed_with_the_last_pipeline(tiny_model, tiny_kb):
    import weakref

    from glinker.stages import resources

    y = yaml(tiny_model, tiny_kb, NER)
    a, b = Pipeline(loads_spec(y)), Pipeline(loads_spec(y))
    a.warm_up()
    b.warm_up()
    gone = weakref.ref(_model_of(a))
    keys = [k for k, v in resources._LOADED_MODELS.items() if v is gone()]
    assert len(keys) == 1
    del a
    gc.collect()
    assert gone() is not None
    b.close()
    del b
    gc.collect()
    assert gone() is None and keys[0] not in resources._LOADED_MODELS
