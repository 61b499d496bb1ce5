"""`python -m pywats_client` runs the same CLI as the `pywats-client` script."""

import sys

from pywats_client.cli.main import main

sys.exit(main())
