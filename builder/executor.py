"""The executor: walks the stage graph and turns instructions into an image (DESIGN section 6, step three).

Only the stages the target needs are built: a stage is built when the
target, or a stage being built, uses it (FROM an earlier stage, COPY
--from), so an unused stage that would fail does not fail the build. A
stage that needs itself, directly or not, is a cycle.

Every step goes through the cache: its key is the parent state's identity,
the instruction after expansion, the build args it used and, for COPY and
ADD, the content of its sources. A hit replays the step's recorded effect
without running anything; a miss runs it and records it (``--no-cache``
only skips the lookup).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pybox.builder.args import PROXY_ARGS, BuildArgs, Scope, platform_args
from pybox.builder.cache import BuildCache, cache_key
from pybox.builder.commit import commit_image
from pybox.builder.context import BuildContext, content_hash, ignore_rules
from pybox.builder.filesteps import CopySources, copy_step, make_workdir
from pybox.builder.instructions import (
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Expandable,
    From,
    Instruction,
    Run,
    Stage,
    Workdir,
    expander,
    from_node,
    parse_stages,
)
from pybox.builder.metadata import apply_metadata, workdir_path
from pybox.builder.parser import ContainerfileError, parse
from pybox.builder.runstep import plan_run, run_step
from pybox.builder.shell import Lex
from pybox.builder.state import ImageState, history_entry
from pybox.errors import PyboxError, UsageError
from pybox.image import DEFAULT_PATH, MT, Descriptor, Platform
from pybox.store import Store

__all__ = ["BuildOptions", "BuildResult", "Reporter", "build"]

log = logging.getLogger(__name__)

# The steps a progress line is shown for, as BuildKit shows them: the
# others only change the config.
_SHOWN = (From, Run, Copy, Add, Workdir)


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    context: Path
    containerfile: Path
    tags: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    platform: str | None = None


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    image_id: str
    manifest_digest: str
    names: tuple[str, ...]


class Reporter(Protocol):
    """Where progress goes; ``output`` is the fd for RUN's output (None: pybox's own)."""

    output: int | None

    def step(self, label: str, text: str) -> None: ...

    def finish(self, *, cached: bool, seconds: float) -> None: ...

    def warn(self, message: str) -> None: ...


def build(store: Store, options: BuildOptions, reporter: Reporter) -> BuildResult:
    """Build ``options.target`` (default: the last stage) and store it under ``options.tags``."""
    with store.lock():
        store.clean_tmp()
        return _Build(store, options, reporter).run()


@dataclass
class _StageRun:
    """One stage being built: its state, its ARG scope and its progress counter."""

    stage: Stage
    label: str
    total: int
    state: ImageState
    scope: Scope
    shown: int = 1
    # The stage has run a CMD of its own: an ENTRYPOINT keeps it (BuildKit's cmdSet).
    cmd_set: bool = False

    def env(self) -> dict[str, str]:
        # ENV wins over an ARG of the same name.
        return {**self.scope.set(), **self.state.env}


class _Build:
    def __init__(self, store: Store, options: BuildOptions, reporter: Reporter) -> None:
        self.store = store
        self.options = options
        self.reporter = reporter
        self.filename = options.containerfile.name
        # A bad -t fails before anything is built, not after.
        self.names = tuple(_normalized(t) for t in options.tags)
        try:
            text = options.containerfile.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {options.containerfile}: {e}") from e
        parsed = parse(text, filename=self.filename)
        for warning in parsed.warnings:
            reporter.warn(warning)
        self.escape = parsed.escape
        self.global_args, self.stages = parse_stages(parsed, filename=self.filename)
        self.context = BuildContext(root=options.context, rules=ignore_rules(options.context, options.containerfile))
        self.target_platform = Platform.parse(options.platform) if options.platform else Platform.host()
        self.args = BuildArgs(given=dict(options.build_args),
                              automatic=platform_args(self.target_platform, Platform.host()))
        self.globals = Scope(values=dict(self.args.automatic))
        for instruction in self.global_args:
            self._declare(self.globals, instruction, None)
        self.cache = BuildCache(store)
        self.results: dict[int, ImageState] = {}
        self.images: dict[tuple[str, str], ImageState] = {}
        self.building: list[int] = []

    # --- the graph -----------------------------------------------------------

    def run(self) -> BuildResult:
        target = self._target()
        state = self._stage_result(target.index, target.base)
        unused = self.args.unused()
        if unused:
            self.reporter.warn(f"build args not consumed by any ARG: {', '.join(unused)}")
        started = time.monotonic()
        self.reporter.step("", "exporting to image")
        image_id, manifest_digest = commit_image(self.store, state, list(self.names))
        self.reporter.finish(cached=False, seconds=time.monotonic() - started)
        return BuildResult(image_id=image_id, manifest_digest=manifest_digest, names=self.names)

    def _target(self) -> Stage:
        if self.options.target is None:
            return self.stages[-1]
        wanted = self.options.target.lower()
        for stage in self.stages:
            if stage.name == wanted:
                return stage
        raise UsageError(f"target stage {self.options.target!r} could not be found in {self.filename}")

    def _stage_result(self, index: int, needed_by: Instruction) -> ImageState:
        if index in self.results:
            return self.results[index]
        if index in self.building:
            name = self.stages[index].name or str(index)
            raise ContainerfileError(f"circular dependency detected on stage: {name}", self.filename,
                                     needed_by.line)
        self.building.append(index)
        try:
            state = self._build_stage(self.stages[index])
        finally:
            self.building.pop()
        self.results[index] = state
        return state

    def _stage_by_name(self, name: str, *, before: int | None = None) -> Stage | None:
        lowered = name.lower()
        for stage in self.stages[:before]:
            if stage.name == lowered:
                return stage
        return None

    # --- one stage ------------------------------------------------------------

    def _build_stage(self, stage: Stage) -> ImageState:
        label = stage.name or f"stage-{stage.index}"
        base = self._located(stage.base, lambda: stage.base.expand(self._global_expander()))
        if not base.image:
            raise ContainerfileError(f"base name ({stage.base.image}) should not be blank", self.filename,
                                     stage.base.line)
        started = time.monotonic()
        state = self._located(base, lambda: self._base_state(stage, base))
        resolved = time.monotonic() - started
        triggers = self._located(base, lambda: self._triggers(state, base))
        if triggers:
            state = state.with_config(OnBuild=None)
        instructions = [*triggers, *stage.instructions]
        total = 1 + sum(isinstance(i, _SHOWN) for i in instructions)
        self.reporter.step(f"{label} 1/{total}", f"FROM {base.image}")
        self.reporter.finish(cached=False, seconds=resolved)
        run = _StageRun(stage=stage, label=label, total=total, state=state, scope=Scope())
        # A trigger's errors point at the FROM that fired it.
        located = [(stage.base, t) for t in triggers] + [(i, i) for i in stage.instructions]
        for where, instruction in located:
            self._located(where, lambda: self._step(run, instruction))
        return run.state

    def _base_state(self, stage: Stage, base: From) -> ImageState:
        if base.image == "scratch":
            # BuildKit's empty image: a default PATH and / as working directory.
            config = {"Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"}
            return ImageState(platform=self._platform(base), config=config)
        earlier = self._stage_by_name(base.image, before=stage.index)
        if earlier is not None:
            return self._stage_result(earlier.index, base)
        return self._image_state(base.image, self._platform(base))

    def _platform(self, base: From) -> Platform:
        return Platform.parse(base.platform) if base.platform else self.target_platform

    def _image_state(self, name: str, platform: Platform) -> ImageState:
        # One resolution (and with --pull one pull) per image, however many stages use it.
        key = (name, str(platform))
        if key not in self.images:
            self.images[key] = self._load_image(name, platform)
        return self.images[key]

    def _load_image(self, name: str, platform: Platform) -> ImageState:
        from pybox.registry.ensure import ensure_image

        image = ensure_image(self.store, name, policy="always" if self.options.pull else "missing",
                             platform=str(platform))
        config = image.config
        return ImageState(
            platform=Platform.from_dict(config.raw),
            config=copy.deepcopy(config.config),
            diff_ids=tuple(config.diff_ids),
            layers=tuple(_oci_layer(layer) for layer in image.manifest.layers),
            history=tuple(copy.deepcopy(config.history)),
            author=config.raw.get("author", "") or "",
        )

    def _triggers(self, state: ImageState, base: From) -> list[Instruction]:
        """The base image's ONBUILD triggers, to run as if written after FROM."""
        where = f"ONBUILD trigger of {base.image}"
        out: list[Instruction] = []
        for trigger in state.config.get("OnBuild") or []:
            for node in parse(trigger, filename=where).nodes:
                instruction = from_node(node, filename=where)
                if isinstance(instruction, From):
                    raise ContainerfileError("FROM isn't allowed as an ONBUILD trigger", where, node.start_line)
                out.append(instruction)
        return out

    # --- one step ---------------------------------------------------------------

    def _step(self, run: _StageRun, instruction: Instruction) -> None:
        if isinstance(instruction, Arg):
            self._arg_step(run, instruction)
            return
        used: set[str] = set()
        if isinstance(instruction, Expandable):
            expand, used = expander(run.env(), self.escape)
            instruction = instruction.expand(expand)
        args_used = {k: v for k, v in run.scope.set().items()
                     if k in used and k not in run.state.env and k not in PROXY_ARGS}
        # Prepared first: a COPY --from builds the stage it needs before its own line is shown.
        action, doc, args_used, extra = self._prepare(run, instruction, args_used)
        shown = isinstance(instruction, _SHOWN)
        if shown:
            run.shown += 1
            self.reporter.step(f"{run.label} {run.shown}/{run.total}", instruction.original)
        started = time.monotonic()
        hit = self._through_cache(run, cache_key(run.state, doc, args_used, extra), action)
        if shown:
            self.reporter.finish(cached=hit, seconds=time.monotonic() - started)

    def _through_cache(self, run: _StageRun, key: str, action: Callable[[], ImageState]) -> bool:
        """Advance ``run`` by the step ``key``: replayed from the cache, or ``action()`` run and recorded.

        Returns whether it was a cache hit.
        """
        cached = None if self.options.no_cache else self.cache.get(key, run.state)
        if cached is not None:
            run.state = cached
            return True
        result = action()
        self.cache.put(key, run.state, result)
        run.state = result
        return False

    def _prepare(self, run: _StageRun, instruction: Instruction, args_used: dict[str, str]
                 ) -> tuple[Callable[[], ImageState], dict[str, Any], dict[str, str], str]:
        """What running ``instruction`` does, and what its cache key is made of."""
        doc = _instruction_doc(instruction)
        state = run.state
        if isinstance(instruction, Run):
            plan = plan_run(state, instruction)
            # Every build arg in scope is in RUN's environment, so each can change its result.
            build_env = {k: v for k, v in run.scope.set().items() if k not in state.env}
            keyed = {k: v for k, v in build_env.items() if k not in PROXY_ARGS}
            env = {**build_env, **self.args.proxies()}
            created_by = _run_history(plan.argv, keyed)

            def run_action() -> ImageState:
                diff_id, layer = run_step(self.store, state, plan, env, output=self.reporter.output)
                return state.add_layer(diff_id, layer).add_history(history_entry(created_by, empty_layer=False))

            return run_action, doc, keyed, ""
        if isinstance(instruction, (Copy, Add)):
            return self._copy_action(run, instruction, doc, args_used)
        if isinstance(instruction, Workdir):
            path = workdir_path(state, instruction.path)

            def workdir_action() -> ImageState:
                made = make_workdir(self.store, state, path)
                after = state.with_config(WorkingDir=path)
                if made is None:
                    return after.add_history(history_entry(f"WORKDIR {path}", empty_layer=True))
                return after.add_layer(*made).add_history(history_entry(f"WORKDIR {path}", empty_layer=False))

            return workdir_action, doc, args_used, ""
        cmd_set = run.cmd_set
        if isinstance(instruction, Cmd):
            run.cmd_set = True
        # ENTRYPOINT's result depends on cmd_set, so its key does too.
        extra = f"cmd_set={cmd_set}" if isinstance(instruction, Entrypoint) else ""
        def metadata_action() -> ImageState:
            return apply_metadata(state, instruction, cmd_set=cmd_set)  # type: ignore[arg-type]

        return metadata_action, doc, args_used, extra

    def _copy_action(self, run: _StageRun, instruction: Copy | Add, doc: dict[str, Any], args_used: dict[str, str]
                     ) -> tuple[Callable[[], ImageState], dict[str, Any], dict[str, str], str]:
        state = run.state
        inline = [(f, self._heredoc_text(run, f.content) if f.expand else f.content) for f in instruction.heredocs]
        doc = {**doc, "heredocs": [[f.name, text] for f, text in inline]}
        source_from = instruction.from_ if isinstance(instruction, Copy) else None
        if source_from is not None:
            image = self._copy_source(run, source_from, instruction)
            sources = CopySources(image=image)
            extra = "from:" + image.identity()
        else:
            paths = [p for s in instruction.sources for p in self.context.select(s)]
            sources = CopySources(context=self.context, paths=tuple(paths))
            extra = content_hash(self.context, paths)

        def copy_action() -> ImageState:
            diff_id, layer = copy_step(self.store, state, instruction, sources, inline)
            return state.add_layer(diff_id, layer).add_history(  # type: ignore[arg-type]
                history_entry(instruction.original, empty_layer=False))

        return copy_action, doc, args_used, extra

    def _copy_source(self, run: _StageRun, name: str, instruction: Copy) -> ImageState:
        stage = self._stage_by_name(name)
        if stage is None and name.isdigit():
            index = int(name)
            if index >= len(self.stages):
                raise UsageError(f"COPY --from={name}: there are only {len(self.stages)} stages")
            stage = self.stages[index]
        if stage is not None:
            return self._stage_result(stage.index, instruction)
        return self._image_state(name, self.target_platform)

    def _heredoc_text(self, run: _StageRun, content: str) -> str:
        lex = Lex(escape=self.escape, raw_quotes=True, raw_escapes=True, skip_process_quotes=True)
        return lex.process_word(content, run.env()).result

    def _arg_step(self, run: _StageRun, instruction: Arg) -> None:
        expand, _ = expander(run.env(), self.escape)
        instruction = instruction.expand(expand)
        for decl in instruction.args:
            run.scope.declare(decl, self.args, self.globals.values)
        shown = {d.name: run.scope.values[d.name] for d in instruction.args}
        doc = {"kind": "Arg", "args": sorted((k, v or "") for k, v in shown.items() if k not in PROXY_ARGS)}
        state = run.state
        self._through_cache(run, cache_key(state, doc, {}),
                            lambda: state.add_history(history_entry(instruction.original, empty_layer=True)))

    # --- helpers ----------------------------------------------------------------

    def _declare(self, scope: Scope, instruction: Arg, globals_: dict[str, str | None] | None) -> None:
        expand, _ = expander(scope.set(), self.escape)
        for decl in self._located(instruction, lambda: instruction.expand(expand)).args:
            scope.declare(decl, self.args, globals_)

    def _global_expander(self) -> Callable[[str], str]:
        expand, _ = expander(self.globals.set(), self.escape)
        return expand

    def _located(self, instruction: Instruction, fn: Callable[[], Any]) -> Any:
        """``fn()``, with an error it raises placed at ``FILE:LINE`` of ``instruction``, unless already placed."""
        try:
            return fn()
        except PyboxError as e:
            if not e.where:
                e.where = f"{self.filename}:{instruction.line}"
            raise


def _instruction_doc(instruction: Instruction) -> dict[str, Any]:
    doc = {f.name: getattr(instruction, f.name) for f in dataclasses.fields(instruction)
           if f.name not in ("line", "original")}
    doc = _json_ready(doc)
    doc["kind"] = type(instruction).__name__
    return doc


def _json_ready(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _json_ready(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


# The same bytes under OCI's names: a built image's manifest is OCI, whatever its base's was.
_OCI_LAYER_TYPES = {MT.DOCKER_LAYER: MT.OCI_LAYER_GZIP}


def _oci_layer(layer: Descriptor) -> Descriptor:
    media_type = _OCI_LAYER_TYPES.get(layer.media_type, layer.media_type)
    return dataclasses.replace(layer, media_type=media_type, annotations=dict(layer.annotations))


def _run_history(argv: tuple[str, ...], args: dict[str, str]) -> str:
    # Docker's form: the build args RUN saw, then the command ("RUN |1 V=2 /bin/sh -c make").
    prefix = f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in sorted(args.items())) + " " if args else ""
    return "RUN " + prefix + " ".join(argv)


def _normalized(tag: str) -> str:
    from pybox import reference

    return str(reference.normalize(tag))

