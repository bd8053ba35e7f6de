# Makes the repository root importable for tests (tests.fixtures, tests.harness) and loads the
# shared personas for every test directory.
pytest_plugins = ["tests.fixtures"]

