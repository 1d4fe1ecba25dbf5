import sys

from tmesh.cli.main import main

sys.exit(main())
