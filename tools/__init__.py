"""The project's development tools, apart from the package (not in the wheel sent to a
cluster): ``python -m tools.sample`` (the embedded sample, ``make sample``) and
``python -m tools.bench`` (``make bench``). Run them from the project root."""
