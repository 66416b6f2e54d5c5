"""Example job: run a command, without a shell, or a command line through one (as cron does).

Task arguments, one of:
- the command as a list, ["/usr/bin/pg_dump", "-f", "/backups/db.sql", "mydb"]: no shell is
  involved, so arguments are never re-split or expanded: pass each one as its own item;
- an object {"command": [...], "cwd": "/some/dir", "timeout_s": 600, "env": {...}, "user": "alice"};
- an object {"script": "pg_dump mydb > /backups/db.sql", "shell": "/bin/sh", "env": {...},
  "user": "alice"}: the text is run by `shell` (default /bin/sh) with -c, as cron runs a
  crontab line's command (`after import crontab` writes these).

    after add --worker backup --job shell --arguments '["/usr/local/bin/backup", "--full"]' --every 1d

`env`: the command's whole environment, as cron gives one: the worker's own environment is
not passed on; HOME, LOGNAME and USER come from the account it runs as, SHELL is `shell`, and
PATH is /usr/bin:/bin, unless `env` sets them. Without `env` the command inherits the worker's
environment. `user`: run as this account (its groups too); only a worker running as root can
switch users, any other worker refuses a `user` other than its own. Without `cwd`, a command
with `user` or `env` starts in HOME (the account's, or the one `env` sets), as under cron.

Returns {"exit_code", "stdout_tail", "stderr_tail"}; a non-zero exit fails the task with the
end of its stderr.
"""

import os
import pwd
import subprocess

TAIL_CHARS = 2000   # enough to see what went wrong, small enough for a task document
CRON_PATH = "/usr/bin:/bin"   # cron's PATH when the crontab sets none


def run(task):
    spec = read_arguments(task.arguments)
    account = account_of(spec["user"])
    env = environment(spec, account)
    cwd = spec["cwd"]
    if cwd is None and (spec["user"] is not None or spec["env"] is not None):
        # As cron: the command starts in HOME (the account's, or a HOME= line of the crontab).
        home = (env or {}).get("HOME") or (account.pw_dir if account is not None else "/")
        cwd = home if os.path.isdir(home) else "/"
    switch = {}
    if spec["user"] is not None and account.pw_uid != os.geteuid():
        if os.geteuid() != 0:
            me = account_name(os.geteuid())
            raise RuntimeError(f"cannot run as {spec['user']}: the worker runs as {me}, not root "
                               "(only a worker running as root can switch users)")
        switch = {"user": account.pw_uid, "group": account.pw_gid,
                  "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid)}
    command = spec["command"]
    task.logger.info("running %s", command[0] if spec["script"] is None else f"{command[0]} -c ...")
    try:
        done = subprocess.run(command, cwd=cwd, timeout=spec["timeout_s"], stdin=subprocess.DEVNULL,
                              capture_output=True, env=env, **switch)
    except FileNotFoundError:
        raise RuntimeError(f"{command[0]}: no such program") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{command[0]} did not finish within {spec['timeout_s']:g}s and was killed") from None
    outcome = {"exit_code": done.returncode, "stdout_tail": tail(done.stdout), "stderr_tail": tail(done.stderr)}
    if done.returncode != 0:
        how = f"was killed by signal {-done.returncode}" if done.returncode < 0 else f"exited with {done.returncode}"
        what = command[0] if spec["script"] is None else f"{command[0]} -c {spec['script']!r}"
        detail = outcome["stderr_tail"].strip() or outcome["stdout_tail"].strip()
        raise RuntimeError(f"{what} {how}" + (f": {detail}" if detail else ""))
    return outcome


HELP = ('arguments: the command as a list of strings, like ["/bin/echo", "hello"], or '
        '{"command": [...]}, or {"script": "echo hello | wc -c"}')


def read_arguments(arguments) -> dict:
    spec = {"cwd": None, "timeout_s": None, "env": None, "user": None, "script": None, "shell": "/bin/sh"}
    if isinstance(arguments, dict):
        unknown = sorted(set(arguments) - {"command", "script", "shell", "cwd", "timeout_s", "env", "user"})
        if unknown:
            raise ValueError(f"arguments: unknown key {unknown[0]!r}; use command or script, shell, cwd, "
                             "timeout_s, env, user")
        spec.update({k: arguments.get(k) for k in ("cwd", "timeout_s", "env", "user")})
        if "script" in arguments:
            if "command" in arguments:
                raise ValueError("arguments: give command (a list, no shell) or script (a text for the shell), not both")
            script, shell = arguments["script"], arguments.get("shell") or "/bin/sh"
            if not isinstance(script, str) or not script.strip():
                raise ValueError("arguments: script must be a command line, like \"echo hello | wc -c\"")
            if not isinstance(shell, str) or not shell.startswith("/"):
                raise ValueError(f"arguments: shell must be an absolute path like /bin/sh, not {shell!r}")
            spec.update(script=script, shell=shell, command=[shell, "-c", script])
        else:
            arguments = arguments.get("command")
    if spec["script"] is None:
        if not isinstance(arguments, list) or not arguments or not all(isinstance(a, str) for a in arguments):
            raise ValueError(HELP)
        spec["command"] = arguments
    env = spec["env"]
    if env is not None and (not isinstance(env, dict) or
                            not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise ValueError('arguments: env must be an object of texts, like {"PATH": "/usr/bin:/bin"}')
    if spec["user"] is not None and (not isinstance(spec["user"], str) or not spec["user"]):
        raise ValueError("arguments: user must be an account name")
    if spec["timeout_s"] is not None:
        spec["timeout_s"] = float(spec["timeout_s"])
    return spec


def account_of(user):
    """The account the command runs as: `user`, or the worker's own."""
    try:
        return pwd.getpwnam(user) if user is not None else pwd.getpwuid(os.geteuid())
    except KeyError:
        if user is None:
            return None   # the worker's uid has no name (a container): no HOME to give
        raise RuntimeError(f"cannot run as {user}: no such user on this host") from None


def account_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def environment(spec: dict, account):
    """None (inherit the worker's) without `env`; else cron's environment plus `env`."""
    if spec["env"] is None:
        return None
    base = {"PATH": CRON_PATH, "SHELL": spec["shell"]}
    if account is not None:
        base.update(HOME=account.pw_dir, LOGNAME=account.pw_name, USER=account.pw_name)
    return {**base, **spec["env"]}


def tail(data: bytes) -> str:
    return data.decode(errors="replace")[-TAIL_CHARS:]
