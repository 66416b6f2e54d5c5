"""Example job: run a command, without a shell.

Task arguments: the command as a list, ["/usr/bin/pg_dump", "-f", "/backups/db.sql", "mydb"],
or an object {"command": [...], "cwd": "/some/dir", "timeout_s": 600}.

    after add --worker backup --job shell --arguments '["/usr/local/bin/backup", "--full"]' --every 1d

No shell is involved, so arguments are never re-split or expanded: pass each one
as its own list item. Returns {"exit_code", "stdout_tail", "stderr_tail"}; a
non-zero exit fails the task with the end of its stderr.
"""

import subprocess

TAIL_CHARS = 2000   # enough to see what went wrong, small enough for a task document


def run(task):
    command, cwd, timeout_s = read_arguments(task.arguments)
    task.logger.info("running %s", command[0])
    try:
        done = subprocess.run(command, cwd=cwd, timeout=timeout_s, stdin=subprocess.DEVNULL,
                              capture_output=True)
    except FileNotFoundError:
        raise RuntimeError(f"{command[0]}: no such program") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{command[0]} did not finish within {timeout_s:g}s and was killed") from None
    outcome = {"exit_code": done.returncode, "stdout_tail": tail(done.stdout), "stderr_tail": tail(done.stderr)}
    if done.returncode != 0:
        how = f"was killed by signal {-done.returncode}" if done.returncode < 0 else f"exited with {done.returncode}"
        detail = outcome["stderr_tail"].strip() or outcome["stdout_tail"].strip()
        raise RuntimeError(f"{command[0]} {how}" + (f": {detail}" if detail else ""))
    return outcome


def read_arguments(arguments):
    cwd = timeout_s = None
    if isinstance(arguments, dict):
        cwd, timeout_s = arguments.get("cwd"), arguments.get("timeout_s")
        arguments = arguments.get("command")
    if not isinstance(arguments, list) or not arguments or not all(isinstance(a, str) for a in arguments):
        raise ValueError('arguments: the command as a list of strings, like ["/bin/echo", "hello"]')
    return arguments, cwd, (float(timeout_s) if timeout_s is not None else None)


def tail(data: bytes) -> str:
    return data.decode(errors="replace")[-TAIL_CHARS:]
