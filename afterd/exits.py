"""Every exit code after uses, in one place.

sysexits.h values where one fits, so scripts and systemd can tell causes apart.
One name per number: a number means the same thing whichever process exits with it.

This module imports nothing: the zygote and its children use it, and they keep
their imports few on purpose (zygote.py).
"""

EXIT_OK = 0
# The command ran but could not do what was asked (no such task, a task that kept
# changing under us, a job that cannot be loaded); also `after start -b` when the
# worker died at once. Not a sysexits code: plain failure, as most tools use it.
EXIT_FAILURE = 1
# Bad flags or arguments, or an unusable worker name. argparse exits with 2 on its
# own usage errors, so every usage error looks the same to a script.
EXIT_USAGE = 2
# EX_UNAVAILABLE: CouchDB unreachable or failing (the CLI on any transient error;
# `after start` when it cannot reach CouchDB at start-up).
EXIT_UNAVAILABLE = 69
# EX_SOFTWARE: an internal failure. The worker: the change feed hit a final error,
# or its state directory is locked by another process. A run's child: the runner's
# own code in the child failed (not the job's, which becomes the run's `error`).
EXIT_SOFTWARE = 70
# EX_TEMPFAIL: a run's child that was told to go away before its date (the run was
# canceled, or the zygote is gone); the job never started.
EXIT_NOT_STARTED = 75
# EX_NOPERM: CouchDB refused our credentials (401/403 on the server or database).
EXIT_NOPERM = 77
# EX_CONFIG: a setting is wrong (after.conf, AFTER_* environment, flags).
EXIT_CONFIG = 78
# Ctrl-C, as shells report a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
