"""Server backups: the repository engine (repository.py, Django-free) and the sources it backs up (sources.py).

docs/backups.md says what is built; docs/backup-format.md is the on-disk format.
"""
