"""The stage DAG: edges inferred from ``input``/``inputs``; missing inputs, cycles and kind mismatches reported."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import networkx as nx

from glinker.errors import Problem, closest
from glinker.pipeline.stage import DOCUMENTS

if TYPE_CHECKING:
    from glinker.pipeline.spec import StageSpec
    from glinker.pipeline.yamlsrc import LoadedYAML


def build_graph(stages: dict[str, "StageSpec"]) -> nx.DiGraph:
    """A DiGraph with the ``documents`` source node and one node per stage; an edge per input."""
    g = nx.DiGraph()
    g.add_node(DOCUMENTS, kind=DOCUMENTS)
    for name, st in stages.items():
        g.add_node(name, type=st.type, kind=st.cls.produces if st.cls else None)
    for name, st in stages.items():
        for i, src in enumerate(st.inputs):
            if src in g:
                g.add_edge(src, name, position=i)
    return g


def _input_where(st: "StageSpec", src: "LoadedYAML", index: int) -> tuple[str, int | None]:
    base = ("stages", st.name)
    for path in (base + ("inputs", index), base + ("inputs",), base + ("input",), base):
        if path in src.lines:
            line = src.lines[path]
            return f"{src.source}:{line}", line
    return src.source, None


def check_graph(stages: dict[str, "StageSpec"], output: str | None,
                src: "LoadedYAML", quiet: bool = False) -> tuple[list[Problem], str | None]:
    """Validate the wiring of already-valid stages. Returns (problems, the output stage name); ``quiet``: other
    problems were found, so no warning about the output's choice (the file does not load anyway)."""
    problems: list[Problem] = []
    names = list(stages)
    for st in stages.values():
        for i, inp in enumerate(st.inputs):
            where, line = _input_where(st, src, i)
            if inp == st.name:
                problems.append(Problem("E240", f"stage {st.name!r} reads its own output", where=where, line=line,
                                        fix="a stage's input must be an earlier stage or `documents`"))
            elif inp != DOCUMENTS and inp not in stages:
                guess = closest(inp, names + [DOCUMENTS])
                hint = f"did you mean {guess!r}? " if guess else ""
                problems.append(Problem("E241", f"stage {st.name!r} reads from {inp!r}, which is not a stage",
                                        where=where, line=line,
                                        fix=f"{hint}inputs must name a stage of this file or `documents`"))
            elif st.cls is not None and (inp == DOCUMENTS or stages[inp].cls is not None):
                produced = DOCUMENTS if inp == DOCUMENTS else stages[inp].cls.produces  # type: ignore[union-attr]
                if produced not in st.cls.accepts:
                    problems.append(Problem(
                        "E243", f"stage {st.name!r} ({st.type}) accepts {', '.join(st.cls.accepts)} but its input "
                        f"{inp!r} produces {produced}", where=where, line=line,
                        fix=f"connect {st.name!r} to a stage that produces {' or '.join(st.cls.accepts)}"))

    g = build_graph(stages)
    for cycle in nx.simple_cycles(g):
        if len(cycle) == 1:
            continue  # self-loops are reported above with a clearer message
        first = min(cycle, key=lambda n: stages[n].line or 0)
        k = cycle.index(first)
        ordered = cycle[k:] + cycle[:k]
        st = stages[first]
        line = st.line
        problems.append(Problem("E242", f"cycle between stages: {' -> '.join(ordered + [first])}",
                                where=f"{src.source}:{line}" if line else src.source, line=line,
                                fix="a pipeline is a DAG: remove one of these inputs"))

    written: dict[str, str] = {}  # file -> the first stage that writes it
    for st in stages.values():
        if st.cls is None or st.params is None:
            continue
        for key, f in st.cls.written_files(st.params).items():
            if key in written:
                line = src.line_of(("stages", st.name))
                problems.append(Problem("E246", f"stages {written[key]!r} and {st.name!r} both write {f}",
                                        where=f"{src.source}:{line}" if line else src.source, line=line,
                                        fix="give each writer its own file (one would overwrite or repeat the "
                                            "other's documents)"))
            else:
                written[key] = st.name
    sinks = [n for n in stages if g.out_degree(n) == 0]
    if output is not None:
        if output not in stages:
            guess = closest(output, names)
            line = src.line_of(("output",))
            problems.append(Problem("E244", f"`output` names {output!r}, which is not a stage",
                                    where=f"{src.source}:{line}" if line else src.source, line=line,
                                    fix=(f"did you mean {guess!r}? " if guess else "") + "name one of: " + ", ".join(names)))
            output = None
    elif len(sinks) == 1:
        output = sinks[0]
    elif len(sinks) > 1 and not problems and not quiet:
        output = sinks[-1]
        logging.getLogger(__name__).warning(
            "%s: stages %s feed no other stage; the pipeline's output is the last one, %r (set `output:` to choose)",
            src.source, ", ".join(repr(s) for s in sinks), output)
    for n in names:
        if not stages[n].inputs:
            continue  # its `input`/`inputs` was invalid, and is reported as such
        if n not in nx.descendants(g, DOCUMENTS) and not any(p.code in ("E241", "E240", "E242") for p in problems):
            st = stages[n]
            problems.append(Problem("E245", f"stage {n!r} is not connected to the documents", where=src.where(("stages", n)),
                                    line=st.line, fix="give it an `input:`"))
    return problems, output


def topological_order(stages: dict[str, "StageSpec"]) -> list[str]:
    """Stage names in an order where every stage comes after its inputs; ties keep file order."""
    g = build_graph(stages)
    pos = {n: i for i, n in enumerate(stages)}
    order = nx.lexicographical_topological_sort(g, key=lambda n: pos.get(n, -1))
    return [n for n in order if n != DOCUMENTS]


def render_text(stages: dict[str, "StageSpec"], output: str | None) -> str:
    """The DAG as indented text: each stage with its type, kind and inputs, in run order."""
    lines = []
    for n in topological_order(stages):
        st = stages[n]
        mark = "  <- output" if n == output else ""
        lines.append(f"{n} [{st.type} -> {st.cls.produces}]  inputs: {', '.join(st.inputs)}{mark}")
    return "\n".join(lines)


def render_dot(stages: dict[str, "StageSpec"], output: str | None, name: str = "pipeline") -> str:
    """The DAG in Graphviz dot."""
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace('"', '\\"')

    def q(s: str) -> str:
        return '"' + esc(s) + '"'

    out = [f"digraph {q(name)} {{", "  rankdir=LR;", f"  {q(DOCUMENTS)} [shape=note];"]
    for n in topological_order(stages):
        st = stages[n]
        shape = "doubleoctagon" if n == output else "box"
        label = '"' + esc(n) + "\\n" + esc(st.type) + '"'  # \n is dot's line break
        out.append(f"  {q(n)} [shape={shape}, label={label}];")
    for n in topological_order(stages):
        for src in stages[n].inputs:
            kind = DOCUMENTS if src == DOCUMENTS else stages[src].cls.produces
            out.append(f"  {q(src)} -> {q(n)} [label={q(kind)}];")
    out.append("}")
    return "\n".join(out)
