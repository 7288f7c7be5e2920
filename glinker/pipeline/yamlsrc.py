"""Safe YAML loading that remembers where every key came from.

``yaml.safe_load`` forgets line numbers and silently keeps the last of two duplicate keys; a pipeline author
needs both reported. We compose the node tree with the safe loader (no Python object tags are ever
constructed) and build plain dicts/lists ourselves, recording the 1-based line of each key by its path.

Anchors and aliases are kept (``x-`` keys hold anchors for reuse), but an alias is expanded into a copy wherever it is
used, so a short file of nested aliases ("billion laughs") would build billions of values, and an anchor used inside
its own value never ends: both are measured on the composed node graph, before anything is built, and refused as
E201 naming the alias's line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from glinker.errors import PipelineError, Problem

PathKey = tuple  # ("stages", "mentions", "threshold") or ("stages", "x", "inputs", 1)


@dataclass
class LoadedYAML:
    """A YAML document as plain Python data, with the line of every key and list item by its path."""

    data: Any
    source: str
    lines: dict[PathKey, int] = field(default_factory=dict)
    duplicates: list[Problem] = field(default_factory=list)

    def line_of(self, path: PathKey) -> int | None:
        """The line of ``path`` or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)

    def where(self, path: PathKey) -> str:
        line = self.line_of(path)
        return f"{self.source}:{line}" if line else self.source


_scalar_loader = yaml.SafeLoader("")

MAX_ALIAS_VALUES = 100_000
"""How many values aliases may add to a document once expanded (each use of ``*name`` copies the anchored value).
A pipeline is a few hundred values; the limit only stops documents built to explode ("billion laughs")."""


class _AliasLoader(yaml.SafeLoader):
    """The safe loader, noting where each anchor is defined and each alias used (the composed graph shares one node
    for an anchor and all its aliases, and keeps neither name nor line of the aliases)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.anchor_of: dict[int, str] = {}  # id(node) -> its anchor's name
        self.alias_uses: list[tuple[str, int, int, yaml.Node]] = []  # (name, line, char index, the node it names)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        node = super().compose_node(parent, index)
        if isinstance(event, yaml.AliasEvent):
            self.alias_uses.append((str(event.anchor), event.start_mark.line + 1, event.start_mark.index, node))
        elif getattr(event, "anchor", None) is not None:
            self.anchor_of[id(node)] = str(event.anchor)
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_aliases(root: yaml.Node, loader: _AliasLoader, source: str, what: str) -> None:
    """Refuse (E201) an anchor used inside its own value and aliases that expand the document by more than
    :data:`MAX_ALIAS_VALUES` values. Sizes are counted on the composed graph (each distinct node once, memoised),
    iteratively: the walk costs the file's size whatever the aliases would expand to."""
    if not loader.alias_uses:
        return
    sizes: dict[int, int] = {}  # id(node) -> values it expands to (itself included)
    on_path: set[int] = set()  # nodes entered and not finished: the current node's ancestors
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _children(node))
            continue
        if key in sizes:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _recursive(child, loader, source, what)
            if id(child) not in sizes:
                stack.append((child, False))
    written = len(sizes)
    total = sizes[id(root)]
    if total - written <= MAX_ALIAS_VALUES:
        return
    name, line, _, node = max(loader.alias_uses, key=lambda u: (sizes[id(u[3])], -u[1]))
    raise PipelineError([Problem(
        "E201", f"YAML aliases expand this file to {total:,} values ({written:,} written; *{name} alone stands for "
                f"{sizes[id(node)]:,}): aliases may add at most {MAX_ALIAS_VALUES:,} values",
        where=f"{source}:{line}", line=line,
        fix="aliases nested in aliases multiply (a 'billion laughs' file): write the values out, or use fewer "
            "levels of aliases; a file from someone else that does this is not a pipeline to run")],
        source=source, what=what)


