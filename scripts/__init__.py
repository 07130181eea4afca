"""Programs run from the repository root with `python -m scripts.<name>` (make demo, bench, load)
and the local stack they share with the tests."""
