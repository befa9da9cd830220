"""`python -m rftui` is the `rftui` command."""
from rftui.cli import main

raise SystemExit(main())
