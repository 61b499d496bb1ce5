"""The library API a Python program on a station uses instead of the CLI: `ClientConfig`,
`WATSClient` (the whole service in background threads) and, in `core.queue`, `ReportQueue`.
Synchronous throughout; like the CLI, a front over the rest of the package.
"""

from pywats_client.core.client import WATSClient
from pywats_client.core.config import ClientConfig

__all__ = ["ClientConfig", "WATSClient"]
