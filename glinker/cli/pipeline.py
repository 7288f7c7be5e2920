"""`glinker pipeline validate|show|stages`: check a YAML pipeline before anything heavy loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from glinker.errors import PipelineError

pipeline_app = typer.Typer(help="Validate and inspect YAML pipelines.", no_args_is_help=True)


@pipeline_app.command("validate")
def validate(file: Path = typer.Argument(..., help="Pipeline YAML file."),
             strict: bool = typer.Option(False, "--strict", help="Exit 2 on warnings too: a KB folder, label file "
                                         "or bank that does not exist yet, a model that cannot load, an output "
                                         "file a writer will refuse (what a run stops on).")) -> None:
    """Validate FILE: exit 0 with a summary, or exit 2 listing every problem with its line and fix. What does not
    exist yet (a KB built later) is a warning, unless --strict."""
    from glinker.pipeline.graph import topological_order
    from glinker.pipeline.spec import load_spec, pipeline_files, resource_problems

    import logging

    said: list[logging.LogRecord] = []  # warnings logged while the file is read (a ${VAR} left as written...)
    catch = logging.Handler(logging.WARNING)
    catch.emit = said.append  # type: ignore[method-assign]
    logging.getLogger("glinker").addHandler(catch)
    try:
        spec = load_spec(file, check_resources=True)
    except PipelineError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    finally:
        logging.getLogger("glinker").removeHandler(catch)
    order = topological_order(spec.stages)
    warned = resource_problems(spec, check_paths=True)  # what does not exist yet: a run would stop on it
    for w in warned:
        typer.echo("warning: " + w.render().replace("\n", "\n  "), err=True)
    uses = pipeline_files(spec)
    refused = [u for u in uses if u.refused]
    for u in refused:
        typer.echo(f"warning: {u.by} will refuse to write {_shown(u.path)}: the file exists and {u.refused}; "
                   "choose another path, or delete the file if it may go", err=True)
    n = len(warned) + len(refused) + len(said)
    if n and strict:
        typer.echo(f"{n} warning(s) in pipeline {file} (--strict)", err=True)
        raise typer.Exit(2)
    typer.echo(f"OK {file}: pipeline {spec.name!r}, {len(spec.stages)} stage(s), output {spec.output!r}"
               + (f" ({n} warning(s) above)" if n else ""))
    typer.echo("run order: " + " -> ".join(order))
    if spec.header.model:
        typer.echo(f"model: {spec.header.model}")
    dtype = spec.header.settings.dtype
    if dtype is not None:
        shown = dtype
        if dtype == "auto":  # what it picks here (the machine that runs the pipeline may pick otherwise)
            from glinker.errors import GlinkerError
            from glinker.model.biencoder import auto_dtype

            try:
                picked = str(auto_dtype(spec.header.settings.device or "cpu")).removeprefix("torch.")
                shown = f"auto ({picked} on this machine)"
            except GlinkerError as e:
                shown = f"auto ({e.message})"
        typer.echo(f"dtype: {shown}")
    if spec.header.kb:
        from glinker.stages.resources import shown_kb

        typer.echo(f"kb: {shown_kb(spec.header.kb, spec.base_dir)}")
    for line in _file_lines(uses):
        typer.echo(line)


@pipeline_app.command("show")
def show(file: Path = typer.Argument(..., help="Pipeline YAML file."),
         format: str = typer.Option("text", "--format", "-f", help="text or dot (Graphviz).")) -> None:
    """Print the pipeline's DAG as text, or as Graphviz with --format dot."""
    from glinker.pipeline.graph import render_dot, render_text
    from glinker.pipeline.spec import load_spec, pipeline_files

    if format not in ("text", "dot"):
        typer.echo(f"unknown format {format!r}: use text or dot", err=True)
        raise typer.Exit(2)
    try:
        spec = load_spec(file)
    except PipelineError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    lines = _file_lines(pipeline_files(spec))
    if format == "dot":  # the files as dot comments: the output stays a graph Graphviz reads
        typer.echo("\n".join([render_dot(spec.stages, spec.output, spec.name)] + ["// " + x for x in lines]))
    else:
        typer.echo("\n".join([render_text(spec.stages, spec.output)] + lines))


def _shown(path: str) -> str:
    """A path as printed: one with a control character (a carriage return that would hide what precedes it on a
    terminal, a line break) is escaped, so the list shows the path the run will open."""
    return path if path.isprintable() else ascii(path)


def _file_lines(uses: list[Any]) -> list[str]:
    """``pipeline_files`` as lines: what a pipeline writes, then what it reads, each with the part that names it.
    A pipeline file chooses its paths: this is what a user checks before running one from someone else."""
    lines = ["files (as a run started in this folder resolves them):"]
    if not uses:
        lines.append("  none named (only the run's own -o output is written)")
    for u in uses:
        note = f": {u.note}" if u.note else ""
        lines.append(f"  {u.mode:<6} {_shown(u.path)}  [{u.by}{note}]")
    return lines


@pipeline_app.command("stages")
def stages() -> None:
    """List the stage types available (built-in and from installed plugins)."""
    from glinker.pipeline.registry import registry, stage_origin

    for name in registry.names():
        try:
            cls = registry.get(name)
            # a class without a summary is described by its docstring's first line
            summary = cls.summary or next(iter((cls.__doc__ or "").strip().splitlines()), "")
            origin = stage_origin(cls)
            if origin is not None:  # a plugin: where it comes from, and its keys (`pipeline stages` is where
                # a plugin's author and users look for them)
                keys = ", ".join(k for k in cls.Params.model_fields)
                src = (f"{origin['distribution']} {origin['version']}" if origin.get("distribution") else
                       origin["class"])
                summary = f"{summary}  [plugin: {src}{'; keys: ' + keys if keys else ''}]".strip()
            typer.echo(f"{name:<22} {', '.join(cls.accepts)} -> {cls.produces}   {summary}")
        except Exception as e:  # a broken plugin must not hide the others
            typer.echo(f"{name:<22} (cannot be loaded: {e})")


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
