"""``nats-edge bench``: a verifying benchmark for nats-edge and nats-server.

Modules: ``wire`` (sans-IO frames, parser, verification), ``servers`` (brokers under test and /proc
figures), ``loadgen`` (generator processes), ``scenarios`` (registry and orchestration), ``report``
(targets and table), ``cli`` (the command line: :func:`edge.bench.cli.main`).
"""
