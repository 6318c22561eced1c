"""`python -m bench [--full] [--only NAME,...] [--reps N] [--no-postgres]`."""

from bench.runner import main

raise SystemExit(main())
