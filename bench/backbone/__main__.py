import sys

from bench.backbone.cli import main

sys.exit(main())