def _recursive(node: yaml.Node, loader: _AliasLoader, source: str, what: str) -> PipelineError:
    """The error for an anchor whose value holds an alias of itself, at that alias (else at the anchor)."""
    name = loader.anchor_of.get(id(node), "?")
    start, end = node.start_mark.index, node.end_mark.index
    inside = [u for u in loader.alias_uses if u[3] is node and start <= u[2] <= end]
    anchor_line = node.start_mark.line + 1
    line = inside[0][1] if inside else anchor_line
    return PipelineError([Problem(
        "E201", f"alias *{name} is used inside the value of its own anchor &{name} (line {anchor_line}): a recursive "
                "alias has no end", where=f"{source}:{line}", line=line,
        fix=f"an alias may only name a value defined before it and outside it: remove *{name} here, or anchor "
            "another value")], source=source, what=what)


def _too_deep(source: str, line: int | None, what: str, how: str) -> PipelineError:
    return PipelineError([Problem(
        "E201", f"the YAML nests too deeply{how}", where=f"{source}:{line}" if line else source, line=line,
        fix="a pipeline nests a few levels: flatten the values (or their aliases)")], source=source, what=what)


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:str", "tag:yaml.org,2002:int",
               "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null",
               "tag:yaml.org,2002:merge", "tag:yaml.org,2002:timestamp")


def _build(node: yaml.Node, path: PathKey, out: LoadedYAML) -> Any:
    if node.tag not in _PLAIN_TAGS:
        line = node.start_mark.line + 1
        raise PipelineError([Problem("E201", f"YAML tag {node.tag!r} is not allowed",
                                     where=f"{out.source}:{line}", line=line,
                                     fix="use plain YAML values; tags that construct objects are refused")],
                            source=out.source)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        from_merge: set[Any] = set()  # keys a `<<: *anchor` gave: a key written in the mapping overrides them
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                # `<<: *a` or `<<: [*a, *b]`: each mapping built at this path (its keys' lines recorded as this
                # mapping's), giving the keys the mapping has not (earlier ones win); a key it does not give keeps
                # its own line
                for item in value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]:
                    had, before = set(result), dict(out.lines)
                    m = _build(item, path, out)
                    if isinstance(m, dict):
                        for k, v in m.items():
                            if k not in result:
                                result[k] = v
                                from_merge.add(k)
                    n = len(path)
                    for p in [p for p in out.lines if len(p) > n and p[:n] == path and p[n] in had]:
                        if p in before:
                            out.lines[p] = before[p]
                        else:
                            del out.lines[p]
                continue
            key = _build(key_node, path, out)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise PipelineError([Problem(
                    "E201", "mapping keys must be plain scalars",
                    where=f"{out.source}:{key_node.start_mark.line + 1}", line=key_node.start_mark.line + 1,
                    fix="write the key as a plain string")], source=out.source)
            line = key_node.start_mark.line + 1
            if key in from_merge:  # (YAML merge keys: the mapping's own value wins, wherever it is written)
                from_merge.discard(key)
                del result[key]
            if key in result:
                first = out.lines.get(path + (key,))
                written = key_node.value if isinstance(key_node, yaml.ScalarNode) else key
                read_as = f" ({written!r} read as {key!r}: quote it)" if str(written) != str(key) else ""
                out.duplicates.append(Problem(
                    "E210", f"duplicate key {key!r} (first defined on line {first}){read_as}",
                    where=f"{out.source}:{line}", line=line,
                    fix="every key (and every stage name) must be unique: rename or remove one of them; YAML reads "
                        "unquoted yes/no/on/off/true/false as booleans and 1 as a number, so quote such names"))
                continue
            out.lines[path + (key,)] = line
            result[key] = _build(value_node, path + (key,), out)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            out.lines[path + (i,)] = item.start_mark.line + 1
            items.append(_build(item, path + (i,), out))
        return items
    return _scalar_loader.construct_object(node, deep=True)


# ${ after a space, comma, bracket or colon: a variable that is not quoted (a quoted one follows its quote)
_BARE_VAR = re.compile(r"(?:^|[\s,{\[:])\$\{")


