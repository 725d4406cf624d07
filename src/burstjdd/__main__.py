import sys

from burstjdd.cli import main

sys.exit(main())
