"""The package: `import tfvae` is cheap and lazy, and its imports run downhill.

The layers, bottom to top (the README's Layout section shows the same table). A
module may import modules of its own layer or below, never above, and the graph has
no cycles.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tfvae"

LAYERS = [
    # 0: foundations, no TensorFlow (the command line parses with these alone)
    {"_startup", "arguments", "choices", "compile_cache", "files", "models.registry", "config"}
    | {"resources"},
    # 1: TensorFlow building blocks
    {"validation", "losses", "layers", "priors", "flows", "networks", "data", "scaling"}
    | {"samplers", "code_prior", "optimizers", "dsprites"},
    # 2: the trainer and what it stops or schedules
    {"faults", "fused", "training", "schedules"},
    # 3: the models
    {"models", "models.vae", "models.beta", "models.free_bits", "models.iwae"}
    | {"models.conditional", "models.semi_supervised", "models.vqvae", "models.hierarchical"}
    | {"models.tcvae", "models.factor", "models.dip", "models.capacity"},
    # 4: tools that read a model
    {"evaluation", "plots", "loading", "feature_network", "sample_quality", "disentanglement"},
    # 5: tools built on those
    {"callbacks", "checkpoints", "serving", "export", "dashboards"},
    # 6: a training run
    {"runs"},
    # 7: the command line
    {"cli", "__main__"},
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = PACKAGE.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    """{module: the tfvae modules it imports}, at any depth (function-level included),
    but not those imported only for type checking."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if not name:
            continue  # the package facade, tfvae/__init__.py, names every module
        deps = set()
        tree = ast.parse(path.read_text())
        type_only = {
            id(child)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in type_only or not isinstance(node, ast.ImportFrom):
                continue
            if not node.module or not node.module.startswith("tfvae"):
                continue
            base = node.module.removeprefix("tfvae").removeprefix(".")
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                if _is_module(full):
                    deps.add(full)
                elif base:
                    deps.add(base)
        deps.discard(name)
        graph[name] = deps
    return graph


def test_every_module_has_a_layer():
    placed = set().union(*LAYERS)
    assert set(import_graph()) == placed


def test_imports_never_run_up_a_layer():
    layer_of = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    upward = [
        f"{module} (layer {layer_of[module]}) imports {dep} (layer {layer_of[dep]})"
        for module, deps in import_graph().items()
        for dep in deps
        if layer_of[dep] > layer_of[module]
    ]
    assert not upward, upward


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for dep in graph.get(node, ()):
            if state.get(dep) == "open":
                pytest.fail("import cycle: " + " -> ".join([*path, node, dep]))
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])


def _imports_after(code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; {code}; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))


def test_import_tfvae_imports_no_tensorflow_until_a_name_needs_it():
    assert "tensorflow" not in _imports_after("import tfvae; tfvae.config.RunConfig()")
    loaded = _imports_after("import tfvae; tfvae.VAE")
    assert "tensorflow" in loaded and "tfvae.models.vae" in loaded
    assert "tfvae.export" not in loaded  # only what the name needs


def test_every_public_name_resolves():
    import tfvae

    for name in tfvae.__all__:
        assert getattr(tfvae, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tfvae.nothing  # noqa: B018
