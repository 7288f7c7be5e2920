"""`glinker pipeline validate|show|stages`: check a YAML pipeline before anything heavy loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from glinker.errors import PipelineError

pipeline_app = typer.Typer(help="Validate and inspect YAML pipelines.", no_args_is_help=True)


@pipeline_app.command("validate")
def validate(file: Path = typer.Argument(..., help="Pipeline YAML file.")) -> None:
    """Validate FILE: exit 0 with a summary, or exit 2 listing every problem with its line and fix."""
    from glinker.pipeline.graph import topological_order
    from glinker.pipeline.spec import load_spec

    try:
        spec = load_spec(file)
    except PipelineError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    missing = _missing_resources(spec)
    if missing:
        typer.echo(f"{file}: {len(missing)} problem(s)\n" + "\n".join(missing), err=True)
        raise typer.Exit(2)
    order = topological_order(spec.stages)
    typer.echo(f"OK {file}: pipeline {spec.name!r}, {len(spec.stages)} stage(s), output {spec.output!r}")
    typer.echo("run order: " + " -> ".join(order))
    if spec.header.model:
        typer.echo(f"model: {spec.header.model}")
    if spec.header.kb:
        typer.echo(f"kb: {spec.header.kb}")


def _missing_resources(spec: Any) -> list[str]:
    """Stages that need a KB or a model while neither they nor the pipeline name one (which loading allows, as
    `glinker link --kb/--model` may give them, but running would not)."""
    out = []
    h = spec.header
    for name, st in spec.stages.items():
        p = st.params
        weights = getattr(p, "weights", None)
        uses_model = "model" in type(p).model_fields and not (
            isinstance(weights, dict) and st.type == "rescore" and not weights.get("biencoder", 0))
        for what, needed, default in (("kb", "kb" in type(p).model_fields, h.kb),
                                      ("model", uses_model, h.model)):
            if needed and getattr(p, what, None) is None and not default:
                where = f"{spec.source}:{st.line}" if st.line else spec.source
                out.append(f"[E250] {where}: stage {name!r} ({st.type}) needs a {what} and none is given\n"
                           f"  fix: set `{what}:` at the top of the file (or on the stage), or pass --{what} to "
                           f"glinker link")
    return out


@pipeline_app.command("show")
def show(file: Path = typer.Argument(..., help="Pipeline YAML file."),
         format: str = typer.Option("text", "--format", "-f", help="text or dot (Graphviz).")) -> None:
    """Print the pipeline's DAG as text, or as Graphviz with --format dot."""
    from glinker.pipeline.graph import render_dot, render_text
    from glinker.pipeline.spec import load_spec

    if format not in ("text", "dot"):
        typer.echo(f"unknown format {format!r}: use text or dot", err=True)
        raise typer.Exit(2)
    try:
        spec = load_spec(file)
    except PipelineError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    typer.echo(render_dot(spec.stages, spec.output, spec.name) if format == "dot"
               else render_text(spec.stages, spec.output))


@pipeline_app.command("stages")
def stages() -> None:
    """List the stage types available (built-in and from installed plugins)."""
    from glinker.pipeline.registry import registry

    for name in registry.names():
        try:
            cls = registry.get(name)
            typer.echo(f"{name:<22} {', '.join(cls.accepts)} -> {cls.produces}   {cls.summary}")
        except Exception as e:  # a broken plugin must not hide the others
            typer.echo(f"{name:<22} (cannot be loaded: {e})")


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