def load_yaml(text: str | None = None, *, path: str | Path | None = None, source: str | None = None,
              what: str = "pipeline") -> LoadedYAML:
    """Parse YAML from ``text`` or the file at ``path`` into plain data plus a key→line map.

    Raises PipelineError (E201) with the parser's line and column on a syntax error.
    """
    source = source or (str(path) if path is not None else "<string>")
    if text is None:
        if path is None:
            raise ValueError("load_yaml needs text or path")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PipelineError([Problem("E202", f"{what} file not found", where=source,
                                         fix="check the path; " + (
                                             "example pipelines are in the source repository's pipelines/ (not "
                                             "installed with the package)" if what == "pipeline" else
                                             "example training configs are in the source repository's examples/train/ "
                                             "(not installed with the package)"))],
                                source=source, what=what) from None
        except UnicodeDecodeError as e:
            raise PipelineError([Problem("E203", f"file is not valid UTF-8 ({e.reason} at byte {e.start})",
                                         where=source, fix="save the file as UTF-8")], source=source, what=what) from None
        except OSError as e:  # a folder, no permission...
            raise PipelineError([Problem("E202", f"cannot read the {what} file: "
                                         + ("it is a folder" if Path(path).is_dir() else e.strerror or str(e)),
                                         where=source, fix=f"name the {what}'s YAML file")],
                                source=source, what=what) from None
    out = LoadedYAML(data=None, source=source)
    loader = _AliasLoader(text)
    try:
        node = loader.get_single_node()
    except RecursionError:  # thousands of nested brackets: the composer recurses per level
        mark = loader.get_mark()
        raise _too_deep(source, mark.line + 1 if mark else None, what, "") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        where = f"{source}:{line}" if line else source
        col = f", column {mark.column + 1}" if mark else ""
        started = ""
        if e.context and e.context_mark and e.context_mark.line + 1 != line:
            started = f" ({e.context} that started on line {e.context_mark.line + 1})"
        escape = "unknown escape" in str(e.problem or "")
        tab = "'\\t'" in str(e.problem or "") or "tab" in str(e.problem or "").lower()
        lines = text.splitlines()
        var = "expected ','" in str(e.problem or "") and line is not None and 0 < line <= len(lines) \
            and _BARE_VAR.search(lines[line - 1]) is not None  # `{path: ${X}/f}`: the { of ${ opens a mapping
        raise PipelineError([Problem("E201", f"YAML syntax error: {e.problem or e.context}{col}{started}",
                                     where=where, line=line,
                                     fix="write the value in single quotes ('\\d+'): double quotes read backslash "
                                         "escapes, single quotes keep a regular expression as written" if escape else
                                         "indent with spaces: YAML does not allow tabs" if tab else
                                         "quote a value holding ${VAR}: {path: \"${DATA}/train.bio\"} (inside { }, an "
                                         "unquoted { starts a mapping)" if var else
                                         "fix the YAML syntax (indentation, a missing ':' or an unclosed quote)")],
                            source=source, what=what) from None
    except yaml.YAMLError as e:  # e.g. a python/object tag the safe loader refuses
        raise PipelineError([Problem("E201", f"YAML error: {e}", where=source,
                                     fix="use plain YAML; tags that construct Python objects are not allowed")],
                            source=source, what=what) from None
    finally:
        loader.dispose()
    if node is None:
        out.data = None
        return out
    _check_aliases(node, loader, source, what)
    try:
        out.data = _build(node, (), out)
    except RecursionError:  # aliases of aliases, each a level deeper than the value it names
        raise _too_deep(source, None, what, " once its aliases are expanded") from None
    except yaml.constructor.ConstructorError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise PipelineError([Problem("E201", f"YAML error: {e.problem}", where=f"{source}:{line}", line=line,
                                     fix="use plain YAML; tags that construct Python objects are not allowed")],
                            source=source, what=what) from None
    out.lines.setdefault((), node.start_mark.line + 1)
    return out
