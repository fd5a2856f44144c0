"""Benchmarks, run as modules from the repository root (``python -m bench.realtime``), never as scripts:
a script's own folder goes first on ``sys.path``, where a benchmark named like a project package would
shadow it (``bench/audio.py`` once did). ``tests/test_bench.py`` holds every file here to that."""
