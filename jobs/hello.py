"""Example job: greet someone. The `make run` demo schedules it.

Task arguments: [] or [name], or {"name": ...}. Returns {"greeting": ...}.

    after add --worker manobi --job hello --arg Ada --at "2026-12-01 03:00"
"""


def run(task):
    greeting = f"hello, {name_of(task.arguments)}"
    task.logger.info(greeting)
    return {"greeting": greeting}


def name_of(arguments) -> str:
    if isinstance(arguments, dict):
        return str(arguments.get("name") or "world")
    if isinstance(arguments, list) and arguments:
        return str(arguments[0])
    return "world"
