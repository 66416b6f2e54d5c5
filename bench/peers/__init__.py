"""The bench's peers: Huey (SQLite) and Celery (Redis), the same jobs and workloads as after's.

Each peer's application module (huey_app.py, celery_app.py) reads its settings from the
environment, so the consumer the bench starts and the client that enqueues agree;
run.py drives them (python -m bench.peers.run ...), measure.py holds the workloads.
"""
