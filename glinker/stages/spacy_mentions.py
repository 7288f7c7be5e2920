"""Mentions from a spaCy pipeline's named entities (``doc.ents``): reuse an NER model you already have.

``model`` is what ``spacy.load`` takes (an installed package such as ``en_core_web_sm``, or a folder), or
``blank:LANG`` for an empty pipeline; ``patterns`` adds an entity ruler (spaCy's token and phrase patterns), so a
rule-based mention detector needs no trained model. Documents go through ``nlp.pipe`` in batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pydantic import Field

from glinker.errors import ConfigError, DependencyError
from glinker.pipeline.stage import DOCUMENTS, Stage, StageParams
from glinker.types import Document, Mention


class SpacyMentionsParams(StageParams):
    model: str = Field(default="en_core_web_sm", description="What spacy.load takes: an installed pipeline package "
                       "or a folder; `blank:en` (any language code) for an empty pipeline, e.g. with `patterns`.")
    labels: dict[str, str] | list[str] | None = Field(
        default=None, description="spaCy entity labels to keep: a list, or a map to glinker labels "
        "({PERSON: person, ORG: organization}); default: every entity, with spaCy's label.")
    patterns: str | list[dict[str, Any]] | None = Field(
        default=None, description="Entity-ruler patterns ({label, pattern}) inline, or a JSONL file of them "
        "(relative to the pipeline file), added before the model's own NER so they win overlaps.")
    disable: list[str] = Field(
        default_factory=lambda: ["parser", "tagger", "lemmatizer", "attribute_ruler", "morphologizer", "senter"],
        description="Pipeline components not to run (speed); names the model lacks are ignored.")
    batch_size: int = Field(default=64, ge=1, description="Documents per nlp.pipe batch.")


class SpacyMentions(Stage):
    """Named entities of a spaCy pipeline as mentions (label kept or mapped; ``labels`` filters)."""

    model_is_biencoder = False  # `model` is what spacy.load takes
    type_name = "spacy_mentions"
    Params = SpacyMentionsParams
    accepts = (DOCUMENTS,)
    produces = "mentions"
    summary = "mentions from a spaCy pipeline's named entities"

    @property
    def _where(self) -> str:
        return f"stage {self.name!r} (spacy_mentions)"

    def warm_up(self) -> None:
        p: SpacyMentionsParams = self.params  # type: ignore[assignment]
        try:
            import spacy
        except ImportError:
            raise DependencyError("the spacy_mentions stage needs spaCy", where=self._where,
                                  fix="pip install spacy (the spacy extra: pip install -e '.[spacy]' in a clone) and a model, e.g. "
                                  "python -m spacy download en_core_web_sm") from None
        if p.model.startswith("blank:"):
            nlp = spacy.blank(p.model.split(":", 1)[1] or "en")
        else:
            path = self.context.resolve_path(p.model)
            try:
                nlp = spacy.load(path if path and Path(path).exists() else p.model, disable=p.disable)
            except OSError as e:
                raise ConfigError(f"spaCy cannot load {p.model!r}: {str(e).splitlines()[0][:200]}", where=self._where,
                                  fix=f"install it (python -m spacy download {p.model}), give a folder, or use "
                                  "model: blank:en with patterns") from None
        if p.patterns is not None:
            ruler = nlp.add_pipe("entity_ruler", name="glinker_patterns",
                                 before="ner" if "ner" in nlp.pipe_names else None)
            ruler.add_patterns(self._patterns(p.patterns))
        if not ({"ner", "glinker_patterns"} & set(nlp.pipe_names)) and "entity_ruler" not in nlp.pipe_names:
            raise ConfigError(f"spaCy pipeline {p.model!r} has no entity recognizer (components: "
                              f"{nlp.pipe_names or 'none'})", where=self._where,
                              fix="use a pipeline with `ner`, or add `patterns`")
        self._nlp = nlp
        self._keep = None if p.labels is None else (
            {x: x for x in p.labels} if isinstance(p.labels, list) else dict(p.labels))

    def _patterns(self, src: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
        from glinker.errors import DataError
        from glinker.io import iter_jsonl_dicts

        if isinstance(src, list):
            return src
        path = Path(self.context.resolve_path(src) or src)
        out = []
        try:
            for rec, n in iter_jsonl_dicts(path, skip_partial_tail=False):
                if "label" not in rec or "pattern" not in rec:
                    raise ConfigError("a pattern needs 'label' and 'pattern'", where=f"{path}:{n}",
                                      fix='{"label": "ORG", "pattern": "Google"}')
                out.append(rec)
        except DataError as e:  # not found, not JSON: a configuration problem of this stage
            raise ConfigError(e.message, where=e.where, fix='one pattern a line: {"label": "ORG", "pattern": '
                              '"Google"}') from None
        return out

    def run(self, documents: Sequence[Document], inputs: Sequence[Any]) -> list[list[Mention]]:
        p: SpacyMentionsParams = self.params  # type: ignore[assignment]
        out = []
        for d_i, sdoc in enumerate(self._nlp.pipe((d.text for d in documents), batch_size=p.batch_size)):
            ms = []
            for ent in sdoc.ents:
                label = ent.label_ if self._keep is None else self._keep.get(ent.label_)
                if label is None or ent.end_char <= ent.start_char:
                    continue
                ms.append(Mention(start=ent.start_char, end=ent.end_char, text=ent.text, label=label, doc_index=d_i))
            out.append(ms)
        return out
