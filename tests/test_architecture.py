"""The structure docs/architecture.md promises: layers import downward only, no import circles, no Flask in a worker,
every job declared once in the registry, every Redis key spelled in one module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from rq import Queue
from rq.utils import import_attribute

from integrations import redis_keys
from worker import jobs
from worker.registry import FAILURE_TTL, JOBS, RESULT_TTL, urgent_queue

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"config": 0, "models": 1, "integrations": 2, "worker": 3, "webapp": 4}
PACKAGES = ("models", "integrations", "worker", "webapp")
MODULES = {
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for pkg in PACKAGES
    for p in (ROOT / pkg).rglob("*.py")
}


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield name, ast.parse(path.read_text())


def _module_level_imports(tree) -> set[str]:
    """Project modules imported at import time (not inside functions)."""
    found = set()

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                submodules = {f"{child.module}.{a.name}" for a in child.names} & MODULES
                found.update(submodules)
                if len(submodules) < len(child.names):  # names defined in the module itself
                    found.add(child.module)
            walk(child)

    walk(tree)
    return {m for m in found if m.split(".")[0] in LAYERS}


def _graph() -> dict[str, set[str]]:
    modules = dict(_modules())
    names = set(modules) | {"config"}
    return {
        name: {m for m in _module_level_imports(tree) if m in names and m != name} for name, tree in modules.items()
    }


def test_layers_import_downward_only():
    """models < integrations < worker < webapp: a lower layer never imports a higher one."""
    wrong = [
        (mod, dep)
        for mod, deps in _graph().items()
        for dep in deps
        if LAYERS[dep.split(".")[0]] > LAYERS[mod.split(".")[0]]
    ]
    assert wrong == []


def test_no_import_circles():
    graph = _graph()
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in graph.get(node, ()):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_a_worker_imports_no_flask():
    """`leadpulse worker` loads the command line and every job, and none of the web stack."""
    code = (
        "import sys, worker.cli, worker.jobs, worker.sweep, worker.process; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'flask_smorest', 'werkzeug', 'webapp', 'webargs'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_every_job_is_declared_and_found_by_rq_at_its_name():
    declared = {spec.name for spec in JOBS.values()}
    assert declared == {
        "worker.jobs.score_slot",
        "worker.jobs.sync_hubspot_options",
        "worker.jobs.sync_hubspot_contacts",
        "worker.jobs.deliver_slack_alerts",
        "worker.jobs.delete_lead",
        "worker.jobs.prune_audit_log",
        "worker.jobs.apply_decay",
    }
    for spec in JOBS.values():
        assert import_attribute(spec.name) is spec  # what RQ resolves a queued job's function to
        assert spec.timeout > 0 and spec.description


def test_a_declared_job_is_enqueued_with_its_declaration(settings, redis_conn, clean):
    spec = jobs.delete_lead
    job = spec.enqueue(redis_conn, settings.queue_name, 42)
    assert job.func_name == "worker.jobs.delete_lead" and job.args == (42,)
    assert job.timeout == 1800 and job.result_ttl == RESULT_TTL and job.failure_ttl == FAILURE_TTL
    assert job.retries_left == 3 and job.failure_callback is jobs.lead_deletion_failed
    assert job.id == "leadpulse-lead-deletion-42" and job.description == "delete lead (deletion 42)"
    assert spec.enqueue(redis_conn, settings.queue_name, 42) is None  # one live job per deletion
    alerts = jobs.deliver_slack_alerts.enqueue(redis_conn, settings.queue_name, "ou-1")
    assert alerts.origin == urgent_queue(settings.queue_name) and alerts.timeout == jobs.ALERTS_TIMEOUT
    assert Queue(urgent_queue(settings.queue_name), connection=redis_conn).count == 1


def test_redis_keys_are_spelled_only_in_redis_keys():
    """Every key family is declared once (integrations/redis_keys.py); RQ's own keys are read through RQ's API."""
    offenders = []
    for name, tree in _modules():
        if name == "integrations.redis_keys":
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and (node.value.startswith(("leadpulse:", "rq:")) and node.value != "leadpulse:")
            ):
                offenders.append((name, node.value))
            if (
                isinstance(node, ast.JoinedStr)
                and node.values
                and isinstance(node.values[0], ast.Constant)
                and str(node.values[0].value).startswith(("leadpulse:", "rq:"))
            ):
                offenders.append((name, ast.unparse(node)))
    assert offenders == [
        ("integrations.secretbox", "f'leadpulse:{purpose}:{secret_key}'")
    ]  # a key derivation, not Redis
    assert len({family.pattern for family in redis_keys.ALL}) == len(redis_keys.ALL)


def test_imports_inside_functions_are_only_the_justified_ones():
    """A function-level import hides a dependency; each one left has its reason written beside it."""
    found = set()
    for name, tree in _modules():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.update(
                    (name, ast.unparse(node)) for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))
                )
    assert found == {
        ("webapp", "from webapp.resources import all_blueprints"),  # the blueprints import this package back
        ("webapp.offload", "from gevent import get_hub, monkey"),  # gevent only under gevent workers
    }


def test_services_import_neither_flask_nor_a_blueprint():
    """Every entry point calls a service (the ingest lane without a Flask request): a view hands it plain values."""
    found = set()
    for name, tree in _modules():
        if name.startswith("webapp.services"):
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found.update((name, a.name) for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module:
                    found.add((name, node.module))
    wrong = {(name, dep) for name, dep in found if dep.split(".")[0] == "flask" or dep.startswith("webapp.resources")}
    assert wrong == set()


def test_the_lock_was_resolved_from_the_current_dependency_ranges():
    """A range changed in pyproject.toml needs `make lock`: a fresh machine installs the lock, not the ranges."""
    from tests.lock_stamp import ROOT, stamp

    assert (ROOT / "requirements.lock").read_text().splitlines()[0] == stamp(), "run `make lock`"


def test_table_modules_hold_tables_and_operations_live_apart():
    """A models/ module declares tables or operates on them, not both, so a table is found by its name alone."""
    mixed = []
    for name, tree in _modules():
        if not name.startswith("models."):
            continue
        tables = [
            n.name for n in tree.body if isinstance(n, ast.ClassDef) and any(ast.unparse(b) == "Base" for b in n.bases)
        ]
        functions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if tables and functions:
            mixed.append((name, tables, functions))
    assert mixed == []


def test_no_blueprint_imports_another():
    """What two resources share (a lead's dump, a follow-up of a change) lives outside both, not in one of them."""
    graph = _graph()
    crossing = {
        (mod, dep)
        for mod, deps in graph.items()
        if mod.startswith("webapp.resources.")
        for dep in deps
        if dep.startswith("webapp.resources")
    }
    assert crossing == set()
