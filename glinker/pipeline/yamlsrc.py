"""Safe YAML loading that remembers where every key came from.

``yaml.safe_load`` forgets line numbers and silently keeps the last of two duplicate keys; a pipeline author
needs both reported. We compose the node tree with the safe loader (no Python object tags are ever
constructed) and build plain dicts/lists ourselves, recording the 1-based line of each key by its path.
"""

from __future__ import annotations

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
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged = _build(value_node, path, out)
                for m in merged if isinstance(merged, list) else [merged]:
                    if isinstance(m, dict):
                        for k, v in m.items():
                            result.setdefault(k, v)
                continue
            key = _build(key_node, path, out)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise PipelineError([Problem(
                    "E201", "mapping keys must be plain scalars",
                    where=f"{out.source}:{key_node.start_mark.line + 1}", line=key_node.start_mark.line + 1,
                    fix="write the key as a plain string")], source=out.source)
            line = key_node.start_mark.line + 1
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
                                         fix="check the path; " + ("shipped pipelines live in pipelines/"
                                                                   if what == "pipeline" else
                                                                   "example training configs live in examples/train/"))],
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
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        where = f"{source}:{line}" if line else source
        col = f", column {mark.column + 1}" if mark else ""
        started = ""
        if e.context and e.context_mark and e.context_mark.line + 1 != line:
            started = f" ({e.context} that started on line {e.context_mark.line + 1})"
        escape = "unknown escape" in str(e.problem or "")
        raise PipelineError([Problem("E201", f"YAML syntax error: {e.problem or e.context}{col}{started}",
                                     where=where, line=line,
                                     fix="write the value in single quotes ('\\d+'): double quotes read backslash "
                                         "escapes, single quotes keep a regular expression as written" if escape else
                                         "fix the YAML syntax (indentation, a missing ':' or an unclosed quote)")],
                            source=source, what=what) from None
    except yaml.YAMLError as e:  # e.g. a python/object tag the safe loader refuses
        raise PipelineError([Problem("E201", f"YAML error: {e}", where=source,
                                     fix="use plain YAML; tags that construct Python objects are not allowed")],
                            source=source, what=what) from None
    if node is None:
        out.data = None
        return out
    try:
        out.data = _build(node, (), out)
    except yaml.constructor.ConstructorError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise PipelineError([Problem("E201", f"YAML error: {e.problem}", where=f"{source}:{line}", line=line,
                                     fix="use plain YAML; tags that construct Python objects are not allowed")],
                            source=source, what=what) from None
    out.lines.setdefault((), node.start_mark.line + 1)
    return out
