import sys

from bench.event.cli import main

sys.exit(main())
