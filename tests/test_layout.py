"""The package's shape: imports go one way down the data flow, the top-level contracts import,
every room says what it holds, every tool is an installed command."""

import ast
import configparser
import importlib
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tfvae"

# The rooms in the order data flows; a module may import only its own room and those before it.
LAYERS = [
    "runtime", "config", "data", "models", "samplers", "evaluation", "compression", "training",
    "export", "tuning", "figures", "testing", "experiments", "cli",
]  # fmt: skip
FACADES = {"tfvae", "tfvae.train"}  # the top-level contracts and the `python -m tfvae.train` shim
CONTRACTS = [
    "VAE", "build", "restore", "iwae_bound", "elbo", "log_likelihood", "bits_per_dim",
    "load_dataset", "Config",
]  # fmt: skip


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path):
    """(line, imported tfvae module) for every import of the package in a file, lazy ones too."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfvae"):
            for alias in node.names:  # `from tfvae.data import celeba`: maybe a module
                yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tfvae"):
                    yield node.lineno, alias.name


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_room_is_in_the_layer_order_and_says_what_it_holds():
    rooms = sorted(
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())
    )
    assert set(rooms) - {"train"} == set(LAYERS)
    for room in LAYERS:
        path = PACKAGE / room / "__init__.py"
        if path.exists():
            docstring = ast.get_docstring(ast.parse(path.read_text()))
            assert docstring and len(docstring) > 40, f"tfvae/{room}/__init__.py needs a docstring"


def test_imports_never_climb_against_the_data_flow():
    climbing = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        if module in FACADES:
            continue
        own = _layer(module)
        assert own is not None, f"{module} is in no room of LAYERS"
        for line, imported in _imports(path):
            target = _layer(imported)
            if target is not None and target > own:
                climbing.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert not climbing, "imports against the data flow:\n" + "\n".join(climbing)


def _import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (lazy imports too; a name that is a module
    counts as that module, `from tfvae.data import celeba` as tfvae.data.celeba)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in modules.items():
        targets = set()
        for _, imported in _imports(path):
            while imported not in modules and "." in imported:
                imported = imported.rsplit(".", 1)[0]  # an attribute: its module
            if imported in modules and imported != module:
                targets.add(imported)
        graph[module] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first search, each as the modules around it."""
    found, state = [], {}  # state: 1 on the current path, 2 finished

    def visit(module, path):
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_no_module_imports_itself_through_others():
    # Package __init__ files import their own modules by design; a module importing its
    # package back is a cycle like any other.
    cycles = [c for c in _cycles(_import_graph()) if not set(c) <= FACADES | {"tfvae"}]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_layer_check_catches_a_climbing_import(tmp_path):
    # The rule itself, on a made-up module: models importing training climbs two rooms.
    source = tmp_path / "vae.py"
    source.write_text("from tfvae.training import steps\nfrom tfvae import data\n")
    layers = [_layer(m) for _, m in _imports(source)]
    assert layers == [LAYERS.index("training"), LAYERS.index("data")]
    assert layers[0] > LAYERS.index("models") > layers[1]


def test_the_top_level_contracts_import():
    import tfvae

    for name in CONTRACTS:
        assert callable(getattr(tfvae, name)), name
    assert tfvae.load_dataset is importlib.import_module("tfvae.data").load
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tfvae.nope


def test_importing_the_package_and_the_commands_starts_no_tensorflow():
    code = (
        "import sys, tfvae, tfvae.runtime.files, tfvae.experiments.reproduce\n"
        "import tfvae.cli.bpp, tfvae.cli.train, tfvae.cli.reproduce, tfvae.cli.interpolate\n"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_every_tool_is_a_console_script_and_a_shim():
    parser = configparser.ConfigParser()
    parser.read(PACKAGE.parent / "setup.cfg")
    scripts = dict(
        line.split(" = ")
        for line in parser["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    tools = sorted(p.stem for p in (PACKAGE.parent / "tools").glob("*.py")) + ["train"]  # -m
    assert sorted(scripts) == sorted(f"tfvae-{t.replace('_', '-')}" for t in tools)
    for name, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name
        assert callable(importlib.import_module(module).main), name


def test_every_tools_shim_runs_its_command():
    # `python tools/NAME.py` as the mission writes it: --help needs no TensorFlow, so it is quick.
    for shim in sorted((PACKAGE.parent / "tools").glob("*.py")):
        out = subprocess.run(
            [sys.executable, str(shim), "--help"], capture_output=True, text=True, timeout=60
        )
        module = importlib.import_module(f"tfvae.cli.{shim.stem}")
        assert out.returncode == 0 and out.stdout.startswith(module.__doc__.strip()[:40]), shim


MODEL_OBJECTS = {"vae", "model", "m", "q", "prior", "posterior"}  # names that hold one


def _root_name(node) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _kind_checks(path: pathlib.Path):
    """(line, source) of each isinstance on a class of tfvae.models or TFP, and each hasattr or
    getattr on a model, prior or posterior, in one module."""
    tree = ast.parse(path.read_text())
    model_modules = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("tfvae.models", "tfvae")
        for alias in node.names
    } | {"tfp", "tfd"}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id == "isinstance" and len(node.args) == 2:
            classes = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            if any(_root_name(c) in model_modules for c in classes):
                yield node.lineno, ast.unparse(node)
        elif node.func.id in ("hasattr", "getattr") and _root_name(node.args[0]) in MODEL_OBJECTS:
            yield node.lineno, ast.unparse(node)


def test_no_module_outside_the_models_asks_what_kind_of_model_prior_or_posterior_it_holds():
    """Callers ask the one interface (models/base.py, posteriors.Posterior, the priors'
    log_prob and sample); only a class in tfvae/models dispatches on its own parts."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {source}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "models" not in path.relative_to(PACKAGE).parts
        for line, source in _kind_checks(path)
    ]
    assert found == []


def test_the_kind_check_finder_finds_the_checks_it_forbids(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from tfvae.models import posteriors\n"
        "def f(vae, q):\n"
        "    a = isinstance(q, posteriors.InverseAutoregressivePosterior)\n"
        "    b = hasattr(vae.decoder, 'group_shapes')\n"
        "    c = isinstance(q, (int, str))\n"
        "    return getattr(vae, 'noise_dim', None)\n"
    )
    assert [line for line, _ in _kind_checks(planted)] == [3, 4, 6]
