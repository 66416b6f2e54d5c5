"""`after jobs`: the job files in the jobs folder, and why any of them cannot run."""

import ast

from afterd.cli import UserError
from afterd.cli.show import print_table
from afterd.config import Settings
from afterd.exits import EXIT_FAILURE, EXIT_OK


def cmd_jobs(args, settings: Settings) -> int:
    found = job_report(settings.jobs_dir)
    if not found:
        print(f"no jobs in {settings.jobs_dir}")
        return EXIT_OK
    print_table(("JOB", "STATE"), found)
    return EXIT_OK if all(state == "ok" for _name, state in found) else EXIT_FAILURE


def job_report(jobs_dir) -> list[tuple[str, str]]:
    """(name, 'ok' or why it cannot run) for every job file in the folder."""
    from pathlib import Path

    root = Path(jobs_dir)
    if not root.is_dir():
        raise UserError(f"jobs folder {root} does not exist (set jobs_dir or AFTER_JOBS_DIR)", EXIT_FAILURE)
    names = sorted({p.stem for p in root.glob("*.py")} |
                   {p.parent.name for p in root.glob("*/__init__.py")})
    return [(name, job_state(root, name)) for name in names if not name.startswith("_")]


def job_state(root, name: str) -> str:
    try:
        from afterd import jobs
    except ImportError:
        jobs = None
    try:
        if jobs is not None:
            path = jobs.resolve(root, name)
            code_source = path.read_bytes()
        else:
            path = root / f"{name}.py"
            code_source = path.read_bytes()
        tree = ast.parse(code_source, str(path))
    except SyntaxError as e:
        return f"syntax error, line {e.lineno}: {e.msg}"
    except ValueError as e:
        return f"cannot compile: {e}"
    except OSError as e:
        return f"cannot read: {e.strerror}"
    except Exception as e:   # JobError: refused by the trust checks, or not a job name
        return f"refused: {e}"
    if not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "run"
               for node in tree.body) and not defines_name(tree, "run"):
        return "no run(task) function"
    return "ok"


def defines_name(tree, name: str) -> bool:
    """True if the module binds `name` at top level by assignment or import (run = ...)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False
