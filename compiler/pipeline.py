"""The compiler's driver: text -> parse tree -> IR -> passes. Backends take its ``Graph``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import ir
from .errors import Diagnostic, ShrinkError
from .loader import Sources, load
from .passes.cost import cost
from .passes.dag import check_dags
from .passes.elaborate import elaborate
from .passes.input_shape import override_input, shape_text
from .passes.residual import check_residual_paths
from .passes.resolve import main_networks, resolve
from .verify import verify_graph, verify_program


@dataclass
class Checked:
    """A spec that passed every check that does not need a chosen network."""

    sources: Sources
    program: ir.Program  # resolved and DAG-checked
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def networks(self) -> list[str]:
        return main_networks(self.sources)


def check(path: str | Path, text: str | None = None) -> Checked:
    sources = load(path, text)
    warnings: list[Diagnostic] = []
    program = verify_program(resolve(sources), ordered=False)
    program = check_residual_paths(verify_program(check_dags(program, warnings)))
    return Checked(sources, program, warnings)


def pick_network(checked: Checked, network: str | None) -> str:
    names = checked.networks
    if network is not None:
        if network not in checked.program.networks:
            from .errors import did_you_mean

            raise ShrinkError(f"no network '{network}' in {checked.sources.main.file}", None,
                              did_you_mean(network, checked.program.networks, "networks"))
        return network
    if not names:
        raise ShrinkError(f"{checked.sources.main.file} defines no network", None,
                          "compile a file with a 'network' block (cells alone can be checked)")
    return names[-1]


def build_graph(checked: Checked, network: str | None = None,
                overrides: dict[str, ir.Value] | None = None,
                input_shape: tuple[int, ...] | None = None) -> ir.Graph:
    """The costed graph of ``network`` (default: the last); ``overrides`` sets network
    parameters, ``input_shape`` (``(C,)`` or ``(C, H, W)``, from ``--input``) replaces the
    input shape the spec gives."""
    name = pick_network(checked, network)
    program = checked.program
    if input_shape is not None:
        program = override_input(program, name, input_shape)
    try:
        graph = elaborate(program, name, source=checked.sources.main.file,
                          spec_hash=checked.sources.spec_hash, overrides=overrides)
        graph = verify_graph(graph)
        return verify_graph(cost(graph), costed=True)
    except ShrinkError as e:
        if input_shape is None:
            raise
        d = e.diagnostic  # say that the shape behind the error is not the spec's
        note = f"with --input {shape_text(input_shape)} in place of the spec's input shape"
        raise ShrinkError(d.message, d.loc, d.hint, f"{d.note}; {note}" if d.note else note,
                          quote=d.quote) from None


def compile_file(path: str | Path, network: str | None = None) -> ir.Graph:
    """Parse, check and cost ``path``; returns the graph of its (last, or named) network."""
    return build_graph(check(path), network)
